"""The README quotes the committed tables: its evidence block is exactly what the evidence tables
generate, and its quick-profile table's rows are the committed seed and RAW values."""

from pathlib import Path

import pytest

from diffcmr_core.study.report import README_BEGIN, README_END, readme_evidence
from diffcmr_core.tables import read_csv

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _row(label: str) -> list[str]:
    quick = README.read_text().split("## The quick demonstration", 1)[1]
    line = next(ln for ln in quick.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_the_readme_evidence_block_is_generated_from_figures_cpu():
    text = README.read_text()
    assert README_BEGIN in text and README_END in text, "README has no evidence block"
    block = README_BEGIN + text.split(README_BEGIN, 1)[1].split(README_END, 1)[0] + README_END
    assert block == readme_evidence(ROOT / "figures" / "cpu"), (
        "README's evidence block is stale: run `python -m diffcmr_core readme`"
    )


def test_the_readme_quick_table_quotes_the_committed_tables():
    """RAW from Tables 2 and 3; the networks' mean +- sd from seeds.csv (cine then mapping)."""
    fig = ROOT / "figures" / "quick"
    raw = [
        r
        for name in ("table2_cine", "table3_mapping")
        for r in read_csv(fig / f"{name}.csv")
        if r["method"] == "RAW"
    ]
    assert _row("RAW") == [f"{float(r['psnr']):.2f}" for r in raw]
    seeds = read_csv(fig / "seeds.csv")
    for label in ("U-Net", "cGAN", "DiffCMR"):
        cells = [
            f"{float(r['psnr']):.2f} +- {float(r['psnr_sd']):.2f}"
            for r in seeds
            if r["method"] == label
        ]
        assert _row(label)[:6] == cells, label


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")) + [README])
def test_links_to_files_of_the_repository_resolve(page):
    import re

    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
