"""The full-scale reproduction: the plan of every run for a data set, run with resume (chapter 07_training).

``recloss-lite reproduce --dataset gowalla`` trains MF (64 dims) with every loss of :data:`LOSSES` plus iALS and
EASE, stores each finished run with :func:`~.results.record_result` and skips runs whose result file
exists; an interrupted MF run continues from its checkpoint in ``runs/reproduce/<dataset>/<model>-<loss>``.

Settings (every choice in one place, :func:`plan`):

* MF, every loss but ``bpr``: SimpleX's MF-CCL set-up of the data set (Adam, cosine similarity, 800 negatives
  drawn uniformly from all items; Mao et al. 2021), so the losses are compared on one footing, with two deviations
  for a 20-minute CPU budget. The batch shares its negatives (one matrix product; SimpleX draws them per row), and
  the step is :data:`CPU_STEP` (batch 1024, lr 1e-2) instead of SimpleX's batch 256, lr 1e-4, which is tuned for
  hundreds of GPU epochs (chosen on Gowalla's validation split at equal wall time: book/results/NOTES.md).
  ``ccl`` / ``debiased-ccl``: the published margin and negative weight.
  The exp family (``softmax``, ``infonce``, ``infonce+``, ``dcl``, ``mine``, ``mine+`` and debiased forms) uses
  BSL's tuned temperature t1 (arXiv 2312.12882) as tau; ``mine+`` / ``debiased-mine+`` also its t2 as lam
  (BSL's loss -s+/t1 + t2 log sum_j e^{s_j/t1} is ``mine+`` with tau = t1, lam = t2, up to t2 log N).
  ``infonce+`` keeps Li & Jin's eps = 0, lam = 1.1 (the library defaults).
* Debiased losses on the published data sets: tau_plus = :data:`TAU_PLUS_LARGE`, the best on Gowalla's validation
  split of the sweep :func:`sweep_plan` (``reproduce --sweeps``; 5-minute runs of ``debiased-mine+`` and
  ``debiased-ccl`` at each value of :data:`TAU_PLUS_SWEEP`, stored in ``book/results/sweeps/``). The library
  default 0.1 overcorrects there: uniform negatives out of 41k items are false with probability about 0.001.
* ``mse`` / ``debiased-mse`` on the published data sets: negative weight :data:`MSE_NEG_WEIGHT`, chosen by the same
  sweep (:data:`MSE_NEG_WEIGHT_SWEEP` against the default 1).
* MF-``bpr``: the set-up of ``presets.PRESETS`` (dot product, one negative per positive by dynamic negative sampling,
  the best-scored of 8 uniform draws).
* Every MF run on a published data set stops after :data:`BUDGET_SECONDS` (20 minutes) of training and validation
  and keeps its best validation epoch.
* EASE: BARS' l2 (80 Gowalla, 300 Yelp2018, 50 Amazon-Book), fitted on the full training matrix as BARS does.
* iALS (64 factors, the number of sweeps chosen on validation): on the published data sets :data:`IALS_LARGE`
  (``linear.IALS``'s defaults, unobserved weight 0.01, plain l2 3); on ml-100k Rendle et al. 2021's form
  (confidence 1, frequency-scaled l2 = 0.01, unobserved weight 0.1), which beat ``presets.LINEAR_PRESETS``' there.
* HDCCF (Yang et al. 2022, chapter 10_hdccf): the ``recloss-lite train --model hdccf`` preset (M = 256, P = 2, tau 0.5),
  the same 20-minute budget, evaluated by full ranking like every other row. On the published data sets without the
  modulated similarity (:data:`HDCCF_LARGE`): it costs O(d^2) per (user, item) pair, and one full-ranking pass over
  Gowalla took twice the whole budget (book/results/NOTES.md).
* ``ml-100k`` (the book's live chapters): the same losses with 256 shared negatives, batch 1024, lr 3e-2 (1e-2 for
  bpr, whose DNS takes the best of 4 draws there: :data:`SMALL_BPR`; its lr decays as the preset's), 30 epochs,
  EASE l2 500: settings that learn in seconds on a laptop.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core import data, losses
from ..core.training import TrainConfig, fit
from . import ablations, presets, results

LOSSES = (
    "bpr",
    "softmax",
    "infonce",
    "infonce+",
    "dcl",
    "mine",
    "mine+",
    "debiased-infonce",
    "debiased-mine+",
    "mse",
    "debiased-mse",
    "ccl",
    "debiased-ccl",
)
RUNS_DIR = Path("runs") / "reproduce"
# SimpleX authors' MF-CCL configs (SimpleX, Mao et al. 2021); the plan keeps all but lr and batch (CPU_STEP).
SIMPLEX = {
    "gowalla": {"lr": 1e-4, "batch_size": 256, "num_negatives": 800, "margin": 0.9, "neg_weight": 150.0},
    "yelp2018": {"lr": 1e-4, "batch_size": 512, "num_negatives": 800, "margin": 0.9, "neg_weight": 150.0},
    "amazon-book": {"lr": 1e-3, "batch_size": 512, "num_negatives": 1500, "margin": 0.2, "neg_weight": 250.0},
}
# BSL's MINE+-form loss for MF with 800 negatives: (t1, t2) -> tau, lam (SimpleX, Mao et al. 2021).
BSL = {"gowalla": (0.08, 1.22), "yelp2018": (0.11, 1.10), "amazon-book": (0.14, 1.32)}
EASE_L2 = {"gowalla": 80.0, "yelp2018": 300.0, "amazon-book": 50.0, "ml-100k": 500.0}
IALS_SETTINGS = {"alpha": 0.0, "l2": 0.01, "unobserved_weight": 0.1, "reg_exponent": 1.0}  # ml-100k
# Gowalla-scale data: linear.IALS's defaults (w0 0.01, plain l2 3); the ml-100k settings overfit there (NOTES.md).
IALS_LARGE = {"alpha": 0.0, "l2": 3.0, "unobserved_weight": 0.01, "reg_exponent": 0.0}
CPU_STEP = {"lr": 1e-2, "batch_size": 1024}
HDCCF_LARGE = {"modulation": False}  # see the module docstring: the modulated scores cannot be ranked in budget
TAU_PLUS_SWEEP = (0.001, 0.01)
SWEEP_LOSSES = ("debiased-mine+", "debiased-ccl")
SWEEP_SECONDS = 300.0
# Chapter 09's knob sweeps on ml-100k (MF, the small set-up, KNOB_SETTINGS): label -> (loss, parameter, values).
KNOB_SWEEPS: dict[str, tuple[str, str, tuple[float, ...]]] = {
    "λ (mine+)": ("mine+", "lam", (1.0, 1.1, 1.2, 1.3, 1.4)),
    "ε (infonce+)": ("infonce+", "eps", (0.0, 0.25, 0.5, 0.75, 1.0)),
    "τ⁺ (infonce)": ("infonce", "tau_plus", (0.0, 0.05, 0.1, 0.15, 0.2)),
    "negatives N (mine+)": ("mine+", "num_negatives", (16, 64, 256, 1024)),
    "τ (mine+)": ("mine+", "tau", (0.05, 0.1, 0.2, 0.5)),
}
KNOB_SETTINGS = {"epochs": 15, "patience": 3}
# MSE's negative weight on the published sets, chosen on Gowalla's validation split from MSE_NEG_WEIGHT_SWEEP and
# the library default 1 (book/results/NOTES.md). A test checks.
MSE_NEG_WEIGHT_SWEEP = (10.0, 100.0)
MSE_NEG_WEIGHT = 10.0
TAU_PLUS_LARGE = 0.001  # argmax of validation Recall@20 over TAU_PLUS_SWEEP for both SWEEP_LOSSES (a test checks)
BUDGET_SECONDS = 1200.0  # 20 minutes of training and validation per loss: the whole plan fits a working day
SMALL = {"num_negatives": 256, "batch_size": 1024, "lr": 3e-2, "epochs": 30, "eval_every": 1}
# DNS with 4 candidates, not the preset's 8: the best of many draws is often one of a MovieLens user's own items.
SMALL_BPR = {"batch_size": 1024, "lr": 1e-2, "epochs": 30, "eval_every": 1, "candidates": 4, "valid_fraction": 0.1}


@dataclass(frozen=True)
class Run:
    """One run of the plan: ``config`` (MF with a loss, or iALS / EASE with ``loss=None``) and ``note``, where its
    settings come from."""

    dataset: str
    model: str
    loss: str | None
    note: str
    config: TrainConfig
    tag: str | None = None

    @property
    def name(self) -> str:
        """``<model>[-<loss>][-<tag>]``: the result file's stem and the run folder's name."""
        return "-".join(part for part in (self.model, self.loss, self.tag) if part)

    def out_dir(self, runs_root: str | Path = RUNS_DIR) -> Path:
        """The run folder holding its checkpoint: ``<runs_root>/<dataset>/<name>``."""
        return Path(runs_root) / self.dataset / self.name

    @property
    def command(self) -> str:
        """The exact ``recloss-lite train`` command line that reproduces this run (chapter 07_training)."""
        return train_command(self.config, self.out_dir())

    def matches(self, selection: list[str] | None) -> bool:
        """True when ``selection`` is None or names this run's loss, model or name."""
        return selection is None or bool({self.loss, self.model, self.name} & set(selection))


