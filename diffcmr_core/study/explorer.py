"""An interactive explorer (ipywidgets) of the trained DiffCMR models.

Pick a validation slice, the acceleration factor, the steps T and the rounds R; see the input,
the reconstruction, the ground truth, |error|, the uncertainty map (std over rounds) and the
k-space with its mask; a slider walks through the forward diffusion of the slice.
The callbacks are plain methods (``reconstruction_figure``, ``forward_figure``), tested without
a browser; ``widget()`` only wires them to controls.
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffcmr_core.data.kspace import fft2c
from diffcmr_core.method import schedule
from diffcmr_core.method.inference import reconstruct
from diffcmr_core.method.metrics import all_metrics
from diffcmr_core.method.systems import from_model_space, to_model_space
from diffcmr_core.method.train import default_device, load_for_inference
from diffcmr_core.study import plots
from diffcmr_core.study.profiles import Profile, paths_for
from diffcmr_core.study.steps import ensure_trained, val_pairs


class Explorer:
    """State: a profile and a task; models and validation slices are loaded on first use."""

    def __init__(self, profile: Profile, task: str = "cine") -> None:
        self.profile, self.task = profile, task
        self.paths = paths_for(profile)
        self._model = lru_cache(maxsize=3)(self._load_model)
        self._data = lru_cache(maxsize=3)(self._load_data)

    def _load_model(self, acc: int):
        return load_for_inference(ensure_trained(self.profile, self.task, acc, "diffcmr",
                                                 progress=False), default_device(),
                                  self.profile.evaluation.weights)

    def _load_data(self, acc: int):
        return val_pairs(self.profile, self.task, acc, self.profile.evaluation.n_val)

    def n_slices(self, acc: int) -> int:
        return len(self._data(acc)[0])

    def reconstruct(self, index: int, acc: int, steps: int, rounds: int, seed: int = 0) -> dict:
        """Input, ground truth, reconstruction, |error|, std map and metrics of one slice."""
        inp, tgt, meta = self._data(acc)
        system, model = self._model(acc)
        rec = reconstruct(system, model, inp[index:index + 1], steps=steps, rounds=rounds,
                          batch=1, seed=seed, **self.profile.evaluation.sampling())
        out = {"input": inp[index], "target": tgt[index], "recon": rec["mean"][0], "std": rec["std"][0]}
        out["error"] = np.abs(out["recon"] / out["recon"].max() - out["target"] / out["target"].max())
        out["metrics"] = {"RAW": all_metrics(out["target"], out["input"]),
                          "DiffCMR": all_metrics(out["target"], out["recon"])}
        out["title"] = f"{meta['case'][index]} {meta['file'][index]} slice {meta['slice'][index]} frame {meta['frame'][index]}"
        return out

    def reconstruction_figure(self, index: int = 0, acc: int = 4, steps: int = 100,
                              rounds: int = 4) -> plt.Figure:
        r = self.reconstruct(index, acc, steps, rounds)
        kspace = fft2c(torch.from_numpy(r["input"]).to(torch.complex64)).numpy()
        images = [r["input"], r["recon"], r["target"], r["error"], r["std"], plots.kspace_log(kspace)]
        m = r["metrics"]
        titles = [f"input {acc}x\n{m['RAW']['psnr']:.2f} dB", f"DiffCMR T={steps} R={rounds}\n"
                  f"{m['DiffCMR']['psnr']:.2f} dB", "ground truth", "|error|", "std over rounds",
                  "k-space of the input"]
        return plots.image_grid(images, titles, suptitle=r["title"])

    def forward_figure(self, index: int = 0, acc: int = 4, t: int = 500, seed: int = 0) -> plt.Figure:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for the slice's ground truth (Eq. 4)."""
        _, tgt, _ = self._data(acc)
        value_range = self.profile.diffcmr.value_range
        x0 = to_model_space(torch.from_numpy(tgt[index:index + 1])[:, None], value_range)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        x_t = schedule.q_sample(x0, torch.tensor([t]), noise)
        abar = schedule.base_alphas_cumprod()[t].item()
        return plots.image_grid([tgt[index], x_t[0, 0].numpy(), from_model_space(x_t, value_range)[0, 0].numpy()],
                                ["x_0", f"x_t, t = {t} (abar = {abar:.3g})", "x_t as an image"])

    def widget(self):
        """The ipywidgets UI (JupyterLab)."""
        import ipywidgets as w
        from IPython.display import display

        accs = list(self.profile.accs)
        index = w.IntSlider(0, 0, self.n_slices(accs[0]) - 1, description="slice")
        acc = w.Dropdown(options=accs, value=accs[0], description="acc")
        steps = w.Dropdown(options=[20, 50, 100, 200, 500, 1000], value=100, description="T")
        rounds = w.Dropdown(options=[1, 2, 4, 8], value=4, description="R")
        t = w.IntSlider(500, 0, 999, step=10, description="forward t")
        out_recon, out_fwd = w.Output(), w.Output()

        def show(out, fig):
            with out:
                out.clear_output(wait=True)
                display(fig)
                plt.close(fig)

        def on_recon(*_):
            show(out_recon, self.reconstruction_figure(index.value, acc.value, steps.value, rounds.value))

        def on_forward(*_):
            show(out_fwd, self.forward_figure(index.value, acc.value, t.value))

        run = w.Button(description="reconstruct")
        run.on_click(on_recon)
        t.observe(on_forward, names="value")
        index.observe(on_forward, names="value")
        on_forward()
        return w.VBox([w.HBox([index, acc, steps, rounds, run]), out_recon, t, out_fwd])
