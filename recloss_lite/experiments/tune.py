"""``recloss-lite tune``: successive halving over a grid of settings, chosen on the validation split only.

Every configuration of the grid trains for ``first_epochs`` epochs; the best third (``eta`` = 3) by the best
validation Recall@20 so far continue, from their checkpoints, to ``eta`` times as many epochs; and so on until one
is left (Jamieson & Talwalkar 2016; Hyperband's inner loop). A configuration whose validation stopped improving
(early stopping) keeps its score and is not trained further. The test set is never evaluated: every trial records
validation metrics only. The winner's command trains it with the base settings' full budget.

Short rounds favour the settings that learn fastest, not those that end best (a smaller step, or a smaller start,
may be behind after a few epochs and ahead at convergence). With ``finish`` the trials of the last round train on
to the base settings' ``epochs`` (early stopping on validation still applies) in one more round, and the winner is
the best of them at the end. A search may be run again with ``finish`` once it has ended: each earlier round is
read back from its trials' histories as it stood at that round's epochs, and only the final round trains.

Each trial is stored as ``<results>/<dataset>/tune/<label>/<name>.json`` (its settings, per-round best validation
and epochs) and the search as ``<results>/<dataset>/tune/<label>.json`` (the grid, the ranking of every round and
the winner with its ``recloss-lite train`` command). Chapter 09_sensitivity reads them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

from ..core import data, losses
from ..core.training import Evaluation, TrainConfig, command_line, fit, full_ranking, git_commit, write_json_atomic
from . import results
from .reproduce import train_command

LOSS_PARAMS = tuple(sorted({name for loss in losses.names() for name in losses.defaults(loss)}))
RUNS_DIR = Path("runs") / "tune"


def _bool(text: str) -> bool:
    """``true`` / ``false`` (any case) as a bool; ValueError for anything else."""
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def parse_grid(pairs: list[str]) -> dict[str, list]:
    """``["tau=0.05,0.1", "lr=1e-3,1e-2"]`` -> ``{"tau": [0.05, 0.1], "lr": [0.001, 0.01]}``, each value typed as
    the setting it is for (a loss parameter, or a field of :class:`TrainConfig`); ValueError naming a bad pair."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    grid: dict[str, list] = {}
    for pair in pairs:
        name, sep, values = pair.partition("=")
        if not sep or not values:
            raise ValueError(f"--grid {pair!r}: expected NAME=V1,V2,... e.g. tau=0.05,0.1")
        if name not in LOSS_PARAMS and name not in fields:
            raise ValueError(
                f"--grid {pair!r}: {name!r} is neither a loss parameter {LOSS_PARAMS} nor a setting "
                f"of recloss-lite train"
            )
        kind = (
            float
            if name in LOSS_PARAMS
            else {"int": int, "float": float, "float | None": float, "bool": _bool}.get(fields[name].type, str)
        )
        try:
            grid[name] = [kind(value) for value in values.split(",")]
        except ValueError:
            meaning = "true or false" if kind is _bool else f"{kind.__name__}s"
            raise ValueError(f"--grid {pair!r}: the values of {name!r} must be {meaning}") from None
    return grid


def trial_name(settings: dict) -> str:
    """A file-safe name for one point of the grid: ``tau0.05-lr0.001``."""
    return (
        "-".join(
            f"{name}{value:g}" if isinstance(value, float) else f"{name}{value}" for name, value in settings.items()
        )
        or "base"
    )


def configurations(base: TrainConfig, grid: dict[str, list]) -> list[tuple[dict, TrainConfig]]:
    """Every point of the grid over ``base``: (its settings, its configuration), validated now."""
    points = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        loss_params = {**base.loss_params, **{k: v for k, v in settings.items() if k in LOSS_PARAMS}}
        changes = {k: v for k, v in settings.items() if k not in LOSS_PARAMS}
        points.append((settings, dataclasses.replace(base, loss_params=loss_params, **changes)))
    return points


