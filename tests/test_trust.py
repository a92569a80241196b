"""Generated documents and resumable steps that never use a wrong number (issue 36): the README's
blocks only from complete tables, homes that work wherever they are mounted, saved intermediate
results checked before use, PI-CS's data faults skipped per file, two commands on one home,
command-line values, a report without some tables, a disk that fills while pairs are built."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffcmr_core import cli
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data import pairs as pairs_mod
from diffcmr_core.data.pairs import PreprocessConfig, build_pairs, load_pairs, pairs_stamp
from diffcmr_core.errors import CMRxReconError
from diffcmr_core.study.settings.profiles import get_profile, paths_for
from diffcmr_core.study.store import shard
from diffcmr_core.study.store.cache import cached_step
from diffcmr_core.tables import read_csv, to_csv_text

REPO = Path(__file__).resolve().parents[1]
PRE = PreprocessConfig(pad_to=128, size=32)


# ----------------------------------------------------------------------------- 1. the readme
@pytest.fixture()
def pages_home(tmp_path, monkeypatch):
    """A copy of the README, the docs and the committed figures, as the study's home."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "README.md", home)
    shutil.copytree(REPO / "docs", home / "docs")
    shutil.copytree(REPO / "figures", home / "figures")
    monkeypatch.setenv("DIFFCMR_HOME", str(home))
    return home


def _pages(home: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in [home / "README.md", *(home / "docs").glob("*.md")]}


def _header_only(path: Path) -> None:
    path.write_text(path.read_text().splitlines()[0] + "\n")


def _set_cell(path: Path, column: str, value: str) -> None:
    rows = read_csv(path)
    rows[0][column] = value
    path.write_text(to_csv_text(rows))


def _drop_end_marker(home: Path) -> None:
    readme = home / "README.md"
    readme.write_text(readme.read_text().replace("<!-- quick: end -->", ""))


DAMAGES = {
    "header only": (
        lambda h: _header_only(h / "figures/quick/table2_cine.csv"),
        r"table2_cine\.csv: holds no rows; lacks the rows method=RAW acc=4",
    ),
    "deleted": (
        lambda h: (h / "figures/quick/table3_mapping.csv").unlink(),
        r"table3_mapping\.csv: missing \(written by notebook 04_evaluation",
    ),
    "garbage bytes": (
        lambda h: (h / "figures/quick/table3_mapping.csv").write_bytes(
            b"\xff\xfe\x00\x81garbage\n"
        ),
        r"table3_mapping\.csv: not a UTF-8 CSV table",
    ),
    "an evidence folder without its tables": (
        lambda h: [
            shutil.rmtree(h / "figures/cpu", ignore_errors=True),
            (h / "figures/cpu").mkdir(),
        ],
        r"figures/cpu/(REPORT\.md|seeds\.csv|evidence_verdicts\.csv): missing",
    ),
    "the evidence's verdicts gone": (
        lambda h: (h / "figures/cpu/evidence_verdicts.csv").unlink(),
        r"figures/cpu/evidence_verdicts\.csv: missing",
    ),
    "a cell that is no number": (
        lambda h: _set_cell(
            h / "figures/quick/table2_cine_protocols.csv", "challenge psnr", "oops"
        ),
        r"table2_cine_protocols\.csv: line 2: challenge psnr is 'oops', not a number",
    ),
    "a row missing": (
        lambda h: (h / "figures/quick/table3_mapping.csv").write_text(
            "\n".join(
                line
                for line in (h / "figures/quick/table3_mapping.csv").read_text().splitlines()
                if not line.startswith("U-Net,")
            )
            + "\n"
        ),
        r"table3_mapping\.csv: lacks the rows method=U-Net",
    ),
    "a row twice": (
        lambda h: (h / "figures/quick/table2_cine.csv").write_text(
            (h / "figures/quick/table2_cine.csv").read_text()
            + (h / "figures/quick/table2_cine.csv").read_text().splitlines()[1]
            + "\n"
        ),
        r"table2_cine\.csv: holds the rows method=RAW acc=4 more than once",
    ),
    "end marker gone": (_drop_end_marker, r"README\.md: the quick block's markers are broken"),
    "REPORT.md missing": (
        lambda h: (h / "figures/quick/REPORT.md").unlink(),
        r"figures/quick/REPORT\.md: missing",
    ),
}


