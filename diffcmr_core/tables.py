"""Small result tables: lists of dicts written as CSV and Markdown (atomically)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

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
    """Rounded floats as text, so that to_markdown does not pad them back to four decimals."""
    return [{k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
