"""Small result tables: lists of dicts written as CSV and Markdown (atomically)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import write_text_atomic

Row = dict[str, object]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def to_csv_text(rows: Sequence[Row]) -> str:
    """Rows (dicts with the same keys) as CSV text."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: Sequence[Row]) -> str:
    """Rows as a Markdown table (numbers rounded for reading)."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[Row], path: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` to ``path`` (.csv) and beside it as .md; returns both paths."""
    path = Path(path).with_suffix(".csv")
    write_text_atomic(path, to_csv_text(rows))
    write_text_atomic(path.with_suffix(".md"), to_markdown(rows))
    return path, path.with_suffix(".md")


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """A CSV file's rows, as dicts of strings."""
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))


class TableError(DiffCMRError):
    """A result table is missing, unreadable or incomplete (the message names it and says what
    is wrong)."""


def read_checked(
    path: str | Path,
    *,
    columns: Iterable[str] = (),
    numeric: Iterable[str] = (),
    key: Sequence[str] = (),
    rows: Iterable[Sequence[object]] = (),
    made_by: str = "",
) -> list[dict[str, str]]:
    """A table's rows, read only if it is complete: the file exists and is UTF-8 CSV, its header
    holds ``columns`` and ``numeric``, it has at least one row, every value of ``numeric`` is a
    finite number, and for every tuple of ``rows`` a row whose ``key`` columns equal it (as
    text) exists. Anything else is a :class:`TableError` naming the file and every problem;
    ``made_by`` (e.g. "notebook 04_evaluation") says where the table comes from.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = f.write_text("method,acc,psnr\\nRAW,4,20.1\\n")
    >>> read_checked(f, numeric=["psnr"], key=["method", "acc"], rows=[("RAW", 4)])
    [{'method': 'RAW', 'acc': '4', 'psnr': '20.1'}]
    >>> try:
    ...     read_checked(f, key=["method", "acc"], rows=[("RAW", 8)])
    ... except TableError as err:
    ...     print(err.problem)
    lacks the rows method=RAW acc=8
    """
    path = Path(path)
    source = f" (written by {made_by})" if made_by else ""
    if not path.is_file():
        raise TableError(path, f"missing{source}")
    try:
        text = path.read_text(encoding="utf-8")
        table = list(csv.DictReader(io.StringIO(text, newline="")))
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except UnicodeDecodeError as err:
        raise TableError(path, f"not a UTF-8 CSV table (byte {err.start}){source}") from None
    except (OSError, csv.Error) as err:
        raise TableError(path, f"not a readable CSV table ({err}){source}") from None
    problems = _problems(table, header, list(columns), list(numeric), list(key), rows)
    if problems:
        raise TableError(
            path, "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "") + source
        )
    return table


def _problems(
    table: list[dict[str, str]],
    header: list[str],
    columns: list[str],
    numeric: list[str],
    key: list[str],
    rows: Iterable[Sequence[object]],
) -> list[str]:
    """What :func:`read_checked` finds wrong with a table it could read (see there)."""
    lacking = [c for c in dict.fromkeys([*columns, *numeric, *key]) if c not in header]
    problems = [f"lacks the columns {', '.join(lacking)}"] if lacking else []
    if not table:
        problems.append("holds no rows")
    for i, row in enumerate(table, start=2):
        for c in numeric:
            value = row.get(c)
            if c in header and not _finite(value):
                problems.append(f"line {i}: {c} is {value!r}, not a number")
    if not lacking:
        keys = [tuple(r.get(k) for k in key) for r in table]
        have = set(keys)
        twice = sorted({k for k in keys if keys.count(k) > 1}) if key else []
        if twice:
            shown = "; ".join(" ".join(f"{c}={v}" for c, v in zip(key, k)) for k in twice[:4])
            problems.append(f"holds the rows {shown} more than once")
        missing = [tuple(str(v) for v in want) for want in rows]
        missing = [want for want in missing if want not in have]
        if missing:
            shown = "; ".join(" ".join(f"{k}={v}" for k, v in zip(key, m)) for m in missing[:4])
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            problems.append(f"lacks the rows {shown}{more}")
    return problems


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def rounded(rows: Sequence[Row], digits: int | dict[str, int] = 2) -> list[Row]:
    """``rows`` with every float rounded to ``digits`` decimals (or per column: a dict of
    column -> digits, other floats to 2)."""

    def nd(col: str) -> int:
        return digits.get(col, 2) if isinstance(digits, dict) else digits

    return [
        {k: (round(v, nd(k)) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
    ]


def show(rows: Sequence[Row], digits: int | dict[str, int] = 2, title: str | None = None):
    """A table for a notebook: rendered (Markdown, so it shows as a table in JupyterLab and in an
    executed copy) with floats rounded; in a plain script, printed. Returns the Markdown object
    (or None), so a cell can end with it."""
    text = ("" if title is None else f"**{title}**\n\n") + to_markdown(
        _plain(rounded(rows, digits))
    )
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return None
    if get_ipython() is None:
        print(text)
        return None
    display(Markdown(text))
    return None


def _plain(rows: Sequence[Row]) -> list[Row]:
    """Rounded floats as text, so that to_markdown does not pad them back to four decimals; a
    NaN (a value the source does not report, as the paper's columns of PI-CS) as "n/a"."""
    return [
        {
            k: (("n/a" if v != v else f"{v:.10g}") if isinstance(v, float) else v)
            for k, v in r.items()
        }
        for r in rows
    ]
