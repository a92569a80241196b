"""Networks: the DiffCMR noise predictor and the baselines."""

from diffcmr_core.method.networks.baselines import PatchDiscriminator, UNet, UNetConfig
from diffcmr_core.method.networks.diffcmr import (
    DiffCMRConfig,
    DiffCMRNet,
    count_parameters,
    parameter_counts,
)

__all__ = [
    "DiffCMRConfig",
    "DiffCMRNet",
    "PatchDiscriminator",
    "UNet",
    "UNetConfig",
    "count_parameters",
    "parameter_counts",
]
