"""Figures of chapters 02-06, and the small studies that feed them.

Every figure function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global state;
never ``plt.show()``, never ``matplotlib.use()``). A study is split in two: ``*_data(...)`` computes with the
library (``losses``, ``theory``, ``sampling``) and returns plain numbers and arrays, which the chapter prints;
the figure function draws them. The widgets of :mod:`recloss_lite.book.widgets` call the same pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from matplotlib.figure import Figure

from recloss_lite.book import theory
from recloss_lite.core.data import entry_rows

# Cosine-similarity scale: every score lies in [-1, 1] (the SimpleX / Li & Jin setting).
SCORE_GRID = np.linspace(-1.0, 1.0, 201)
NEGATIVE_SCORES = np.linspace(-0.5, 0.3, 8)
FIXED_POSITIVE = 0.5
LOSS_PANELS = ("bpr", "infonce", "infonce+", "dcl", "mine", "mine+", "mse", "ccl")
GRADIENT_PANELS = ("infonce", "infonce+", "mine+", "bpr", "mse", "ccl")


def _torch():
    import torch

    return torch


def figure_grid(count: int, cols: int, width: float = 3.2, height: float = 2.6) -> tuple[Figure, np.ndarray]:
    """A figure with ``count`` panels in rows of at most ``cols`` (each ``width`` x ``height`` inches), and its axes
    as a flat array (the cells past ``count`` in the last row are hidden): every chapter's multi-panel figure starts
    here."""
    rows = max(1, -(-count // cols))
    cols = min(cols, max(count, 1))
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes


# --------------------------------------------------------------------------------------------------
# 02_losses
# --------------------------------------------------------------------------------------------------


def loss_parameters(
    tau: float = 0.1,
    eps: float = 0.0,
    lam: float = 1.1,
    margin: float = 0.9,
    neg_weight: float = 150.0,
    panels: Sequence[str] = LOSS_PANELS,
) -> dict[str, dict[str, float]]:
    """The parameters each panel's loss is made with: tau for the temperature family (``losses.EXP_FAMILY``), eps and
    lam where the loss takes them, margin and negative weight for CCL; BPR and MSE keep the library defaults.

    Chapter 02_losses (and 04_hardness, with ``panels=GRADIENT_PANELS``).
    """
    from recloss_lite.core import losses

    given = {"tau": tau, "eps": eps, "lam": lam, "margin": margin, "neg_weight": neg_weight}
    return {
        name: {
            key: value
            for key, value in given.items()
            if key in losses.defaults(name) and (name in losses.EXP_FAMILY or name == "ccl")
        }
        for name in panels
    }


def loss_curve_data(**parameters: float) -> dict[str, dict[str, np.ndarray]]:
    """Each loss of :data:`LOSS_PANELS` as a function of the positive score and of one negative's score.

    Scores are cosine-like: 8 negatives fixed at :data:`NEGATIVE_SCORES`; ``vs_positive`` varies s+ over
    :data:`SCORE_GRID`; ``vs_negative`` fixes s+ = 0.5 and varies the first negative. ``parameters`` go to
    :func:`loss_parameters`. Returns ``{name: {"score", "vs_positive", "vs_negative"}}``. Chapter 02_losses.
    """
    from recloss_lite.core import losses

    torch = _torch()
    grid = torch.from_numpy(SCORE_GRID)
    base = torch.from_numpy(np.tile(NEGATIVE_SCORES, (len(SCORE_GRID), 1)))
    varied = base.clone()
    varied[:, 0] = grid
    fixed = torch.full_like(grid, FIXED_POSITIVE)
    curves = {}
    for name, params in loss_parameters(**parameters).items():
        fn = losses.make(name, **params)
        curves[name] = {
            "score": SCORE_GRID,
            "vs_positive": fn(grid, base, reduction="none").numpy(),
            "vs_negative": fn(fixed, varied, reduction="none").numpy(),
        }
    return curves


def loss_curves(curves: dict[str, dict[str, np.ndarray]], title: str = "") -> Figure:
    """Small multiples of :func:`loss_curve_data`: each loss against s+ (solid) and one s_j (dashed).

    Chapter 02_losses.
    """
    fig, axes = figure_grid(8, 4)
    for ax, (name, curve) in zip(axes, curves.items(), strict=True):
        ax.plot(curve["score"], curve["vs_positive"], label="vs $s^+$ (negatives fixed)")
        ax.plot(curve["score"], curve["vs_negative"], "--", label=f"vs $s_1$ ($s^+ = {FIXED_POSITIVE}$)")
        ax.set_title(name)
        ax.set_xlabel("score")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss")
    axes[4].set_ylabel("loss")
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def sampled_softmax_data(
    num_items: int = 2000,
    num_negatives: Sequence[int] = (4, 16, 64, 256, 1024),
    num_draws: int = 200,
    tau: float = 0.1,
    zipf: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """The sampled softmax with and without the log-Q correction, against the full-catalogue loss.

    A synthetic catalogue of ``num_items`` negatives has Zipf popularity q_j ~ 1 / rank^zipf and scores that
    grow with popularity (popular items score higher, as trained models do). The target is the full loss
    -a + log(e^a + sum_all e^{b_j}). Three sampled estimates with N negatives, all computed by the library's
    ``softmax`` loss with its ``log_q_neg`` argument (``log_q_pos`` = 0: the positive is not sampled):

    * ``uniform``: uniform draws, log_q_neg = log(N / n) (the constant making the sum an unbiased estimate);
    * ``popularity, uncorrected``: popularity draws treated as if uniform (log_q_neg = log(N / n));
    * ``popularity, log-Q``: popularity draws with log_q_neg = log(N q_j) (Bengio & Senecal 2008; Yi et al.
      2019's logQ correction; TensorFlow's sampled_softmax_loss subtracts the same log expected count).

    Returns the full loss, and for each estimate the mean and standard deviation over ``num_draws`` draws at
    every N. Chapter 02_losses.
    """
    from recloss_lite.core import losses

    torch = _torch()
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, num_items + 1)
    popularity = ranks**-zipf / np.sum(ranks**-zipf)
    log_popularity = np.log(popularity)
    scores = 0.25 * rng.standard_normal(num_items) + 0.08 * (log_popularity - log_popularity.mean())
    scores = np.clip(scores, -1.0, 1.0)
    positive = 0.6
    fn = losses.make("softmax", tau=tau)
    # With every item as a negative and no correction the softmax loss is the full-catalogue loss itself.
    full = float(fn(torch.tensor([positive], dtype=torch.float64), torch.from_numpy(scores)[None, :]))
    estimates: dict[str, dict[str, list[float]]] = {
        key: {"mean": [], "std": []} for key in ("uniform", "popularity, uncorrected", "popularity, log-Q")
    }
    pos = torch.full((num_draws,), positive, dtype=torch.float64)
    for count in num_negatives:
        uniform_items = rng.integers(0, num_items, size=(num_draws, count))
        popular_items = rng.choice(num_items, size=(num_draws, count), p=popularity)
        uniform_log_q = torch.full((num_draws, count), math.log(count / num_items), dtype=torch.float64)
        draws = {
            "uniform": (uniform_items, uniform_log_q),
            "popularity, uncorrected": (popular_items, uniform_log_q),
            "popularity, log-Q": (
                popular_items,
                torch.from_numpy(math.log(count) + log_popularity[popular_items]),
            ),
        }
        for key, (items, log_q) in draws.items():
            values = fn(pos, torch.from_numpy(scores[items]), reduction="none", log_q_neg=log_q).numpy()
            estimates[key]["mean"].append(float(values.mean()))
            estimates[key]["std"].append(float(values.std(ddof=1)))
    return {
        "num_negatives": np.asarray(num_negatives),
        "full": full,
        "estimates": {key: {k: np.asarray(v) for k, v in value.items()} for key, value in estimates.items()},
        "tau": tau,
        "num_items": num_items,
    }


def sampled_softmax(data: dict[str, Any]) -> Figure:
    """Mean (+- one standard deviation) of the sampled softmax estimates of :func:`sampled_softmax_data`.

    Chapter 02_losses.
    """
    fig = Figure(figsize=(6.4, 3.8), layout="constrained")
    ax = fig.subplots()
    counts = data["num_negatives"]
    for key, values in data["estimates"].items():
        ax.plot(counts, values["mean"], marker="o", label=key)
        ax.fill_between(counts, values["mean"] - values["std"], values["mean"] + values["std"], alpha=0.15)
    ax.axhline(data["full"], color="black", lw=1, label="full-catalogue loss")
    ax.set_xscale("log")
    ax.set_xlabel("number of sampled negatives N")
    ax.set_ylabel("sampled softmax loss")
    ax.set_title(f"sampled softmax over {data['num_items']} items, $\\tau = {data['tau']}$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------------
# 03_bounds
# --------------------------------------------------------------------------------------------------


def claim_sides(claim: theory.Claim) -> Figure:
    """Both sides of a :class:`~recloss_lite.book.theory.Claim` along its axis (N or the score gap); the region
    between them is shaded.

    Chapter 03_bounds.
    """
    lhs, rhs = claim.sides(claim.axis_values)
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(claim.axis_values, lhs, lw=2, label=claim.lhs_label)
    ax.plot(claim.axis_values, rhs, "--", lw=2, label=claim.rhs_label)
    ax.fill_between(claim.axis_values, lhs, rhs, alpha=0.15)
    if claim.axis.startswith("number") and claim.axis_values.max() / claim.axis_values.min() > 50:
        ax.set_xscale("log")
    ax.set_xlabel(claim.axis)
    ax.set_title(claim.name)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------------
# 04_hardness
# --------------------------------------------------------------------------------------------------


def gradient_curve_data(**parameters: float) -> dict[str, dict[str, np.ndarray]]:
    """d loss / d s_1 as a function of s_1 (other negatives at :data:`NEGATIVE_SCORES`, s+ = 0.5), for each
    loss of :data:`GRADIENT_PANELS`, by ``losses.negative_gradients``. Chapter 04_hardness."""
    from recloss_lite.core import losses

    torch = _torch()
    neg = torch.from_numpy(np.tile(NEGATIVE_SCORES, (len(SCORE_GRID), 1)))
    neg[:, 0] = torch.from_numpy(SCORE_GRID)
    pos = torch.full((len(SCORE_GRID),), FIXED_POSITIVE, dtype=torch.float64)
    return {
        name: {
            "score": SCORE_GRID,
            "gradient": losses.negative_gradients(name, pos, neg, **params)[:, 0].numpy(),
        }
        for name, params in loss_parameters(**parameters, panels=GRADIENT_PANELS).items()
    }


def gradient_curves(curves: dict[str, dict[str, np.ndarray]], title: str = "") -> Figure:
    """Small multiples of :func:`gradient_curve_data`; the other negatives' scores are marked.

    Chapter 04_hardness.
    """
    fig, axes = figure_grid(6, 3)
    for ax, (name, curve) in zip(axes, curves.items(), strict=True):
        ax.plot(curve["score"], curve["gradient"])
        for score in NEGATIVE_SCORES[1:]:
            ax.axvline(score, color="grey", lw=0.5, alpha=0.5)
        ax.set_title(name)
        ax.set_xlabel("score of the negative $s_1$")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(r"$\partial \mathcal{L} / \partial s_1$")
    axes[3].set_ylabel(r"$\partial \mathcal{L} / \partial s_1$")
    if title:
        fig.suptitle(title)
    return fig


def temperature_data(taus: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> dict[str, Any]:
    """InfoNCE's weight on one negative, tau * d loss / d s_1 (the softmax probability of HDCCF eq. (3)),
    against its score, for several temperatures. Chapter 04_hardness."""
    from recloss_lite.core import losses

    torch = _torch()
    neg = torch.from_numpy(np.tile(NEGATIVE_SCORES, (len(SCORE_GRID), 1)))
    neg[:, 0] = torch.from_numpy(SCORE_GRID)
    pos = torch.full((len(SCORE_GRID),), FIXED_POSITIVE, dtype=torch.float64)
    weights = {tau: tau * losses.negative_gradients("infonce", pos, neg, tau=tau)[:, 0].numpy() for tau in taus}
    return {"score": SCORE_GRID, "weights": weights}


def temperature_curves(data: dict[str, Any]) -> Figure:
    """The softmax weights of :func:`temperature_data`, one curve per temperature (log scale).

    Chapter 04_hardness.
    """
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for tau, weight in data["weights"].items():
        ax.plot(data["score"], weight, label=f"$\\tau = {tau}$")
    ax.set_yscale("log")
    ax.set_xlabel("score of the negative $s_1$")
    ax.set_ylabel(r"weight $P_1 = \tau\,\partial\mathcal{L}/\partial s_1$")
    ax.set_title("InfoNCE: smaller $\\tau$ concentrates the gradient on hard negatives")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def balance_data(lams: np.ndarray | None = None, tau: float = 0.1, eps: float = 0.0) -> dict[str, np.ndarray]:
    """InfoNCE+ with N = 3 negatives: the sum of the negatives' gradients (library autograd) and minus the
    positive's gradient (sympy's formula of :func:`theory.gradient_table`), against lambda.

    Chapter 04_hardness.
    """
    from recloss_lite.core import losses

    torch = _torch()
    lams = np.linspace(0.5, 1.5, 41) if lams is None else np.asarray(lams, dtype=np.float64)
    pos = torch.tensor([FIXED_POSITIVE], dtype=torch.float64)
    neg = torch.from_numpy(NEGATIVE_SCORES[None, :3].copy())
    row = next(row for row in theory.gradient_table() if row.name == "infonce+")
    negative_sum, positive = [], []
    for lam in lams:
        params = {"tau": tau, "eps": eps, "lam": float(lam)}
        negative_sum.append(float(losses.negative_gradients("infonce+", pos, neg, **params).sum()))
        positive.append(-float(row.positive_gradient(pos.numpy(), neg.numpy(), **params)[0]))
    return {
        "lam": lams,
        "negative_sum": np.array(negative_sum),
        "minus_positive": np.array(positive),
        "tau": tau,
    }


def balance(data: dict[str, np.ndarray]) -> Figure:
    """The two curves of :func:`balance_data`: they cross at lambda = 1.

    Chapter 04_hardness.
    """
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(
        data["lam"],
        data["negative_sum"],
        lw=2,
        label=r"$\sum_j \partial\mathcal{L}/\partial s_j$ (push down)",
    )
    ax.plot(
        data["lam"],
        data["minus_positive"],
        "--",
        lw=2,
        label=r"$-\partial\mathcal{L}/\partial s^+$ (pull up)",
    )
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel("gradient")
    ax.set_title(f"InfoNCE+ ($\\tau = {data['tau']}$): push equals pull only at $\\lambda = 1$")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------------------------------
# 05_debiasing
# --------------------------------------------------------------------------------------------------


def false_negative_data(train: sp.csr_matrix, test: sp.csr_matrix, num_draws: int = 100, seed: int = 0) -> dict:
    """How many uniformly drawn "negatives" are positives, per user, on a real split (chapter 05_debiasing).

    For every user with test items, ``num_draws`` items are drawn by the library's ``uniform`` sampler
    (all items, the SimpleX/BARS setting) and by ``uniform-exclude`` (items not in the user's training row).
    Returns per-user arrays: ``train_hits`` / ``test_hits`` (fraction of uniform draws in the user's train /
    test row),
    ``exclude_test_hits`` (fraction of uniform-exclude draws in the test row), and the exact expectations
    ``expected_uniform`` = (|train_u| + |test_u|) / n_items and ``expected_exclude`` = |test_u| / (n_items -
    |train_u|); plus their means over users.
    """
    from recloss_lite.core.sampling import NegativeSampler

    torch = _torch()
    train, test = train.tocsr(), test.tocsr()
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    n_items = train.shape[1]
    generator = torch.Generator().manual_seed(seed)
    user_tensor = torch.from_numpy(users)
    dummy_pos = torch.zeros(len(users), dtype=torch.int64)

    def hit_fraction(matrix: sp.csr_matrix, items: np.ndarray) -> np.ndarray:
        keys = np.sort(entry_rows(matrix) * n_items + matrix.indices)
        queries = users[:, None].astype(np.int64) * n_items + items
        position = np.clip(np.searchsorted(keys, queries), 0, len(keys) - 1)
        return (keys[position] == queries).mean(axis=1)

    draws = {}
    for kind in ("uniform", "uniform-exclude"):
        sampler = NegativeSampler(train, kind=kind, num_negatives=num_draws)
        draws[kind] = sampler.sample(user_tensor, dummy_pos, generator).items.numpy()
    train_counts = np.diff(train.indptr)[users]
    test_counts = np.diff(test.indptr)[users]
    result = {
        "users": len(users),
        "n_items": n_items,
        "num_draws": num_draws,
        "train_hits": hit_fraction(train, draws["uniform"]),
        "test_hits": hit_fraction(test, draws["uniform"]),
        "exclude_test_hits": hit_fraction(test, draws["uniform-exclude"]),
        "expected_uniform": (train_counts + test_counts) / n_items,
        "expected_exclude": test_counts / (n_items - train_counts),
    }
    for key in ("train_hits", "test_hits", "exclude_test_hits", "expected_uniform", "expected_exclude"):
        result[f"mean_{key}"] = float(np.mean(result[key]))
    return result


def false_negative_rates(datasets: dict[str, dict]) -> Figure:
    """Per-user histograms of the exact false-negative rate |test_u| / (n_items - |train_u|), one panel per
    data set of :func:`false_negative_data`, with the measured means.

    Chapter 05_debiasing.
    """
    fig, axes = figure_grid(len(datasets), len(datasets), width=4.2, height=3.2)
    for ax, (name, data) in zip(axes, datasets.items(), strict=True):
        rates = 100 * data["expected_exclude"]
        ax.hist(rates, bins=40, color="C0", alpha=0.8)
        ax.axvline(
            100 * data["mean_exclude_test_hits"],
            color="C3",
            lw=2,
            label=f"measured mean {100 * data['mean_exclude_test_hits']:.2f}%",
        )
        ax.set_xlabel("test items among uniform negatives (%)")
        ax.set_ylabel("users")
        ax.set_title(name)
        ax.legend(fontsize=8)
    return fig


def debiasing_study(
    tau_plus_true: float, tau_plus_grid: Sequence[float], loss: str = "infonce", **settings: Any
) -> dict[str, Any]:
    """``losses.debiasing_monte_carlo`` at every assumed tau+ of ``tau_plus_grid`` (the true rate fixed).

    Returns the grid, the target, and for each estimator ('biased', 'debiased', 'debiased_clamped') its bias
    (mean - target), standard deviation and root mean squared error along the grid. Chapter 05_debiasing.
    """
    from recloss_lite.core import losses

    rows = [losses.debiasing_monte_carlo(tau_plus_true, float(t), loss=loss, **settings) for t in tau_plus_grid]
    target = rows[0]["target"]
    study: dict[str, Any] = {
        "tau_plus": np.asarray(tau_plus_grid, dtype=np.float64),
        "target": target,
        "tau_plus_true": tau_plus_true,
        "loss": loss,
        "phi": rows[0]["phi"],
    }
    for key in ("biased", "debiased", "debiased_clamped"):
        bias = np.array([row[f"{key}_mean"] - target for row in rows])
        std = np.array([row[f"{key}_std"] for row in rows])
        study[key] = {"bias": bias, "std": std, "rmse": np.sqrt(bias**2 + std**2)}
    return study


def debiasing_bias_variance(study: dict[str, Any]) -> Figure:
    """Bias and standard deviation of the estimators of :func:`debiasing_study` against the assumed tau+.

    Chapter 05_debiasing.
    """
    fig, axes = figure_grid(2, 2, width=4.4, height=3.4)
    labels = {
        "biased": "biased mean",
        "debiased": "debiased (no clamp)",
        "debiased_clamped": "debiased + clamp",
    }
    for key, label in labels.items():
        axes[0].plot(study["tau_plus"], study[key]["bias"] / study["target"], marker="o", label=label)
        axes[1].plot(study["tau_plus"], study[key]["std"] / study["target"], marker="o", label=label)
    for ax in axes:
        ax.axvline(study["tau_plus_true"], color="grey", lw=0.8)
        ax.set_xlabel(r"assumed $\tau^+$")
        ax.grid(alpha=0.3)
    axes[0].axhline(0.0, color="black", lw=0.8)
    axes[0].set_ylabel("relative bias")
    axes[1].set_ylabel("relative standard deviation")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{study['loss']}: estimating $E[\\phi(s^-)]$, $\\phi = {study['phi']}$, "
        f"true $\\tau^+ = {study['tau_plus_true']:.3g}$"
    )
    return fig


def estimator_histogram(result: dict[str, Any]) -> Figure:
    """Distributions of the biased, debiased and clamped estimates of one ``losses.debiasing_monte_carlo``
    run, with the target E[phi(s-)] and the clamp's floor.

    Chapter 05_debiasing.
    """
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.subplots()
    keys = ("biased", "debiased", "debiased_clamped")
    values = np.concatenate([result[key] for key in keys])
    bins = np.linspace(np.quantile(values, 0.005), np.quantile(values, 0.995), 60)
    for key in keys:
        ax.hist(
            np.clip(result[key], bins[0], bins[-1]),
            bins=bins,
            histtype="step",
            lw=1.5,
            label=f"{key}: mean {result[key + '_mean']:.3g}",
        )
    ax.axvline(result["target"], color="black", lw=1.5, label=f"target {result['target']:.3g}")
    ax.axvline(result["floor"], color="grey", ls=":", label="clamp floor")
    ax.set_xlabel(f"estimate of $E[\\phi(s^-)]$, $\\phi = {result['phi']}$")
    ax.set_ylabel("trials")
    ax.set_title(
        f"true $\\tau^+ = {result['tau_plus_true']:.2f}$, assumed $\\tau^+ = {result['tau_plus']:.2f}$, "
        f"N = {result['num_negatives']}"
    )
    ax.legend(fontsize=7)
    return fig


# --------------------------------------------------------------------------------------------------
# 06_linear_models
# --------------------------------------------------------------------------------------------------


def score_agreement(
    plain: np.ndarray, direct: np.ndarray, scale: float, num_points: int = 5000, seed: int = 0
) -> Figure:
    """Scatter of ``num_points`` random entries of two score matrices of equal shape: the plain iALS scores
    against the direct minimiser of the debiased MSE, which should lie on the line of slope ``1 / scale``
    (chapter 06_linear_models)."""
    if plain.shape != direct.shape:
        raise ValueError(f"score_agreement: shapes differ, {plain.shape} and {direct.shape}")
    sample = np.random.default_rng(seed).choice(plain.size, size=min(num_points, plain.size), replace=False)
    fig = Figure(figsize=(4.6, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.scatter(plain.ravel()[sample], direct.ravel()[sample], s=3, alpha=0.4, label="entries")
    limits = np.array([plain.ravel()[sample].min(), plain.ravel()[sample].max()])
    ax.plot(limits, limits / scale, color="C3", lw=1, label=f"slope 1/A = {1 / scale:.3f}")
    ax.set_xlabel("plain iALS score (mapped weights)")
    ax.set_ylabel("debiased-MSE score (direct solver)")
    ax.set_title(f"{len(sample)} random entries")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
