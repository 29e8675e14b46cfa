"""Tests of recloss_lite.experiments.presets: every registered loss and every model but MF has settings that build a
valid TrainConfig and model, debiased names share their base loss's settings, and preset() hands out copies."""

from __future__ import annotations

import dataclasses

import pytest

from recloss_lite.core import hdccf, linear, losses, training
from recloss_lite.core.training import TrainConfig
from recloss_lite.experiments import presets

FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
BUILDERS = {
    "ials": lambda params: linear.IALS(**params),
    "ease": lambda params: linear.EASE(**params),
    "hdccf": lambda params: hdccf.HDCCF(n_users=5, n_items=7, dim=4, **params),
}


@pytest.mark.parametrize("loss", losses.names())
def test_every_loss_has_settings_that_build_a_train_config(loss: str) -> None:
    settings = presets.preset(loss)
    assert settings and set(settings) <= FIELDS - {"dataset", "loss", "loss_params", "model", "model_params"}
    config = TrainConfig(loss=loss, **settings)  # TrainConfig checks every field in __post_init__
    for name, value in settings.items():
        assert getattr(config, name) == value, name
    assert config.model == "mf" and config.dim == 64  # embedding size 64 throughout


def test_the_presets_cover_exactly_the_base_losses() -> None:
    assert set(presets.PRESETS) == set(losses.BASE_LOSSES)
    assert {losses.base_loss(name) for name in losses.names()} == set(presets.PRESETS)


@pytest.mark.parametrize("loss", [name for name in losses.names() if name.startswith("debiased-")])
def test_debiased_names_share_their_base_loss_settings(loss: str) -> None:
    base = losses.base_loss(loss)
    assert base != loss and presets.preset(loss) == presets.preset(base) == presets.PRESETS[base]


def test_preset_of_an_unknown_loss_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"loss='infonse': allowed values are .*infonce"):
        presets.preset("infonse")


def test_preset_returns_a_copy() -> None:
    before = {name: dict(settings) for name, settings in presets.PRESETS.items()}
    settings = presets.preset("debiased-infonce")
    settings["lr"] = 123.0
    settings["epochs"] = 1
    presets.preset("bpr").clear()
    assert presets.PRESETS == before
    assert presets.preset("infonce") is not presets.preset("infonce")


def test_the_contrastive_family_does_not_share_one_settings_dict() -> None:
    sampled = [presets.PRESETS[name] for name in losses.SAMPLED]
    assert len({id(settings) for settings in sampled}) == len(sampled)  # changing one loss's row changes no other
    assert presets.PRESETS["mse"] is not presets.PRESETS["infonce"]


def test_sampled_losses_train_with_many_shared_negatives_and_bpr_with_one_hard_one() -> None:
    for name in losses.SAMPLED:
        config = TrainConfig(loss=name, **presets.preset(name))
        assert config.similarity == "cosine" and config.shared_negatives and config.num_negatives >= 100, name
    bpr = TrainConfig(loss="bpr", **presets.preset("bpr"))
    assert (bpr.similarity, bpr.sampler, bpr.num_negatives) == ("dot", "dns", 1)
    assert bpr.candidates > 1 and bpr.lr_decay < 1
    assert bpr.max_seconds is not None and bpr.max_seconds < 15 * 60  # within the 15 minutes of one command


def test_linear_presets_exist_for_every_model_but_mf() -> None:
    assert set(presets.LINEAR_PRESETS) == set(training.MODELS) - {"mf"} == set(BUILDERS)


@pytest.mark.parametrize("model", sorted(presets.LINEAR_PRESETS))
def test_linear_presets_build_a_config_and_their_model(model: str) -> None:
    settings = presets.LINEAR_PRESETS[model]
    assert set(settings) <= FIELDS - {"dataset", "loss", "loss_params", "model"}
    params = settings["model_params"]
    training.check_model_params(model, params)  # names and types of the constructor's parameters
    config = TrainConfig(model=model, **settings)
    assert config.model_params == params
    built = BUILDERS[model](params)  # the constructor checks the values' ranges
    for name, value in params.items():
        assert getattr(built, name) == value, name
