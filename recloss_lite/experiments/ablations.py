"""HDCCF's ablations (Yang et al., IJCAI 2022, figures 2-4) on ml-100k, leave-one-out protocol, recorded (chapter 10).

``recloss-lite reproduce --dataset ml-100k --hdccf`` trains every variant of :data:`VARIANTS` that has no result
file yet and stores it in ``book/results/hdccf-loo/ml-100k/hdccf-<variant>.json`` with the fields of
``results.FIELDS`` (the metrics are :data:`METRICS` on the test item), the command, the commit and the time, plus
the histograms of positive and negative test scores (figure 3) and their overlap. Chapter 10_hdccf shows these
files in full mode and trains the same variants live, with a few batches, in fast mode.

Protocol (:func:`split`): per user the latest interaction is the test item, the one before the validation item
(``data.leave_one_out``). Each variant trains with :data:`SETTINGS` and its changes, stops early on validation
HR@10 (100 sampled candidates) and is scored on the test item among 100 candidates and among all items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..core import data, hdccf, metrics, training
from ..core.training import TrainConfig
from . import results

DATASET = "ml-100k"
ROOT = results.RESULTS_DIR / "hdccf-loo"
METRICS = ("hr@10", "ndcg@10", "ndcg@50", "hr@10 all items", "ndcg@10 all items", "ndcg@50 all items")
BINS = 50
# The chapter's model: d = 32, M = 128, P = 2, tau 0.5, omega^+ 0.05, lambda_u = lambda_i = 0.1, no modulation.
MODEL = {
    "dim": 32,
    "tau": 0.5,
    "num_positives": 2,
    "omega_plus_user": 0.05,
    "omega_plus_item": 0.05,
    "lambda_user": 0.1,
    "lambda_item": 0.1,
    "modulation": False,
}
SETTINGS = {"lr": 3e-3, "batch_size": 128, "epochs": 6, "patience": 2, "seed": 0}
VARIANTS: dict[str, dict] = {
    "hdccf": {},
    "modulated": {"modulation": True},  # figure 3
    "wo-u": {"lambda_user": 0.0},  # figure 2
    "wo-i": {"lambda_item": 0.0},
    "wo-ui": {"lambda_user": 0.0, "lambda_item": 0.0},
    "bpr+": {"lambda_user": 0.0, "lambda_item": 0.0, "objective": "bpr"},
    "biased": {"omega_plus_user": 0.0, "omega_plus_item": 0.0, "observed_masks": False, "neighbour_masks": False},
    **{
        f"omega{value}": {"omega_plus_user": value, "omega_plus_item": value}  # figure 4 (a)-(d)
        for value in (0.0, 0.1, 0.15, 0.2)
    },
    **{f"p{value}": {"num_positives": value} for value in (1, 3, 4, 5, 6)},  # figure 4 (e)-(f)
}


def split(dataset: data.Dataset | None = None) -> dict[str, sp.csr_matrix]:
    """ml-100k (or ``dataset``, which needs timestamps) split by time: ``train``, ``valid``, ``test`` and ``seen``
    (train + valid: what a user had interacted with before the test item, never a candidate)."""
    dataset = dataset if dataset is not None else data.load(DATASET)
    if dataset.timestamps is None:
        raise ValueError(f"data set {dataset.name!r} has no timestamps: leave-one-out by time needs them")
    train, valid, test = data.leave_one_out(dataset.train + dataset.test, dataset.timestamps)
    return {"train": train, "valid": valid, "test": test, "seen": train + valid}


def evaluate(score_fn, parts: dict[str, sp.csr_matrix], seed: int = 0) -> dict[str, float]:
    """:data:`METRICS` of a model's ``score_fn`` on the test item, among 100 sampled candidates and among all
    items."""
    sampled = metrics.leave_one_out_metrics(
        score_fn, parts["seen"], parts["test"], ks=(10, 50), num_candidates=100, seed=seed
    )
    full = metrics.leave_one_out_metrics(score_fn, parts["seen"], parts["test"], ks=(10, 50), num_candidates=None)
    return {key: sampled[key] if key in sampled else full[key.removesuffix(" all items")] for key in METRICS}


def candidate_scores(model, parts: dict[str, sp.csr_matrix], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the (user, test item) pairs and of 99 sampled unobserved items per user (figure 3): two float64
    arrays, the positives (U,) and the negatives (U * 99,)."""
    users = np.flatnonzero(np.diff(parts["test"].indptr))
    candidates, test_column = metrics.sample_candidates(parts["seen"], parts["test"], users, 100, seed=seed)
    scores = model.scores(torch.from_numpy(users)).gather(1, torch.from_numpy(candidates)).numpy()
    is_test = np.zeros(scores.shape, dtype=bool)
    is_test[np.arange(len(users)), test_column] = True
    return scores[is_test].astype(np.float64), scores[~is_test].astype(np.float64)


