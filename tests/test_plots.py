"""Tests of recloss_lite.book.plots: the studies of chapters 02-06 against float64 formulas, finite differences and
the limits the chapters state, and what each figure draws (panels, lines carrying the data, titles, labels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from recloss_lite.book import plots, theory
from recloss_lite.core import losses

# The chapters' set-up, written out here rather than read from the module: the cosine scale [-1, 1] in steps of
# 0.01, eight negatives "between -0.5 and 0.3" (02_losses) and the positive "held at 0.5".
GRID = np.linspace(-1.0, 1.0, 201)
NEGATIVES = np.linspace(-0.5, 0.3, 8)
POSITIVE = 0.5
# Values away from every default, so that a parameter that does not reach its loss shows.
PARAMS = {"tau": 0.2, "eps": 0.5, "lam": 1.3, "margin": 0.4, "neg_weight": 20.0}
CLAIMS = theory.claims()


def _inputs(vary: str) -> tuple[np.ndarray, np.ndarray]:
    """(pos (201,), neg (201, 8)) with s+ or s_1 running over the grid, the rest fixed."""
    neg = np.tile(NEGATIVES, (len(GRID), 1))
    if vary == "positive":
        return GRID.copy(), neg
    neg[:, 0] = GRID
    return np.full(len(GRID), POSITIVE), neg


def _reference(name: str, pos: np.ndarray, neg: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Row losses in numpy float64: theory's references for the exp family and BPR, the formula for MSE and CCL."""
    tau = params.get("tau", 1.0)
    formulas = {
        "infonce": lambda: theory.infonce(pos, neg, tau),
        "infonce+": lambda: theory.infonce_plus(pos, neg, tau, eps=params["eps"], lam=params["lam"]),
        "dcl": lambda: theory.infonce_plus(pos, neg, tau, eps=0.0, lam=1.0),
        "mine": lambda: theory.mine(pos, neg, tau),
        "mine+": lambda: theory.mine(pos, neg, tau, lam=params["lam"]),
        "bpr": lambda: theory.bpr(pos, neg, tau),
        "mse": lambda: (pos - 1.0) ** 2 + params.get("neg_weight", 1.0) * np.mean(neg**2, axis=1),
        "ccl": lambda: (
            np.maximum(0.0, 1.0 - pos) + params["neg_weight"] * np.mean(np.maximum(0.0, neg - params["margin"]), axis=1)
        ),
    }
    return formulas[name]()


def _expected_params(name: str) -> dict[str, float]:
    """What chapter 02 says each panel gets: the exp family its temperature (and eps / lam where it has them), CCL
    its margin and weight, BPR and MSE nothing (library defaults: tau 1, weight 1)."""
    keys = {
        "infonce": ("tau",),
        "dcl": ("tau",),
        "mine": ("tau",),
        "mine+": ("tau", "lam"),
        "infonce+": ("tau", "eps", "lam"),
        "ccl": ("margin", "neg_weight"),
        "bpr": (),
        "mse": (),
    }[name]
    return {key: PARAMS[key] for key in keys}


def _data_lines(ax) -> list:
    """The lines of ``ax`` that carry data (not the axvline / axhline markers, whose x or y data has 2 points)."""
    return [line for line in ax.get_lines() if len(line.get_xdata()) > 2]


def _renders(fig: Figure) -> None:
    """Draw the figure once with Agg (mathtext is parsed only now) and check every line's data is finite."""
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        for line in ax.get_lines():
            assert np.isfinite(np.asarray(line.get_ydata(), dtype=float)).all(), ax.get_title()


def _legend(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------------------------------
# figure_grid and loss_parameters
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "cols", "rows", "used_cols"), [(8, 4, 2, 4), (5, 3, 2, 3), (2, 4, 1, 2), (1, 1, 1, 1), (0, 3, 1, 1)]
)
def test_figure_grid_gives_rows_of_at_most_cols_panels(count: int, cols: int, rows: int, used_cols: int) -> None:
    fig, axes = plots.figure_grid(count, cols, width=2.0, height=1.5)
    assert isinstance(fig, Figure) and axes.ndim == 1
    assert len(axes) == rows * used_cols >= count and all(ax.figure is fig for ax in axes)
    assert tuple(fig.get_size_inches()) == pytest.approx((2.0 * used_cols, 1.5 * rows))
    assert len({(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start) for ax in axes}) == len(axes)
    assert [ax.get_visible() for ax in axes] == [True] * count + [False] * (len(axes) - count)  # spare cells hidden