def _format(value: object) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def train_command(config: TrainConfig, out_dir: str | Path) -> str:
    """The ``recloss-lite train`` command line whose configuration (``cli.config_from_args``) equals ``config``:
    the options that differ from the loss's preset, the loss parameters, ``--out out_dir --resume --json``."""
    linear_model = config.model != "mf"
    settings = dict(presets.LINEAR_PRESETS[config.model]) if linear_model else presets.preset(config.loss)
    baseline = TrainConfig(dataset=config.dataset, loss=config.loss, model=config.model, **settings)
    parts = ["recloss-lite", "train", "--dataset", config.dataset]
    parts += ["--model", config.model] if linear_model else ["--loss", config.loss]
    for name, value in config.model_params.items():
        if baseline.model_params.get(name) != value:
            parts += ["--model-param", f"{name}={_format(value)}"]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name in ("dataset", "loss", "model", "loss_params", "model_params") or value == getattr(baseline, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if value is None:
            raise ValueError(f"train_command: {f.name}=None differs from the preset and has no option")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + f.name.replace("_", "-"))
        elif isinstance(value, tuple):
            parts += [flag, *map(_format, value)]
        else:
            parts += [flag, _format(value)]
    for name, value in config.loss_params.items():
        parts += ["--" + name.replace("_", "-"), _format(float(value))]
    parts += ["--out", str(out_dir), "--resume", "--json"]
    return shlex.join(parts)


