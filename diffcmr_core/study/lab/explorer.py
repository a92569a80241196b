"""An interactive explorer (ipywidgets) of the trained DiffCMR models.

Pick a validation slice, the acceleration factor, the steps T and the rounds R; see the input,
the ground truth and the slice's k-space as acquired (read from the under-sampled file: the
missing ky lines are visible), and after *reconstruct* DiffCMR's reconstruction, |error|, the
uncertainty map (std over rounds, with colour bars) and the reconstruction's k-space; a slider
walks through the forward diffusion of the slice. The callbacks are plain methods
(``data_figure``, ``reconstruction_figure``, ``forward_figure``), tested without a browser;
``widget()`` only wires them to controls. Reconstructions are kept, so going back to a slice
shows its reconstruction again without sampling.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import fft2c
from diffcmr_core.method import schedule
from diffcmr_core.method.checkpoints import default_device, load_for_inference
from diffcmr_core.method.inference import reconstruct
from diffcmr_core.method.metrics import all_metrics
from diffcmr_core.method.systems import from_model_space, to_model_space
from diffcmr_core.study.settings.profiles import Profile, paths_for
from diffcmr_core.study.steps import ensure_trained, val_pairs
from diffcmr_core.study.writeup import plots


class Explorer:
    """State: a profile and a task; models and validation slices are loaded on first use."""

    def __init__(self, profile: Profile, task: str = "cine", progress: bool = False) -> None:
        self.profile, self.task, self.progress = profile, task, progress  # progress: bars
        self.paths = paths_for(profile)
        self._model = lru_cache(maxsize=3)(self._load_model)
        self._data = lru_cache(maxsize=3)(self._load_data)
        self._recons: dict[tuple, dict] = {}

    def _load_model(self, acc: int):
        found = self.source(acc)
        path = (
            found[1]
            if found
            else ensure_trained(self.profile, self.task, acc, "diffcmr", progress=self.progress)
        )
        return load_for_inference(path, default_device(), self.profile.evaluation.weights)

    def _load_data(self, acc: int):
        from diffcmr_core.study.steps import ensure_data

        ensure_data(self.profile, progress=self.progress)  # the phantom, once (a bar)
        return val_pairs(self.profile, self.task, acc, self.profile.evaluation.n_val)

    def trained(self, acc: int) -> bool:
        """Whether the profile's DiffCMR model for ``acc`` exists (``make study`` trains it)."""
        from diffcmr_core.study import methods

        artefact = methods.get("diffcmr").artefact(self.profile, self.task, acc)
        return artefact is not None and artefact.is_file()

    def source(self, acc: int) -> tuple[str, Path] | None:
        """Where DiffCMR's model for ``acc`` comes from: the profile's trained one
        (``("trained", path)``), else the profile's shipped weights (``("shipped", path)``,
        checked against their manifest; ``weights/<profile>/``), else None."""
        from diffcmr_core.study import methods
        from diffcmr_core.study.store import weights

        if self.trained(acc):
            return "trained", methods.get("diffcmr").artefact(self.profile, self.task, acc)
        listed = weights.folder(self.profile.name) / "manifest.json"
        if self.task != weights.TASK or not listed.is_file():
            return None
        return "shipped", weights.shipped(self.profile.name, "diffcmr")

    def n_slices(self, acc: int) -> int:
        """Number of validation slices at ``acc``."""
        return len(self._data(acc)[0])

    def reconstruct(
        self, index: int, acc: int, steps: int, rounds: int, seed: int = 0, progress: bool = False
    ) -> dict:
        """Input, ground truth, reconstruction, |error|, std map and metrics of one slice (kept:
        asking again for the same slice and settings does not sample again)."""
        key = (index, acc, steps, rounds, seed)
        if key in self._recons:
            return self._recons[key]
        inp, tgt, meta = self._data(acc)
        system, model = self._model(acc)
        rec = reconstruct(
            system,
            model,
            inp[index : index + 1],
            steps=steps,
            rounds=rounds,
            batch=1,
            seed=seed,
            progress=progress,
            ids=meta["index"][index : index + 1],
            **self.profile.evaluation.sampling(),
        )
        out = {
            "input": inp[index],
            "target": tgt[index],
            "recon": rec["mean"][0],
            "std": rec["std"][0],
        }
        out["error"] = np.abs(
            out["recon"] / out["recon"].max() - out["target"] / out["target"].max()
        )
        out["metrics"] = {
            "RAW": all_metrics(out["target"], out["input"]),
            "DiffCMR": all_metrics(out["target"], out["recon"]),
        }
        out["title"] = self.title(index, acc)
        self._recons[key] = out
        return out

    def cached(self, index: int, acc: int, steps: int, rounds: int, seed: int = 0) -> bool:
        """Whether this slice and these settings were reconstructed already (no sampling needed)."""
        return (index, acc, steps, rounds, seed) in self._recons

    def title(self, index: int, acc: int) -> str:
        """Case, coil, file, slice and frame of validation slice ``index`` at ``acc``."""
        meta = self._data(acc)[2]
        return (
            f"{meta['case'][index]} {meta['coil'][index]} {meta['file'][index]} slice "
            f"{meta['slice'][index]} frame {meta['frame'][index]}"
        )

    def acquired_kspace(self, index: int, acc: int) -> np.ndarray:
        """The slice's k-space ``(ky, kx)`` as acquired: read from its under-sampled file (the
        coils combined by root-sum-of-squares of their magnitudes), zeros where not sampled."""
        meta = self._data(acc)[2]
        coil, case, name = meta["coil"][index], meta["case"][index], meta["file"][index]
        path = io.file_path(self.paths.data, coil, self.task, case, name, acc=acc)
        k = io.load_kspace(
            path,
            io.kspace_key(coil, acc),
            index=(int(meta["frame"][index]), int(meta["slice"][index])),
        )
        return np.sqrt((np.abs(k) ** 2).sum(0)) if k.ndim == 3 else np.abs(k)

    def data_figure(self, index: int = 0, acc: int = 4) -> plt.Figure:
        """What the slider and the factor change at once: input, ground truth, acquired k-space."""
        inp, tgt, _ = self._data(acc)
        k = self.acquired_kspace(index, acc)
        sampled = (k > 0).any(axis=1)
        fig, axes = plt.subplots(1, 3, figsize=(8.4, 3.0))
        plots._show(axes[0], inp[index], f"input {acc}x (zero-filled)")
        plots._show(axes[1], tgt[index], "ground truth")
        plots._show(
            axes[2],
            plots.kspace_log(k),
            f"k-space as acquired: {sampled.sum()} of {len(sampled)} ky lines",
        )
        axes[2].set_aspect("auto")
        fig.suptitle(self.title(index, acc), fontsize=10)
        fig.tight_layout()
        return fig

    def reconstruction_figure(
        self,
        index: int = 0,
        acc: int = 4,
        steps: int = 100,
        rounds: int = 4,
        progress: bool = False,
    ) -> plt.Figure:
        """The explorer's figure for one slice and setting: the reconstruction, its |error|,
        the std over the rounds, and its k-space."""
        r = self.reconstruct(index, acc, steps, rounds, progress=progress)
        kspace = fft2c(torch.from_numpy(r["recon"]).to(torch.complex64)).numpy()
        m = r["metrics"]
        fig, axes = plt.subplots(1, 4, figsize=(11.5, 3.0))
        plots._show(
            axes[0],
            r["recon"],
            f"DiffCMR T={steps} R={rounds}\n{m['DiffCMR']['psnr']:.2f} dB "
            f"(input {m['RAW']['psnr']:.2f} dB)",
        )
        err = axes[1].imshow(r["error"], cmap="inferno", vmin=0, interpolation="nearest")
        std = axes[2].imshow(r["std"], cmap="viridis", vmin=0, interpolation="nearest")
        for ax, im, title, label in (
            (axes[1], err, "|error| (each image / its max)", "|error|"),
            (axes[2], std, f"uncertainty: std over {rounds} rounds", "std"),
        ):
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label(label, fontsize=8)
        plots._show(
            axes[3], plots.kspace_log(kspace), "k-space of the reconstruction\n(network grid)"
        )
        fig.suptitle(r["title"], fontsize=10)
        fig.tight_layout()
        return fig

    def forward_figure(
        self, index: int = 0, acc: int = 4, t: int = 500, seed: int = 0
    ) -> plt.Figure:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for the slice's ground truth (Eq. 4)."""
        _, tgt, _ = self._data(acc)
        value_range = self.profile.network("diffcmr").model.value_range
        x0 = to_model_space(torch.from_numpy(tgt[index : index + 1])[:, None], value_range)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        x_t = schedule.q_sample(x0, torch.tensor([t]), noise)
        abar = schedule.base_alphas_cumprod()[t].item()
        return plots.image_grid(
            [tgt[index], x_t[0, 0].numpy(), from_model_space(x_t, value_range)[0, 0].numpy()],
            ["x_0", f"x_t, t = {t} (abar = {abar:.3g})", "x_t as an image"],
        )

    def widget(self):
        """The ipywidgets UI (JupyterLab): every control redraws what it affects. Without a
        trained model it uses the profile's shipped weights and says so; without those either
        it trains nothing: it says to run ``make study`` first. The controls wrap
        onto a second row in a narrow window (a 1280 px screen with the file browser open), and
        an executed copy opened without a kernel shows a sentence, not the widget's repr."""
        import ipywidgets as w

        accs = list(self.profile.accs)
        missing = [a for a in accs if self.source(a) is None]
        if missing:
            return w.HTML(
                f"<b>No trained DiffCMR model of the <code>{self.profile.name}</code> profile "
                f"({self.task} {', '.join(f'{a}x' for a in missing)})</b>: run <code>make study"
                + ("" if self.profile.name == "quick" else f" PROFILE={self.profile.name}")
                + "</code> first (the quick profile: about 10 minutes on a laptop CPU), then "
                "run this cell again. The explorer trains nothing itself."
            )
        shipped = [a for a in accs if self.source(a)[0] == "shipped"]
        if not shipped:
            return self._controls(w, accs)
        note = w.HTML(
            f"<i>No trained model of the <code>{self.profile.name}</code> profile here: the "
            f"shipped weights <code>{self.source(shipped[0])[1].relative_to(_checkout())}</code> "
            "are used (their manifest says how they were trained; <code>make study</code> "
            "trains this profile's own).</i>"
        )
        return _panel([note, self._controls(w, accs)])

    def _controls(self, w, accs: list[int]):
        """The explorer's controls and outputs, wired to the figures (see :meth:`widget`)."""
        from IPython.display import display

        index, acc, steps, rounds, t, run = _control_widgets(w, self.n_slices(accs[0]), accs)
        status = w.HTML()
        out_data, out_recon, out_fwd = w.Output(), w.Output(), w.Output()

        def show(out, fig):
            with out:
                out.clear_output(wait=True)
                display(fig)
                plt.close(fig)

        def settings():
            return index.value, acc.value, steps.value, rounds.value

        def on_recon(*_):
            run.disabled, run.description, run.icon = True, "sampling...", "spinner"
            status.value = f"<i>sampling T={steps.value} x R={rounds.value} ...</i>"
            try:
                with out_recon:
                    out_recon.clear_output(wait=True)
                    fig = self.reconstruction_figure(*settings(), progress=True)  # bar shown here
                show(out_recon, fig)
                status.value = ""
            finally:
                run.disabled, run.description, run.icon = False, "reconstruct", "play"

        def on_slice(*_):
            index.max = self.n_slices(acc.value) - 1
            show(out_data, self.data_figure(index.value, acc.value))
            if self.cached(*settings()):
                show(out_recon, self.reconstruction_figure(*settings()))
                status.value = "<i>kept from before</i>"
            else:
                out_recon.clear_output()
                status.value = "<i>press reconstruct to sample this slice</i>"
            on_forward()

        def on_forward(*_):
            show(out_fwd, self.forward_figure(index.value, acc.value, t.value))

        run.on_click(on_recon)
        for control in (index, acc, steps, rounds):
            control.observe(on_slice, names="value")
        t.observe(on_forward, names="value")
        on_slice()
        row = w.HBox(
            [index, acc, steps, rounds, run],
            layout=w.Layout(flex_flow="row wrap", align_items="center", grid_gap="4px 12px"),
        )
        return _panel([row, status, out_data, out_recon, t, out_fwd])