def test_loss_parameters_give_each_panel_only_its_own_parameters() -> None:
    assert plots.LOSS_PANELS == ("bpr", "infonce", "infonce+", "dcl", "mine", "mine+", "mse", "ccl")
    given = plots.loss_parameters(**PARAMS)
    assert tuple(given) == plots.LOSS_PANELS
    for name, params in given.items():
        assert params == _expected_params(name), name
        losses.make(name, **params)  # every set is accepted by the loss
    defaults = plots.loss_parameters()
    assert defaults["infonce+"] == {"tau": 0.1, "eps": 0.0, "lam": 1.1}
    assert defaults["ccl"] == {"margin": 0.9, "neg_weight": 150.0}
    gradient_panels = plots.loss_parameters(panels=plots.GRADIENT_PANELS)
    assert tuple(gradient_panels) == plots.GRADIENT_PANELS == ("infonce", "infonce+", "mine+", "bpr", "mse", "ccl")


# --------------------------------------------------------------------------------------------------
# 02_losses
# --------------------------------------------------------------------------------------------------


def test_loss_curve_data_equals_the_float64_formulas() -> None:
    curves = plots.loss_curve_data(**PARAMS)
    assert tuple(curves) == plots.LOSS_PANELS
    for name, curve in curves.items():
        assert set(curve) == {"score", "vs_positive", "vs_negative"}
        np.testing.assert_array_equal(curve["score"], GRID)
        for key, vary in (("vs_positive", "positive"), ("vs_negative", "negative")):
            assert curve[key].shape == GRID.shape and curve[key].dtype == np.float64
            expected = _reference(name, *_inputs(vary), _expected_params(name))
            np.testing.assert_allclose(curve[key], expected, rtol=1e-12, atol=1e-12, err_msg=f"{name} {key}")


@pytest.fixture(scope="module")
def chapter_curves() -> dict:
    """:func:`plots.loss_curve_data` at chapter 02's parameters: tau 0.1, eps 0, lam 1.1, margin 0.9, weight 150."""
    return plots.loss_curve_data()


def test_loss_curves_have_the_shapes_chapter_02_describes(chapter_curves: dict) -> None:
    curves = chapter_curves
    step = GRID[1] - GRID[0]
    for name, curve in curves.items():
        # Every loss falls as the positive rises on [-1, 1] (MSE's parabola has its minimum at s+ = 1).
        assert np.all(np.diff(curve["vs_positive"]) <= 1e-12), name
    # InfoNCE saturates; without the positive in the denominator the loss falls by step / tau to the end.
    infonce = curves["infonce"]["vs_positive"]
    assert 0 < infonce[-1] < 0.01 and infonce[-2] - infonce[-1] < 0.01 * step / 0.1
    for name in ("infonce+", "dcl", "mine", "mine+"):
        np.testing.assert_allclose(np.diff(curves[name]["vs_positive"]), -step / 0.1, rtol=1e-9, err_msg=name)
    # Against one negative: the exp losses and BPR rise, flat while it is below the others, steep once hardest.
    for name in ("bpr", "infonce", "infonce+", "dcl", "mine", "mine+"):
        rising = curves[name]["vs_negative"]
        assert np.all(np.diff(rising) > 0), name
        if name != "bpr":
            assert rising[100] - rising[0] < 0.01 * (rising[-1] - rising[100]), name
    bpr_slope = np.diff(curves["bpr"]["vs_negative"])  # BPR rises gently and evenly: sigmoid(s_1 - s+)
    infonce_slope = np.diff(curves["infonce"]["vs_negative"])
    assert bpr_slope.max() < 4 * bpr_slope.min() and infonce_slope.max() > 1e5 * infonce_slope.min()
    mse = curves["mse"]["vs_negative"]
    assert np.argmin(mse) == 100 and np.allclose(mse, mse[::-1])  # a parabola in s_1 centred at 0
    ccl = curves["ccl"]["vs_negative"]
    below, above = GRID <= 0.9 - 1e-9, GRID >= 0.9 + 1e-9
    assert np.ptp(ccl[below]) == 0.0
    np.testing.assert_allclose(np.diff(ccl[above]), 150.0 / 8 * step, rtol=1e-9)


