"""The trainer: lazy Adam against torch's Adam, determinism, resume after an interruption, every loss trains,
and the CLI's JSON contract. Real data: ml-100k from ../shared/data."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from recloss_lite.core import losses, training
from recloss_lite.core.training import RowAdam, TrainConfig, fit


def test_row_adam_matches_torch_adam_when_every_row_is_touched() -> None:
    torch.manual_seed(0)
    weight = torch.randn(6, 3)
    reference = torch.nn.Parameter(weight.clone())
    torch_adam = torch.optim.Adam([reference], lr=0.01)
    row_adam = RowAdam(weight, lr=0.01)
    for step in range(5):
        ids = torch.tensor([0, 1, 2, 3, 4, 5, 2, 0])  # duplicates: gradients must be summed
        grads = torch.randn(len(ids), 3, generator=torch.Generator().manual_seed(step))
        dense = torch.zeros(6, 3).index_add_(0, ids, grads)
        torch_adam.zero_grad()
        reference.grad = dense
        torch_adam.step()
        row_adam.step(ids, grads)
    assert torch.allclose(weight, reference.detach(), atol=1e-6)


def test_row_adam_leaves_untouched_rows_alone() -> None:
    weight = torch.ones(4, 2)
    RowAdam(weight, lr=0.1).step(torch.tensor([1]), torch.ones(1, 2))
    assert torch.equal(weight[[0, 2, 3]], torch.ones(3, 2)) and (weight[1] < 1).all()


def test_dense_row_adam_matches_torch_adam_on_a_gradient_of_a_few_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(30, 4, generator=generator)
    reference = torch.nn.Parameter(weight.clone())
    torch_adam = torch.optim.Adam([reference], lr=0.01)
    row_adam = RowAdam(weight, lr=0.01, dense=True)
    for step in range(20):
        ids = torch.randperm(30, generator=generator)[:5].sort().values  # distinct, as distinct() gives them
        grads, decay = torch.randn(5, 4, generator=generator), torch.rand(5, generator=generator)
        before = weight.clone()
        torch_adam.zero_grad()
        reference.grad = torch.zeros(30, 4).index_copy_(0, ids, grads + decay[:, None] * reference.detach()[ids])
        torch_adam.step()
        row_adam.step(ids, grads, unique=True, decay=decay)
        untouched = torch.ones(30, dtype=torch.bool).index_fill_(0, ids, False)
        if step:  # momentum moves rows this step did not touch, once earlier steps have touched them
            assert (weight[untouched] != before[untouched]).any()
    assert torch.allclose(weight, reference.detach(), atol=1e-5)


def test_dense_adam_trains_every_mf_path_and_only_mf(toy) -> None:
    for loss, options in (("bpr", {}), ("ccl", {"similarity": "cosine", "num_negatives": 20})):
        lazy, _ = fit(_toy_config("mf", epochs=2, loss=loss, **options), toy, progress=False)
        dense, _ = fit(_toy_config("mf", epochs=2, loss=loss, optimizer="adam", **options), toy, progress=False)
        assert math.isfinite(dense["history"][-1]["loss"])
        assert dense["history"][0]["loss"] != lazy["history"][0]["loss"]
    with pytest.raises(ValueError, match=r"optimizer='adam': applies to model 'mf' only \(model='ials'\)"):
        _toy_config("ials", optimizer="adam")
    with pytest.raises(ValueError, match=r"optimizer='sgd': allowed values are \('lazy-adam', 'adam'\)"):
        _toy_config("mf", optimizer="sgd")


def _config(**overrides) -> TrainConfig:
    settings = {"dataset": "ml-100k", "loss": "bpr", "epochs": 3, "eval_every": 1, "batch_size": 1024}
    return TrainConfig(**{**settings, **overrides})


def test_same_seed_same_numbers(ml100k) -> None:
    first, _ = fit(_config(), ml100k, progress=False)
    second, _ = fit(_config(), ml100k, progress=False)
    assert first["metrics"] == second["metrics"]
    assert [e["loss"] for e in first["history"]] == [e["loss"] for e in second["history"]]
    other, _ = fit(_config(seed=1), ml100k, progress=False)
    assert other["metrics"] != first["metrics"]


def test_resume_after_interruption_gives_the_uninterrupted_result(ml100k, tmp_path, monkeypatch) -> None:
    config = _config(epochs=4)
    reference, _ = fit(config, ml100k, progress=False)
    real_epoch, calls = training.train_epoch, {"n": 0}

    def interrupted_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during epoch 3
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(config, ml100k, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()
    assert (tmp_path / "checkpoint.pt").exists()
    monkeypatch.setattr(training, "train_epoch", real_epoch)
    resumed, _ = fit(config, ml100k, out_dir=tmp_path, resume=True, progress=False)
    assert resumed["metrics"] == reference["metrics"]
    assert [e["loss"] for e in resumed["history"]] == [e["loss"] for e in reference["history"]]
    saved = json.loads((tmp_path / "result.json").read_text())
    for key in ("params", "metrics", "best_epoch", "history", "seconds", "commit", "data_checksum", "command"):
        assert saved[key] == resumed[key], key
    assert saved["params"]["epochs"] == 4 and saved["commit"] not in ("", "unknown")


def test_lr_decay_halves_the_rate_at_each_evaluation_without_a_new_best(ml100k, tmp_path) -> None:
    config = _config(epochs=8, lr=0.05, lr_decay=0.5, patience=10)  # lr 0.05 overshoots: some epochs get worse
    result, _ = fit(config, ml100k, out_dir=tmp_path, progress=False)
    recalls = [entry["valid"]["recall@20"] for entry in result["history"]]
    stale = sum(value <= max(recalls[:i], default=-1.0) for i, value in enumerate(recalls))
    assert stale >= 1, recalls
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["state"]["lr_scale"] == pytest.approx(0.5**stale)
    stale_before = 0  # the rate of each epoch: lr times 0.5 per stale validation before it
    for i, entry in enumerate(result["history"]):
        assert entry["lr"] == pytest.approx(0.05 * 0.5**stale_before)
        stale_before += recalls[i] <= max(recalls[:i], default=-1.0)
    constant, _ = fit(_config(epochs=8, lr=0.05, patience=10), ml100k, progress=False)
    assert constant["history"][-1]["loss"] != result["history"][-1]["loss"]


def test_resume_refuses_a_different_configuration(ml100k, tmp_path) -> None:
    fit(_config(epochs=1), ml100k, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"holds a finished run whose configuration differs in \['lr'\]"):
        fit(_config(epochs=1, lr=0.01), ml100k, out_dir=tmp_path, resume=True, progress=False)


def test_resume_with_a_larger_budget_continues_the_run(ml100k, tmp_path) -> None:
    reference, _ = fit(_config(epochs=3), ml100k, progress=False)
    fit(_config(epochs=2), ml100k, out_dir=tmp_path, progress=False)
    extended, _ = fit(_config(epochs=3), ml100k, out_dir=tmp_path, resume=True, progress=False)
    assert [e["epoch"] for e in extended["history"]] == [1, 2, 3]
    assert [e["loss"] for e in extended["history"]] == [e["loss"] for e in reference["history"]]


@pytest.mark.parametrize("loss", losses.names())
def test_every_loss_trains_on_real_data(ml100k, loss) -> None:
    contrastive = loss not in ("bpr",)
    config = _config(
        loss=loss,
        epochs=3,
        similarity="cosine" if contrastive else "dot",
        lr=5e-3,
        num_negatives=64 if contrastive else 1,
        shared_negatives=contrastive,
        l2=0.0,
    )
    result, _ = fit(config, ml100k, progress=False)
    history = result["history"]
    assert history[-1]["loss"] < history[0]["loss"], f"{loss}: training loss did not fall"
    # A random ranking has expected Recall@20 = 20 / n_items (about 0.012 on ml-100k).
    random_recall = 20 / ml100k.n_items
    assert result["metrics"]["recall@20"] > 5 * random_recall, result["metrics"]


@pytest.mark.parametrize("sampler", ["uniform-exclude", "popularity", "in-batch"])
def test_samplers_train(ml100k, sampler) -> None:
    config = _config(loss="softmax", similarity="cosine", sampler=sampler, num_negatives=32, epochs=2, lr=5e-3)
    result, _ = fit(config, ml100k, progress=False)
    assert result["metrics"]["recall@20"] > 5 * 20 / ml100k.n_items


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": 0.0}, "lr=0.0"),
        ({"lr_decay": 1.5}, "lr_decay=1.5"),
        ({"valid_fraction": 1.0}, "valid_fraction=1.0"),
        ({"sampler": "hard"}, "sampler='hard'"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"loss": "mine+", "loss_params": {"lam": -1.0}}, "lam"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_bad_configuration_is_rejected_before_training(overrides, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        _config(**overrides)


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_kernel_and_python_training_give_the_same_model(ml100k, similarity, monkeypatch) -> None:
    config = _config(epochs=2, num_negatives=3, similarity=similarity, eval_every=2)
    fast, fast_model = fit(config, ml100k, progress=False)
    monkeypatch.setenv("RECLOSS_KERNELS", "0")
    slow, slow_model = fit(config, ml100k, progress=False)
    assert torch.allclose(fast_model.weight, slow_model.weight, atol=1e-5)
    assert fast["metrics"]["recall@20"] == pytest.approx(slow["metrics"]["recall@20"], abs=1e-3)


def test_dns_with_softmax_is_refused() -> None:
    with pytest.raises(ValueError, match="log-Q correction"):
        TrainConfig(loss="softmax", sampler="dns")


def test_row_scores_same_with_and_without_kernels(ml100k, monkeypatch) -> None:
    _, model = fit(_config(epochs=1), ml100k, progress=False)
    users, items = torch.arange(50), torch.randint(0, ml100k.n_items, (50, 7))
    fast = model.row_scores(users, items)
    monkeypatch.setenv("RECLOSS_KERNELS", "0")
    assert torch.allclose(fast, model.row_scores(users, items), atol=1e-5)


# ---- the driver on every model (generated data: these never skip) -------------------------------------------------


def _toy_config(model: str, **overrides) -> TrainConfig:
    settings = {
        "dataset": "toy",
        "model": model,
        "epochs": 4,
        "dim": 8,
        "lr": 1e-2,
        "batch_size": 128,
        "patience": 10,
        "valid_fraction": 0.2,
    }
    if model == "hdccf":
        settings["model_params"] = {"modulation": False, "num_positives": 2}
    return TrainConfig(**{**settings, **overrides})


def _interrupt_epoch(monkeypatch, model: str, at: int) -> None:
    """Make call ``at`` of the model's training epoch raise KeyboardInterrupt, as Ctrl-C would in mid-epoch."""
    cls, calls = training.TRAINABLES[model], {"n": 0}
    real = cls.train_epoch

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, "train_epoch", interrupted)