def _mf_run(dataset: str, loss: str, device: str) -> Run:
    base = losses.base_loss(loss)
    settings = presets.preset(loss)
    loss_params: dict[str, float] = {}
    if dataset in SIMPLEX:
        published = SIMPLEX[dataset]
        settings.update(max_seconds=BUDGET_SECONDS)
        if base == "bpr":
            note = (
                f"MF-BPR preset (dot, {settings['num_negatives']} negative by DNS of {settings['candidates']} "
                f"candidates, Adam {settings['lr']:g} x{settings['lr_decay']:g} at each validation without a new "
                f"best, L2 {settings['l2']:g}, batch {settings['batch_size']}, "
                f"validation {settings['valid_fraction']:.0%} of train), 20-minute budget"
            )
        else:
            settings.update(CPU_STEP, num_negatives=published["num_negatives"], sampler="uniform", similarity="cosine")
            note = "SimpleX MF-CCL set-up (shared negatives; batch 1024, lr 1e-2 for the CPU budget)"
        if loss != base:
            loss_params["tau_plus"] = TAU_PLUS_LARGE
            note += f"; tau_plus {TAU_PLUS_LARGE} (chosen on validation)"
        if base == "ccl":
            loss_params.update(margin=published["margin"], neg_weight=published["neg_weight"])
            note += "; published CCL margin / negative weight"
        if base == "mse" and MSE_NEG_WEIGHT != 1.0:
            loss_params["neg_weight"] = MSE_NEG_WEIGHT
            note += f"; negative weight {MSE_NEG_WEIGHT:g} (chosen on validation)"
        if base in losses.EXP_FAMILY:
            t1, t2 = BSL[dataset]
            loss_params["tau"] = t1
            note += f"; BSL t1 = {t1} as tau"
            if base == "mine+":
                loss_params["lam"] = t2
                note += f", t2 = {t2} as lam"
    else:
        settings.update(SMALL_BPR if base == "bpr" else SMALL)
        note = (
            "book's small set-up (256 shared negatives, lr 3e-2; bpr lr 1e-2 decayed as its preset, DNS of 4 "
            "candidates)"
        )
    config = TrainConfig(dataset=dataset, loss=loss, loss_params=loss_params, device=device, **settings)
    return Run(dataset, "mf", loss, note, config)