def as_of(result: dict, epochs: int, key: str) -> dict:
    """A trial's round record from its run's ``result`` as it stood after ``epochs`` epochs: the run's own figures
    where it has not trained further, else read back from its history (resumed runs continue the same trajectory, so
    the history up to ``epochs`` is the shorter run's)."""
    if result["epochs"] <= epochs:
        return {name: result[name] for name in ("epochs", "best_epoch", "stop_reason", "valid_metrics", "seconds")}
    history = [entry for entry in result["history"] if entry["epoch"] <= epochs]
    scored = [entry for entry in history if "valid" in entry]
    best = max(scored, key=lambda entry: entry["valid"][key], default=None)  # the first of equals, as training keeps
    return {
        "epochs": epochs,
        "best_epoch": best["epoch"] if best else 0,
        "stop_reason": "epochs",
        "valid_metrics": best["valid"] if best else {},
        "seconds": sum(entry["seconds"] for entry in history),
    }


def successive_halving(
    base: TrainConfig,
    grid: dict[str, list],
    first_epochs: int,
    eta: int = 3,
    rounds: int | None = None,
    dataset: data.Dataset | None = None,
    results_root: str | Path | None = None,
    runs_root: str | Path = RUNS_DIR,
    label: str | None = None,
    progress: bool = True,
    finish: bool = False,
) -> dict:
    """Run the search (module docstring) and store it; returns the search record (``rounds``, ``winner``)."""
    if first_epochs < 1 or eta < 2:
        raise ValueError(f"first_epochs={first_epochs} must be >= 1 and eta={eta} >= 2")
    if finish and base.epochs <= first_epochs:
        raise ValueError(f"finish: --epochs {base.epochs} must exceed --first-epochs {first_epochs} to train further")
    dataset = dataset if dataset is not None else data.load(base.dataset, folder=base.data_dir)
    label = label or (f"mf-{base.loss}" if base.model == "mf" else base.model)
    folder = Path(results_root or results.SWEEPS_DIR) / base.dataset / "tune" / label
    points = configurations(base, grid)
    rounds = rounds or max(1, math.ceil(math.log(len(points), eta) - 1e-9))
    alive, epochs = list(range(len(points))), first_epochs
    record = {
        "grid": grid,
        "eta": eta,
        "first_epochs": first_epochs,
        "finish": finish,
        "command": command_line(),
        "rounds": [],
    }
    trials: dict[int, dict] = {}

    def play(number: int, indices: list[int], epochs: int) -> list[int]:
        """Train the trials ``indices`` to ``epochs`` (from their checkpoints), store them; their ranking."""
        scores = {}
        for index in indices:
            settings, config = points[index]
            config = dataclasses.replace(config, epochs=epochs)
            # Validation only: the test split is never scored while choosing.
            default = full_ranking(config, dataset)
            evaluation = Evaluation(default.fit_train, default.validate, None, default.key)
            result, _ = fit(
                config,
                dataset,
                out_dir=Path(runs_root) / base.dataset / label / trial_name(settings),
                resume=True,
                progress=False,
                evaluation=evaluation,
            )
            done = as_of(result, epochs, default.key)
            scores[index] = done["valid_metrics"].get(default.key, -1.0)
            trial = trials.setdefault(index, {"settings": settings, "rounds": []})
            trial["rounds"].append({"round": number, **done})
            trial.update(params=result["params"], commit=git_commit(), created=result["created"])
            write_json_atomic(folder / f"{trial_name(settings)}.json", trial)
            if progress:
                print(
                    f"round {number}, {epochs} epochs: {trial_name(settings)} valid {default.key} "
                    f"{scores[index]:.4f} (best epoch {done['best_epoch']}, {done['stop_reason']})",
                    flush=True,
                )
        ranking = sorted(indices, key=lambda i: -scores[i])
        record["rounds"].append(
            {
                "round": number,
                "epochs": epochs,
                "ranking": [{"trial": trial_name(points[i][0]), "valid": scores[i]} for i in ranking],
            }
        )
        return ranking

    for number in range(1, rounds + 1):
        ranking = play(number, alive, epochs)
        alive = ranking[: max(1, math.ceil(len(ranking) / eta))]
        if len(alive) == 1 or number == rounds:
            break
        epochs *= eta
    if finish and base.epochs > epochs:  # the last round's trials, each to the end of its own training
        alive = play(number + 1, ranking, base.epochs)[:1]
        record["rounds"][-1]["final"] = True
    winner_settings, winner = points[alive[0]]
    record["winner"] = {
        "trial": trial_name(winner_settings),
        "settings": winner_settings,
        "valid": record["rounds"][-1]["ranking"][0]["valid"],
        "command": train_command(winner, Path("runs") / f"{base.dataset}-{label}-tuned"),
    }
    write_json_atomic(folder.with_suffix(".json"), record)
    return record