@pytest.mark.parametrize("model", ["mf", "ials", "hdccf"])
def test_resume_after_an_interrupted_epoch_equals_the_uninterrupted_run(toy, tmp_path, monkeypatch, model) -> None:
    config = _toy_config(model)
    reference, _ = fit(config, toy, progress=False)
    with monkeypatch.context() as patch:
        _interrupt_epoch(patch, model, at=3)
        with pytest.raises(KeyboardInterrupt):
            fit(config, toy, out_dir=tmp_path, progress=False)
    assert not (tmp_path / "result.json").exists()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["state"]["epoch"] == 2
    with pytest.raises(ValueError, match="holds an unfinished run .*pass --resume"):
        fit(config, toy, out_dir=tmp_path, progress=False)
    resumed, _ = fit(config, toy, out_dir=tmp_path, resume=True, progress=False)
    assert resumed["metrics"] == reference["metrics"]
    assert [e.get("valid") for e in resumed["history"]] == [e.get("valid") for e in reference["history"]]


def test_ease_is_one_closed_form_epoch_and_refits_when_reopened(toy, tmp_path) -> None:
    config = _toy_config("ease", model_params={"l2": 10.0})
    result, model = fit(config, toy, out_dir=tmp_path, progress=False)
    assert (result["epochs"], result["stop_reason"], result["valid_metrics"]) == (1, "closed form", {})
    assert (
        not (tmp_path / "checkpoint.pt").exists()
        or torch.load(tmp_path / "checkpoint.pt", weights_only=True)["trainable"] == {}
    )  # the n_items^2 weights are not saved
    again, reopened = fit(config, toy, out_dir=tmp_path, progress=False)
    assert again == result and torch.equal(reopened.weights, model.weights)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", ["mf", "ials", "ease", "hdccf"])
