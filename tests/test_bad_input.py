"""The 17 kinds of bad input and interruption found by the adversarial probe (issue 11), one
test each: the error is ours and names the file, nothing written is lost or half-written, and an
interrupted step resumes or redoes cleanly."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
import torch

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.pairs import (
    PreprocessConfig,
    build_pairs,
    load_pairs,
    pairs_path,
    pairs_stamp,
    split_cases,
)
from diffcmr_core.errors import CheckpointError, CMRxReconError
from diffcmr_core.fileio import atomic_path, write_text_atomic
from diffcmr_core.method import train as train_mod
from diffcmr_core.method.checkpoints import load_checkpoint
from diffcmr_core.method.networks import UNetConfig
from diffcmr_core.method.settings import TrainConfig
from diffcmr_core.method.train import train

PRE = PreprocessConfig(pad_to=128, size=32)
UNET = UNetConfig(channels=4, depth=2)
CFG = TrainConfig(iterations=4, batch_size=2, lr=1e-3, log_every=1, checkpoint_every=2)


def _kspace(shape=(1, 2, 3, 8, 6)):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.fixture()
def root(tiny_root, tmp_path):
    """A private copy of the tiny tree, free to be damaged."""
    out = tmp_path / "tree"
    shutil.copytree(tiny_root, out)
    return out


@pytest.fixture(scope="module")
def unet_pairs(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("bad_pairs")
    build_pairs(tiny_root, out, "cine", PRE, accs=(4,), progress=False)
    return pairs_path(out, "cine", 4)


# 1. a k-space variable that is an HDF5 group
def test_1_group_variable_is_named(tmp_path):
    with h5py.File(tmp_path / "g.mat", "w") as f:
        f.create_group("kspace_full").create_dataset("x", data=np.zeros(3))
    for read in (io.load_kspace, io.kspace_shape, io.load_mask):
        with pytest.raises(CMRxReconError, match=r"g\.mat.*not an array"):
            read(tmp_path / "g.mat")


# 2. a huge declared shape read whole
def test_2_huge_declared_shape_names_the_file(tmp_path, monkeypatch):
    io.save_kspace(tmp_path / "k.mat", "kspace_full", _kspace())

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(io.np, "empty", no_memory)
    with pytest.raises(CMRxReconError, match=r"k\.mat.*does not fit in memory.*index="):
        io.load_kspace(tmp_path / "k.mat")


# 3. a dataset declared but never written (and an all-zero fully sampled file)
def test_3_declared_but_unwritten_dataset(tmp_path, root):
    with h5py.File(tmp_path / "u.mat", "w") as f:
        f.create_dataset(
            "kspace_full", shape=(1, 2, 3, 8, 6), dtype=[("real", "<f4"), ("imag", "<f4")]
        )
    with pytest.raises(CMRxReconError, match=r"u\.mat.*never written"):
        io.load_kspace(tmp_path / "u.mat")
    full = io.file_path(root, "MultiCoil", "cine", "P001", "cine_lax")
    io.save_kspace(full, "kspace_full", np.zeros(io.kspace_shape(full), np.complex64))
    with pytest.raises(CMRxReconError, match=r"P001/cine_lax\.mat.*all zeros"):
        build_pairs(root, tmp_path / "p", "cine", PRE, accs=(4,), progress=False)


# 4. an all-zero mask, or a mask shifted off the sampled lines
def test_4_empty_or_shifted_mask(root, tmp_path):
    mask_path = io.file_path(root, "MultiCoil", "cine", "P002", "cine_sax", acc=8, kind="mask")
    good = io.load_mask(mask_path)
    io.save_mask(mask_path, "mask08", np.zeros_like(good))
    with pytest.raises(CMRxReconError, match="samples no k-space line"):
        io.load_mask(mask_path)
    io.save_mask(mask_path, "mask08", np.roll(good, 1, axis=0))
    with pytest.raises(CMRxReconError, match=r"cine_sax_mask\.mat.*does not match its k-space"):
        build_pairs(root, tmp_path / "p", "cine", PRE, accs=(8,), progress=False)


# 5. load_times: not text, a bad cell, absurd times
@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe1\x002\x00", "not a UTF-8 text file"),
        (b"TI\n100,200,x30,400\n", r"row 1, column 3: 'x30'"),
        (b"100,-5,300\n", r"must lie in \[0, 10000\]"),
        (b"100,2e9\n", r"must lie in \[0, 10000\]"),
    ],
)
def test_5_times_are_checked(tmp_path, content, message):
    (tmp_path / "T1map.csv").write_bytes(content)
    with pytest.raises(CMRxReconError, match=rf"T1map\.csv.*{message}"):
        io.load_times(tmp_path / "T1map.csv")
    (tmp_path / "ok.csv").write_text("TI1,TI2\n100,200\n")
    np.testing.assert_array_equal(io.load_times(tmp_path / "ok.csv"), [100, 200])


# 6. a root with one case
def test_6_one_case_root_is_named(root, tmp_path):
    for coil in io.COIL_TYPES:
        for task in io.TASKS:
            for split_dir in (root / coil / io.TASK_FOLDER[task] / "TrainingSet").iterdir():
                for case in ("P002", "P003"):
                    shutil.rmtree(split_dir / case, ignore_errors=True)
    with pytest.raises(CMRxReconError, match=rf"{root}.*two cases.*found 1 \(P001\)"):
        build_pairs(root, tmp_path / "p", "cine", PRE, accs=(4,), progress=False)
    with pytest.raises(CMRxReconError):
        split_cases(["P001"], 0.1)


# 7. a file with 0 frames
def test_7_zero_frames_is_an_error(tmp_path):
    with h5py.File(tmp_path / "k.mat", "w") as f:
        f.create_dataset(
            "kspace_full", data=np.zeros((0, 2, 3, 8, 6), [("real", "<f4"), ("imag", "<f4")])
        )
    with pytest.raises(CMRxReconError, match=r"k\.mat.*no data along \['t'\]"):
        io.kspace_shape(tmp_path / "k.mat")


# 8. temporary files of killed runs
def test_8_temporaries_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "table.csv"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".table.csv.{dead}.abcd1234.tmp"
    stale.write_text("half")
    live = tmp_path / f".table.csv.{os.getpid()}.live0000.tmp"
    live.write_text("being written")
    write_text_atomic(target, "ok\n")
    assert target.read_text() == "ok\n" and not stale.exists() and live.exists()


# 9. the loss log is written before the checkpoint
def test_9_kill_between_log_and_checkpoint_loses_no_log_rows(unet_pairs, tmp_path, monkeypatch):
    real_save, calls = train_mod.save_checkpoint, []

    def killed_after_first(path, state):
        calls.append(state["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill, between log and checkpoint
        real_save(path, state)

    monkeypatch.setattr(train_mod, "save_checkpoint", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    steps = [int(r.split(",")[0]) for r in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


# 10. the study marks a notebook done only when it finished
def test_10_an_interrupted_notebook_is_not_marked_done(tmp_path):
    from diffcmr_core.study.lab import runner

    nb = tmp_path / "03_x.ipynb"
    nb.write_text("{}")
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    (run_dir / nb.name).write_text("{} partial executed copy, newer than the source")
    params = {"profile": "smoke"}
    assert not runner.is_done(run_dir, nb, params)  # a newer copy is not enough
    write_text_atomic(
        run_dir / "03_x.done.json", json.dumps({"fingerprint": runner._fingerprint(nb, params)})
    )
    assert runner.is_done(run_dir, nb, params)
    assert not runner.is_done(run_dir, nb, {"profile": "quick"})
    nb.write_text('{"changed": 1}')
    assert not runner.is_done(run_dir, nb, params)


# 11. a corrupt checkpoint names the file
def test_11_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable checkpoint"):
        load_checkpoint(tmp_path / "last.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: not a checkpoint of this study"):
        load_checkpoint(tmp_path / "other.pt")


# 12. two builds with different configurations into one folder
def test_12_concurrent_builds_take_turns_and_a_foreign_file_is_refused(tiny_root, tmp_path):
    a, b = PRE, dataclasses.replace(PRE, size=16)
    errors = []

    def build(cfg):
        try:
            build_pairs(tiny_root, tmp_path, "mapping", cfg, accs=(4, 8), progress=False)
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=build, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stamps = {h5py.File(pairs_path(tmp_path, "mapping", acc), "r").attrs["stamp"] for acc in (4, 8)}
    assert len(stamps) == 1  # never a mixture of the two
    winner, loser = (a, b) if stamps == {pairs_stamp(tiny_root, "mapping", a)} else (b, a)
    load_pairs(
        pairs_path(tmp_path, "mapping", 4), "val", expect=pairs_stamp(tiny_root, "mapping", winner)
    )
    with pytest.raises(CMRxReconError, match="another configuration"):
        load_pairs(
            pairs_path(tmp_path, "mapping", 4),
            "val",
            expect=pairs_stamp(tiny_root, "mapping", loser),
        )


# 13. disk full while building pairs
def test_13_disk_full_during_build_pairs(tiny_root, tmp_path, monkeypatch):
    from diffcmr_core.data import pairs as pairs_mod

    build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4, 8), progress=False)
    before = {acc: pairs_path(tmp_path, "cine", acc).read_bytes() for acc in (4, 8)}
    real_append, n = pairs_mod._append, []

    def full_disk(ds, values):
        n.append(1)
        if len(n) > 20:
            raise OSError(28, "No space left on device")
        real_append(ds, values)

    monkeypatch.setattr(pairs_mod, "_append", full_disk)
    with pytest.raises(
        CMRxReconError, match=rf"{tmp_path}.*could not write the cine pairs.*No space"
    ):
        build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4, 8), progress=False, force=True)
    assert {acc: pairs_path(tmp_path, "cine", acc).read_bytes() for acc in (4, 8)} == before
    assert not list(tmp_path.glob(".*.tmp"))


# 14. disk full while saving a checkpoint
def test_14_disk_full_while_saving_a_checkpoint(unet_pairs, tmp_path, monkeypatch):
    def full(*a, **k):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed "
            "writing file data/3: file write failed"
        )

    monkeypatch.setattr(train_mod.torch, "save", full)
    with pytest.raises(CheckpointError, match=r"last\.pt: could not write the checkpoint"):
        train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    assert not list(tmp_path.glob(".*.tmp"))


# 15. a checkpoint of another configuration is kept aside, not deleted
def test_15_stale_checkpoint_is_kept_aside(unet_pairs, tmp_path):
    train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    old = (tmp_path / "last.pt").read_bytes(), (tmp_path / "loss.csv").read_text()
    train(
        "unet",
        unet_pairs,
        tmp_path,
        dataclasses.replace(CFG, lr=5e-4),
        UNET,
        device="cpu",
        progress=False,
    )
    (aside,) = tmp_path.glob("stale-*")
    assert (aside / "last.pt").read_bytes() == old[0] and (aside / "loss.csv").read_text() == old[1]


# 16. generated files follow the umask
def test_16_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.md", "x")
        with atomic_path(tmp_path / "b.h5") as tmp:
            h5py.File(tmp, "w").close()
    finally:
        os.umask(previous)
    for name in ("a.md", "b.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# 17. a truncated pairs file names the file
def test_17_truncated_pairs_file_is_named(unet_pairs, tmp_path):
    cut = tmp_path / "pairs_cine_acc04.h5"
    cut.write_bytes(unet_pairs.read_bytes()[:4096])
    with pytest.raises(
        CMRxReconError, match=r"pairs_cine_acc04\.h5: truncated or corrupt pairs file"
    ):
        load_pairs(cut, "train")


def test_study_skips_the_maps_on_real_data_and_says_why():
    """Notebook 09 needs the phantom's labels and truth: `make study` on real data skips it
    with the reason instead of failing at the last notebook; every other notebook runs."""
    from types import SimpleNamespace

    from diffcmr_core.study.lab.runner import notebooks_dir, skip_reason

    real, synthetic = SimpleNamespace(is_synthetic=False), SimpleNamespace(is_synthetic=True)
    assert "tissue labels" in skip_reason("09_mapping", real)
    assert skip_reason("09_mapping", synthetic) is None
    lesson = "11_teaching"  # never run by `make study`: a lesson, not a result
    assert "lesson" in skip_reason(lesson, synthetic) and "lesson" in skip_reason(lesson, real)
    others = [
        nb.stem
        for nb in notebooks_dir().glob("[0-9][0-9]_*.ipynb")
        if nb.stem not in ("09_mapping", lesson)
    ]
    assert len(others) == 9 and all(skip_reason(n, real) is None for n in others)


# ----------------------------------------------------------------------------- issue 29
# 1. the phantom never overwrites a folder it did not make
def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _foreign_tree(tiny_root, tmp_path):
    """A CMRxRecon tree the phantom did not make (the tiny tree without its markers)."""
    from diffcmr_core.data.phantom import MANIFEST

    out = tmp_path / "real"
    shutil.copytree(tiny_root, out)
    for marker in ("phantom.json", MANIFEST, ".lock"):
        (out / marker).unlink(missing_ok=True)
    return out


def test_29_1_phantom_refuses_a_tree_it_did_not_make(tiny_root, tmp_path):
    from diffcmr_core.data.phantom import make_phantom
    from diffcmr_core.errors import DiffCMRError
    from tests.conftest import TINY

    real = _foreign_tree(tiny_root, tmp_path)
    before = _snapshot(real)
    other = dataclasses.replace(TINY, n_cases=2, cine_frames=2)
    for cfg in (TINY, other):
        with pytest.raises(
            DiffCMRError, match=r"real: holds \d+ files the phantom did not write.*--force"
        ):
            make_phantom(real, cfg, progress=False)
    assert _snapshot(real) == before  # nothing written, not even a lock
    assert sorted(p.name for p in real.iterdir()) == sorted(
        p.name
        for p in tiny_root.iterdir()
        if p.name not in ("phantom.json", "phantom-files.json", ".lock")
    )
    # a single unrelated file is enough
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("mine")
    with pytest.raises(DiffCMRError, match=r"notes: holds 1 files.*README\.txt"):
        make_phantom(tmp_path / "notes", TINY, progress=False)
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["README.txt"]


def test_29_1_phantom_force_writes_beside_foreign_files(tmp_path):
    from diffcmr_core.data.phantom import make_phantom
    from tests.conftest import TINY

    cfg = dataclasses.replace(TINY, n_cases=2, n_val_cases=0, cine_frames=1, sax_slices=1)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "README.txt").write_text("mine")
    make_phantom(tmp_path / "t", cfg, progress=False, force=True)
    assert (tmp_path / "t" / "README.txt").read_text() == "mine"
    assert (tmp_path / "t" / "phantom.json").is_file()


def test_29_1_phantom_rerun_deletes_only_its_own_files_and_says_so(tmp_path, capsys):
    from diffcmr_core.data.phantom import simulation as ph
    from diffcmr_core.errors import DiffCMRError
    from tests.conftest import TINY

    a = dataclasses.replace(TINY, n_cases=2, n_val_cases=0, cine_frames=1, sax_slices=1)
    b = dataclasses.replace(a, cine_frames=2)
    root = ph.make_phantom(tmp_path / "t", a, progress=False)
    n_files = len(ph._files(root))
    ph.make_phantom(root, b, progress=False)
    out = capsys.readouterr().out
    assert f"made with another configuration: deleting its {n_files} files" in out
    assert (root / "phantom.json").read_text() == b.to_json()
    k = io.load_kspace(io.file_path(root, "MultiCoil", "cine", "P001", "cine_sax"))
    assert k.shape[0] == 2
    # a file of the user's inside the phantom's tree: refused, then kept with --force
    (root / "MultiCoil" / "mine.txt").write_text("mine")
    with pytest.raises(DiffCMRError, match=r"holds 1 files.*mine\.txt"):
        ph.make_phantom(root, a, progress=False)
    ph.make_phantom(root, a, progress=False, force=True)
    assert (root / "MultiCoil" / "mine.txt").read_text() == "mine"
    assert (root / "phantom.json").read_text() == a.to_json()


def test_29_1_interrupted_phantom_is_resumed_not_refused(tmp_path, monkeypatch):
    from diffcmr_core.data.phantom import simulation as ph
    from tests.conftest import TINY

    cfg = dataclasses.replace(TINY, n_cases=2, n_val_cases=1, cine_frames=1, sax_slices=1)
    real_write = ph.write_case
    calls = []

    def dies_in_second_case(root, c, index, split="TrainingSet"):
        calls.append(index)
        if len(calls) == 2:
            io.save_mask(
                io.file_path(
                    root, "MultiCoil", "cine", ph.case_name(index), "cine_sax", kind="mask", acc=4
                ),
                "mask04",
                np.ones((4, 4)),
            )
            raise KeyboardInterrupt
        real_write(root, c, index, split)

    monkeypatch.setattr(ph, "write_case", dies_in_second_case)
    with pytest.raises(KeyboardInterrupt):
        ph.make_phantom(tmp_path / "t", cfg, progress=False)
    monkeypatch.setattr(ph, "write_case", real_write)
    assert not (tmp_path / "t" / "phantom.json").exists()
    ph.make_phantom(tmp_path / "t", cfg, progress=False)  # its own half-written case: resumed
    fresh = ph.make_phantom(tmp_path / "fresh", cfg, progress=False)
    assert _snapshot(tmp_path / "t").keys() == _snapshot(fresh).keys()


def test_29_1_cli_phantom_refuses_and_names_force(tiny_root, tmp_path):
    real = _foreign_tree(tiny_root, tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcmr_core",
            "phantom",
            str(real),
            "--profile",
            "smoke",
            "--quiet",
            "--cases",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode != 0
    assert "did not write" in run.stderr and "--force" in run.stderr
    assert "Traceback" not in run.stderr


# 2. a checkpoint is what it claims to be
def test_29_2_checkpoint_identity_is_checked(unet_pairs, tmp_path):
    from diffcmr_core.method.checkpoints import check_checkpoint, load_for_inference
    from diffcmr_core.method.systems import CGANConfig

    unet = train("unet", unet_pairs, tmp_path / "u", CFG, UNET, progress=False)
    cgan = train(
        "cgan", unet_pairs, tmp_path / "g", CFG, CGANConfig(generator=UNET), progress=False
    )
    ok = dict(method="unet", model_config=UNET, train_config=CFG, task="cine", acc=4)
    load_for_inference(unet, **ok)  # the right one passes
    with pytest.raises(CheckpointError, match=r"g/last\.pt.*is a cgan checkpoint, not unet"):
        load_for_inference(cgan, **ok)
    with pytest.raises(CheckpointError, match=r"u/last\.pt.*another unet configuration"):
        load_for_inference(unet, **{**ok, "model_config": UNetConfig(channels=8, depth=2)})
    with pytest.raises(CheckpointError, match=r"trained on cine 4x, not on mapping 8x"):
        load_for_inference(unet, **{**ok, "task": "mapping", "acc": 8})
    with pytest.raises(CheckpointError, match=r"trained with other settings"):
        load_for_inference(unet, **{**ok, "train_config": dataclasses.replace(CFG, lr=0.5)})
    ckpt = load_checkpoint(unet)
    with pytest.raises(CheckpointError, match=r"not finished \(step 4 of 8\)"):
        check_checkpoint(unet, ckpt, train_config=dataclasses.replace(CFG, iterations=8))


def test_29_2_submit_refuses_a_wrong_checkpoint_and_redoes_files_of_an_older_model(
    smoke_home, tmp_path
):
    from diffcmr_core.study.methods.convergence import tuned
    from diffcmr_core.study.settings.profiles import get_profile, paths_for
    from diffcmr_core.study.steps.submit import submit

    profile = tuned(get_profile("smoke"), train_missing=False)  # the rates its study chose
    paths = paths_for(profile)
    first = submit(profile, out=tmp_path / "sub", method="unet", progress=False)
    assert first.written
    unet = paths.model_dir("cine", 4, "unet") / "last.pt"
    saved = unet.read_bytes()
    try:
        shutil.copyfile(paths.model_dir("cine", 4, "cgan") / "last.pt", unet)
        with pytest.raises(CheckpointError, match=r"is a cgan checkpoint, not unet"):
            submit(profile, out=tmp_path / "sub", method="unet", progress=False)
        ckpt = torch.load(io_bytes(saved), weights_only=True)  # "retrained": other weights
        for v in ckpt["ema"].values():
            v.add_(0.01)
        torch.save(ckpt, unet)
        again = submit(profile, out=tmp_path / "sub", method="unet", progress=False)
        redone = {p for p in again.written}
        cine = {p for p in first.written if "Cine" in p.parts}
        assert cine <= redone and not any("Cine" in p.parts for p in again.kept)
        assert any("Mapping" in p.parts for p in again.kept)  # the mapping model is unchanged
    finally:
        unet.write_bytes(saved)


def io_bytes(data):
    import io as _io

    return _io.BytesIO(data)


# 3. every error names the file or the option
def test_29_3_zero_byte_checkpoint_is_named(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last\.pt: unreadable checkpoint .*0 bytes"):
        load_checkpoint(tmp_path / "last.pt")


def test_29_3_h5py_full_disk_in_build_pairs_is_ours(tiny_root, tmp_path, monkeypatch):
    from diffcmr_core.data import pairs as pairs_mod

    def full_disk(ds, values):
        raise RuntimeError("Can't write data (file write failed: errno = 28)")

    monkeypatch.setattr(pairs_mod, "_append", full_disk)
    with pytest.raises(
        CMRxReconError, match=rf"{tmp_path}.*could not write the cine pairs.*errno = 28"
    ):
        build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4,), progress=False)
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".*.tmp"))


def test_29_3_full_disk_writing_the_training_log_names_it(unet_pairs, tmp_path, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.csv, "DictWriter", full)
    with pytest.raises(
        CheckpointError, match=r"loss\.csv: could not write the training log.*No space"
    ):
        train("unet", unet_pairs, tmp_path / "run", CFG, UNET, progress=False)


def test_29_3_submission_errors_name_the_file(smoke_home, tmp_path, monkeypatch):
    from diffcmr_core.errors import DiffCMRError
    from diffcmr_core.method import challenge
    from diffcmr_core.study.settings.profiles import get_profile, paths_for
    from diffcmr_core.study.steps import submit as submit_mod

    profile = get_profile("smoke")
    real_save = challenge.save_ranking

    def full(path, img):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(submit_mod, "save_ranking", full)
    with pytest.raises(
        DiffCMRError, match=r"sub/.*\.mat: could not write the submission file.*No space"
    ):
        submit_mod.submit(profile, out=tmp_path / "sub", method="raw", progress=False)
    monkeypatch.setattr(submit_mod, "save_ranking", real_save)
    # a k-space whose images overflow float32: that input is skipped and named, the rest written
    data = tmp_path / "data"
    shutil.copytree(
        paths_for(profile).data,
        data,
        ignore=shutil.ignore_patterns("TrainingSet", "Truth", "ValidationTruth"),
    )
    victim = next(e for e in io.walk(data) if e.split == "ValidationSet" and e.coil == "SingleCoil")
    k = io.load_kspace(victim.path)
    big = (k * np.float32(1e30 / np.abs(k).max())).astype(np.complex64)  # finite, images are not
    assert np.isfinite(big).all()
    io.save_kspace(victim.path, io.kspace_key(victim.coil, victim.acc), big)
    report = submit_mod.submit(
        profile, out=tmp_path / "big", data=data, method="raw", progress=False
    )
    assert (
        len(report.skipped) == 1
        and str(victim.path) in report.skipped[0]
        and "overflow" in report.skipped[0]
    )
    assert len(report.written) == len([e for e in io.walk(data) if e.split == "ValidationSet"]) - 1


# 5. scoring says what it could not score; garbage, short and empty submissions
def test_29_5_scoring_reports_nan_zero_garbage_and_unmatched_files(smoke_home, tmp_path):
    from diffcmr_core.data.phantom import validation_truth_root
    from diffcmr_core.method.challenge import load_ranking, save_ranking, score_submission
    from diffcmr_core.study.settings.profiles import get_profile, paths_for
    from diffcmr_core.study.steps.submit import submit

    profile = get_profile("smoke")
    truth = validation_truth_root(paths_for(profile).data)
    sub = tmp_path / "sub"
    report = submit(profile, out=sub, method="raw", progress=False)
    clean = score_submission(sub, truth)
    files = sorted(report.written)
    nan_file, zero_file, garbage, short = files[0], files[1], files[2], files[3]
    arr = load_ranking(nan_file)
    arr[0, 0, 0, 0] = np.nan
    with atomic_path(nan_file) as tmp:  # written as a user's bad file would be
        import scipy.io

        scipy.io.savemat(tmp, {"img4ranking": arr}, format="5")
    save_ranking(zero_file, np.zeros_like(load_ranking(zero_file)))
    garbage.write_bytes(b"MATLAB 5.0 MAT-file" + os.urandom(300))
    short.write_bytes(short.read_bytes()[:150])
    extra = sub / nan_file.relative_to(sub).parent.parent / "P999" / nan_file.name
    extra.parent.mkdir(parents=True)
    shutil.copyfile(files[4], extra)
    scores = score_submission(sub, truth)
    failed = "\n".join(scores.failed)
    assert len(scores.failed) == 4
    assert str(nan_file) in failed and "1 NaN or infinite pixels" in failed
    assert str(zero_file) in failed and "all-zero images" in failed
    assert (
        str(garbage) in failed and str(short) in failed and "unreadable submission file" in failed
    )
    assert scores.unmatched == [str(extra)]
    assert sum(s["not scored"] for s in scores.sets) == 4
    assert len(scores.files) == len(clean.files) - 4
    # the command prints each, and the count
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcmr_core",
            "score",
            "--submission",
            str(sub),
            "--truth",
            str(truth),
            "--out",
            str(tmp_path / "tables"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "4 not scored" in run.stdout and "P999" in run.stdout
    # an empty submission folder: our error, not an IndexError
    (tmp_path / "empty").mkdir()
    with pytest.raises(CMRxReconError, match=r"empty: no file could be scored: \d+ missing"):
        score_submission(tmp_path / "empty", truth)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcmr_core",
            "score",
            "--submission",
            str(tmp_path / "empty"),
            "--truth",
            str(truth),
        ],
        capture_output=True,
        text=True,
    )
    assert (
        run.returncode == 2
        and "no file could be scored" in run.stderr
        and "Traceback" not in run.stderr
    )


# 4. command-line values are checked before any work
@pytest.mark.parametrize(
    "argv, option",
    [
        (["seeds", "--factor", "cine4"], "--factor"),
        (["seeds", "--factor", "heart:4"], "--factor"),
        (["seeds", "--factor", "cine:x"], "--factor"),
        (["seeds", "--factor", "cine:5"], "--factor"),
        (["cost", "--tflops", "0"], "--tflops"),
        (["cost", "--measured", "0", "1", "1", "1", "1"], "--measured"),
        (["phantom", "OUT", "--cases", "0"], "--cases"),
        (["phantom", "OUT", "--frames", "-1"], "--frames"),
        (["phantom", "OUT", "--slices", "0"], "--slices"),
        (["phantom", "OUT", "--val-cases", "-2"], "--val-cases"),
    ],
)
def test_29_4_bad_command_line_values_are_refused_before_any_work(argv, option, tmp_path):
    env = {**os.environ, "DIFFCMR_HOME": str(tmp_path / "home")}
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    run = subprocess.run(
        [sys.executable, "-m", "diffcmr_core", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 2
    assert option in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "home").exists() and not (tmp_path / "out").exists()


def test_29_4_train_with_bad_json_and_study_only_unknown(unet_pairs, tmp_path):
    env = {**os.environ, "DIFFCMR_HOME": str(tmp_path / "home")}
    for text, problem in (
        ("{not json", "not valid JSON"),
        ('{"train": {"lr": 1}}', "expected"),
        ('{"train": {"epochs": 3}, "model": {}}', "bad training configuration"),
    ):
        (tmp_path / "c.json").write_text(text)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "diffcmr_core",
                "train",
                "unet",
                str(unet_pairs),
                str(tmp_path / "run"),
                str(tmp_path / "c.json"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert run.returncode == 2 and "c.json" in run.stderr and problem in run.stderr, run.stderr
        assert not (tmp_path / "run").exists()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "diffcmr_core",
            "study",
            "--profile",
            "smoke",
            "--only",
            "04_evaluaton",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 2 and "04_evaluaton" in run.stderr and "04_evaluation" in run.stderr
    assert not (tmp_path / "home").exists()


def test_29_4_papermill_parameters_are_checked():
    from diffcmr_core.errors import DiffCMRError
    from diffcmr_core.study.lab.notebook import check_parameters

    own = (
        'import os\nprofile = os.environ.get("DIFFCMR_PROFILE", "quick")\nprogress = True\n'
        'force = False\npublish = False\ntask = "cine"\nacc = 4\n'
    )
    check_parameters(["", own, '# Parameters\nprofile = "smoke"\nforce = True\nacc = 8\n'])
    check_parameters(["", own])  # not run by papermill
    with pytest.raises(DiffCMRError, match=r"unknown notebook parameter\(s\) profil;.*profile"):
        check_parameters(["", own, '# Parameters\nprofil = "gpu"\n'])
    with pytest.raises(DiffCMRError, match=r"force must be bool.*'no'"):
        check_parameters(["", own, '# Parameters\nforce = "no"\n'])
    with pytest.raises(DiffCMRError, match=r"acc must be int.*'8'"):
        check_parameters(["", own, '# Parameters\nacc = "8"\n'])
    with pytest.raises(DiffCMRError, match=r"profile must be a profile's name"):
        check_parameters(["", own, "# Parameters\nprofile = 3\n"])


# 6. a finished set on read-only storage is reused
def test_29_6_finished_pairs_on_read_only_storage_are_reused(tiny_root, tmp_path, monkeypatch):
    from diffcmr_core.data import pairs as pairs_mod
    from diffcmr_core.data.phantom import simulation as ph
    from tests.conftest import TINY

    targets = build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4,), progress=False)

    def read_only(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(pairs_mod, "folder_lock", read_only)
    monkeypatch.setattr(ph, "folder_lock", read_only)
    assert build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4,), progress=False) == targets
    assert ph.make_phantom(tiny_root, TINY, progress=False) == tiny_root


# 7. symbolic links planted inside --out are not followed
def test_29_7_symlink_inside_out_is_not_followed(smoke_home, tmp_path):
    from diffcmr_core.errors import DiffCMRError
    from diffcmr_core.study.settings.profiles import get_profile
    from diffcmr_core.study.steps.submit import submit

    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "sub"
    out.mkdir()
    (out / "MultiCoil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(
        DiffCMRError, match=r"MultiCoil: is a symbolic link inside the output folder"
    ):
        submit(get_profile("smoke"), out=out, method="raw", progress=False)
    assert not any(outside.rglob("*"))


def test_29_3_garbage_in_the_output_folder_is_redone_not_fatal(tmp_path):
    """A short or garbage file where submit would write: not finished (so it is redone), and
    load_ranking names it, whatever scipy raised."""
    from diffcmr_core.method.challenge import load_ranking, save_ranking
    from diffcmr_core.study.steps.submit import _finished

    good = tmp_path / "good.mat"
    save_ranking(good, np.ones((4, 3, 1, 2), np.float32))
    assert _finished(good)
    for name, data in (
        ("short.mat", good.read_bytes()[:100]),
        ("garbage.mat", b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3),
    ):
        (tmp_path / name).write_bytes(data)
        assert not _finished(tmp_path / name)
        with pytest.raises(CMRxReconError, match=rf"{name}: unreadable submission file"):
            load_ranking(tmp_path / name)