def test_loss_curves_draw_both_curves_of_each_loss(chapter_curves: dict) -> None:
    curves = chapter_curves
    fig = plots.loss_curves(curves, title="parameters")
    assert len(fig.axes) == 8 and fig.get_suptitle() == "parameters"
    for ax, (name, curve) in zip(fig.axes, curves.items(), strict=True):
        assert ax.get_title() == name and ax.get_xlabel() == "score"
        solid, dashed = ax.get_lines()
        np.testing.assert_array_equal(solid.get_xdata(), GRID)
        np.testing.assert_array_equal(solid.get_ydata(), curve["vs_positive"])
        np.testing.assert_array_equal(dashed.get_ydata(), curve["vs_negative"])
        assert solid.get_linestyle() == "-" and dashed.get_linestyle() == "--"
    assert fig.axes[0].get_ylabel() == fig.axes[4].get_ylabel() == "loss"
    assert any("0.5" in label for label in _legend(fig.axes[0]))
    _renders(fig)
    with pytest.raises(ValueError):  # one curve per panel, no fewer
        plots.loss_curves(dict(list(curves.items())[:7]))


def _softmax_study(**changes: float) -> dict:
    settings = {"num_items": 400, "num_negatives": (4, 32, 256), "num_draws": 100, "seed": 3, **changes}
    return plots.sampled_softmax_data(**settings)


def test_sampled_softmax_uniform_and_log_q_approach_the_full_loss_and_uncorrected_does_not() -> None:
    study = _softmax_study()
    tau, a = 0.1, 0.6 / 0.1
    assert set(study) == {"num_negatives", "full", "estimates", "tau", "num_items"}
    np.testing.assert_array_equal(study["num_negatives"], [4, 32, 256])
    # Scores in [-1, 1]: the full loss lies between the catalogue all at -1 and all at +1.
    low, high = (-a + math.log(math.exp(a) + 400 * math.exp(s / tau)) for s in (-1.0, 1.0))
    assert low < study["full"] < high
    estimates = study["estimates"]
    assert list(estimates) == ["uniform", "popularity, uncorrected", "popularity, log-Q"]
    bias = {}
    for key, values in estimates.items():
        assert values["mean"].shape == values["std"].shape == (3,)
        assert np.all(values["std"] > 0) and values["std"][-1] < values["std"][0]  # more negatives, less spread
        bias[key] = values["mean"] - study["full"]
    for key in ("uniform", "popularity, log-Q"):
        # Unbiased sums inside a concave log: the mean lies below the full loss (Jensen) and closes in with N.
        stderr = estimates[key]["std"] / math.sqrt(100)
        assert np.all(bias[key] < 3 * stderr), key
        assert abs(bias[key][-1]) < 0.5 * abs(bias[key][0]), key
    # Popular items score higher: treating popularity draws as uniform overestimates the negatives' sum.
    uncorrected = bias["popularity, uncorrected"]
    assert uncorrected[-1] > 0.2 and uncorrected[-1] > 3 * abs(bias["popularity, log-Q"][-1])
    again = _softmax_study()
    np.testing.assert_array_equal(again["estimates"]["uniform"]["mean"], estimates["uniform"]["mean"])


def test_sampled_softmax_without_popularity_skew_needs_no_correction() -> None:
    flat = _softmax_study(zipf=0.0)  # uniform popularity: log(N q_j) = log(N / n), the uniform correction
    corrected, uncorrected = flat["estimates"]["popularity, log-Q"], flat["estimates"]["popularity, uncorrected"]
    np.testing.assert_allclose(corrected["mean"], uncorrected["mean"], rtol=1e-12)
    np.testing.assert_allclose(corrected["std"], uncorrected["std"], rtol=1e-12)


def test_sampled_softmax_figure_shows_each_estimate_and_the_full_loss() -> None:
    study = _softmax_study()
    fig = plots.sampled_softmax(study)
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {*study["estimates"], "full-catalogue loss"}
    for key, values in study["estimates"].items():
        np.testing.assert_array_equal(lines[key].get_xdata(), [4, 32, 256])
        np.testing.assert_array_equal(lines[key].get_ydata(), values["mean"])
    assert lines["full-catalogue loss"].get_ydata()[0] == study["full"]
    assert len(ax.collections) == 3 and ax.get_xscale() == "log"  # one +-std band per estimate
    assert "400 items" in ax.get_title() and "0.1" in ax.get_title()
    _renders(fig)


