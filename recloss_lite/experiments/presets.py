"""The training settings each loss and model starts from: read by the CLI, :mod:`reproduce` and the book.

Explicit options (``recloss-lite train --lr ...``) override these, which override :class:`TrainConfig`'s defaults.
"""

from __future__ import annotations

from ..core import losses

# Settings each loss trains with unless the command line says otherwise (embedding size 64 throughout); the
# measurements behind each choice are in book/results/NOTES.md.
# bpr: dynamic negative sampling (DNS of 8) beat uniform negatives on Gowalla's validation split; the rate decays on
# plateaus because a constant one only wanders near the optimum; 13 minutes keep the whole command within 15.
# The contrastive family and ccl: cosine similarity with hundreds of negatives shared by the batch (SimpleX's set-up).
_CONTRASTIVE = {
    "similarity": "cosine",
    "num_negatives": 800,
    "shared_negatives": True,
    "batch_size": 1024,
    "lr": 1e-3,
    "l2": 0.0,
    "eval_every": 2,
    "patience": 5,
}
PRESETS: dict[str, dict] = {
    "bpr": {
        "similarity": "dot",
        "sampler": "dns",
        "candidates": 8,
        "num_negatives": 1,
        "batch_size": 2048,
        "lr": 5e-3,
        "lr_decay": 0.7,
        "l2": 3e-2,
        "valid_fraction": 0.02,
        "epochs": 400,
        "eval_every": 5,
        "patience": 8,
        "max_seconds": 780.0,
    },
    "mse": {**_CONTRASTIVE},
    **{name: dict(_CONTRASTIVE) for name in losses.SAMPLED if name != "mse"},
}


# iALS: a few sweeps with validation every sweep; EASE: BARS' Gowalla penalty unless --model-param l2=... says.
LINEAR_PRESETS: dict[str, dict] = {
    "ials": {
        "epochs": 20,
        "eval_every": 1,
        "patience": 3,
        "model_params": {"alpha": 1.0, "l2": 1.0, "unobserved_weight": 1.0},
    },
    "ease": {"model_params": {"l2": 80.0}},
    # HDCCF (Yang et al., IJCAI 2022): M = 256 users a batch, P = 2 positive neighbours, tau 0.5 (chapter 10_hdccf).
    "hdccf": {
        "batch_size": 256,
        "lr": 3e-3,
        "epochs": 30,
        "patience": 3,
        "model_params": {"tau": 0.5, "num_positives": 2},
    },
}


def preset(loss: str) -> dict:
    """The default training settings of ``loss`` (a debiased name shares its base loss's settings); ValueError for
    a name that is not a loss."""
    if loss not in losses.names():
        raise ValueError(f"loss={loss!r}: allowed values are {', '.join(losses.names())}")
    return dict(PRESETS[loss.removeprefix("debiased-")])
