"""DiffCMR reference study.

The package has three parts, each building only on the ones before it:

* ``diffcmr_core.data``: CMRxRecon files, the synthetic phantom, k-space to images, paired slices;
* ``diffcmr_core.method``: the networks, the noise schedule and samplers, the three methods,
  training, inference, metrics and evaluation;
* ``diffcmr_core.study``: profiles, cached steps, the papermill runner, report, figures, cost.

The names a user's script needs are importable from here, wherever they live.
"""

from diffcmr_core.data.cmrxrecon import (
    load_kspace,
    load_mask,
    load_times,
    save_kspace,
    save_mask,
    save_times,
)
from diffcmr_core.data.kspace import fft2c, ifft2c, kspace_to_image
from diffcmr_core.errors import CheckpointError, CMRxReconError, DiffCMRError
from diffcmr_core.method.mapping import fit_t1, fit_t2
from diffcmr_core.method.metrics import nmse, psnr, ssim
from diffcmr_core.method.networks import DiffCMRConfig, DiffCMRNet
from diffcmr_core.method.samplers import (
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_sample,
    ensemble,
    sample_rounds,
)
from diffcmr_core.method.schedule import linear_betas, q_sample

__all__ = [
    "CMRxReconError",
    "CheckpointError",
    "DiffCMRConfig",
    "DiffCMRError",
    "DiffCMRNet",
    "ddim_sample",
    "ddpm_sample",
    "dpm_solver_pp_sample",
    "ensemble",
    "fft2c",
    "fit_t1",
    "fit_t2",
    "ifft2c",
    "kspace_to_image",
    "linear_betas",
    "load_kspace",
    "load_mask",
    "load_times",
    "nmse",
    "psnr",
    "q_sample",
    "sample_rounds",
    "save_kspace",
    "save_mask",
    "save_times",
    "ssim",
]
__version__ = "0.2.0"