def test_readme_from_intact_tables_changes_nothing(pages_home, capsys):
    before = _pages(pages_home)
    cli.main(["readme"])
    assert _pages(pages_home) == before
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize("damage", DAMAGES)
def test_readme_never_writes_from_a_broken_table_or_page(pages_home, capsys, damage):
    """Each damage was a wrong README (mapping numbers under the cine headings) or a traceback;
    now every page is left as it was and the command exits 2 naming the file and the problem."""
    spoil, message = DAMAGES[damage]
    spoil(pages_home)
    before = _pages(pages_home)
    with pytest.raises(SystemExit) as stop:
        cli.main(["readme"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "diffcmr readme: error: the README and the docs were left unchanged" in err
    assert re.search(message, err), err
    assert _pages(pages_home) == before


# ----------------------------------------------------------------------------- 2. moved homes
def _refuse_locks(monkeypatch):
    from diffcmr_core.data.phantom import simulation

    def read_only(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(pairs_mod, "folder_lock", read_only)
    monkeypatch.setattr(simulation, "folder_lock", read_only)


def test_pairs_of_a_copied_tree_are_reused_read_only(tiny_root, tmp_path, monkeypatch):
    """The stamp held the absolute data root: a copy rebuilt every pairs file (and failed to
    lock a read-only folder). Now the stamp is the sources' content."""
    home = tmp_path / "a"
    shutil.copytree(tiny_root, home / "data")
    targets = build_pairs(home / "data", home / "pairs", "cine", PRE, accs=(4,), progress=False)
    moved = tmp_path / "b"
    shutil.copytree(home, moved)  # new times and inodes: only the content is the same
    shutil.rmtree(home)
    _refuse_locks(monkeypatch)
    again = build_pairs(moved / "data", moved / "pairs", "cine", PRE, accs=(4,), progress=False)
    assert again[4] == moved / targets[4].relative_to(home)
    assert pairs_stamp(moved / "data", "cine", PRE) == h5py.File(again[4], "r").attrs["stamp"]
    load_pairs(again[4], "val", expect=pairs_stamp(moved / "data", "cine", PRE))
    # a changed source file is another stamp
    victim = next(e for e in io.walk(moved / "data") if e.task == "cine" and e.acc is None)
    k = io.load_kspace(victim.path)
    io.save_kspace(victim.path, io.kspace_key(victim.coil, None), k * 2)
    assert pairs_stamp(moved / "data", "cine", PRE) != h5py.File(again[4], "r").attrs["stamp"]


@pytest.fixture(scope="module")
def moved_home(smoke_home, tmp_path_factory):
    """The finished smoke study copied to another path (the original is never touched)."""
    out = tmp_path_factory.mktemp("moved") / "home"
    shutil.copytree(smoke_home, out, symlinks=True)
    return out


def test_a_finished_home_works_where_it_is_mounted(moved_home, monkeypatch):
    from diffcmr_core.study.methods.convergence import stopped_step, train_to_budget
    from diffcmr_core.study.steps import ensure_data, evaluate_factor
    from diffcmr_core.study.store.validation import val_pairs

    monkeypatch.setenv("DIFFCMR_HOME", str(moved_home))
    _refuse_locks(monkeypatch)
    profile = get_profile("smoke")
    ensure_data(profile, progress=False)  # nothing to rebuild, so no lock is needed
    val_pairs(profile, "cine", 4, 2)
    ckpt = paths_for(profile).model_dir("cine", 4, "unet") / "last.pt"
    mtime = ckpt.stat().st_mtime_ns
    assert train_to_budget(profile, "cine", 4, "unet", progress=False) == ckpt
    assert ckpt.stat().st_mtime_ns == mtime and stopped_step(profile, "cine", 4, "unet")
    assert "U-Net" in evaluate_factor(profile, "cine", 4, progress=False, quiet=True)


# ----------------------------------------------------------------------------- 3. read back
def _work(calls):
    def work(lo, hi):
        calls.append((lo, hi))
        x = np.arange(lo, hi, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
        return {"mean": x, "rounds": np.stack([x, x + 1])}

    return work


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"mean": np.zeros((3, 4, 4), np.float32)}, "holds 3 slices, not the 4 of 4:8"),
        (
            {"mean": np.zeros((4, 5, 5), np.float32), "rounds": np.zeros((2, 4, 5, 5))},
            r"images of \(5, 5\), not \(4, 4\)",
        ),
        (
            {"mean": np.zeros((4, 4, 4), np.float32), "rounds": np.zeros((3, 4, 4, 4), "f4")},
            "differ from the other chunks'",
        ),
        (
            {"mean": np.full((4, 4, 4), np.nan, np.float32), "rounds": np.zeros((2, 4, 4, 4))},
            "NaN or infinite",
        ),
        ({"mean": np.zeros(4, np.float32)}, r"shape \(4,\), not \[\.\.\., slices"),
    ],
)
def test_a_saved_chunk_of_the_wrong_shape_is_named_set_aside_and_redone(
    tmp_path, capsys, bad, problem
):
    """A well-formed .npz of another shape ended the rerun in an IndexError far away."""
    calls: list = []
    good = shard.map_chunks(12, 4, _work(calls), tmp_path, image_shape=(4, 4))
    path = shard.chunk_path(tmp_path, 4, 8)
    with open(path, "wb") as fh:
        np.savez(fh, **bad)
    calls.clear()
    again = shard.map_chunks(12, 4, _work(calls), tmp_path, image_shape=(4, 4))
    assert calls == [(4, 8)]
    assert all(np.array_equal(again[k], good[k]) for k in good) and again.keys() == good.keys()
    out = capsys.readouterr().out
    assert str(path) in out and re.search(problem, out), out
    assert path.with_name(path.name + ".rejected").is_file()