def _model_run(dataset: str, model: str, model_params: dict, note: str, device: str, **changes: object) -> Run:
    """iALS, EASE or HDCCF: ``LINEAR_PRESETS[model]`` with ``model_params`` merged in and ``changes`` applied."""
    settings = {**presets.LINEAR_PRESETS[model], **changes}
    settings["model_params"] = {**settings.get("model_params", {}), **model_params}
    return Run(dataset, model, None, note, TrainConfig(dataset=dataset, model=model, device=device, **settings))


def config_for(dataset: str, loss: str, loss_params: dict | None = None, **changes: object) -> TrainConfig:
    """The planned MF configuration of ``loss`` on ``dataset`` with ``loss_params`` merged over the planned ones and
    other fields replaced by ``changes`` (chapters 07-09 and the live widget train ml-100k with it)."""
    config = _mf_run(dataset, loss, str(changes.pop("device", "cpu"))).config
    merged = {**config.loss_params, **(loss_params or {})}
    return dataclasses.replace(config, loss_params=merged, **changes)


def plan(dataset: str, device: str = "cpu") -> list[Run]:
    """Every run for ``dataset``: MF with each loss of :data:`LOSSES`, then iALS, EASE and HDCCF (module docstring).

    ``dataset`` is a registered name (published settings exist for gowalla, yelp2018, amazon-book; other data sets
    get the small set-up). Chapter 07_training.
    """
    if dataset not in data.REGISTRY:
        raise ValueError(f"dataset={dataset!r}: allowed values are {sorted(data.REGISTRY)}")
    runs = [_mf_run(dataset, loss, device) for loss in LOSSES]
    ials, ials_note = (
        (IALS_LARGE, "linear.IALS defaults (scanned on Gowalla)")
        if dataset in SIMPLEX
        else (IALS_SETTINGS, "Rendle et al. 2021 form")
    )
    runs.append(_model_run(dataset, "ials", ials, ials_note + "; sweeps chosen on validation", device))
    ease_note = "BARS l2" if dataset in SIMPLEX else "l2 of the book's small set-up"
    runs.append(_model_run(dataset, "ease", {"l2": EASE_L2.get(dataset, 500.0)}, ease_note, device))
    budget = {"max_seconds": BUDGET_SECONDS} if dataset in SIMPLEX else {}
    hdccf_params, hdccf_note = (
        (HDCCF_LARGE, "HDCCF (Yang et al., IJCAI 2022) without modulation, else the CLI preset")
        if dataset in SIMPLEX
        else ({}, "HDCCF (Yang et al., IJCAI 2022), the CLI preset")
    )
    runs.append(
        _model_run(dataset, "hdccf", hdccf_params, hdccf_note + "; full ranking like the rest", device, **budget)
    )
    return runs


def knob_run(dataset: str, loss: str, parameter: str, value: float, **changes: object) -> Run:
    """One point of a sweep: the planned configuration of ``loss`` with ``parameter`` (a loss parameter or
    ``num_negatives``) set to ``value`` and ``changes`` applied, tagged ``<parameter><value>``."""
    if parameter == "num_negatives":
        config = config_for(dataset, loss, num_negatives=int(value), **changes)
    else:
        config = config_for(dataset, loss, {parameter: value}, **changes)
    return Run(dataset, "mf", loss, f"{parameter} = {value}", config, tag=f"{parameter}{value}")


def sweep_plan(dataset: str, device: str = "cpu") -> list[Run]:
    """The recorded sweeps (``reproduce --sweeps``, stored under ``results.SWEEPS_DIR``; chapter 09_sensitivity).

    On ml-100k every point of :data:`KNOB_SWEEPS`. On a published data set the tau_plus sweep that chose
    :data:`TAU_PLUS_LARGE`: each loss of :data:`SWEEP_LOSSES` at each value of :data:`TAU_PLUS_SWEEP`, and the
    MSE negative weights of :data:`MSE_NEG_WEIGHT_SWEEP`, each the planned configuration with a
    :data:`SWEEP_SECONDS` budget.
    """
    if dataset == "ml-100k":
        return [
            knob_run(dataset, loss, parameter, value, device=device, **KNOB_SETTINGS)
            for loss, parameter, values in KNOB_SWEEPS.values()
            for value in values
        ]
    if dataset not in SIMPLEX:
        raise ValueError(f"dataset={dataset!r}: sweeps are planned for ml-100k and {sorted(SIMPLEX)}")
    points = [(loss, "tau_plus", value) for loss in SWEEP_LOSSES for value in TAU_PLUS_SWEEP]
    points += [("mse", "neg_weight", value) for value in MSE_NEG_WEIGHT_SWEEP]
    return [
        knob_run(dataset, loss, parameter, value, max_seconds=SWEEP_SECONDS, device=device)
        for loss, parameter, value in points
    ]