def command(variant: str) -> str:
    """The command that trains and records ``variant``."""
    return f"recloss-lite reproduce --dataset {DATASET} --hdccf --losses {variant}"


def run(
    variant: str, parts: dict[str, sp.csr_matrix] | None = None, max_batches: int | None = None, **changes: object
) -> tuple[dict, hdccf.HDCCF]:
    """Train ``variant`` of :data:`VARIANTS` and return its result (the fields of ``results.FIELDS``, plus
    ``valid_metrics``, ``history``, ``histograms`` and ``overlap``) and the model.

    ``parts`` is :func:`split`'s output (loaded when None); ``changes`` replace entries of :data:`SETTINGS`
    (``epochs``, ``lr``, ...) and ``max_batches`` caps the batches per epoch: the chapter's fast mode. A run with
    changes is not the recorded plan, and its ``command`` says so.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: allowed values are {list(VARIANTS)}")
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise ValueError(f"changes {unknown}: allowed keys are {sorted(SETTINGS)}")
    parts = parts if parts is not None else split()
    settings = {**SETTINGS, **changes}
    model_params = {**MODEL, **VARIANTS[variant]}
    config = TrainConfig(
        dataset=DATASET,
        model="hdccf",
        dim=model_params.pop("dim"),
        model_params=model_params,
        lr=settings["lr"],
        batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        patience=settings["patience"],
        seed=settings["seed"],
        ks=(10,),
    )
    seed = settings["seed"]
    protocol = training.Evaluation(
        fit_train=parts["train"],
        key="hr@10",
        test=lambda score_fn: evaluate(score_fn, parts, seed),
        validate=lambda score_fn: metrics.leave_one_out_metrics(
            score_fn, parts["train"], parts["valid"], ks=(10,), num_candidates=100, seed=seed
        ),
    )
    n_users, n_items = parts["train"].shape
    dataset = data.Dataset(DATASET, parts["seen"], parts["test"], n_users, n_items)
    result, model = training.fit(config, dataset, progress=False, evaluation=protocol, max_batches=max_batches)
    positives, negatives = candidate_scores(model, parts, seed)
    positive_mass, negative_mass, _ = metrics.shared_histograms(positives, negatives, BINS)
    planned = not changes and max_batches is None
    result.update(
        params={"variant": variant, **result["params"], "max_batches": max_batches},
        command=command(variant)
        if planned
        else f"ablations.run({variant!r}, max_batches={max_batches}, **{changes!r}) (not the recorded plan)",
        histograms={"positive": positive_mass.tolist(), "negative": negative_mass.tolist()},
        overlap=metrics.overlap_area(positives, negatives, BINS),
    )
    return result, model


def record(result: dict, root=None):
    """Store a planned run's result as ``<root>/ml-100k/hdccf-<variant>.json`` (root: :data:`ROOT`)."""
    return results.record_result(
        result,
        result["params"]["variant"],
        root or ROOT,
        metrics=METRICS,
        optional=("valid_metrics", "histograms", "overlap"),
    )


def load(root=None) -> dict[str, dict]:
    """The recorded variants, by name (empty when none is stored)."""
    return {r["params"]["variant"]: r for r in results.load_results(DATASET, root or ROOT)}


def reproduce(variants: list[str] | None = None, root=None) -> None:
    """Train and record every variant of ``variants`` (default all) that has no result file yet."""
    selected = list(VARIANTS) if variants is None else variants
    unknown = sorted(set(selected) - set(VARIANTS))
    if unknown:
        raise ValueError(f"--losses {unknown}: HDCCF variants are {list(VARIANTS)}")
    stored, parts = load(root), None
    for index, variant in enumerate(selected, 1):
        print(
            f"[{index}/{len(selected)}] hdccf-{variant} ({'done' if variant in stored else 'todo'}): "
            f"{command(variant)}",
            flush=True,
        )
        if variant in stored:
            continue
        parts = parts if parts is not None else split()
        result, _ = run(variant, parts)
        print(f"  {result['metrics']}; stored {record(result, root)}", flush=True)
