"""Tests of recloss_lite.core.losses against naive float64 formulas of the papers chapter 02_losses cites, its
identities, autograd, extreme scores, bad input and the Monte-Carlo unbiasedness of the debiased estimator."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recloss_lite.core import losses

torch.set_num_threads(1)

ALL_NAMES = [
    "bpr",
    "ccl",
    "dcl",
    "debiased-ccl",
    "debiased-infonce",
    "debiased-mine+",
    "debiased-mse",
    "infonce",
    "infonce+",
    "mine",
    "mine+",
    "mse",
    "softmax",
]
BASE_NAMES = [name for name in ALL_NAMES if not name.startswith("debiased-")]
# Non-default values for every parameter a loss has (so the test sees each parameter act).
TEST_PARAMS = {"tau": 0.5, "eps": 0.7, "lam": 1.3, "neg_weight": 2.0, "margin": 0.1}


def params_for(name: str, tau_plus: float, **overrides: float) -> dict[str, float]:
    params = {key: TEST_PARAMS[key] for key in losses.defaults(name) if key in TEST_PARAMS}
    return {**params, "tau_plus": tau_plus, **overrides}


def base_of(name: str) -> str:
    return name.removeprefix("debiased-")


def naive_row_losses(name: str, params: dict[str, float], pos, neg, log_q_pos=None, log_q_neg=None):
    """The spec's table written out directly with exp and log in float64 numpy: (B,), (B, N) -> (B,)."""
    base = base_of(name)
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    num = neg.shape[1]
    tau_plus = params["tau_plus"]

    def debias(phi_neg, phi_pos, floor):
        mean = phi_neg.mean(axis=1)
        if tau_plus == 0.0:
            return mean
        return np.maximum(floor, (mean - tau_plus * phi_pos) / (1.0 - tau_plus))

    if base in ("mse", "ccl"):
        if base == "mse":
            positive, phi = (pos - 1.0) ** 2, lambda s: s**2
        else:
            positive, phi = np.maximum(0.0, 1.0 - pos), lambda s: np.maximum(0.0, s - params["margin"])
        return positive + params["neg_weight"] * debias(phi(neg), phi(pos), 0.0)
    tau = params["tau"]
    a, b = pos / tau, neg / tau
    if base == "bpr":
        return num * debias(np.log1p(np.exp(b - a[:, None])), np.full_like(a, math.log(2.0)), 0.0)
    if base == "softmax":
        a = a - (np.zeros_like(a) if log_q_pos is None else np.asarray(log_q_pos))
        b = b - (np.zeros_like(b) if log_q_neg is None else np.asarray(log_q_neg))
    negative = debias(np.exp(b), np.exp(a), math.exp(-1.0 / tau))
    if base in ("infonce", "softmax"):
        return -a + np.log(np.exp(a) + num * negative)
    if base == "infonce+":
        return -a + params["lam"] * np.log(params["eps"] * np.exp(a) + num * negative)
    if base == "dcl":
        return -a + np.log(num * negative)
    return -a + params.get("lam", 1.0) * np.log(negative)  # mine, mine+