# --------------------------------------------------------------------------------------------------
# 03_bounds
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CLAIMS))
def test_claim_sides_plot_both_sides_and_they_obey_the_relation(name: str) -> None:
    claim = CLAIMS[name]
    lhs, rhs = claim.sides(claim.axis_values)
    fig = plots.claim_sides(claim)
    (ax,) = fig.axes
    left, right = ax.get_lines()
    np.testing.assert_array_equal(left.get_xdata(), claim.axis_values)
    np.testing.assert_array_equal(left.get_ydata(), lhs)
    np.testing.assert_array_equal(right.get_ydata(), rhs)
    assert (ax.get_title(), ax.get_xlabel()) == (name, claim.axis)
    assert _legend(ax) == [claim.lhs_label, claim.rhs_label] and len(ax.collections) == 1  # the shaded gap
    gap = {"<=": rhs - lhs, ">=": lhs - rhs, "=": -np.abs(lhs - rhs)}[claim.relation]
    assert np.all(gap >= -1e-9 * np.maximum(1.0, np.abs(lhs)))
    _renders(fig)


def test_only_the_long_number_axis_is_drawn_on_a_log_scale() -> None:
    scales = {name: plots.claim_sides(claim).axes[0].get_xscale() for name, claim in CLAIMS.items()}
    assert scales["infonce_saturation"] == "log"  # N from 1 to 1000
    assert scales["log_mean_exp_bias"] == scales["infonce_mi_bound"] == scales["infonce_softplus"] == "linear"


# --------------------------------------------------------------------------------------------------
# 04_hardness
# --------------------------------------------------------------------------------------------------


def test_gradient_curve_data_equals_finite_differences_of_the_float64_losses() -> None:
    curves = plots.gradient_curve_data(**PARAMS)
    assert tuple(curves) == plots.GRADIENT_PANELS
    pos, neg = _inputs("negative")
    h = 1e-6
    for name, curve in curves.items():
        np.testing.assert_array_equal(curve["score"], GRID)
        params = _expected_params(name)
        up, down = neg.copy(), neg.copy()
        up[:, 0] += h
        down[:, 0] -= h
        numeric = (_reference(name, pos, up, params) - _reference(name, pos, down, params)) / (2 * h)
        smooth = np.abs(GRID - params.get("margin", 10.0)) > 2 * h  # CCL's kink at its margin
        scale = np.abs(numeric).max()
        assert curve["gradient"].shape == GRID.shape
        np.testing.assert_allclose(
            curve["gradient"][smooth], numeric[smooth], rtol=1e-6, atol=1e-7 * scale, err_msg=name
        )


def test_gradients_mine_hard_negatives_only_in_the_softmax_family() -> None:
    curves = plots.gradient_curve_data()  # chapter 04's parameters
    infonce, bpr = curves["infonce"]["gradient"], curves["bpr"]["gradient"]
    # InfoNCE: (1 / tau) e^{s_1 / tau} / (e^{s+ / tau} + sum_j e^{s_j / tau}), HDCCF eqs. (3)-(4).
    pos, neg = _inputs("negative")
    weights = np.exp(neg[:, 0] / 0.1) / (np.exp(pos / 0.1) + np.exp(neg / 0.1).sum(axis=1))
    np.testing.assert_allclose(infonce, weights / 0.1, rtol=1e-12)
    # BPR (tau 1): sigmoid(s_1 - s+), each negative on its own.
    np.testing.assert_allclose(bpr, 1.0 / (1.0 + np.exp(POSITIVE - GRID)), rtol=1e-12)
    for name in ("infonce", "infonce+", "mine+", "bpr"):
        assert np.all(np.diff(curves[name]["gradient"]) > 0), name
    assert infonce[-1] / infonce[0] > 1e6 > 10 > bpr[-1] / bpr[0] > 1
    np.testing.assert_allclose(curves["mse"]["gradient"], 2 * GRID / 8, rtol=1e-12)  # linear in the score
    ccl = curves["ccl"]["gradient"]
    assert np.all(ccl[GRID < 0.9 - 1e-9] == 0) and np.allclose(ccl[GRID > 0.9 + 1e-9], 150.0 / 8)


