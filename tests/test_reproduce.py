"""The results store, the reproduction plan and its resume logic, the overlap area and the live widget."""

from __future__ import annotations

import dataclasses
import shlex

import pytest
import torch

from recloss_lite.core import losses
from recloss_lite.experiments import cli, reproduce, results


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these runs are tiny, and a second thread on a busy 2-core machine slows them badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("dataset", ["gowalla", "yelp2018", "amazon-book"])
def test_plan_covers_every_loss_with_published_settings(dataset):
    runs = {run.name: run for run in reproduce.plan(dataset)}
    assert {f"mf-{loss}" for loss in reproduce.LOSSES} | {"ials", "ease", "hdccf"} == set(runs)
    assert runs["hdccf"].config.max_seconds == reproduce.BUDGET_SECONDS
    assert runs["hdccf"].config.model_params["modulation"] is False  # a bool through the command line too
    published = reproduce.SIMPLEX[dataset]
    for name in ("mf-ccl", "mf-debiased-ccl"):
        config = runs[name].config
        assert (config.lr, config.batch_size, config.num_negatives) == (
            reproduce.CPU_STEP["lr"],
            reproduce.CPU_STEP["batch_size"],
            published["num_negatives"],
        )
        assert config.max_seconds == reproduce.BUDGET_SECONDS
        assert (config.similarity, config.sampler, config.dim) == ("cosine", "uniform", 64)
        debiased = {"tau_plus": reproduce.TAU_PLUS_LARGE} if name == "mf-debiased-ccl" else {}
        assert config.loss_params == {"margin": published["margin"], "neg_weight": published["neg_weight"], **debiased}
    t1, t2 = reproduce.BSL[dataset]
    assert runs["mf-mine+"].config.loss_params == {"tau": t1, "lam": t2}
    assert runs["ease"].config.model_params == {
        "l2": {"gowalla": 80.0, "yelp2018": 300.0, "amazon-book": 50.0}[dataset]
    }
    assert runs["ease"].loss is None and runs["ials"].config.dim == 64
    for run in runs.values():  # the command line rebuilds exactly this configuration
        args = cli.build_parser().parse_args(shlex.split(run.command)[1:])
        assert cli.config_from_args(args) == run.config, run.name


def test_sweep_plan_and_the_chosen_tau_plus(capsys):
    runs = reproduce.sweep_plan("gowalla")
    assert [(run.loss, run.config.loss_params["tau_plus"]) for run in runs if run.loss != "mse"] == [
        (loss, value) for loss in reproduce.SWEEP_LOSSES for value in reproduce.TAU_PLUS_SWEEP
    ]
    assert [run.config.loss_params["neg_weight"] for run in runs if run.loss == "mse"] == list(
        reproduce.MSE_NEG_WEIGHT_SWEEP
    )
    assert all(run.config.max_seconds == reproduce.SWEEP_SECONDS for run in runs)
    assert runs[0].config == dataclasses.replace(
        reproduce.config_for("gowalla", "debiased-mine+"),
        max_seconds=reproduce.SWEEP_SECONDS,
        loss_params={
            **reproduce.config_for("gowalla", "debiased-mine+").loss_params,
            "tau_plus": reproduce.TAU_PLUS_SWEEP[0],
        },
    )
    for name in ("gowalla", "yelp2018"):  # every debiased loss of the table takes the chosen value
        for run in reproduce.plan(name):
            if run.loss and run.loss.startswith("debiased-"):
                assert run.config.loss_params["tau_plus"] == reproduce.TAU_PLUS_LARGE, run.name
    with pytest.raises(ValueError, match="sweeps are planned"):
        reproduce.sweep_plan("ml-1m")
    knobs = reproduce.sweep_plan("ml-100k")  # chapter 09's sweeps: every point once, each tagged by its value
    assert len(knobs) == sum(len(values) for _, _, values in reproduce.KNOB_SWEEPS.values())
    assert len({run.name for run in knobs}) == len(knobs)
    negatives = next(run for run in knobs if run.tag == "num_negatives1024")
    assert negatives.config.num_negatives == 1024 and negatives.config.epochs == reproduce.KNOB_SETTINGS["epochs"]
    assert next(run for run in knobs if run.tag == "eps0.25").config.loss_params["eps"] == 0.25
    assert cli.main(["reproduce", "--dataset", "gowalla", "--hdccf"]) == 2
    assert "--hdccf: the ablations are planned for --dataset ml-100k" in capsys.readouterr().err
    # TAU_PLUS_LARGE is what the stored sweep selects on validation, for every swept loss
    stored = results.load_results("gowalla", root=results.SWEEPS_DIR)
    for loss in reproduce.SWEEP_LOSSES:
        swept = {
            losses.make(loss, **r["params"]["loss_params"]).params["tau_plus"]: r["valid_metrics"]["recall@20"]
            for r in stored
            if r["loss"] == loss
        }
        assert set(swept) >= set(reproduce.TAU_PLUS_SWEEP), (loss, swept)
        assert max(swept, key=swept.get) == reproduce.TAU_PLUS_LARGE, (loss, swept)
    weights = {
        losses.make("mse", **r["params"]["loss_params"]).params["neg_weight"]: r["valid_metrics"]["recall@20"]
        for r in stored
        if r["loss"] == "mse"
    }
    assert set(weights) == {1.0, *reproduce.MSE_NEG_WEIGHT_SWEEP}
    assert max(weights, key=weights.get) == reproduce.MSE_NEG_WEIGHT
    for name in ("mf-mse", "mf-debiased-mse"):
        assert reproduce.config_for("gowalla", name.removeprefix("mf-")).loss_params["neg_weight"] == 10.0