def _control_widgets(w, n_slices: int, accs: list[int]):
    """The explorer's controls, with widths that stay usable when they wrap onto two rows (a
    1280 px screen with the file browser open): slice, factor, T, R, forward t, reconstruct."""
    style, narrow = {"description_width": "initial"}, w.Layout(width="120px")
    index = w.IntSlider(
        0, 0, n_slices - 1, description="slice", style=style,
        layout=w.Layout(width="320px", min_width="240px"),
    )  # fmt: skip
    acc = w.Dropdown(options=accs, value=accs[0], description="acc", style=style, layout=narrow)
    steps = w.Dropdown(
        options=[20, 50, 100, 200, 500, 1000], value=100, description="T", style=style,
        layout=narrow,
    )  # fmt: skip
    rounds = w.Dropdown(options=[1, 2, 4, 8], value=4, description="R", style=style, layout=narrow)
    t = w.IntSlider(
        500, 0, 999, step=10, description="forward t", style=style,
        layout=w.Layout(width="420px", min_width="240px"),
    )  # fmt: skip
    run = w.Button(
        description="reconstruct", button_style="primary", icon="play",
        layout=w.Layout(width="auto", min_width="140px"),
    )  # fmt: skip
    return index, acc, steps, rounds, t, run


def _panel(children):
    """A VBox of ``children`` whose plain-text form (what an executed copy shows without a
    kernel) is a sentence instead of its repr."""
    import ipywidgets as w

    class Panel(w.VBox):
        def _repr_mimebundle_(self, **kwargs):
            data = super()._repr_mimebundle_(**kwargs)
            data["text/plain"] = (
                "[the explorer's controls: open this notebook in JupyterLab and run it to use "
                "them; the static figures below show its default view]"
            )
            return data

    return Panel(children)


def _checkout() -> Path:
    """The checkout holding the shipped weights (paths in messages are relative to it)."""
    from diffcmr_core.study.store import weights

    return weights.CHECKOUT
