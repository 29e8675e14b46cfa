"""``recloss-lite``: data statistics, training, benchmarks and the full-scale reproduction (chapter 07_training).

Subcommands: ``data NAME``, ``losses``, ``train``, ``tune``, ``reproduce``, ``bench``. ``train --json`` prints one JSON
object as its last line, holding at least ``"metrics": {"recall@20": ..., "ndcg@20": ...}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from ..core import data, losses
from ..core.sampling import KINDS
from ..core.training import MODELS, TrainConfig, fit, write_json_atomic
from . import reproduce, results
from .presets import LINEAR_PRESETS, preset


def _loss_params(args: argparse.Namespace) -> dict:
    names = ("tau", "lam", "eps", "tau_plus", "margin", "neg_weight")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    parser.add_argument("--dataset", required=True, help="registered data set: " + ", ".join(sorted(data.REGISTRY)))
    parser.add_argument("--loss", default="bpr", help="loss name: " + ", ".join(losses.names()))
    parser.add_argument("--model", default="mf", choices=list(MODELS), help="model (default mf)")
    parser.add_argument(
        "--model-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="iALS/EASE/HDCCF setting, repeatable: e.g. l2=80 (EASE), alpha=2 (iALS), "
        "num_positives=4 or modulation=false (HDCCF)",
    )
    for name in (
        "dim",
        "num_negatives",
        "batch_size",
        "epochs",
        "eval_every",
        "patience",
        "seed",
        "eval_batch_size",
        "candidates",
        "warmup_epochs",
    ):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=None,
            help=f"default: the loss's preset, else {fields[name].default}",
        )
    for name in ("lr", "lr_decay", "l2", "valid_fraction", "init_std", "pop_alpha", "max_seconds", "dropout"):
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=float,
            default=None,
            help=f"default: the loss's preset, else {fields[name].default}",
        )
    parser.add_argument("--similarity", choices=["dot", "cosine"], default=None)
    parser.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        default=None,
        help="the rate over the epochs (after any --warmup-epochs); default constant",
    )
    parser.add_argument(
        "--optimizer",
        choices=["lazy-adam", "adam"],
        default=None,
        help="MF: lazy-adam (default) moves only the rows of a batch; adam moves every row every step, as "
        "torch.optim.Adam on the whole table (SimpleX's and BSL's MF)",
    )
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after choosing the epoch on validation, retrain on the whole training set for that "
        "many epochs and test that model (the selected model's test metrics are kept too)",
    )
    parser.add_argument(
        "--test-curve",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --refit, also score the test split along the refit every --eval-every epochs (stored in its "
        "history, for a comparison with numbers that pick their epoch on test; nothing is chosen from it)",
    )
    parser.add_argument(
        "--sampler",
        choices=list(KINDS),
        default=None,
        help="negatives: dns = the highest-scored of --candidates uniform draws",
    )
    parser.add_argument(
        "--shared-negatives",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one set of negatives for the whole batch (one matrix product)",
    )
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="cut-offs K (default 20)")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--data-dir", default=None, help="folder holding the data set's files")
    loss_group = parser.add_argument_group("loss parameters (see `recloss-lite losses`)")
    for name in ("tau", "lam", "eps", "tau_plus", "margin", "neg_weight"):
        loss_group.add_argument("--" + name.replace("_", "-"), type=float, default=None)


def _model_params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--model-param {pair!r}: expected NAME=VALUE, e.g. l2=80")
        if value.lower() in ("true", "false"):
            params[name] = value.lower() == "true"
            continue
        try:
            params[name] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            params[name] = value
    return params


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run configuration: explicit options over the loss's preset over :class:`TrainConfig` defaults."""
    settings = preset(args.loss) if args.model == "mf" else dict(LINEAR_PRESETS[args.model])
    settings["model_params"] = {**settings.get("model_params", {}), **_model_params(args.model_param)}
    for f in dataclasses.fields(TrainConfig):
        value = getattr(args, f.name, None)
        if value is not None and f.name not in ("loss_params", "model_params"):
            settings[f.name] = tuple(value) if f.name == "ks" else value
    return TrainConfig(loss_params=_loss_params(args), **settings)


def _print_json_line(payload: dict) -> None:
    print(json.dumps(payload, sort_keys=True))