def test_gradient_curves_draw_one_panel_per_loss_with_the_other_negatives_marked() -> None:
    curves = plots.gradient_curve_data()
    fig = plots.gradient_curves(curves, title="gradients")
    assert len(fig.axes) == 6 and fig.get_suptitle() == "gradients"
    for ax, (name, curve) in zip(fig.axes, curves.items(), strict=True):
        assert ax.get_title() == name
        (line,) = _data_lines(ax)
        np.testing.assert_array_equal(line.get_ydata(), curve["gradient"])
        marks = sorted(other.get_xdata()[0] for other in ax.get_lines() if other is not line)
        np.testing.assert_allclose(marks, NEGATIVES[1:])
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_ylabel() == fig.axes[3].get_ylabel()
    _renders(fig)


def test_temperature_data_is_the_softmax_weight_of_the_negative() -> None:
    taus = (0.05, 0.2, 1.0)
    data = plots.temperature_data(taus)
    np.testing.assert_array_equal(data["score"], GRID)
    assert list(data["weights"]) == list(taus)
    pos, neg = _inputs("negative")
    spreads = []
    for tau, weight in data["weights"].items():
        expected = np.exp(neg[:, 0] / tau) / (np.exp(pos / tau) + np.exp(neg / tau).sum(axis=1))
        np.testing.assert_allclose(weight, expected, rtol=1e-10)
        assert np.all((weight > 0) & (weight < 1))
        # On a log scale the slope in s_1 is (1 - P_1) / tau: 1 / tau while the negative is small against the rest.
        assert np.log(weight[1] / weight[0]) / (GRID[1] - GRID[0]) == pytest.approx((1 - weight[0]) / tau, rel=0.01)
        spreads.append(weight[-1] / weight[0])
    assert spreads[0] > spreads[1] > spreads[2]  # smaller tau: more of the gradient on the hardest negative


def test_temperature_curves_draw_one_labelled_curve_per_temperature() -> None:
    data = plots.temperature_data((0.1, 0.5))
    fig = plots.temperature_curves(data)
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["$\\tau = 0.1$", "$\\tau = 0.5$"]
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), data["weights"][0.5])
    assert ax.get_yscale() == "log"
    _renders(fig)


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_balance_data_push_minus_pull_is_lambda_minus_one_over_tau(eps: float) -> None:
    lams = np.array([0.5, 1.0, 1.5])
    data = plots.balance_data(lams, tau=0.2, eps=eps)
    np.testing.assert_array_equal(data["lam"], lams)
    assert data["tau"] == 0.2
    # N = 3 negatives at the first three fixed scores; with the positive's share q of the denominator, InfoNCE+
    # pushes the negatives by lam (1 - q) / tau and pulls the positive by (1 - lam q) / tau.
    a, b = POSITIVE / 0.2, NEGATIVES[:3] / 0.2
    share = eps * math.exp(a) / (eps * math.exp(a) + np.exp(b).sum())
    np.testing.assert_allclose(data["negative_sum"], lams * (1 - share) / 0.2, rtol=1e-10)
    np.testing.assert_allclose(data["minus_positive"], (1 - lams * share) / 0.2, rtol=1e-10)
    np.testing.assert_allclose(data["negative_sum"] - data["minus_positive"], (lams - 1) / 0.2, atol=1e-9)
    assert data["negative_sum"][1] == pytest.approx(data["minus_positive"][1], abs=1e-12)  # they cross at 1


def test_balance_figure_draws_push_and_pull_against_lambda() -> None:
    data = plots.balance_data(np.linspace(0.8, 1.2, 5))
    fig = plots.balance(data)
    (ax,) = fig.axes
    push, pull = _data_lines(ax)
    np.testing.assert_array_equal(push.get_ydata(), data["negative_sum"])
    np.testing.assert_array_equal(pull.get_ydata(), data["minus_positive"])
    (marker,) = [line for line in ax.get_lines() if line not in (push, pull)]
    assert list(marker.get_xdata()) == [1.0, 1.0] and "0.1" in ax.get_title()
    _renders(fig)


# --------------------------------------------------------------------------------------------------
# 05_debiasing
# --------------------------------------------------------------------------------------------------


