import numpy as np
import torch

from diffcmr_core.data.kspace import fft2c
from diffcmr_core.method.inference import (
    data_consistency_hook,
    noise_seed,
    plain_reconstruct,
    slice_generators,
)
from diffcmr_core.method.samplers import round_noise
from diffcmr_core.method.systems import DiffusionSystem, to_model_space
from tests.test_networks import TINY


def test_cached_condition_and_batched_rounds_equal_the_plain_path():
    torch.manual_seed(0)
    system = DiffusionSystem(TINY).eval()
    torch.nn.init.normal_(system.model.unet.out[-1].weight, std=0.05)
    calls = {"G": 0}
    system.model.condition.register_forward_hook(lambda *a: calls.__setitem__("G", calls["G"] + 1))
    inp = torch.rand(2, 1, 16, 16)
    gens = lambda: slice_generators(0, [0, 1], 3)  # noqa: E731
    plain = plain_reconstruct(system, system.model, inp, steps=20, rounds=3, generator=gens())
    assert calls["G"] == 3 * 20  # the plain path runs G at every step and round
    calls["G"] = 0
    mean, std, ours = system.reconstruct(system.model, inp, steps=20, rounds=3, generator=gens())
    assert calls["G"] == 1  # ours encodes the condition once
    torch.testing.assert_close(ours, plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mean, plain.mean(0), atol=1e-4, rtol=1e-4)


def test_data_consistency_puts_back_the_measured_lines():
    rng = np.random.default_rng(0)
    inp = torch.from_numpy(rng.random((2, 1, 16, 16)).astype(np.float32))
    lines = torch.zeros(16, dtype=torch.bool)
    lines[::4] = True
    lines[6:10] = True
    mask = lines[:, None].expand(16, 16)
    hook = data_consistency_hook(inp, mask, rounds=2)
    x0 = to_model_space(torch.rand(4, 1, 16, 16))
    out = (hook(x0) + 1) / 2
    # the magnitude is kept, so the lines match up to that projection: much closer than before
    k_in, k_before, k_after = (
        fft2c(inp.repeat(2, 1, 1, 1).to(torch.complex64)),
        fft2c(((x0 + 1) / 2).to(torch.complex64)),
        fft2c(out.to(torch.complex64)),
    )
    err_before = (k_before - k_in)[..., mask].abs().mean()
    err_after = (k_after - k_in)[..., mask].abs().mean()
    assert err_after < 0.5 * err_before
    assert out.min() >= 0 and out.shape == (4, 1, 16, 16)


def test_one_progress_bar_counts_every_sampling_step_of_every_batch(monkeypatch):
    """The bar of a data set's reconstruction moves per sampling step (not per batch), and the
    bar changes nothing in the result."""
    import diffcmr_core.method.inference as inference

    system = DiffusionSystem(TINY).eval()
    inputs = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    bars = []
    real_tqdm = inference.tqdm

    def spy(*args, **kwargs):
        bar = real_tqdm(*args, **kwargs)
        bars.append(bar)
        return bar

    monkeypatch.setattr(inference, "tqdm", spy)
    shown = inference.reconstruct(
        system, system.model, inputs, steps=4, rounds=2, batch=2, seed=0, progress=True
    )
    quiet = inference.reconstruct(system, system.model, inputs, steps=4, rounds=2, batch=2, seed=0)
    assert bars[0].total == 2 * 4 and bars[0].n == 2 * 4  # 2 batches x 4 steps
    assert "T=4 R=2, 3 slices" in bars[0].desc
    np.testing.assert_array_equal(shown["mean"], quiet["mean"])


def test_each_slice_draws_its_own_noise_from_seed_round_and_id():
    """Round-major noise of a batch is, slice by slice, a draw from a generator seeded by
    (seed, round, slice id) alone (numpy's SeedSequence), whatever the batch."""
    ids = [7, 3, 11]
    draw = round_noise((3, 1, 4, 4), 2, slice_generators(5, ids, 2), "cpu")()
    for r in range(2):
        for b, i in enumerate(ids):
            seed = int(
                np.random.SeedSequence([5, r, i, 0]).generate_state(1, np.uint64)[0] >> np.uint64(1)
            )
            assert seed == noise_seed(5, r, i)
            alone = torch.randn((1, 1, 4, 4), generator=torch.Generator().manual_seed(seed))
            torch.testing.assert_close(draw[r * 3 + b : r * 3 + b + 1], alone, rtol=0, atol=0)
    assert noise_seed(0, 1, 0) != noise_seed(0, 0, 1) != noise_seed(1, 0, 0)


def test_a_slice_reconstructs_the_same_beside_other_slices():
    """Slices 2-3 of a set, reconstructed alone with their ids, equal the same slices of the
    whole set's run (same batch size): what lets a run be split over processes."""
    import diffcmr_core.method.inference as inference

    torch.manual_seed(0)
    system = DiffusionSystem(TINY).eval()
    inputs = np.random.default_rng(1).random((5, 16, 16)).astype(np.float32)
    whole = inference.reconstruct(system, system.model, inputs, steps=3, rounds=2, batch=2, seed=4)
    part = inference.reconstruct(
        system, system.model, inputs[2:4], steps=3, rounds=2, batch=2, seed=4, ids=np.array([2, 3])
    )
    np.testing.assert_array_equal(part["rounds"], whole["rounds"][:, 2:4])
    other = inference.reconstruct(
        system, system.model, inputs[2:4], steps=3, rounds=2, batch=2, seed=4
    )  # ids 0, 1: other noise
    assert not np.array_equal(other["mean"], part["mean"])


def test_figure_1s_chain_records_every_time_step_its_titles_name():
    """A 20-step chain visits t = 0, 53, ..., 999 only: asking for t = 250 recorded nothing and
    the panel silently disappeared. The figure now shows the visited time-steps nearest to the
    ones asked for, and a time-step the chain does not visit is an error."""
    import pytest

    from diffcmr_core.method.inference import record_chain, visited_near
    from diffcmr_core.method.schedule import respaced_timesteps

    asked = (0, 100, 250, 500, 750, 999)
    for steps in (10, 20, 100, 1000):
        shown = visited_near(asked, steps)
        chain_t = respaced_timesteps(steps).numpy()
        assert set(shown) <= set(chain_t.tolist())
        for t, s in zip(asked, shown):  # none nearer in the chain (ties to the earlier step)
            assert abs(s - t) == np.abs(chain_t - t).min()
    assert visited_near(asked, 1000) == list(asked)
    torch.manual_seed(0)
    system = DiffusionSystem(TINY)
    model = system.model.eval()
    inp = np.random.default_rng(0).random((TINY.image_size, TINY.image_size), dtype=np.float32)
    shown = visited_near(asked, 20)
    final, trace = record_chain(system, model, inp, steps=20, record=shown, clip=False)
    assert sorted(trace) == sorted(shown) and final.shape == inp.shape
    with pytest.raises(ValueError, match=r"does not visit t = \[250\]"):
        record_chain(system, model, inp, steps=20, record=[250])