def test_every_model_trains_and_scores_on_the_configured_device(toy, model, device) -> None:
    """--device reaches every model: its scores come back on that device (on a GPU machine, also "cuda")."""
    config = _toy_config(model, device=device, **({"model_params": {"l2": 10.0}} if model == "ease" else {}))
    trainable = training.make_trainable(config, toy.train, toy.n_users, toy.n_items)
    trainable.train_epoch(torch.Generator(device=trainable.generator_device).manual_seed(0), None)
    scores = trainable.scores(torch.arange(3))
    assert scores.device.type == device and scores.shape == (3, toy.n_items) and bool(scores.isfinite().all())


def test_a_finished_run_is_returned_unchanged_and_never_overwritten(toy, tmp_path) -> None:
    config = _toy_config("mf", epochs=2)
    result, model = fit(config, toy, out_dir=tmp_path, progress=False)
    files = {name: (tmp_path / name).read_bytes() for name in ("result.json", "checkpoint.pt")}
    again, reopened = fit(config, toy, out_dir=tmp_path, progress=False)
    assert again == result and torch.equal(reopened.weight, model.weight)
    resumed, _ = fit(config, toy, out_dir=tmp_path, resume=True, progress=False)  # same budget: nothing to do
    assert resumed == result
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    with pytest.raises(ValueError, match=r"holds a finished run whose configuration differs in \['seed'\]"):
        fit(_toy_config("mf", epochs=2, seed=1), toy, out_dir=tmp_path, progress=False)
    assert (tmp_path / "result.json").read_bytes() == files["result.json"]
    fresh, _ = fit(_toy_config("mf", epochs=2, seed=1), toy, out_dir=tmp_path, overwrite=True, progress=False)
    assert fresh["params"]["seed"] == 1 and json.loads((tmp_path / "result.json").read_text()) == fresh