@pytest.mark.slow
def test_execute_stores_then_skips_and_resumes_from_checkpoint(tmp_path, ml100k):
    run = next(r for r in reproduce.plan("ml-100k") if r.loss == "bpr")
    run = dataclasses.replace(run, config=dataclasses.replace(run.config, epochs=1))
    assert reproduce.status(run, tmp_path / "results", tmp_path / "runs") == "todo"
    path = reproduce.execute(run, ml100k, tmp_path / "results", tmp_path / "runs", progress=False)
    stored = results.load_results("ml-100k", root=tmp_path / "results")
    assert path.name == "mf-bpr.json" and len(stored) == 1
    assert stored[0]["command"] == run.command and "--epochs 1" in run.command
    assert 0 < stored[0]["metrics"]["recall@20"] < 1 and stored[0]["epochs"] == 1
    assert reproduce.status(run, tmp_path / "results", tmp_path / "runs") == "done"
    assert reproduce.execute(run, ml100k, tmp_path / "results", tmp_path / "runs") is None
    # Without its result file the run continues from its checkpoint: a larger budget extends it, another
    # configuration is refused.
    path.unlink()
    other = dataclasses.replace(run, config=dataclasses.replace(run.config, lr=run.config.lr / 2))
    assert reproduce.status(other, tmp_path / "results", tmp_path / "runs") == "partial"
    with pytest.raises(ValueError, match="configuration differs"):
        reproduce.execute(other, ml100k, tmp_path / "results", tmp_path / "runs", progress=False)
    longer = dataclasses.replace(run, config=dataclasses.replace(run.config, epochs=2))
    reproduce.execute(longer, ml100k, tmp_path / "results", tmp_path / "runs", progress=False)
    extended = results.load_results("ml-100k", root=tmp_path / "results")[0]
    assert extended["epochs"] == 2 and "--epochs 2" in extended["command"]
    ease = next(r for r in reproduce.plan("ml-100k") if r.model == "ease")
    assert reproduce.execute(ease, ml100k, tmp_path / "results", tmp_path / "runs", progress=False).name == "ease.json"
    stored = {r["model"]: r for r in results.load_results("ml-100k", root=tmp_path / "results")}
    assert stored["ease"]["loss"] is None and stored["ease"]["params"]["model_params"] == {"l2": 500.0}
    assert "--model ease --model-param l2=500.0" in stored["ease"]["command"]