def status(run: Run, results_root: str | Path | None = None, runs_root: str | Path = RUNS_DIR) -> str:
    """``done`` (result file exists), ``partial`` (a checkpoint exists) or ``todo``."""
    if results.result_path(run.dataset, run.model, run.loss, run.tag, results_root).exists():
        return "done"
    return "partial" if (run.out_dir(runs_root) / "checkpoint.pt").exists() else "todo"


def execute(
    run: Run,
    dataset: data.Dataset | None = None,
    results_root: str | Path | None = None,
    runs_root: str | Path = RUNS_DIR,
    progress: bool = True,
) -> Path | None:
    """Run ``run`` unless its result file exists (then return None); store the result and return its file.

    MF continues from its checkpoint (``train.fit(..., resume=True)``). ``dataset`` overrides loading
    ``run.dataset`` (tests pass a small one). Chapter 07_training.
    """
    if status(run, results_root, runs_root) == "done":
        return None
    dataset = dataset if dataset is not None else data.load(run.dataset)
    if dataset.name != run.dataset:
        raise ValueError(f"run {run.name} is planned for {run.dataset!r} but the data set given is {dataset.name!r}")
    result, _ = fit(run.config, dataset=dataset, out_dir=run.out_dir(runs_root), resume=True, progress=progress)
    result["command"] = run.command
    return results.record_result(result, run.tag, results_root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``recloss-lite reproduce``."""
    parser.add_argument("--dataset", required=True, choices=sorted(SIMPLEX) + ["ml-100k"])
    parser.add_argument(
        "--losses",
        nargs="+",
        default=None,
        help="runs to do, by loss, model (ials, ease, mf) or name (mf-ccl); default all: " + ", ".join(LOSSES),
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan with each run's command and status")
    parser.add_argument(
        "--hdccf",
        action="store_true",
        help="with --dataset ml-100k: HDCCF's recorded leave-one-out ablations (ablations.VARIANTS; "
        "--losses picks variants) into book/results/hdccf-loo",
    )
    parser.add_argument(
        "--sweeps",
        action="store_true",
        help="run the recorded sweeps (sweep_plan: tau_plus and the MSE weight on gowalla / yelp2018 "
        "/ amazon-book, chapter 09's knobs on ml-100k) into book/results/sweeps",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--results", default=None, help="results folder (default book/results)")
    parser.add_argument("--runs", default=str(RUNS_DIR), help="checkpoint folder (default runs/reproduce)")


def main_reproduce(args: argparse.Namespace) -> int:
    """``recloss-lite reproduce``: print the plan (``--dry-run``) or execute every selected run in order."""
    if args.hdccf:
        if args.dataset != ablations.DATASET or args.sweeps or args.dry_run:
            raise ValueError(
                f"--hdccf: the ablations are planned for --dataset {ablations.DATASET}, without "
                f"--sweeps or --dry-run (got --dataset {args.dataset})"
            )
        ablations.reproduce(args.losses, args.results)
        return 0
    planned = (sweep_plan if args.sweeps else plan)(args.dataset, args.device)
    runs = [run for run in planned if run.matches(args.losses)]
    if not runs:
        raise ValueError(f"--losses {args.losses}: no run matches; runs are {[run.name for run in planned]}")
    results_root = args.results or (results.SWEEPS_DIR if args.sweeps else None)
    if args.device == "cpu":
        torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    for index, run in enumerate(runs, 1):
        state = status(run, results_root, args.runs)
        print(f"[{index}/{len(runs)}] {run.name} ({state}): {run.note}\n  {run.command}", flush=True)
        if args.dry_run or state == "done":
            continue
        path = execute(run, results_root=results_root, runs_root=args.runs)
        print(f"  stored {path}", flush=True)
    return 0