def _record_of(moved_home, method="unet"):
    folder = moved_home / "runs" / "smoke" / "models" / f"cine_accall_{method}"
    return folder / "validation.json"


@pytest.mark.parametrize(
    "spoil, problem",
    [
        (lambda r: {**r, "stopped": 5}, "stopped is 5, not null or an object"),
        (
            lambda r: {
                **r,
                "rows": [{k: v for k, v in row.items() if k != "psnr"} for row in r["rows"]],
            },
            "row 0: psnr is None",
        ),
        (lambda r: {**r, "rows": "none"}, "rows is str, not a list"),
    ],
)
def test_an_ill_typed_validation_record_is_set_aside_and_rebuilt_from_the_snapshots(
    moved_home, monkeypatch, capsys, spoil, problem
):
    """``"stopped": 5`` took last.pt as finished, then a TypeError; rows without psnr a
    KeyError. Now the record is named, set aside and rebuilt by scoring the snapshots again."""
    from diffcmr_core.study.methods.convergence import train_to_budget

    monkeypatch.setenv("DIFFCMR_HOME", str(moved_home))
    path = _record_of(moved_home)
    original = json.loads(path.read_text())
    path.write_text(json.dumps(spoil(original)))
    ckpt = train_to_budget(get_profile("smoke"), "cine", 4, "unet", progress=False)
    assert ckpt == path.parent / "last.pt"
    out = capsys.readouterr().out
    assert str(path) in out and problem in out, out
    rebuilt = json.loads(path.read_text())
    assert rebuilt["stopped"] == original["stopped"]
    assert [r["step"] for r in rebuilt["rows"]] == [r["step"] for r in original["rows"]]
    assert np.allclose([r["psnr"] for r in rebuilt["rows"]], [r["psnr"] for r in original["rows"]])


def test_a_diverging_network_stops_said_finished_for_its_sweep_and_refused_by_a_table(
    moved_home, tmp_path, monkeypatch, capsys
):
    """At too high a rate DiffCMR's loss went NaN; its NaN scores made the record ill formed, so
    it was set aside and the run trained again and again until the sweep "made no progress".
    Now a real divergence (U-Net at a rate of 1e30) stops at its first non-finite snapshot with
    null scores, the record reads back as finished (no second training), and a table's
    training refuses the model naming its record."""
    from diffcmr_core.errors import DiffCMRError
    from diffcmr_core.study import methods as registry
    from diffcmr_core.study.methods import convergence

    home = tmp_path / "home"
    shutil.copytree(moved_home / "runs", home / "runs")
    (home / "data").symlink_to(moved_home / "data")
    monkeypatch.setenv("DIFFCMR_HOME", str(home))
    profile = convergence.with_lr(get_profile("smoke"), "unet", 1e30)
    out = paths_for(profile).model_dir("cine", 4, "unet")
    shutil.rmtree(out)
    first = profile.network("unet").train.snapshot_every
    assert first < profile.network("unet").train.iterations  # (it stops before its budget)
    ckpt = convergence.train_to_budget(profile, "cine", 4, "unet", progress=True)
    assert "selection PSNR not finite -> stopped: the model diverged" in capsys.readouterr().out
    record = json.loads((out / "validation.json").read_text())
    assert [r["step"] for r in record["rows"]] == [first]
    assert record["rows"][0]["psnr"] is None and record["stopped"]["diverged"] is True
    assert convergence.record_problem(record) is None and convergence.diverged(record)
    mtime = ckpt.stat().st_mtime_ns
    assert convergence.train_to_budget(profile, "cine", 4, "unet", progress=False) == ckpt
    assert ckpt.stat().st_mtime_ns == mtime and "rejected" not in capsys.readouterr().out
    with pytest.raises(DiffCMRError, match="diverged at step") as err:
        registry.get("unet").fit(profile, "cine", 4, progress=False)
    assert err.value.path == out / "validation.json"
    # null scores anywhere but a diverged run's last row stay ill formed
    early = {**record, "stopped": {**record["stopped"], "diverged": False}}
    assert convergence.record_problem(early) == "row 0: psnr is None, not a number"


