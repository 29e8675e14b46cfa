"""The results store: one JSON file per finished full-scale run, and the published table (chapter 07_training).

A run's file is ``book/results/<dataset>/<model>[-<loss>][-<tag>].json`` (iALS and EASE have no loss) with the
fields of :data:`FIELDS`:
the test metrics (Recall@20, NDCG@20) of the model chosen on validation, the run's settings and the exact command
that reproduces it. :data:`PUBLISHED` holds the published reference rows (LightGCN paper Table 4 and the BARS
leaderboards, arXiv 2002.02126 / 2205.09626), and :func:`comparison` puts both side by side.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..core.training import REPO_ROOT, write_json_atomic

RESULTS_ENV = "RECLOSS_RESULTS"


def _results_dir() -> Path:
    """Where results are stored and read: ``$RECLOSS_RESULTS``; else, in a source checkout, its ``book/results``;
    else (an installed package used from a project folder) ``./book/results``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    checkout = REPO_ROOT / "book" / "results"
    return checkout if checkout.is_dir() else Path.cwd() / "book" / "results"


RESULTS_DIR = _results_dir()
FIELDS = (
    "dataset",
    "model",
    "loss",
    "params",
    "metrics",
    "best_epoch",
    "epochs",
    "seconds",
    "command",
    "commit",
    "created",
)
METRICS = ("recall@20", "ndcg@20")
OPTIONAL = ("valid_metrics", "stop_reason", "selected_metrics", "refit", "history")  # kept when the result has
# them: sweeps select on valid_metrics; a refit run keeps the selected model's test metrics; history draws curves
SWEEPS_DIR = RESULTS_DIR / "sweeps"  # full-scale sweeps (reproduce.sweep_plan), kept apart from the table's runs
_NAME_PART = re.compile(r"^[A-Za-z0-9_.+]+(-[A-Za-z0-9_.+]+)*$")

_BARS = "BARS open benchmark (arXiv 2205.09626), leaderboard {}_m1"
_LIGHTGCN = "LightGCN paper (arXiv 2002.02126), Table 4"
_BSL = "BSL authors' MF training logs (arXiv 2312.12882; epoch picked on test there)"
_BARS_NAMES = {"gowalla": "Gowalla", "yelp2018": "Yelp18", "amazon-book": "AmazonBooks"}


def _published(
    label: str, model: str, loss: str | None, source: str, values: dict[str, tuple[float, float]]
) -> list[dict]:
    return [
        {
            "label": label,
            "dataset": dataset,
            "model": model,
            "loss": loss,
            "metrics": {"recall@20": recall, "ndcg@20": ndcg},
            "source": source.format(_BARS_NAMES[dataset]) if "{}" in source else source,
        }
        for dataset, (recall, ndcg) in values.items()
    ]


# Published reference results: full ranking, LightGCN splits, embedding size 64. ``model``/``loss`` name
# the run of :mod:`recloss_lite.experiments.reproduce` that corresponds to the row (LightGCN and SimpleX have none).
PUBLISHED: list[dict] = [
    *_published(
        "MF-BPR",
        "mf",
        "bpr",
        _BARS,
        {"gowalla": (0.1627, 0.1378), "yelp2018": (0.0576, 0.0468), "amazon-book": (0.0338, 0.0261)},
    ),
    *_published(
        "LightGCN",
        "lightgcn",
        "bpr",
        _LIGHTGCN,
        {"gowalla": (0.1830, 0.1554), "yelp2018": (0.0649, 0.0530), "amazon-book": (0.0411, 0.0315)},
    ),
    *_published(
        "MF-CCL",
        "mf",
        "ccl",
        _BARS,
        {"gowalla": (0.1837, 0.1493), "yelp2018": (0.0698, 0.0572), "amazon-book": (0.0559, 0.0447)},
    ),
    *_published(
        "SimpleX",
        "simplex",
        "ccl",
        _BARS,
        {"gowalla": (0.1872, 0.1557), "yelp2018": (0.0701, 0.0575), "amazon-book": (0.0583, 0.0468)},
    ),
    # The BSL authors' MF logs (arXiv 2312.12882): their loss is MINE+ (tau = t1, lam = t2; 800 negatives per row,
    # lr 1e-4, embedding dropout 0.1, ~390 epochs), and their sampled softmax is InfoNCE on the same set-up.
    *_published("MF-BSL (MINE+)", "mf", "mine+", _BSL, {"gowalla": (0.1882, 0.1584), "yelp2018": (0.0725, 0.0599)}),
    *_published("MF-softmax", "mf", "infonce", _BSL, {"gowalla": (0.1759, 0.1395), "yelp2018": (0.0721, 0.0592)}),
    *_published(
        "EASE",
        "ease",
        None,
        _BARS + " (l2 80 / 300 / 50)",
        {"gowalla": (0.1765, 0.1467), "yelp2018": (0.0657, 0.0552), "amazon-book": (0.0710, 0.0567)},
    ),
]


