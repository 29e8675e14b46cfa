"""The results store, the reproduction plan and its resume logic, the overlap area and the live widget."""

from __future__ import annotations

import dataclasses
import json
import shlex

import numpy as np
import pytest
import torch

from recloss_lite.book import live_widgets, training_plots
from recloss_lite.core import losses
from recloss_lite.experiments import cli, reproduce, results


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these runs are tiny, and a second thread on a busy 2-core machine slows them badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _result(**changes: object) -> dict:
    base = {"dataset": "gowalla", "model": "mf", "loss": "ccl", "params": {"lr": 1e-4},
            "metrics": {"recall@20": 0.18, "ndcg@20": 0.15, "hr@20": 0.6}, "best_epoch": 40, "epochs": 50,
            "seconds": 12.5, "command": "recloss-lite train --dataset gowalla --loss ccl", "commit": "abc",
            "created": "2024-01-01T00:00:00+00:00", "history": [{"epoch": 1}]}
    return {**base, **changes}


def test_result_file_round_trip(tmp_path):
    path = results.record_result(_result(), root=tmp_path)
    assert path == tmp_path / "gowalla" / "mf-ccl.json"
    tagged = results.record_result(_result(loss="bpr"), tag="seed1", root=tmp_path)
    assert tagged.name == "mf-bpr-seed1.json"
    loaded = results.load_results("gowalla", root=tmp_path)
    assert [r["loss"] for r in loaded] == ["bpr", "ccl"]
    record = json.loads(path.read_text())
    assert set(record) == set(results.FIELDS)
    assert record["metrics"] == {"recall@20": 0.18, "ndcg@20": 0.15}
    assert results.load_results("yelp2018", root=tmp_path) == []
    swept = results.record_result(_result(valid_metrics={"recall@20": 0.2}, stop_reason="time budget"), "tp",
                                  root=tmp_path)
    assert json.loads(swept.read_text())["valid_metrics"] == {"recall@20": 0.2}  # optional fields are kept


def test_record_result_names_missing_fields(tmp_path):
    with pytest.raises(ValueError, match="commit"):
        results.record_result({k: v for k, v in _result().items() if k != "commit"}, root=tmp_path)
    with pytest.raises(ValueError, match="ndcg@20"):
        results.record_result(_result(metrics={"recall@20": 0.1}), root=tmp_path)
    with pytest.raises(ValueError, match="tag"):
        results.result_path("gowalla", "mf", "ccl", tag="../x")


def test_published_table_and_comparison(tmp_path):
    assert len(results.PUBLISHED) == 15 and all(row["source"] for row in results.PUBLISHED)
    ccl = {row["dataset"]: row["metrics"] for row in results.PUBLISHED if row["label"] == "MF-CCL"}
    assert ccl["gowalla"] == {"recall@20": 0.1837, "ndcg@20": 0.1493}
    results.record_result(_result(), root=tmp_path)
    results.record_result(_result(model="ease", loss=None), root=tmp_path)
    rows = results.comparison("gowalla", [("mf", "ccl", "c1"), ("mf", "bpr", "c2"), ("mf", "mine+", "c3"),
                                          ("ease", None, "c4")], root=tmp_path)
    assert rows[3]["difference"]["ndcg@20"] == pytest.approx(0.15 - 0.1467)
    assert rows[0]["difference"]["recall@20"] == pytest.approx(0.18 - 0.1837)
    assert rows[1]["metrics"] is None and rows[1]["published"]["recall@20"] == 0.1627
    assert rows[2]["published"] is None and rows[2]["difference"] is None


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
            reproduce.CPU_STEP["lr"], reproduce.CPU_STEP["batch_size"], published["num_negatives"])
        assert config.max_seconds == reproduce.BUDGET_SECONDS
        assert (config.similarity, config.sampler, config.dim) == ("cosine", "uniform", 64)
        debiased = {"tau_plus": reproduce.TAU_PLUS_LARGE} if name == "mf-debiased-ccl" else {}
        assert config.loss_params == {"margin": published["margin"], "neg_weight": published["neg_weight"],
                                      **debiased}
    t1, t2 = reproduce.BSL[dataset]
    assert runs["mf-mine+"].config.loss_params == {"tau": t1, "lam": t2}
    assert runs["ease"].config.model_params == {"l2": {"gowalla": 80.0, "yelp2018": 300.0,
                                                       "amazon-book": 50.0}[dataset]}
    assert runs["ease"].loss is None and runs["ials"].config.dim == 64
    for run in runs.values():  # the command line rebuilds exactly this configuration
        args = cli.build_parser().parse_args(shlex.split(run.command)[1:])
        assert cli.config_from_args(args) == run.config, run.name


def test_sweep_plan_and_the_chosen_tau_plus(capsys):
    runs = reproduce.sweep_plan("gowalla")
    assert [(run.loss, run.config.loss_params["tau_plus"]) for run in runs if run.loss != "mse"] == [
        (loss, value) for loss in reproduce.SWEEP_LOSSES for value in reproduce.TAU_PLUS_SWEEP]
    assert [run.config.loss_params["neg_weight"] for run in runs if run.loss == "mse"] == list(
        reproduce.MSE_NEG_WEIGHT_SWEEP)
    assert all(run.config.max_seconds == reproduce.SWEEP_SECONDS for run in runs)
    assert runs[0].config == dataclasses.replace(
        reproduce.config_for("gowalla", "debiased-mine+"), max_seconds=reproduce.SWEEP_SECONDS,
        loss_params={**reproduce.config_for("gowalla", "debiased-mine+").loss_params,
                     "tau_plus": reproduce.TAU_PLUS_SWEEP[0]})
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
        swept = {losses.make(loss, **r["params"]["loss_params"]).params["tau_plus"]: r["valid_metrics"]["recall@20"]
                 for r in stored if r["loss"] == loss}
        assert set(swept) >= set(reproduce.TAU_PLUS_SWEEP), (loss, swept)
        assert max(swept, key=swept.get) == reproduce.TAU_PLUS_LARGE, (loss, swept)
    weights = {losses.make("mse", **r["params"]["loss_params"]).params["neg_weight"]: r["valid_metrics"]["recall@20"]
               for r in stored if r["loss"] == "mse"}
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


def test_overlap_area_identities():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=500)
    assert training_plots.overlap_area(sample, sample.copy()) == pytest.approx(1.0)
    assert training_plots.overlap_area(sample, sample + 100.0) == 0.0
    assert 0.0 < training_plots.overlap_area(sample, sample + 1.0) < 1.0
    with pytest.raises(ValueError, match="non-empty"):
        training_plots.overlap_area(sample, np.array([]))


@pytest.mark.slow
def test_widget_retrains_when_values_change(ml100k):
    panel = live_widgets.TrainingPanel(ml100k, loss="mine+", lam=1.0, epochs=1, num_negatives=32, max_users=50)
    first, first_figure = dict(panel.metrics), panel.figure
    assert 0 < first["recall@20"] < 1 and 0 <= panel.overlap <= 1
    panel.set(loss="infonce+", eps=1.0, lam=1.4, tau_plus=0.1)
    assert panel.loss_params() == {"eps": 1.0, "lam": 1.4, "tau_plus": 0.1}
    second = panel.train()
    assert second != first and panel.figure is not first_figure
    assert "infonce+" in panel.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="outside"):
        panel.set(lam=3.0)
