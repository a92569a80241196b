"""The computing steps of the notebooks: data, training, the evaluation, the ablation, fast
sampling, Figure 1, the challenge protocol, the submission, the T1/T2 maps. The package hands on
the names of :mod:`.paper_steps`.
"""

from diffcmr_core.study.methods.convergence import (  # noqa: F401
    best_sampling,
    sweep_rows,
    tuned,
)
from diffcmr_core.study.steps.paper_steps import (  # noqa: F401
    DC_LABEL,
    DC_VARIANTS,
    ablation,
    challenge_scores,
    ensure_data,
    ensure_trained,
    evaluate_factor,
    evaluation_steps,
    expected_table1,
    figure3_images,
    forward_and_backward,
    kspace_errors,
    loss_history,
    missing_models,
    model_list,
    paired_table,
    protocols_table,
    public_choices,
    results_table,
    sampler_comparison,
    sampling_fractions,
    sharded_recon,
    summary_problem,
    table1_rows,
    val_batch,
)
from diffcmr_core.study.store.validation import val_pairs  # noqa: F401