def _check_part(what: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_PART.match(value):
        raise ValueError(f"{what}={value!r}: must be letters, digits, '_', '.', '+' joined by single '-'")
    return value


def result_path(
    dataset: str, model: str, loss: str | None, tag: str | None = None, root: str | Path | None = None
) -> Path:
    """``<root>/<dataset>/<model>[-<loss>][-<tag>].json`` (root defaults to ``book/results``; loss None for iALS and
    EASE; chapter 07_training)."""
    parts = [
        _check_part(what, value)
        for what, value in (("model", model), ("loss", loss), ("tag", tag))
        if what == "model" or value is not None
    ]
    return Path(root or RESULTS_DIR) / _check_part("dataset", dataset) / ("-".join(parts) + ".json")


def record_result(
    result: dict,
    tag: str | None = None,
    root: str | Path | None = None,
    metrics: tuple[str, ...] = METRICS,
    optional: tuple[str, ...] = OPTIONAL,
) -> Path:
    """Store a finished run (``train.fit``'s result dict, or one with the same keys) and return its file.

    Keeps the fields of :data:`FIELDS`, with ``metrics`` reduced to ``metrics`` (default :data:`METRICS`, the test
    metrics at the epoch chosen on validation), and those of ``optional`` that the result has. A missing field or
    metric -> ValueError naming it. Chapter 07_training.
    """
    missing = [name for name in FIELDS if name not in result]
    missing += [f"metrics[{key!r}]" for key in metrics if key not in result.get("metrics", {})]
    if missing:
        raise ValueError(f"record_result: the result lacks {missing}; required fields are {FIELDS}")
    record = {name: result[name] for name in FIELDS}
    record["metrics"] = {key: float(result["metrics"][key]) for key in metrics}
    record.update({name: result[name] for name in optional if name in result})
    path = result_path(result["dataset"], result["model"], result["loss"], tag, root)
    write_json_atomic(path, record)
    return path


def load_results(dataset: str, root: str | Path | None = None) -> list[dict]:
    """Every stored result of ``dataset``, sorted by file name, each with its ``file`` and its ``tag`` added (the
    ``tag`` of :func:`result_path`, e.g. ``"tuned"`` or ``"tuned-seed1"``; None for a run of the plan; chapter
    07_training).

    An absent folder gives an empty list; a file without the :data:`FIELDS` -> ValueError naming the file.
    """
    folder = Path(root or RESULTS_DIR) / _check_part("dataset", dataset)
    results = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        record = json.loads(path.read_text())
        missing = [name for name in FIELDS if name not in record]
        if missing:
            raise ValueError(f"{path}: missing fields {missing}")
        plain = result_path(dataset, record["model"], record["loss"], root=root).stem
        tag = path.stem[len(plain) + 1 :] if path.stem.startswith(plain + "-") else None
        results.append({**record, "file": str(path), "tag": tag})
    return results


def published(dataset: str) -> list[dict]:
    """The rows of :data:`PUBLISHED` for ``dataset`` (chapter 07_training)."""
    return [row for row in PUBLISHED if row["dataset"] == dataset]


def comparison(dataset: str, runs: list[tuple[str, str | None, str]], root: str | Path | None = None) -> list[dict]:
    """One row per planned run ``(model, loss, command)``: its stored metrics, best epoch, epochs and seconds (``None``
    when missing), the published row for the same model and loss (if any) and the differences measured - published
    (chapter 07_training)."""
    stored = {(r["model"], r["loss"]): r for r in load_results(dataset, root) if r["tag"] is None}
    references = {(row["model"], row["loss"]): row for row in published(dataset)}
    rows = []
    for model, loss, command in runs:
        result, reference = stored.get((model, loss)), references.get((model, loss))
        row = {
            "model": model,
            "loss": loss,
            "command": command,
            "metrics": result["metrics"] if result else None,
            **{key: result[key] if result else None for key in ("best_epoch", "epochs", "seconds")},
            "published": reference["metrics"] if reference else None,
            "source": reference["source"] if reference else None,
        }
        row["difference"] = (
            {key: row["metrics"][key] - row["published"][key] for key in METRICS} if result and reference else None
        )
        rows.append(row)
    return rows
