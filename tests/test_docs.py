"""The README quotes the committed tables: its evidence block is exactly what the evidence tables
generate, and its quick-profile table's rows are the committed seed and RAW values."""

from pathlib import Path

import pytest

from diffcmr_core.study.writeup.readme import BLOCKS, HOME, pages
from diffcmr_core.tables import read_csv

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _row(label: str) -> list[str]:
    quick = README.read_text().split("## The quick demonstration", 1)[1]
    line = next(ln for ln in quick.splitlines() if ln.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_every_generated_block_is_what_the_committed_tables_give(name):
    """The profile table (times from each REPORT.md, FLOPs from the cost model), the quick
    table, the challenge table and the evidence block: in their home page (the README, the
    challenge table docs/challenge.md) and in every other page that quotes one, each equals
    its generator's output."""
    begin, end, make = BLOCKS[name]
    home = next(p for p in pages(ROOT) if p.name == HOME.get(name, "README.md"))
    assert begin in home.read_text(), f"{home.name} has no {name} block"
    for page in pages(ROOT):
        text = page.read_text()
        if begin not in text:
            continue
        block = begin + text.split(begin, 1)[1].split(end, 1)[0] + end
        assert block == make(ROOT), (
            f"{page.name}'s {name} block is stale: run `.venv/bin/python -m diffcmr_core readme`"
        )


def test_the_readme_times_are_the_reports_and_the_cost_models():
    """Independently of the generator: the quick and cpu times are the notebook totals of their
    REPORT.md, and where the notebooks reused finished steps (their minutes under half the
    compute behind the results) the compute too; the paper's FLOPs the cost model's."""
    import re

    from diffcmr_core.study.experiments.cost import study_cost
    from diffcmr_core.study.settings.profiles import get_profile

    text = README.read_text()
    for profile in ("quick", "cpu"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{profile}`"))
        if not (ROOT / "figures" / profile).exists():  # not run on the current phantom
            assert "not run on the current phantom" in line, (profile, line)
            continue
        report = (ROOT / "figures" / profile / "REPORT.md").read_text()
        total = re.search(r"; ([0-9.]+) min in all", report).group(1)
        compute = float(re.search(r"compute behind these results: ([0-9.]+) min", report)[1])
        if 2 * float(total) >= compute:
            assert f"| {total} min on" in line, (profile, total, line)
        else:
            said = f"| {compute:.0f} min of compute behind"
            assert said in line and f"in {total} min" in line, line
    pflop = sum(study_cost(get_profile("paper")).values()) / 1e15
    assert f"| {pflop:.0f} PFLOP" in next(
        ln for ln in text.splitlines() if ln.startswith("| `paper`")
    )


def test_the_readme_quick_table_quotes_the_committed_tables():
    """RAW and PI-CS from Tables 2 and 3 (cine then mapping); the networks' cells from seeds.csv
    (mean +- sd) when it is committed, else from Tables 2 and 3 (seed 0)."""
    fig = ROOT / "figures" / "quick"
    tables = [
        r for name in ("table2_cine", "table3_mapping") for r in read_csv(fig / f"{name}.csv")
    ]

    def cells(rows, label, spread):
        return [
            f"{float(r['psnr']):.2f}" + (f" +- {float(r['psnr_sd']):.2f}" if spread else "")
            for r in rows
            if r["method"] == label
        ]

    assert _row("RAW") == cells(tables, "RAW", False)
    seeds = read_csv(fig / "seeds.csv") if (fig / "seeds.csv").is_file() else None
    for label in ("U-Net", "cGAN", "DiffCMR"):
        assert _row(label)[:6] == cells(seeds or tables, label, seeds is not None), label


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")) + [README])
def test_links_to_files_of_the_repository_resolve(page):
    import re

    text = page.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_every_committed_table_is_a_registered_one_and_a_stray_name_is_refused():
    """The tables are named once (study/settings/names.py): every CSV under figures/ is
    registered, and
    asking for an unknown table is an error naming the known ones."""
    from diffcmr_core.study.settings.names import TABLES, table

    for path in sorted((ROOT / "figures").glob("*/*.csv")):
        assert table(path.parent, path.stem) == path, path
    with pytest.raises(ValueError, match="no table named 'table2_cin'.*table2_cine"):
        table(ROOT, "table2_cin")
    assert len(TABLES) == len(set(TABLES))


def test_the_readme_is_read_in_five_minutes():
    """Under 12,000 characters: the details live in docs/."""
    assert len(README.read_text()) < 12_000


def test_the_notebooks_on_disk_are_the_registered_ones():
    from diffcmr_core.study.settings.names import NOTEBOOKS, notebook

    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == list(NOTEBOOKS)
    with pytest.raises(ValueError, match="no notebook named '11_more'"):
        notebook("11_more")
