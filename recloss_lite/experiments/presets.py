"""The training settings each loss and model starts from: read by the CLI, :mod:`reproduce` and the book.

Explicit options (``recloss-lite train --lr ...``) override these, which override :class:`TrainConfig`'s defaults.
"""

from __future__ import annotations

# Settings each loss trains with unless the command line says otherwise (embedding size 64 throughout).
# bpr: MF-BPR with dot product and one negative per positive chosen by dynamic negative sampling (the highest-scored
# of 8 uniform draws; chapter 04_hardness), Adam 5e-3 multiplied by 0.7 after each validation without a new best,
# batch 2048, L2 3e-2 on the rows a batch touches; at most 13 minutes of training, so `recloss-lite train --dataset
# gowalla --loss bpr` ends within 15 minutes (with 14 minutes it took 906 s in all: loading, the last epoch, the test
# evaluation). Compared on Gowalla's validation split (one thread, 2026-11-24): uniform negatives (4 and 16 per
# positive, 256 shared), lr 2e-2 / 1e-2 / 5e-3, L2 1e-3 / 1e-2 / 3e-2 / 1e-1, and DNS of 4, 8 and 16 candidates.
# DNS beat uniform negatives clearly (best validation Recall@20 0.1777-0.1865 against 0.1725); DNS of 8 with L2 3e-2
# and DNS of 16 with L2 1e-2 tied (0.1856, 0.1865). The preset takes 8 candidates, half the scoring cost per epoch,
# and L2 3e-2, also the better L2 on ml-100k's validation split.
# With a constant lr, validation levels off near 0.184 by epoch 65 and then only wanders. Then (10-minute runs, one
# thread, 2026-11-24, best validation Recall@20): lr 2e-3 0.1904; 4 DNS negatives per positive 0.1940, with lr 2e-3
# 0.1947; lr decay 0.5 0.1961, with 4 negatives 0.1989; lr decay 0.7 0.1967. The decays tie within the split's noise;
# the preset takes 0.7 with one negative: half the cost per epoch of four, and the better decay on ml-100k's
# validation split (0.3455 against 0.3401 for 0.5 and 0.3206 without).
# The validation split, which only picks the epoch, is 2% of the training pairs (16k on Gowalla), not 10%, so the
# model learns from 8% more of them.
# The contrastive family and ccl: cosine similarity with hundreds of negatives shared by the batch (SimpleX's
# set-up, which BARS' MF-CCL numbers come from).
_CONTRASTIVE = {"similarity": "cosine", "num_negatives": 800, "shared_negatives": True, "batch_size": 1024,
                "lr": 1e-3, "l2": 0.0, "eval_every": 2, "patience": 5}
PRESETS: dict[str, dict] = {
    "bpr": {"similarity": "dot", "sampler": "dns", "candidates": 8, "num_negatives": 1, "batch_size": 2048,
            "lr": 5e-3, "lr_decay": 0.7, "l2": 3e-2, "valid_fraction": 0.02, "epochs": 400, "eval_every": 5,
            "patience": 8, "max_seconds": 780.0},
    "mse": {**_CONTRASTIVE},
    **{name: dict(_CONTRASTIVE) for name in ("softmax", "infonce", "infonce+", "dcl", "mine", "mine+", "ccl")},
}


# iALS: a few sweeps with validation every sweep; EASE: BARS' Gowalla penalty unless --model-param l2=... says.
LINEAR_PRESETS: dict[str, dict] = {
    "ials": {"epochs": 20, "eval_every": 1, "patience": 3,
             "model_params": {"alpha": 1.0, "l2": 1.0, "unobserved_weight": 1.0}},
    "ease": {"model_params": {"l2": 80.0}},
    # HDCCF (paper 003): M = 256 users a batch, P = 2 positive neighbours, tau 0.5 (chapter 10_hdccf).
    "hdccf": {"batch_size": 256, "lr": 3e-3, "epochs": 30, "patience": 3,
              "model_params": {"tau": 0.5, "num_positives": 2}},
}


def preset(loss: str) -> dict:
    """The default training settings of ``loss`` (a debiased name shares its base loss's settings)."""
    base = loss.removeprefix("debiased-")
    return dict(PRESETS.get(base, {}))
