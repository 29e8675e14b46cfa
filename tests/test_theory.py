"""The claims of chapter 03_bounds and the derivations of chapters 04-06: sympy verdicts and numeric checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sympy as sp
import torch

from recloss_lite.book import theory
from recloss_lite.core import losses

CLAIMS = theory.claims()
# What sympy actually returns for each claim's steps (None would be asserted here as None, never as True).
EXPECTED_VERDICTS = {name: True for name in CLAIMS}


def test_every_claim_has_an_expected_verdict():
    assert set(EXPECTED_VERDICTS) == set(CLAIMS)


@pytest.mark.parametrize("name", list(CLAIMS))
def test_sympy_verdict(name):
    claim = CLAIMS[name]
    assert claim.steps, f"{name} has no symbolic steps"
    assert claim.sympy_verdict() is EXPECTED_VERDICTS[name]


@pytest.mark.parametrize("name", list(CLAIMS))
def test_numeric_check_holds(name):
    ok, margin = CLAIMS[name].numeric_check(np.random.default_rng(1), n_trials=150)
    assert ok
    assert margin >= -theory.NUMERIC_TOLERANCE


def _swapped(claim: theory.Claim) -> theory.Claim:
    return dataclasses.replace(claim, name=f"not_{claim.name}", lhs=claim.rhs, rhs=claim.lhs)


@pytest.mark.parametrize(
    "name",
    [
        "infonce_le_bpr",
        "bpr_le_n_infonce",
        "infonce_ge_mine",
        "donsker_varadhan",
        "infonce_mi_bound",
        "log_mean_exp_bias",
    ],
)
def test_false_claim_is_caught(name):
    """The reversed inequality (e.g. BPR <= InfoNCE) fails the numeric check with a clearly negative margin."""
    ok, margin = _swapped(CLAIMS[name]).numeric_check(np.random.default_rng(2), n_trials=100)
    assert not ok
    assert margin < -1e-3


def test_false_equality_is_caught():
    claim = CLAIMS["infonce_softplus"]
    wrong = dataclasses.replace(claim, rhs=lambda case: np.logaddexp(0.0, theory.mine(case.pos, case.neg, case.tau)))
    ok, margin = wrong.numeric_check(np.random.default_rng(3), n_trials=50)
    assert not ok and margin < -1e-3


def test_verdicts_are_three_valued():
    assert theory.combine([True, True]) is True
    assert theory.combine([True, None]) is None
    assert theory.combine([None, False, True]) is False
    assert theory.verdict_text(None) == "undecided"
    z = sp.Symbol("z", real=True)
    # Asked directly, sympy cannot sign softplus(z) - z: the step is undecided, not true.
    assert theory.Step("naive", sp.log(1 + sp.exp(z)), ">=", z).verdict() is None
    assert theory.Step("with witness", sp.log(1 + sp.exp(z)), ">=", z, witness=sp.log(1 + sp.exp(-z))).verdict()
    a = sp.Symbol("a", real=True)
    assert theory.Step("false", a + 1, "=", a).verdict() is False
    with pytest.raises(ValueError, match="relation"):
        theory.Step("bad", a, "<", a)


def test_is_zero_evaluates_unevaluated_substitutions():
    """``Expr.equals`` answers False on this zero ``Subs`` expression; ``is_zero`` must say True."""
    w, t = sp.Symbol("w", positive=True), sp.Symbol("t", positive=True)
    expression = sp.Subs(w * t / (1 - t), t, 1 / (1 + w)) - 1
    assert theory.is_zero(expression) is True


def _scores(rows: int = 64, negatives: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, rows), rng.normal(0, 0.5, (rows, negatives))


@pytest.mark.parametrize(
    ("reference", "name", "params"),
    [
        (lambda p, n: theory.infonce(p, n, 0.2), "infonce", {"tau": 0.2}),
        (lambda p, n: theory.mine(p, n, 0.2), "mine", {"tau": 0.2}),
        (lambda p, n: theory.mine(p, n, 0.2, lam=1.3), "mine+", {"tau": 0.2, "lam": 1.3}),
        (
            lambda p, n: theory.infonce_plus(p, n, 0.2, eps=0.5, lam=1.3),
            "infonce+",
            {"tau": 0.2, "eps": 0.5, "lam": 1.3},
        ),
        (
            lambda p, n: theory.infonce_plus(p, n, 0.2, eps=0.0, lam=1.3),
            "infonce+",
            {"tau": 0.2, "eps": 0.0, "lam": 1.3},
        ),
        (lambda p, n: theory.bpr(p, n, 0.7), "bpr", {"tau": 0.7}),
    ],
)
def test_numpy_references_match_the_library(reference, name, params):
    pos, neg = _scores()
    library = losses.make(name, **params)(torch.from_numpy(pos), torch.from_numpy(neg), reduction="none")
    np.testing.assert_allclose(reference(pos, neg), library.numpy(), rtol=1e-12, atol=1e-12)


def test_numpy_references_are_stable_and_checked():
    pos, neg = np.array([1e4]), np.full((1, 4), -1e4)
    assert np.isfinite(theory.infonce(pos, neg, 0.01)).all()
    assert theory.infonce(np.array([0.0]), np.zeros((1, 3)), 1.0)[0] == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        theory.bpr(np.zeros(3), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="tau"):
        theory.mine(np.zeros(2), np.zeros((2, 4)), tau=0.0)


def test_exact_expectations_against_hand_values_and_monte_carlo():
    values, probs = np.array([0.0, 1.0, 3.0]), np.array([0.7, 0.2, 0.1])
    # N = 1: E[log e^B] = E[B].
    assert theory.expected_log_mean_exp(values, probs, 1) == pytest.approx(float(values @ probs), abs=1e-12)
    rng = np.random.default_rng(0)
    draws = rng.choice(values, p=probs, size=(200_000, 4))
    monte_carlo = np.mean(np.log(np.mean(np.exp(draws), axis=1)))
    assert theory.expected_log_mean_exp(values, probs, 4) == pytest.approx(monte_carlo, abs=5e-3)

    joint = np.array([[0.3, 0.1], [0.1, 0.5]])
    critic = np.array([[1.0, -0.5], [0.2, 2.0]])
    users = rng.choice(4, p=joint.ravel(), size=100_000)
    u, i = users // 2, users % 2
    negatives = rng.choice(2, p=joint.sum(0), size=(100_000, 2))
    scores = np.concatenate([critic[u, i][:, None], critic[u[:, None], negatives]], axis=1)
    loss = np.log(np.exp(scores).sum(1)) - critic[u, i]
    assert theory.infonce_mi_estimate(joint, critic, 2) == pytest.approx(math.log(3) - loss.mean(), abs=5e-3)


def test_donsker_varadhan_is_tight_at_the_optimal_critic():
    p, q = np.array([0.8, 0.2]), np.array([0.5, 0.5])
    kl = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    assert theory.kl_divergence(p, q) == pytest.approx(kl, abs=1e-15)
    assert theory.donsker_varadhan(p, q, np.log(p / q) + 5.0) == pytest.approx(kl, abs=1e-12)
    assert theory.mutual_information(np.outer([0.3, 0.7], [0.5, 0.5])) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize(
    "steps",
    [theory.gradient_steps, theory.ials_steps, theory.ease_steps, theory.debiased_mse_steps, theory.debiasing_steps],
)
def test_derivation_steps_are_verified(steps):
    assert [step.verdict() for step in steps()] == [True] * len(steps())


def test_gradient_formulas_match_autograd():
    rng = np.random.default_rng(4)
    pos, neg = rng.uniform(-1, 1, 32), rng.uniform(-1, 1, (32, 3))
    params = {
        "infonce": {"tau": 0.3},
        "infonce+": {"tau": 0.3, "eps": 0.4, "lam": 1.2},
        "mine+": {"tau": 0.3, "lam": 0.8},
        "bpr": {"tau": 0.5},
        "mse": {"neg_weight": 3.0},
        "ccl": {"margin": 0.2, "neg_weight": 7.0},
    }
    for row in theory.gradient_table():
        autograd = losses.negative_gradients(row.name, torch.from_numpy(pos), torch.from_numpy(neg), **params[row.name])
        np.testing.assert_allclose(
            row.negative_gradient(pos, neg, **params[row.name]), autograd[:, 0].numpy(), rtol=1e-10, atol=1e-12
        )
    balances = {row.name: sp.simplify(row.balance) for row in theory.gradient_table()}
    assert balances["infonce"] == 0 and balances["bpr"] == 0
    assert sp.simplify(balances["mine+"] - (theory.LAM_SYM - 1) / theory.TAU_SYM) == 0


def test_ease_instance_is_exact():
    instance = theory.ease_instance(seed=3)
    weights = instance["B"]
    assert all(weights[j, j] == 0 for j in range(weights.shape[0]))
    assert all(isinstance(entry, sp.Rational) for entry in weights)