def random_scores(batch: int, num: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine-like scores in (-1, 1), where the naive formulas are exact enough."""
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(batch, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    neg = torch.rand(batch, num, generator=gen, dtype=torch.float64) * 1.8 - 0.9
    return pos.to(dtype), neg.to(dtype)


def rows(name: str, pos: torch.Tensor, neg: torch.Tensor, **params: float) -> torch.Tensor:
    return losses.make(name, **params)(pos, neg, reduction="none")


# ---------------------------------------------------------------- registry and API


def test_names_are_the_registry_sorted() -> None:
    assert losses.names() == ALL_NAMES


@pytest.mark.parametrize("name", ALL_NAMES)
def test_make_fills_defaults_and_describes_itself(name: str) -> None:
    fn = losses.make(name)
    assert fn.name == name
    assert fn.params == losses.defaults(name) == losses.DEFAULTS[name]
    assert "tau_plus" in fn.params
    assert fn.params["tau_plus"] == (0.1 if name.startswith("debiased-") else 0.0)
    assert repr(fn).startswith(f"losses.make({name!r}, ")
    rebuilt = eval(repr(fn), {"losses": losses})  # the repr is the call that makes it
    assert rebuilt.params == fn.params and rebuilt.name == name
    assert "02_losses" in fn.__doc__ and "arXiv" in fn.__doc__ and "(B, N)" in fn.__doc__
    fn.params["tau_plus"] = 0.5  # params is a copy: the loss cannot be changed from outside
    assert fn.params["tau_plus"] != 0.5


def test_params_are_stored_as_floats_and_defaults_are_copies() -> None:
    fn = losses.make("ccl", margin=0, neg_weight=3)
    assert fn.params == {"margin": 0.0, "neg_weight": 3.0, "tau_plus": 0.0}
    assert all(type(value) is float for value in fn.params.values())
    losses.defaults("infonce")["tau"] = 5.0
    assert losses.defaults("infonce")["tau"] == 0.1


def test_documented_defaults() -> None:
    assert losses.defaults("bpr") == {"tau": 1.0, "tau_plus": 0.0}
    assert losses.defaults("infonce+") == {"tau": 0.1, "eps": 0.0, "lam": 1.1, "tau_plus": 0.0}
    assert losses.defaults("mine+") == {"tau": 0.1, "lam": 1.1, "tau_plus": 0.0}
    assert losses.defaults("ccl") == {"margin": 0.9, "neg_weight": 150.0, "tau_plus": 0.0}
    assert losses.defaults("debiased-mse") == {"neg_weight": 1.0, "tau_plus": 0.1}


# ---------------------------------------------------------------- values against the naive formulas


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("tau_plus", [0.0, 0.3])
@pytest.mark.parametrize(("batch", "num"), [(1, 1), (5, 3), (7, 16)])
def test_matches_naive_formula(name: str, tau_plus: float, batch: int, num: int) -> None:
    if name.startswith("debiased-") and tau_plus == 0.0:
        tau_plus = 0.2
    params = params_for(name, tau_plus)
    pos, neg = random_scores(batch, num, seed=batch * 100 + num)
    expected = naive_row_losses(name, params, pos.numpy(), neg.numpy())
    fn = losses.make(name, **params)
    np.testing.assert_allclose(fn(pos, neg, reduction="none").numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fn(pos, neg).item(), expected.mean(), rtol=1e-10)
    np.testing.assert_allclose(fn(pos, neg, reduction="sum").item(), expected.sum(), rtol=1e-10)


@pytest.mark.parametrize("name", ["infonce", "mine+", "debiased-infonce", "softmax", "dcl"])
def test_debiased_clamp_rows_match_naive_formula(name: str) -> None:
    # Row 0: strong positive, weak negatives -> D hits the floor e^{-1/tau}; row 1 stays above it.
    pos = torch.tensor([0.95, -0.5], dtype=torch.float64)
    neg = torch.tensor([[-0.9, -0.8, -0.95], [0.3, 0.5, -0.1]], dtype=torch.float64)
    params = params_for(name, 0.5, tau=0.2)
    expected = naive_row_losses(name, params, pos.numpy(), neg.numpy())
    np.testing.assert_allclose(rows(name, pos, neg, **params).numpy(), expected, rtol=1e-12)
    naive_mean = np.exp(neg.numpy() / 0.2).mean(axis=1)
    assert naive_mean[0] - 0.5 * math.exp(0.95 / 0.2) < 0.5 * math.exp(-1 / 0.2)  # row 0 really is clamped


def test_softmax_log_q_correction_matches_naive_formula() -> None:
    pos, neg = random_scores(6, 5, seed=3)
    gen = torch.Generator().manual_seed(4)
    log_q_pos = torch.log(torch.rand(6, generator=gen, dtype=torch.float64))
    log_q_neg = torch.log(torch.rand(6, 5, generator=gen, dtype=torch.float64))
    for tau_plus in (0.0, 0.2):
        params = params_for("softmax", tau_plus)
        fn = losses.make("softmax", **params)
        got = fn(pos, neg, reduction="none", log_q_pos=log_q_pos, log_q_neg=log_q_neg)
        expected = naive_row_losses("softmax", params, pos, neg, log_q_pos.numpy(), log_q_neg.numpy())
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # The spec's own form: -(a - lq+) + logsumexp(a - lq+, b - lq), written out once more.
    logits = torch.cat([(pos / 0.5 - log_q_pos)[:, None], neg / 0.5 - log_q_neg], dim=1)
    spec_form = -logits[:, 0] + torch.logsumexp(logits, dim=1)
    got = losses.make("softmax", tau=0.5)(pos, neg, reduction="none", log_q_pos=log_q_pos, log_q_neg=log_q_neg)
    torch.testing.assert_close(got, spec_form)


def test_hand_computed_values() -> None:
    pos = torch.tensor([0.0], dtype=torch.float64)
    neg = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    assert rows("infonce", pos, neg, tau=1.0).item() == pytest.approx(math.log(4.0))  # -log(1/4)
    assert rows("bpr", pos, neg).item() == pytest.approx(3 * math.log(2.0))
    assert rows("mine", pos, neg).item() == pytest.approx(0.0)
    assert rows("dcl", pos, neg).item() == pytest.approx(math.log(3.0))
    assert rows("mse", pos, neg, neg_weight=2.0).item() == pytest.approx(1.0)
    assert rows("ccl", torch.tensor([0.5]), torch.tensor([[0.9, 0.1]]), margin=0.5, neg_weight=2.0).item() == (
        pytest.approx(0.5 + 2.0 * 0.2)
    )


# ---------------------------------------------------------------- identities of the spec


@pytest.mark.parametrize("tau_plus", [0.0, 0.25])
def test_spec_identities(tau_plus: float) -> None:
    pos, neg = random_scores(9, 7, seed=11)
    log_n = math.log(7)
    tau, lam = 0.3, 1.25
    infonce = rows("infonce", pos, neg, tau=tau, tau_plus=tau_plus)
    mine = rows("mine", pos, neg, tau=tau, tau_plus=tau_plus)
    torch.testing.assert_close(rows("infonce+", pos, neg, tau=tau, eps=1.0, lam=1.0, tau_plus=tau_plus), infonce)
    torch.testing.assert_close(rows("dcl", pos, neg, tau=tau, tau_plus=tau_plus), mine + log_n)
    torch.testing.assert_close(
        rows("infonce+", pos, neg, tau=tau, eps=0.0, lam=lam, tau_plus=tau_plus),
        rows("mine+", pos, neg, tau=tau, lam=lam, tau_plus=tau_plus) + lam * log_n,
    )
    torch.testing.assert_close(rows("mine+", pos, neg, tau=tau, lam=1.0, tau_plus=tau_plus), mine)
    torch.testing.assert_close(infonce, torch.nn.functional.softplus(mine + log_n))
    assert (infonce >= mine + log_n).all()
    torch.testing.assert_close(rows("softmax", pos, neg, tau=tau, tau_plus=tau_plus), infonce)
    zeros = {"log_q_pos": torch.zeros_like(pos), "log_q_neg": torch.zeros_like(neg)}
    softmax = losses.make("softmax", tau=tau, tau_plus=tau_plus)(pos, neg, reduction="none", **zeros)
    torch.testing.assert_close(softmax, infonce)


@pytest.mark.parametrize("tau", [0.1, 1.0, 3.0])
def test_infonce_below_bpr_below_n_infonce(tau: float) -> None:
    pos, neg = random_scores(20, 9, seed=5)
    infonce, bpr = rows("infonce", pos, neg, tau=tau), rows("bpr", pos, neg, tau=tau)
    assert (infonce <= bpr + 1e-12).all()
    assert (bpr <= 9 * infonce + 1e-12).all()


@pytest.mark.parametrize("base", BASE_NAMES)
def test_debiasing_tends_to_the_biased_loss_as_tau_plus_goes_to_zero(base: str) -> None:
    # Scores > -1 keep E_j[e^b] above the floor e^{-1/tau}, so D -> E_j as tau_plus -> 0.
    pos, neg = random_scores(8, 6, seed=2)
    biased = rows(base, pos, neg, **params_for(base, 0.0))
    torch.testing.assert_close(rows(base, pos, neg, **params_for(base, 1e-9)), biased, rtol=1e-7, atol=1e-7)
    assert losses.make(base).params["tau_plus"] == 0.0


@pytest.mark.parametrize("base", ["infonce", "mine+", "mse", "ccl"])
def test_convenience_names_are_the_base_with_tau_plus(base: str) -> None:
    pos, neg = random_scores(8, 6, seed=9)
    convenience = losses.make(f"debiased-{base}")
    assert convenience.params == {**losses.defaults(base), "tau_plus": 0.1}
    torch.testing.assert_close(convenience(pos, neg), losses.make(base, tau_plus=0.1)(pos, neg))
    params = params_for(base, 0.4)
    torch.testing.assert_close(rows(f"debiased-{base}", pos, neg, **params), rows(base, pos, neg, **params))


# ---------------------------------------------------------------- gradients


def kink_free_scores(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores at least 0.05 away from the relu kinks of ccl (margin 0.1, 1 - s+) and of each other."""
    pos, neg = random_scores(3, 4, seed=seed)
    neg = torch.where((neg - 0.1).abs() < 0.05, neg + 0.1, neg)
    return pos, neg


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("tau_plus", [0.0, 0.3])
def test_gradcheck(name: str, tau_plus: float) -> None:
    if name.startswith("debiased-") and tau_plus == 0.0:
        tau_plus = 0.2
    pos, neg = kink_free_scores(seed=21)
    fn = losses.make(name, **params_for(name, tau_plus))
    inputs = (pos.clone().requires_grad_(), neg.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n, reduction="none"), inputs)


