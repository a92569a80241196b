import numpy as np
import torch

from diffcmr_core.data.kspace import fft2c
from diffcmr_core.method.inference import data_consistency_hook, plain_reconstruct, round_generators
from diffcmr_core.method.systems import DiffusionSystem, to_model_space
from tests.test_networks import TINY


def test_cached_condition_and_batched_rounds_equal_the_plain_path():
    torch.manual_seed(0)
    system = DiffusionSystem(TINY).eval()
    torch.nn.init.normal_(system.model.unet.out[-1].weight, std=0.05)
    calls = {"G": 0}
    system.model.condition.register_forward_hook(lambda *a: calls.__setitem__("G", calls["G"] + 1))
    inp = torch.rand(2, 1, 16, 16)
    gens = lambda: round_generators(0, 0, 3)  # noqa: E731
    plain = plain_reconstruct(system, system.model, inp, steps=20, rounds=3, generator=gens())
    assert calls["G"] == 3 * 20                   # the plain path runs G at every step and round
    calls["G"] = 0
    mean, std, ours = system.reconstruct(system.model, inp, steps=20, rounds=3, generator=gens())
    assert calls["G"] == 1                        # ours encodes the condition once
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
    k_in, k_before, k_after = fft2c(inp.repeat(2, 1, 1, 1).to(torch.complex64)), fft2c(((x0 + 1) / 2).to(torch.complex64)), fft2c(out.to(torch.complex64))
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
    shown = inference.reconstruct(system, system.model, inputs, steps=4, rounds=2, batch=2, seed=0,
                                  progress=True)
    quiet = inference.reconstruct(system, system.model, inputs, steps=4, rounds=2, batch=2, seed=0)
    assert bars[0].total == 2 * 4 and bars[0].n == 2 * 4          # 2 batches x 4 steps
    assert "T=4 R=2, 3 slices" in bars[0].desc
    np.testing.assert_array_equal(shown["mean"], quiet["mean"])
