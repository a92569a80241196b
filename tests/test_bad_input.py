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
from diffcmr_core.data.pairs import PreprocessConfig, build_pairs, load_pairs, pairs_path, pairs_stamp, split_cases
from diffcmr_core.errors import CheckpointError, CMRxReconError
from diffcmr_core.fileio import atomic_path, write_text_atomic
from diffcmr_core.method import train as train_mod
from diffcmr_core.method.networks import UNetConfig
from diffcmr_core.method.train import TrainConfig, load_checkpoint, train

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
        f.create_dataset("kspace_full", shape=(1, 2, 3, 8, 6), dtype=[("real", "<f4"), ("imag", "<f4")])
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
@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe1\x002\x00", "not a UTF-8 text file"),
    (b"TI\n100,200,x30,400\n", r"row 1, column 3: 'x30'"),
    (b"100,-5,300\n", r"must lie in \[0, 10000\]"),
    (b"100,2e9\n", r"must lie in \[0, 10000\]"),
])
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
        f.create_dataset("kspace_full", data=np.zeros((0, 2, 3, 8, 6), [("real", "<f4"), ("imag", "<f4")]))
    with pytest.raises(CMRxReconError, match=r"k\.mat.*no data along \['t'\]"):
        io.kspace_shape(tmp_path / "k.mat")


# 8. temporary files of killed runs
def test_8_temporaries_of_killed_writers_are_removed(tmp_path):
    target = tmp_path / "table.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".table.csv.{dead}.abcd1234.tmp"
    stale.write_text("half")
    live = tmp_path / f".table.csv.{os.getpid()}.live0000.tmp"
    live.write_text("being written")
    write_text_atomic(target, "ok\n")
    assert target.read_text() == "ok\n" and not stale.exists() and live.exists()


# 9. the loss log is written before the checkpoint
def test_9_kill_between_log_and_checkpoint_loses_no_log_rows(unet_pairs, tmp_path, monkeypatch):
    real_save, calls = train_mod._save_checkpoint, []

    def killed_after_first(path, state):
        calls.append(state["step"])
        if len(calls) == 2:
            raise KeyboardInterrupt                     # the kill, between log and checkpoint
        real_save(path, state)
    monkeypatch.setattr(train_mod, "_save_checkpoint", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    monkeypatch.setattr(train_mod, "_save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 2
    train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    steps = [int(r.split(",")[0]) for r in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]


# 10. the study marks a notebook done only when it finished
def test_10_an_interrupted_notebook_is_not_marked_done(tmp_path):
    from diffcmr_core.study import runner

    nb = tmp_path / "03_x.ipynb"
    nb.write_text("{}")
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    (run_dir / nb.name).write_text("{} partial executed copy, newer than the source")
    params = {"profile": "smoke"}
    assert not runner.is_done(run_dir, nb, params)             # a newer copy is not enough
    write_text_atomic(run_dir / "03_x.done.json", json.dumps({"fingerprint": runner._fingerprint(nb, params)}))
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
    assert len(stamps) == 1                                    # never a mixture of the two
    winner, loser = (a, b) if stamps == {pairs_stamp(tiny_root, "mapping", a)} else (b, a)
    load_pairs(pairs_path(tmp_path, "mapping", 4), "val", expect=pairs_stamp(tiny_root, "mapping", winner))
    with pytest.raises(CMRxReconError, match="another configuration"):
        load_pairs(pairs_path(tmp_path, "mapping", 4), "val", expect=pairs_stamp(tiny_root, "mapping", loser))


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
    with pytest.raises(CMRxReconError, match=rf"{tmp_path}.*could not write the cine pairs.*No space"):
        build_pairs(tiny_root, tmp_path, "cine", PRE, accs=(4, 8), progress=False, force=True)
    assert {acc: pairs_path(tmp_path, "cine", acc).read_bytes() for acc in (4, 8)} == before
    assert not list(tmp_path.glob(".*.tmp"))


# 14. disk full while saving a checkpoint
def test_14_disk_full_while_saving_a_checkpoint(unet_pairs, tmp_path, monkeypatch):
    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed "
                           "writing file data/3: file write failed")
    monkeypatch.setattr(train_mod.torch, "save", full)
    with pytest.raises(CheckpointError, match=r"last\.pt: could not write the checkpoint"):
        train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    assert not list(tmp_path.glob(".*.tmp"))


# 15. a checkpoint of another configuration is kept aside, not deleted
def test_15_stale_checkpoint_is_kept_aside(unet_pairs, tmp_path):
    train("unet", unet_pairs, tmp_path, CFG, UNET, device="cpu", progress=False)
    old = (tmp_path / "last.pt").read_bytes(), (tmp_path / "loss.csv").read_text()
    train("unet", unet_pairs, tmp_path, dataclasses.replace(CFG, lr=5e-4), UNET, device="cpu", progress=False)
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
    with pytest.raises(CMRxReconError, match=r"pairs_cine_acc04\.h5: truncated or corrupt pairs file"):
        load_pairs(cut, "train")


def test_study_skips_the_maps_on_real_data_and_says_why():
    """Notebook 09 needs the phantom's labels and truth: `make study` on real data skips it
    with the reason instead of failing at the last notebook; every other notebook runs."""
    from types import SimpleNamespace

    from diffcmr_core.study.runner import notebooks_dir, skip_reason

    real, synthetic = SimpleNamespace(is_synthetic=False), SimpleNamespace(is_synthetic=True)
    assert "tissue labels" in skip_reason("09_mapping", real)
    assert skip_reason("09_mapping", synthetic) is None
    others = [nb.stem for nb in notebooks_dir().glob("[0-9][0-9]_*.ipynb") if nb.stem != "09_mapping"]
    assert len(others) == 8 and all(skip_reason(n, real) is None for n in others)
