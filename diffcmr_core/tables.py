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
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def to_markdown(rows: Sequence[Row]) -> str:
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
    with Path(path).open(newline="") as fh:
        return list(csv.DictReader(fh))