def test_gradcheck_softmax_log_q() -> None:
    pos, neg = kink_free_scores(seed=22)
    log_q_pos, log_q_neg = (
        torch.full_like(pos, -2.0),
        torch.linspace(-3, -1, 12, dtype=torch.float64).view(3, 4),
    )
    fn = losses.make("softmax", tau=0.5, tau_plus=0.2)
    inputs = (pos.clone().requires_grad_(), neg.clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda p, n: fn(p, n, log_q_pos=log_q_pos, log_q_neg=log_q_neg), inputs)


def test_negative_gradients_match_closed_forms() -> None:
    pos, neg = random_scores(4, 5, seed=8)
    tau = 0.5
    grads = losses.negative_gradients("infonce", pos, neg, tau=tau)
    logits = torch.cat([pos[:, None], neg], dim=1) / tau
    torch.testing.assert_close(grads, torch.softmax(logits, dim=1)[:, 1:] / tau)  # d/ds_j: p_j / tau
    torch.testing.assert_close(losses.negative_gradients("mse", pos, neg, neg_weight=3.0), 3.0 * 2 * neg / 5)
    bpr = losses.negative_gradients("bpr", pos, neg, tau=tau)
    torch.testing.assert_close(bpr, torch.sigmoid((neg - pos[:, None]) / tau) / tau)
    assert grads.shape == (4, 5) and not grads.requires_grad