def test_resume_of_an_early_stopped_run_keeps_its_result_even_with_a_larger_budget(toy, tmp_path) -> None:
    config = _toy_config("mf", epochs=30, patience=1, lr=0.2)  # a large rate: validation soon stops improving
    result, _ = fit(config, toy, out_dir=tmp_path, progress=False)
    assert result["stop_reason"] == "early stopping"
    again, _ = fit(_toy_config("mf", epochs=60, patience=1, lr=0.2), toy, out_dir=tmp_path, resume=True, progress=False)
    assert again == result


def test_refit_trains_on_all_of_train_for_the_selected_epochs_and_resumes(toy, tmp_path, monkeypatch) -> None:
    config = _toy_config("mf", epochs=5, refit=True, lr_schedule="cosine", warmup_epochs=2)
    reference, _ = fit(config, toy, progress=False)
    best = reference["best_epoch"]
    assert reference["refit"]["epochs"] == best and set(reference["selected_metrics"]) == set(reference["metrics"])
    assert [e["lr"] for e in reference["refit"]["history"]] == [e["lr"] for e in reference["history"][:best]]
    assert reference["metrics"] != reference["selected_metrics"]  # another model: trained on more data
    with monkeypatch.context() as patch:
        _interrupt_epoch(patch, "mf", at=5 + min(best, 2))  # inside the refit
        with pytest.raises(KeyboardInterrupt):
            fit(config, toy, out_dir=tmp_path, progress=False)
    resumed, _ = fit(config, toy, out_dir=tmp_path, resume=True, progress=False)
    assert resumed["metrics"] == reference["metrics"] and resumed["refit"]["epochs"] == best


