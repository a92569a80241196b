"""The method registry and what fits its methods: training to convergence, the PI-CS parameter
choice. The package hands on the names of :mod:`.registry`.
"""

from diffcmr_core.study.methods.registry import (  # noqa: F401
    REGISTRY,
    Batch,
    CGANMethod,
    DiffCMRMethod,
    Method,
    Network,
    PICSMethod,
    Reconstruction,
    Regression,
    UNetMethod,
    ZeroFilled,
    figure_recons,
    get,
    label,
    names,
    recipe,
    reconstruct,
    register,
    settings,
    unregister,
)