# ---------------------------------------------------------------- extremes


EXTREME_POS = [1e4, -1e4, 1e4, -1e4, 0.0, 1e4]
EXTREME_NEG = [
    [-1e4, 1e4, 0.0],
    [1e4, -1e4, 1e4],
    [1e4, 1e4, 1e4],
    [-1e4, -1e4, -1e4],
    [0.0, 1e4, -1e4],
    [-1e4] * 3,
]


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tau_plus", [0.0, 0.5, 0.99])
def test_extreme_scores_give_finite_values_and_gradients(name: str, dtype: torch.dtype, tau_plus: float) -> None:
    if name.startswith("debiased-") and tau_plus == 0.0:
        tau_plus = 0.1
    params = {"tau": 0.01} if "tau" in losses.defaults(name) else {}
    fn = losses.make(name, tau_plus=tau_plus, **params)
    pos = torch.tensor(EXTREME_POS, dtype=dtype, requires_grad=True)
    neg = torch.tensor(EXTREME_NEG, dtype=dtype, requires_grad=True)
    values = fn(pos, neg, reduction="none")
    values.sum().backward()
    assert torch.isfinite(values).all(), values
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all(), (pos.grad, neg.grad)
    assert values.dtype == dtype


def test_extreme_scores_give_the_right_values() -> None:
    big = torch.tensor([1e4], dtype=torch.float64)
    same = torch.full((1, 4), 1e4, dtype=torch.float64)
    low = torch.full((1, 4), -1e4, dtype=torch.float64)
    # All scores equal: infonce = log(1 + N); debiased D = (e^a - tau_plus e^a) / (1 - tau_plus) = e^a.
    assert rows("infonce", big, same, tau=0.01).item() == pytest.approx(math.log(5.0))
    assert rows("infonce", big, same, tau=0.01, tau_plus=0.5).item() == pytest.approx(math.log(5.0))
    # Negatives far below: debiased D is clamped to e^{-1/tau}: mine = -a - 1/tau exactly.
    assert rows("mine", big, low, tau=0.01, tau_plus=0.5).item() == pytest.approx(-1e6 - 100.0)
    assert rows("mine", big, low, tau=0.01).item() == pytest.approx(-2e6)
    assert rows("infonce", big, low, tau=0.01, tau_plus=0.5).item() == pytest.approx(0.0, abs=1e-12)
    assert rows("bpr", -big, same, tau=0.01).item() == pytest.approx(4 * 2e6)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("tau", [None, 0.05])