def cmd_data(args: argparse.Namespace) -> int:
    stats = data.describe(data.load(args.name, folder=args.folder))
    if args.json:
        _print_json_line(stats)
    else:
        for key, value in stats.items():
            print(f"{key:>14}: {value:,}" if isinstance(value, int) else f"{key:>14}: {value:.6g}")
    return 0


def cmd_losses(args: argparse.Namespace) -> int:
    for name in losses.names():
        params = ", ".join(f"{k}={v:g}" for k, v in losses.defaults(name).items())
        print(f"{name:>18}  {params}")
    return 0


def _train_one(config: TrainConfig, out_dir: Path, args: argparse.Namespace) -> dict:
    """Train (or reopen) one run and print its summary; returns the result."""
    stored = out_dir / "result.json"
    before = stored.read_text() if stored.is_file() and not args.overwrite else None
    result, _ = fit(config, out_dir=out_dir, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    summary = {
        key: result[key]
        for key in (
            "dataset",
            "model",
            "loss",
            "metrics",
            "valid_metrics",
            "best_epoch",
            "epochs",
            "stop_reason",
            "seconds",
        )
    }
    summary["result_file"] = str(out_dir / "result.json")
    if args.json:
        _print_json_line(summary)
        return result
    label = f"mf-{config.loss}" if config.model == "mf" else config.model
    if before is not None and stored.read_text() == before:  # nothing trained: the folder's finished run
        print(
            f"{out_dir} holds this finished run (created {result['created']}); its stored result follows "
            "(--overwrite trains again, --resume with a larger --epochs / --max-seconds continues it)"
        )
    refit = f", refit {result['refit']['epochs']} epochs on all of train" if result.get("refit") else ""
    print(
        f"{config.dataset} {label} (seed {config.seed}): best epoch {result['best_epoch']} of "
        f"{result['epochs']} ({result['stop_reason']}){refit}, {result['seconds']:.0f} s"
    )
    for key, value in result["metrics"].items():
        print(f"  test {key:>14}: {value:.4f}")
    print(f"  result: {summary['result_file']}")
    return result


def _record(result: dict, tag: str | None) -> None:
    """With ``--record TAG``: store the run in the results store (book/results) under that tag."""
    if tag is not None:
        print(f"  recorded: {results.record_result(result, tag)}", file=sys.stderr)


def seed_summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over seeds of every test (and validation) metric."""

    def spread(rows: list[dict]) -> dict:
        out = {}
        for key in rows[0]:
            values = np.array([row[key] for row in rows], dtype=np.float64)
            out[key] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "values": values.tolist(),
            }
        return out

    return {
        "seeds": [r["params"]["seed"] for r in runs],
        "metrics": spread([r["metrics"] for r in runs]),
        "valid_metrics": spread([r["valid_metrics"] for r in runs if r["valid_metrics"]] or [{}]),
    }


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    out_dir = Path(args.out) if args.out else Path("runs") / config.run_id()
    if not args.seeds:
        _record(_train_one(config, out_dir, args), args.record)
        return 0
    runs = []
    for seed in args.seeds:
        runs.append(_train_one(dataclasses.replace(config, seed=seed), out_dir / f"seed{seed}", args))
        _record(runs[-1], args.record and f"{args.record}-seed{seed}")
    summary = seed_summary(runs)
    write_json_atomic(out_dir / "seeds.json", summary)
    if args.json:
        _print_json_line(
            {"seeds": summary["seeds"], "metrics": summary["metrics"], "result_file": str(out_dir / "seeds.json")}
        )
    else:
        print(f"over seeds {summary['seeds']} (mean ± sd):")
        for key, value in summary["metrics"].items():
            print(f"  test {key:>14}: {value['mean']:.4f} ± {value['sd']:.4f}")
        print(f"  summary: {out_dir / 'seeds.json'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import RUNS_DIR, parse_grid, successive_halving

    record = successive_halving(
        config_from_args(args),
        parse_grid(args.grid),
        args.first_epochs,
        args.eta,
        results_root=args.results,
        runs_root=args.runs or RUNS_DIR,
        label=args.label,
        progress=not args.quiet,
        finish=args.finish,
    )
    winner = record["winner"]
    if args.json:
        _print_json_line(winner)
    else:
        print(f"winner on validation: {winner['trial']} (valid {winner['valid']:.4f})\n  {winner['command']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import run_benchmarks

    figures = run_benchmarks(
        args.dataset, repeats=args.repeats, device=args.device, progress=not args.json, peers=args.peers, ease=args.ease
    )
    if args.json:
        _print_json_line(figures)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recloss-lite", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="print a data set's statistics")
    p.add_argument("name", help="registered data set: " + ", ".join(sorted(data.REGISTRY)))
    p.add_argument("--folder", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("losses", help="list every registered loss with its default parameters")
    p.set_defaults(func=cmd_losses)
    p = sub.add_parser("train", help="train a model with a loss and evaluate it by full ranking")
    _add_train_options(p)
    p.add_argument("--out", default=None, help="run folder (checkpoint + result.json); default runs/<run id>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint (a finished "
        "run continues only when --epochs or --max-seconds grew)",
    )
    p.add_argument("--overwrite", action="store_true", help="train again from scratch in a folder that holds a run")
    p.add_argument(
        "--record",
        default=None,
        metavar="TAG",
        help="store the finished run in book/results/<dataset>/<model>-<loss>-TAG.json (with --seeds, "
        "TAG-seed<N> each), where chapter 07 reads it",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="train once per seed into OUT/seed<N> and summarise mean ± sd in OUT/seeds.json",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON line, last")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser(
        "tune",
        help="successive halving over a grid of settings, chosen on validation only; "
        "trials stored in book/results/sweeps/<dataset>/tune/<model>-<loss>/",
    )
    _add_train_options(p)
    p.add_argument(
        "--grid",
        nargs="+",
        required=True,
        metavar="NAME=V1,V2",
        help="values to search, e.g. tau=0.05,0.1 lam=1.1,1.2 lr=1e-3,1e-2 dropout=0,0.1",
    )
    p.add_argument("--first-epochs", type=int, default=5, help="epochs of the first round (default 5)")
    p.add_argument("--eta", type=int, default=3, help="keep the best 1/eta each round, eta x the epochs (default 3)")
    p.add_argument(
        "--finish",
        action="store_true",
        help="then train the last round's trials on to --epochs (early stopping applies) and choose among them at "
        "the end: short rounds favour the settings that learn fastest, not those that end best",
    )
    p.add_argument("--results", default=None, help="trials folder (default book/results/sweeps)")
    p.add_argument("--runs", default=None, help="checkpoint folder (default runs/tune)")
    p.add_argument(
        "--label",
        default=None,
        help="the search's name (default <model>-<loss>, e.g. mf-ccl): another search of the same loss takes "
        "another label, or it continues and overwrites the first",
    )
    p.add_argument("--json", action="store_true", help="print the winner as one JSON line, last")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser(
        "reproduce",
        help="train every loss (plus iALS, EASE) at full scale into book/results/; resumes, skipping finished runs",
    )
    reproduce.add_arguments(p)
    p.set_defaults(func=reproduce.main_reproduce)
    p = sub.add_parser("bench", help="measure epoch and evaluation times and print them")
    p.add_argument("--dataset", default="gowalla")
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions; the median is reported")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--peers",
        action="store_true",
        help="also time the implicit library's BPR epoch and ALS "
        "iteration on the same data, in the same run (pip install recloss-lite[peers])",
    )
    p.add_argument("--ease", action="store_true", help="also time one EASE fit (minutes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Warnings (a user's own copy of a data set, a fallback to the slower PyTorch path) as one line each.
    warnings.formatwarning = lambda message, category, *rest: (
        f"recloss-lite {args.command}: note: {message} ({category.__name__})\n"
    )
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(
            f"recloss-lite {args.command}: interrupted; each finished epoch is in the run folder's checkpoint: "
            "rerun with --resume to continue",
            file=sys.stderr,
        )
        return 130
    except (ValueError, TypeError, OSError, MemoryError, FloatingPointError, OverflowError) as error:
        # Expected failures (bad input, a full disk, too little memory, a diverging run): one line, no traceback.
        print(f"recloss-lite {args.command}: error: {_message(error)}", file=sys.stderr)
        return 2


def _message(error: BaseException) -> str:
    """One line: the error's own text, or its kind with the file it names where it has no text of its own."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or error}"
    text = str(error) or type(error).__name__
    return text if not isinstance(error, (MemoryError, OverflowError)) else f"{type(error).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