def test_a_cache_entry_that_is_not_what_the_step_expects_is_recomputed(tmp_path, capsys):
    profile = get_profile("smoke")
    path = tmp_path / "summary.json"
    check = lambda r: None if isinstance(r, dict) and "U-Net" in r else "no scores of U-Net"  # noqa: E731
    assert cached_step(path, profile, lambda: {"U-Net": 1.0}, check=check) == {"U-Net": 1.0}
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "result": {"RAW": 2.0}}))
    assert cached_step(path, profile, lambda: {"U-Net": 3.0}, check=check) == {"U-Net": 3.0}
    assert "no scores of U-Net" in capsys.readouterr().out
    path.write_text(json.dumps({**entry, "seconds": "x"}))
    assert cached_step(path, profile, lambda: {"U-Net": 4.0}, check=check) == {"U-Net": 4.0}


def test_an_evaluation_summary_missing_a_method_is_recomputed(moved_home, monkeypatch, capsys):
    from diffcmr_core.study.steps import evaluate_factor

    monkeypatch.setenv("DIFFCMR_HOME", str(moved_home))
    profile = get_profile("smoke")
    path = paths_for(profile).eval_dir("mapping", 10) / "summary.json"
    entry = json.loads(path.read_text())
    good = entry["result"]
    path.write_text(json.dumps({**entry, "result": {"RAW": good["RAW"]}}))
    assert evaluate_factor(profile, "mapping", 10, progress=False, quiet=True) == good
    assert "no scores of U-Net" in capsys.readouterr().out


# ----------------------------------------------------------------------------- 4. PI-CS per file
def test_pics_skips_a_file_with_too_few_calibration_lines(smoke_home, tmp_path, monkeypatch):
    """One file with 3 calibration lines aborted the whole PI-CS submission (0 files written)."""
    from diffcmr_core.study.steps.submit import submit

    monkeypatch.setenv("DIFFCMR_HOME", str(smoke_home))
    profile = get_profile("smoke")
    data = tmp_path / "data"
    shutil.copytree(
        paths_for(profile).data,
        data,
        ignore=shutil.ignore_patterns("TrainingSet", "Truth", "ValidationTruth", "SingleCoil"),
    )
    files = [e for e in io.walk(data) if e.split == "ValidationSet" and e.task == "cine"]
    victim = files[0]
    k = io.load_kspace(victim.path)
    c = k.shape[-2] // 2
    k[..., [c - 2, c + 2], :] = 0  # the centre keeps 3 contiguous lines
    io.save_kspace(victim.path, io.kspace_key(victim.coil, victim.acc), k)
    mask_path = victim.path.with_name(f"{victim.path.stem}_mask.mat")
    mask = io.load_mask(mask_path, io.mask_key(victim.acc))
    mask[[c - 2, c + 2]] = 0
    io.save_mask(mask_path, io.mask_key(victim.acc), mask)
    report = submit(profile, out=tmp_path / "sub", data=data, method="cs", progress=False)
    assert len(report.skipped) == 1, report.skipped
    assert (
        str(victim.path) in report.skipped[0] and "3 contiguous central lines" in report.skipped[0]
    )
    assert len(report.written) == len(files) - 1 + len(
        [e for e in io.walk(data) if e.split == "ValidationSet" and e.task == "mapping"]
    )