def test_half_precision_is_computed_in_float32(name: str, dtype: torch.dtype, tau: float | None) -> None:
    # float16 holds 1e4 but not e^(1e4 / tau) nor (1e4)^2 * 150: the loss upcasts once, at its entry point.
    params = {"tau": tau} if tau is not None and "tau" in losses.defaults(name) else {}
    fn = losses.make(name, **params)
    pos = torch.tensor(EXTREME_POS, dtype=dtype, requires_grad=True)
    neg = torch.tensor(EXTREME_NEG, dtype=dtype, requires_grad=True)
    values = fn(pos, neg, reduction="none")
    values.sum().backward()
    assert values.dtype == torch.float32 and fn(pos, neg).dtype == torch.float32
    assert torch.isfinite(values).all(), values
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all(), (pos.grad, neg.grad)
    assert pos.grad.dtype == dtype
    # the same numbers as for a float32 copy of the input
    torch.testing.assert_close(values, fn(pos.detach().float(), neg.detach().float(), reduction="none"))


def test_softmax_log_q_in_half_precision() -> None:
    pos, neg = torch.tensor(EXTREME_POS, dtype=torch.float16), torch.tensor(EXTREME_NEG, dtype=torch.float16)
    log_q_pos, log_q_neg = torch.full_like(pos, -3.0), torch.full_like(neg, -5.0)
    fn = losses.make("softmax", tau=0.05)
    values = fn(pos, neg, reduction="none", log_q_pos=log_q_pos, log_q_neg=log_q_neg)
    expected = fn(pos.float(), neg.float(), reduction="none", log_q_pos=log_q_pos.float(), log_q_neg=log_q_neg.float())
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    torch.testing.assert_close(values, expected)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_name_the_tensor_and_count(name: str, bad: float) -> None:
    fn = losses.make(name)
    pos, neg = torch.zeros(8), torch.zeros(8, 256)
    neg[1, 3] = neg[5, 0] = neg[7, 255] = bad
    with pytest.raises(ValueError) as error:
        fn(pos, neg)
    assert str(error.value) == (f"loss {name!r}: neg holds 3 non-finite entries (NaN or inf) of 2048 (shape (8, 256))")
    pos[2] = bad
    with pytest.raises(ValueError, match=rf"^loss {re.escape(repr(name))}: pos holds 1 non-finite entries .* of 8"):
        fn(pos, torch.zeros(8, 256, dtype=torch.float32))


def test_non_finite_log_q_and_half_precision_are_named() -> None:
    pos, neg = torch.zeros(2, dtype=torch.float16), torch.zeros(2, 3, dtype=torch.float16)
    with pytest.raises(ValueError, match=r"'mine\+': pos holds 2 non-finite entries \(NaN or inf\) of 2"):
        losses.make("mine+")(torch.full_like(pos, math.nan), neg)
    log_q_neg = torch.zeros_like(neg)
    log_q_neg[0, 1] = -math.inf
    with pytest.raises(ValueError, match=r"'softmax': log_q_neg holds 1 non-finite entries"):
        losses.make("softmax")(pos, neg, log_q_neg=log_q_neg)


def test_check_finite_false_skips_the_check() -> None:
    fn = losses.make("mine+", check_finite=False, tau=0.2)
    assert fn.check_finite is False and losses.make("mine+").check_finite is True
    assert repr(fn) == "losses.make('mine+', tau=0.2, lam=1.1, tau_plus=0.0, check_finite=False)"
    pos, neg = torch.zeros(2), torch.zeros(2, 3)
    neg[0, 0] = math.nan
    assert torch.isnan(fn(pos, neg))  # the trusted caller checks the result itself
    fn.check_finite = True
    with pytest.raises(ValueError, match="neg holds 1 non-finite"):
        fn(pos, neg)


# ---------------------------------------------------------------- property tests

score_values = st.floats(-1.0, 1.0, allow_nan=False)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 7))