def test_false_negative_data_is_exact_where_the_draws_have_no_choice() -> None:
    # Two items. Users 0 and 2 own item 0 in training and item 1 in test; user 1 has no test item.
    train = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32))
    test = sp.csr_matrix(np.array([[0, 1], [0, 0], [0, 1]], dtype=np.float32))
    result = plots.false_negative_data(train, test, num_draws=50, seed=1)
    assert (result["users"], result["n_items"], result["num_draws"]) == (2, 2, 50)
    np.testing.assert_array_equal(result["exclude_test_hits"], [1.0, 1.0])  # the one item outside train is test
    np.testing.assert_array_equal(result["train_hits"] + result["test_hits"], [1.0, 1.0])
    assert 0 < result["test_hits"][0] < 1  # uniform draws land on both items
    np.testing.assert_array_equal(result["expected_uniform"], [1.0, 1.0])
    np.testing.assert_array_equal(result["expected_exclude"], [1.0, 1.0])


def test_false_negative_data_measures_the_exact_rates_on_the_toy_split(toy) -> None:
    draws = 200
    result = plots.false_negative_data(toy.train, toy.test, num_draws=draws, seed=0)
    train, test = toy.train.tocsr(), toy.test.tocsr()
    users = [u for u in range(toy.n_users) if test[u].nnz > 0]
    n_train = np.array([train[u].nnz for u in users])
    n_test = np.array([test[u].nnz for u in users])
    assert result["users"] == len(users) and result["n_items"] == toy.n_items
    np.testing.assert_allclose(result["expected_uniform"], (n_train + n_test) / toy.n_items)
    np.testing.assert_allclose(result["expected_exclude"], n_test / (toy.n_items - n_train))
    for key in ("train_hits", "test_hits", "exclude_test_hits"):
        hits = result[key] * draws
        assert hits.shape == (len(users),) and np.allclose(hits, np.round(hits))  # fractions of the draws
        assert result[f"mean_{key}"] == pytest.approx(float(np.mean(result[key])))
    # The measured means agree with the exact expectations within 5 standard errors of all draws.
    pairs = (
        ("train_hits", n_train / toy.n_items),
        ("test_hits", n_test / toy.n_items),
        ("exclude_test_hits", result["expected_exclude"]),
    )
    for key, expected in pairs:
        p = float(np.mean(expected))
        assert abs(result[f"mean_{key}"] - p) < 5 * math.sqrt(p * (1 - p) / (len(users) * draws)), key
    again = plots.false_negative_data(toy.train, toy.test, num_draws=draws, seed=0)
    np.testing.assert_array_equal(again["test_hits"], result["test_hits"])


def test_false_negative_rates_draw_one_histogram_per_data_set(toy) -> None:
    measured = {
        "toy": plots.false_negative_data(toy.train, toy.test, num_draws=20),
        "toy again": plots.false_negative_data(toy.train, toy.test, num_draws=20, seed=5),
    }
    fig = plots.false_negative_rates(measured)
    assert [ax.get_title() for ax in fig.axes] == ["toy", "toy again"]
    for ax, data in zip(fig.axes, measured.values(), strict=True):
        assert sum(patch.get_height() for patch in ax.patches) == data["users"]  # every user in the histogram
        (mean,) = ax.get_lines()
        assert mean.get_xdata()[0] == pytest.approx(100 * data["mean_exclude_test_hits"])
        assert _legend(ax) == [f"measured mean {100 * data['mean_exclude_test_hits']:.2f}%"]
    _renders(fig)


