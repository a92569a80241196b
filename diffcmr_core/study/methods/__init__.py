"""The method registry and what fits its methods: the evidence study's training (budgets,
learning rates, DiffCMR's sampling on the selection subjects), the PI-CS parameter choice. The
package hands on the names of :mod:`.registry`.
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
    loss_label,
    names,
    recipe,
    reconstruct,
    register,
    settings,
    unregister,
)