@st.composite
def score_batches(draw, values=score_values):
    batch, num = draw(shapes)
    pos = torch.tensor(draw(st.lists(values, min_size=batch, max_size=batch)), dtype=torch.float64)
    neg = torch.tensor(draw(st.lists(values, min_size=batch * num, max_size=batch * num)), dtype=torch.float64)
    return pos, neg.view(batch, num)


@settings(max_examples=40, deadline=None)
@given(
    scores=score_batches(),
    name=st.sampled_from(ALL_NAMES),
    tau=st.floats(0.05, 2.0),
    tau_plus=st.floats(0.0, 0.9),
)
def test_property_matches_naive_formula_and_reductions(scores, name, tau, tau_plus) -> None:
    if name.startswith("debiased-"):
        tau_plus = max(tau_plus, 0.01)
    pos, neg = scores
    params = params_for(name, tau_plus, **({"tau": tau} if "tau" in losses.defaults(name) else {}))
    fn = losses.make(name, **params)
    per_row = fn(pos, neg, reduction="none")
    np.testing.assert_allclose(per_row.numpy(), naive_row_losses(name, params, pos, neg), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fn(pos, neg), per_row.mean())
    torch.testing.assert_close(fn(pos, neg, reduction="sum"), per_row.sum())
    permuted = neg[:, torch.randperm(neg.shape[1], generator=torch.Generator().manual_seed(0))]
    torch.testing.assert_close(fn(pos, permuted, reduction="none"), per_row)  # negatives are a set


@settings(max_examples=40, deadline=None)
@given(scores=score_batches(), tau=st.floats(0.05, 2.0))
def test_property_bounds(scores, tau) -> None:
    pos, neg = scores
    num = neg.shape[1]
    infonce, bpr = rows("infonce", pos, neg, tau=tau), rows("bpr", pos, neg, tau=tau)
    mine = rows("mine", pos, neg, tau=tau)
    assert (infonce <= bpr * (1 + 1e-12) + 1e-12).all()
    assert (bpr <= num * infonce * (1 + 1e-12) + 1e-12).all()
    assert (infonce >= mine + math.log(num) - 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(
    scores=score_batches(st.floats(-1e4, 1e4, allow_nan=False)),
    name=st.sampled_from(ALL_NAMES),
    tau=st.floats(0.01, 1.0),
    tau_plus=st.floats(0.0, 0.99),
)
def test_property_finite_everywhere(scores, name, tau, tau_plus) -> None:
    if name.startswith("debiased-"):
        tau_plus = max(tau_plus, 0.01)
    pos, neg = (tensor.float().requires_grad_() for tensor in scores)
    params = {"tau": tau} if "tau" in losses.defaults(name) else {}
    values = losses.make(name, tau_plus=tau_plus, **params)(pos, neg, reduction="none")
    values.sum().backward()
    assert torch.isfinite(values).all()
    assert torch.isfinite(pos.grad).all() and torch.isfinite(neg.grad).all()


# ---------------------------------------------------------------- errors


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ValueError, match="unknown loss 'infonse'") as info:
        losses.make("infonse")
    assert all(name in str(info.value) for name in ALL_NAMES)
    with pytest.raises(ValueError, match="registered losses"):
        losses.defaults("nope")


def test_unknown_parameter_lists_the_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) tau; its parameters: neg_weight, tau_plus"):
        losses.make("mse", tau=0.1)
    with pytest.raises(ValueError, match="lam"):
        losses.make("infonce", lam=1.1)


@pytest.mark.parametrize(
    ("name", "param", "value", "allowed"),
    [
        ("infonce", "tau", 0.0, "(0, inf)"),
        ("infonce", "tau", -1.0, "(0, inf)"),
        ("bpr", "tau", math.inf, "(0, inf)"),
        ("mine+", "lam", 0.0, "(0, inf)"),
        ("infonce+", "eps", -0.1, "[0, inf)"),
        ("mse", "neg_weight", 0.0, "(0, inf)"),
        ("ccl", "margin", 1.5, "[-1, 1]"),
        ("ccl", "margin", -1.01, "[-1, 1]"),
        ("dcl", "tau_plus", 1.0, "[0, 1)"),
        ("mse", "tau_plus", -0.1, "[0, 1)"),
        ("debiased-infonce", "tau_plus", 0.0, "(0, 1)"),
        ("softmax", "tau", math.nan, "(0, inf)"),
    ],
)
def test_out_of_range_names_parameter_value_and_range(name: str, param: str, value: float, allowed: str) -> None:
    with pytest.raises(ValueError) as info:
        losses.make(name, **{param: value})
    message = str(info.value)
    assert f"{param}={value!r}" in message and allowed in message and name in message