# ----------------------------------------------------------------------------- 5. two at once
def test_two_evaluations_of_one_home_at_once_both_finish(moved_home, tmp_path):
    """The first to finish removed parts/ under the other: RuntimeError 'chunk 0:4 missing'."""
    home = tmp_path / "home"
    shutil.copytree(moved_home, home, symlinks=True)
    evals = home / "runs" / "smoke" / "eval"
    before = {
        p.parent.name: json.loads(p.read_text())["result"] for p in evals.glob("*/summary.json")
    }
    for p in evals.glob("*/summary.json"):
        p.unlink()
    env = {**os.environ, "DIFFCMR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "diffcmr_core", "evaluate", "--profile", "smoke", "--quiet"]
    runs = [
        subprocess.Popen(
            [*cmd, "--no-ablation"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    after = {
        p.parent.name: json.loads(p.read_text())["result"] for p in evals.glob("*/summary.json")
    }
    assert after.keys() == before.keys()
    for key, results in before.items():  # PI-CS's FFTs differ in the 7th digit between threads
        assert after[key].keys() == results.keys()
        for label, scores in results.items():
            assert after[key][label] == pytest.approx(scores, rel=1e-5), (key, label)


# ----------------------------------------------------------------------------- 6. command line
@pytest.mark.parametrize(
    "argv, option",
    [
        (["evaluate", "--profile", "nope"], "--profile"),
        (["study", "--profile", "nope"], "--profile"),
        (["submit", "--profile", "nope"], "--profile"),
        (["seeds", "--seeds", str(2**64)], "--seeds"),
        (["seeds", "--seeds", "0", "0"], "--seeds"),
    ],
)
def test_bad_profile_and_seed_values_are_refused_in_one_line(argv, option, tmp_path):
    home = tmp_path / "home"
    run = subprocess.run(
        [sys.executable, "-m", "diffcmr_core", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "DIFFCMR_HOME": str(home)},
        timeout=120,
    )
    assert run.returncode == 2 and option in run.stderr and "Traceback" not in run.stderr
    assert not home.exists()


# ----------------------------------------------------------------------------- 7. the report
def test_a_report_without_some_tables_says_which_and_keeps_the_notebooks_results(
    moved_home, tmp_path, monkeypatch
):
    """``study --only 10_evidence`` in a home without figures/ ran the notebook, then failed in
    the report (FileNotFoundError: table1.csv)."""
    from diffcmr_core.study.lab.runner import run_study

    home = tmp_path / "home"
    shutil.copytree(moved_home, home, symlinks=True, ignore=shutil.ignore_patterns("figures"))
    (home / "runs" / "smoke" / "notebooks" / "10_evidence.done.json").unlink()
    monkeypatch.setenv("DIFFCMR_HOME", str(home))
    report = run_study("smoke", only=["10_evidence"])
    text = report.read_text()
    assert "## Tables not yet made" in text
    assert (
        "`table1.csv` (Table 1: pairs per task, factor and split): notebook 02_preprocessing"
        in text
    )
    assert "--only 02_preprocessing" in text and "`seeds.csv`" not in text
    assert (home / "figures" / "smoke" / "seeds.csv").is_file()
    assert "## Evidence on held-out subjects" in text


# ----------------------------------------------------------------------------- 8. a full disk
def test_a_disk_that_fills_while_pairs_are_built_is_one_message(
    tiny_root, tmp_path, monkeypatch, capfd
):
    """h5py printed thousands of 'Exception ignored' tracebacks before our error (and the
    interpreter could crash at exit): now the free space is checked before each write."""
    real = shutil.disk_usage
    calls = []

    def filling(path):
        calls.append(path)
        usage = real(path)
        free = pairs_mod.MARGIN + (1 << 20) - 200_000 * len(calls)  # fills as we write
        return usage._replace(free=max(0, free))

    monkeypatch.setattr(pairs_mod.shutil, "disk_usage", filling)
    with pytest.raises(CMRxReconError, match=r"could not write the cine pairs.*No space left"):
        build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4, 8), progress=False)
    assert len(calls) > 2  # it failed part way, not at the first write
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*.tmp"))
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_real_full_disk_gives_one_message_and_a_clean_exit(tiny_root, tmp_path):
    """On a real file system that fills (a tmpfs 0.5 MiB above the margin), in a process of its
    own: our error alone, and the interpreter exits normally."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    size = pairs_mod.MARGIN + (512 << 10)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    try:
        code = (
            "from diffcmr_core.data.pairs import PreprocessConfig, build_pairs\n"
            "from diffcmr_core.errors import CMRxReconError\n"
            "try:\n"
            f"    build_pairs({str(tiny_root)!r}, {str(mnt / 'pairs')!r}, 'cine', "
            "PreprocessConfig(pad_to=128, size=32), progress=False)\n"
            "except CMRxReconError as err:\n"
            "    print(err)\n"
        )
        run = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "No space left" in run.stdout and "Exception ignored" not in run.stderr
        assert not list((mnt / "pairs").glob("*.h5"))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