def test_the_test_curve_scores_the_refit_on_its_validation_epochs_and_chooses_nothing(toy) -> None:
    config = _toy_config("mf", epochs=5, refit=True, eval_every=2)
    plain, _ = fit(config, toy, progress=False)
    curved, _ = fit(dataclasses.replace(config, test_curve=True), toy, progress=False)
    refit = curved["refit"]["history"]
    watched = [e for e in range(1, len(refit) + 1) if e % 2 == 0 or e == len(refit)]  # as a validation would
    assert [e["epoch"] for e in refit if "test" in e] == watched
    assert refit[-1]["test"] == curved["metrics"] == plain["metrics"]  # the run's metrics: the last epoch's
    assert all("test" not in e for e in plain["refit"]["history"] + curved["history"])  # the selection: never


def test_without_a_test_split_the_refit_is_skipped(toy, tmp_path) -> None:
    config = _toy_config("mf", epochs=3, refit=True)
    default = training.full_ranking(config, toy)
    evaluation = training.Evaluation(default.fit_train, default.validate, None, default.key)  # a search's trial
    result, _ = fit(config, toy, out_dir=tmp_path, progress=False, evaluation=evaluation)
    assert "refit" not in result and result["best_epoch"] > 0
    assert not (tmp_path / training.REFIT_CHECKPOINT).exists()


def test_the_schedule_warms_up_then_follows_the_cosine() -> None:
    config = _toy_config("mf", epochs=10, lr=0.1, lr_schedule="cosine", warmup_epochs=4)
    rates = [config.lr_at(epoch) for epoch in range(1, 11)]
    expected = [0.1 * min(1, e / 4) * 0.5 * (1 + math.cos(math.pi * (e - 1) / 10)) for e in range(1, 11)]
    assert rates == pytest.approx(expected)
    assert rates[0] == pytest.approx(0.025) and rates[-1] < 0.003


def test_dropout_is_deterministic_and_changes_training(toy) -> None:
    first, _ = fit(_toy_config("mf", epochs=2, dropout=0.3), toy, progress=False)
    second, _ = fit(_toy_config("mf", epochs=2, dropout=0.3), toy, progress=False)
    plain, _ = fit(_toy_config("mf", epochs=2), toy, progress=False)
    assert [e["loss"] for e in first["history"]] == [e["loss"] for e in second["history"]]
    assert first["history"][0]["loss"] != plain["history"][0]["loss"]


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("mf", {"l2": 5}, "model 'mf' takes none"),
        ("hdccf", {"modulation": "maybe"}, "modulation='maybe' must be true or false"),
        ("ials", {"l2_typo": 1.0}, "ials has no parameter 'l2_typo'"),
        ("ease", {"l2": float("inf")}, "l2=inf must be a finite number"),
        ("ials", {"factors": 2.5}, "factors=2.5 must be an integer"),
    ],
)
def test_model_parameters_are_checked_by_name_and_type(model, params, message) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _toy_config(model, model_params=params)


@pytest.mark.parametrize("name", ["lr", "l2", "init_std", "max_seconds", "dropout"])
def test_non_finite_settings_are_refused(name) -> None:
    with pytest.raises(ValueError, match=f"{name}=inf: must be a finite number"):
        _toy_config("mf", **{name: float("inf")})


def test_the_device_resident_path_runs_with_an_explicit_cpu_device(toy) -> None:
    result, model = fit(
        _toy_config(
            "mf", epochs=2, device="cpu", sampler="popularity", loss="softmax", similarity="cosine", num_negatives=16
        ),
        toy,
        progress=False,
    )
    assert model.weight.device.type == "cpu" and result["metrics"]["recall@20"] > 20 / toy.n_items
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch.cuda.is_available\\(\\) is False"):
            fit(_toy_config("mf", device="cuda"), toy, progress=False)


def test_time_budget_stops_inside_the_first_epoch(ml100k) -> None:
    config = TrainConfig(model="hdccf", dim=8, lr=1e-2, batch_size=128, epochs=5, max_seconds=1e-9)
    result, _ = fit(config, ml100k, progress=False)
    assert result["epochs"] == 1 and result["stop_reason"] == "time budget"  # one partial epoch, still evaluated
    assert "valid" in result["history"][0]
    assert result["history"][0]["loss"] > 0  # the first batch ran before the budget check stopped the epoch
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(model="hdccf", max_seconds=0)