@pytest.mark.parametrize("loss", ["infonce", "mse", "ccl"])
def test_debiasing_study_collects_the_monte_carlo_rows(loss: str) -> None:
    grid, true_rate = [0.0, 0.1, 0.3], 0.1
    study = plots.debiasing_study(true_rate, grid, loss=loss, num_trials=1500, seed=2)
    np.testing.assert_array_equal(study["tau_plus"], grid)
    assert (study["tau_plus_true"], study["loss"]) == (true_rate, loss)
    for position, assumed in enumerate(grid):
        row = losses.debiasing_monte_carlo(true_rate, assumed, loss=loss, num_trials=1500, seed=2)
        assert study["target"] == row["target"] and study["phi"] == row["phi"]
        for key in ("biased", "debiased", "debiased_clamped"):
            bias, std = row[f"{key}_mean"] - row["target"], row[f"{key}_std"]
            assert study[key]["bias"][position] == pytest.approx(bias, rel=1e-12, abs=1e-15)
            assert study[key]["std"][position] == pytest.approx(std, rel=1e-12)
            assert study[key]["rmse"][position] == pytest.approx(math.hypot(bias, std), rel=1e-12)
    # Chapter 05: hidden positives score high, so the biased mean overestimates; the debiased estimate is unbiased
    # at the true rate; its spread grows with the assumed rate; the clamp never adds error.
    at_truth = grid.index(true_rate)
    stderr = study["debiased"]["std"][at_truth] / math.sqrt(1500)
    assert np.all(study["biased"]["bias"] > 0)
    assert abs(study["debiased"]["bias"][at_truth]) < 4 * stderr
    assert study["debiased"]["std"][2] > study["debiased"]["std"][1] > study["debiased"]["std"][0]
    assert np.all(study["debiased_clamped"]["rmse"] <= study["debiased"]["rmse"] + 1e-12)


def test_debiasing_bias_variance_draws_relative_bias_and_spread() -> None:
    study = plots.debiasing_study(0.1, [0.0, 0.1, 0.2], loss="infonce", num_trials=300)
    fig = plots.debiasing_bias_variance(study)
    bias_ax, std_ax = fig.axes
    for ax, part in ((bias_ax, "bias"), (std_ax, "std")):
        lines = _data_lines(ax)
        assert len(lines) == 3
        for line, key in zip(lines, ("biased", "debiased", "debiased_clamped"), strict=True):
            np.testing.assert_allclose(line.get_ydata(), study[key][part] / study["target"])
        assert any(list(line.get_xdata()) == [0.1, 0.1] for line in ax.get_lines())  # the true rate is marked
    assert _legend(bias_ax) == ["biased mean", "debiased (no clamp)", "debiased + clamp"]
    assert "infonce" in fig.get_suptitle() and "0.1" in fig.get_suptitle()
    _renders(fig)


def test_estimator_histogram_shows_each_estimate_with_target_and_floor() -> None:
    result = losses.debiasing_monte_carlo(0.1, 0.2, num_trials=400, num_negatives=16, seed=1)
    fig = plots.estimator_histogram(result)
    (ax,) = fig.axes
    labels = _legend(ax)
    for key in ("biased", "debiased", "debiased_clamped"):
        assert f"{key}: mean {result[key + '_mean']:.3g}" in labels
    assert f"target {result['target']:.3g}" in labels and "clamp floor" in labels
    assert len(ax.patches) == 3  # three step outlines, one per estimate
    verticals = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert verticals == sorted([result["target"], result["floor"]])
    assert "0.10" in ax.get_title() and "0.20" in ax.get_title() and "N = 16" in ax.get_title()
    _renders(fig)


# --------------------------------------------------------------------------------------------------
# 06_linear_models
# --------------------------------------------------------------------------------------------------


def test_score_agreement_scatters_sampled_entries_on_the_line_of_slope_one_over_scale() -> None:
    rng = np.random.default_rng(0)
    plain = rng.normal(size=(30, 20))
    fig = plots.score_agreement(plain, plain / 4.0, scale=4.0, num_points=100, seed=1)
    (ax,) = fig.axes
    points = ax.collections[0].get_offsets()
    assert len(points) == 100 and len({tuple(point) for point in points}) == 100  # drawn without replacement
    assert set(points[:, 0]) <= set(plain.ravel())
    np.testing.assert_allclose(points[:, 1], points[:, 0] / 4.0)  # this pair lies on the drawn line
    (line,) = ax.get_lines()
    x, y = line.get_xdata(), line.get_ydata()
    assert (y[1] - y[0]) / (x[1] - x[0]) == pytest.approx(0.25)
    assert x[0] == points[:, 0].min() and x[1] == points[:, 0].max()
    assert "slope 1/A = 0.250" in _legend(ax) and ax.get_title() == "100 random entries"
    _renders(fig)
    all_points = plots.score_agreement(plain, plain, scale=1.0, num_points=10_000)
    assert len(all_points.axes[0].collections[0].get_offsets()) == plain.size  # at most every entry once
    with pytest.raises(ValueError, match="shapes differ"):
        plots.score_agreement(plain, plain.T, scale=1.0)
