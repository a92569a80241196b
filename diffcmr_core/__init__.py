"""DiffCMR reference study: CMRxRecon I/O, synthetic phantom, preprocessing, the DiffCMR method,
baselines, metrics and the study that regenerates the paper's tables and figures."""

from diffcmr_core.errors import CMRxReconError

__all__ = ["CMRxReconError"]
__version__ = "0.1.0"