def test_parameters_must_be_numbers() -> None:
    with pytest.raises(ValueError, match="tau='0.1' must be a real number"):
        losses.make("infonce", tau="0.1")
    with pytest.raises(ValueError, match="must be a real number"):
        losses.make("infonce", tau=True)


@pytest.mark.parametrize(
    ("pos_shape", "neg_shape"),
    [((4,), (3, 5)), ((4, 1), (4, 5)), ((4,), (4,)), ((4,), (4, 0)), ((4,), (4, 2, 2)), ((), (1, 2))],
)
def test_bad_shapes_name_both_shapes(pos_shape: tuple, neg_shape: tuple) -> None:
    with pytest.raises(ValueError) as info:
        losses.make("infonce")(torch.zeros(pos_shape), torch.zeros(neg_shape))
    assert f"pos {pos_shape}" in str(info.value) and f"neg {neg_shape}" in str(info.value)


def test_dtype_device_and_type_mismatches() -> None:
    fn = losses.make("mine")
    with pytest.raises(ValueError, match="one dtype on one device.*float32.*float64"):
        fn(torch.zeros(2), torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="floating"):
        fn(torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="meta"):
        fn(torch.zeros(2), torch.zeros(2, 3, device="meta"))
    with pytest.raises(ValueError, match="torch tensors; got pos list"):
        fn([0.0, 1.0], torch.zeros(2, 3))


def test_bad_reduction_and_extra_arguments() -> None:
    pos, neg = torch.zeros(2), torch.zeros(2, 3)
    with pytest.raises(ValueError, match="reduction='avg'; allowed: mean, none, sum"):
        losses.make("bpr")(pos, neg, reduction="avg")
    with pytest.raises(ValueError, match="'infonce' takes no extra arguments; got log_q_neg"):
        losses.make("infonce")(pos, neg, log_q_neg=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="takes only log_q_pos, log_q_neg; got weights"):
        losses.make("softmax")(pos, neg, weights=torch.zeros(2))
    with pytest.raises(ValueError, match=r"log_q_neg must match shape \(2, 3\).*got shape \(2, 4\)"):
        losses.make("softmax")(pos, neg, log_q_neg=torch.zeros(2, 4))


# ---------------------------------------------------------------- Monte-Carlo: debiasing is unbiased


@pytest.mark.parametrize(("loss", "tau"), [("infonce", 0.5), ("mine+", 0.3), ("mse", 0.5), ("ccl", 0.5)])
def test_monte_carlo_debiased_estimate_is_unbiased(loss: str, tau: float) -> None:
    result = losses.debiasing_monte_carlo(0.2, loss=loss, tau=tau, num_trials=4000, num_negatives=32, seed=1)
    target = result["target"]
    assert abs(result["debiased_mean"] - target) < 4 * result["debiased_stderr"]
    assert abs(result["biased_mean"] - target) > 20 * result["biased_stderr"]
    assert result["biased"].shape == result["debiased"].shape == (4000,)
    # The library's (log-domain) D is the plain formula clamped at the floor.
    np.testing.assert_allclose(
        result["debiased_clamped"], np.maximum(result["floor"], result["debiased"]), rtol=1e-9, atol=1e-12
    )


def test_monte_carlo_settings_and_limits() -> None:
    no_correction = losses.debiasing_monte_carlo(0.2, tau_plus=0.0, num_trials=200)
    np.testing.assert_allclose(no_correction["debiased"], no_correction["biased"])
    clean = losses.debiasing_monte_carlo(0.0, loss="mse", num_trials=3000)
    assert abs(clean["biased_mean"] - clean["target"]) < 4 * clean["biased_stderr"]
    assert clean["target"] == pytest.approx(0.2**2)
    assert {"target", "floor", "phi", "debiased_clamped_std", "num_trials"} <= set(clean)
    with pytest.raises(ValueError, match="depends on the positive"):
        losses.debiasing_monte_carlo(0.1, loss="bpr")
    with pytest.raises(ValueError, match="tau_plus_true=1.0 out of range"):
        losses.debiasing_monte_carlo(1.0)
    with pytest.raises(ValueError, match="num_trials=0"):
        losses.debiasing_monte_carlo(0.1, num_trials=0)
