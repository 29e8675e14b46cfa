"""Tests of recloss_lite.core.linear: EASE's closed form, iALS's solvers and the debiased-MSE re-parameterisation.

References are brute force in float64 numpy: EASE from its per-item constrained ridge regressions, iALS rows
from their dense weighted normal equations, the debiased objective from the loss formula entry by entry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloss_lite.core import linear


def random_binary(n_users: int, n_items: int, density: float, seed: int) -> np.ndarray:
    """Dense float64 0/1 matrix with every user and every item observed at least once."""
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n_users, n_items)) < density).astype(np.float64)
    matrix[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0
    matrix[rng.integers(0, n_users, n_items), np.arange(n_items)] = 1.0
    return matrix


def ease_by_regressions(matrix: np.ndarray, l2: float) -> np.ndarray:
    """EASE's definition: column j = ridge regression of item j on the other items (B_jj = 0)."""
    n_items = matrix.shape[1]
    weights = np.zeros((n_items, n_items))
    for item in range(n_items):
        others = np.arange(n_items) != item
        inputs = matrix[:, others]
        system = inputs.T @ inputs + l2 * np.eye(n_items - 1)
        weights[others, item] = np.linalg.solve(system, inputs.T @ matrix[:, item])
    return weights


# ------------------------------------------------------------------------------------------------ EASE


def test_ease_closed_form_equals_constrained_regressions() -> None:
    matrix = random_binary(80, 30, 0.15, seed=0)
    reference = ease_by_regressions(matrix, l2=5.0)
    closed_form = linear.ease_weights(matrix.T @ matrix, 5.0)
    np.testing.assert_allclose(closed_form, reference, atol=1e-12)
    model = linear.EASE(l2=5.0).fit(sp.csr_matrix(matrix.astype(np.float32)))
    assert model.weights.dtype == torch.float32 and tuple(model.weights.shape) == (30, 30)
    assert np.all(np.diagonal(model.weights.numpy()) == 0)
    np.testing.assert_allclose(model.weights.numpy(), reference, atol=2e-6)


@pytest.mark.parametrize(("n_users", "n_items"), [(30, 80), (80, 30)])
def test_ease_from_either_side_equals_constrained_regressions(n_users: int, n_items: int) -> None:
    # Fewer users than items: the (n_users, n_users) inverse of Woodbury's identity; else the items' own.
    matrix = random_binary(n_users, n_items, 0.15, seed=8)
    reference = ease_by_regressions(matrix, l2=3.0)
    train = sp.csr_matrix(matrix.astype(np.float32))
    from_users = linear.ease_weights_from_users(train, 3.0)
    from_items = linear.ease_weights(linear.gram_matrix(train), 3.0)
    scale = np.abs(reference).max()
    for weights in (from_users, from_items):
        assert weights.dtype == np.float32 and np.all(np.diagonal(weights) == 0)
        np.testing.assert_allclose(weights / scale, reference / scale, atol=2e-6)
    model = linear.EASE(l2=3.0, device="cpu").fit(train)
    np.testing.assert_array_equal(model.weights.numpy(), from_users if n_users < n_items else from_items)
    # the torch path that a GPU runs, here on the CPU
    on_torch = linear._ease_weights_torch(train, 3.0, torch.device("cpu")).numpy()
    np.testing.assert_allclose(on_torch / scale, reference / scale, atol=2e-6)


def test_spd_inverse_is_in_place_and_symmetric() -> None:
    rng = np.random.default_rng(9)
    factor = rng.standard_normal((50, 50))
    matrix = factor @ factor.T + 50 * np.eye(50)
    expected = np.linalg.inv(matrix)
    result = linear.spd_inverse_(matrix, "m")
    assert result is matrix
    np.testing.assert_allclose(matrix, expected, rtol=1e-10, atol=1e-14)
    assert np.array_equal(matrix, matrix.T)
    with pytest.raises(ValueError, match="m is not positive definite"):
        linear.spd_inverse_(-np.eye(3), "m")


def test_ease_sparse_scores_equal_dense_product() -> None:
    matrix = random_binary(50, 20, 0.2, seed=1)
    model = linear.EASE(l2=2.0).fit(sp.csr_matrix(matrix))
    users = torch.tensor([3, 0, 49, 3])
    expected = matrix[users.numpy()].astype(np.float32) @ model.weights.numpy()
    np.testing.assert_allclose(model.scores(users).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_ease_memory_guard_refuses_before_allocating() -> None:
    huge = sp.csr_matrix((np.ones(1, np.float32), ([0], [0])), shape=(2, 10**7))  # B would need 364 TiB
    with pytest.raises(MemoryError, match=r"needs \d+\.\d GiB .* only \d+\.\d GiB is available"):
        linear.EASE(l2=1.0).fit(huge)
    assert linear.ease_memory_bytes(1000) == 1000 * 1000 * 4 + 2 * 2048 * 1000 * 4
    assert (
        linear.ease_memory_bytes(1000, n_users=500) == (1000 * 1000 + 2 * 2048 * 1000 + 500 * 500 + 2 * 2048 * 500) * 4
    )
    assert linear.ease_memory_bytes(1000, n_users=950) == linear.ease_memory_bytes(1000)  # the items' side
    linear.check_ease_memory(1000, available=10**8)
    with pytest.raises(MemoryError):
        linear.check_ease_memory(1000, available=10**6)
    assert 0 < linear.memory_available_bytes()


def test_ease_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="l2=0"):
        linear.EASE(l2=0)
    with pytest.raises(ValueError, match="scipy sparse"):
        linear.EASE().fit(np.ones((3, 3)))
    with pytest.raises(ValueError, match="before scores"):
        linear.EASE().scores(torch.tensor([0]))


# ------------------------------------------------------------------------------------------------ iALS


def dense_ials_rows(
    matrix: np.ndarray, confidence: np.ndarray, fixed: np.ndarray, unobserved_weight: float, l2: float
) -> np.ndarray:
    """Row u of argmin sum_j W_uj (x_uj - f_j.x)^2 + l2 |x|^2, W = confidence on observed, w0 elsewhere."""
    weight = np.where(matrix > 0, confidence, unobserved_weight)
    systems = np.einsum("jk,uj,jl->ukl", fixed, weight, fixed) + l2 * np.eye(fixed.shape[1])
    return np.linalg.solve(systems, ((weight * matrix) @ fixed)[:, :, None])[:, :, 0]


def test_ials_half_step_equals_dense_weighted_least_squares() -> None:
    matrix = random_binary(40, 25, 0.2, seed=2)
    matrix[7] = 0.0  # a row without observed entries
    rng = np.random.default_rng(3)
    confidence = np.where(matrix > 0, rng.uniform(0.5, 4.0, matrix.shape), 0.0)
    fixed = rng.standard_normal((25, 6))
    reference = dense_ials_rows(matrix, confidence, fixed, unobserved_weight=0.3, l2=0.7)
    exact = linear.ials_solve(sp.csr_matrix(confidence), torch.from_numpy(fixed), 0.3, 0.7, solver="cholesky")
    np.testing.assert_allclose(exact.numpy(), reference, rtol=1e-10, atol=1e-12)
    # CG on k unknowns is exact after k steps in exact arithmetic; 3k steps in float64 reach round-off.
    cg = linear.ials_solve(sp.csr_matrix(confidence), torch.from_numpy(fixed), 0.3, 0.7, solver="cg", cg_steps=18)
    np.testing.assert_allclose(cg.numpy(), reference, rtol=1e-8, atol=1e-10)
    warm = linear.ials_solve(
        sp.csr_matrix(confidence), torch.from_numpy(fixed), 0.3, 0.7, solver="cg", initial=exact, cg_steps=1
    )
    np.testing.assert_allclose(warm.numpy(), reference, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solver", linear.SOLVERS)
def test_ials_loss_decreases_every_sweep(solver: str) -> None:
    train = sp.csr_matrix(random_binary(60, 40, 0.15, seed=4))
    model = linear.IALS(factors=8, alpha=2.0, l2=0.5, unobserved_weight=0.3, iterations=0, solver=solver)
    model.fit(train)
    losses = [model.loss()]
    for _ in range(8):
        losses.append(model.fit_iteration().loss())
    assert np.all(np.diff(losses) <= 1e-6 * np.abs(losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0]


def test_ials_loss_equals_brute_force_objective() -> None:
    matrix = random_binary(30, 20, 0.2, seed=5)
    model = linear.IALS(factors=4, alpha=1.5, l2=0.4, unobserved_weight=0.6, iterations=2)
    model.fit(sp.csr_matrix(matrix))
    users, items = model.user_factors.double().numpy(), model.item_factors.double().numpy()
    scores = users @ items.T
    weight = np.where(matrix > 0, 2.5, 0.6)
    expected = (weight * (matrix - scores) ** 2).sum() + 0.4 * ((users**2).sum() + (items**2).sum())
    assert model.loss() == pytest.approx(expected, rel=1e-9)


def test_ials_weights_callback_and_scores() -> None:
    matrix = random_binary(30, 20, 0.2, seed=6)
    train = sp.csr_matrix(matrix)
    seen = []
    by_alpha = linear.IALS(factors=4, alpha=2.0, iterations=3, solver="cholesky").fit(
        train, callback=lambda iteration, model: seen.append((iteration, model.loss()))
    )
    by_weights = linear.IALS(factors=4, alpha=0.0, iterations=3, solver="cholesky")
    by_weights.fit(train, weights=3.0 * train)
    np.testing.assert_allclose(by_alpha.user_factors.numpy(), by_weights.user_factors.numpy(), rtol=1e-4, atol=1e-6)
    assert [iteration for iteration, _ in seen] == [1, 2, 3]
    users = torch.tensor([0, 5, 5])
    expected = by_alpha.user_factors[users] @ by_alpha.item_factors.T
    assert torch.equal(by_alpha.scores(users), expected) and by_alpha.scores(users).shape == (3, 20)


@pytest.mark.parametrize("solver", linear.SOLVERS)
def test_ials_on_a_named_device_gives_the_same_model(solver: str) -> None:
    train = sp.csr_matrix(random_binary(30, 20, 0.2, seed=10))
    default = linear.IALS(factors=4, iterations=2, solver=solver).fit(train)
    on_cpu = linear.IALS(factors=4, iterations=2, solver=solver, device="cpu").fit(train)
    assert on_cpu.device == torch.device("cpu") and on_cpu._users.crow.device == torch.device("cpu")
    assert torch.equal(default.user_factors, on_cpu.user_factors)
    assert torch.equal(on_cpu.scores(torch.tensor([1, 2])), default.scores(torch.tensor([1, 2])))
    assert on_cpu.loss() == default.loss()


def test_ials_rejects_bad_input() -> None:
    train = sp.csr_matrix(random_binary(10, 8, 0.3, seed=7))
    with pytest.raises(ValueError, match="solver='lu'"):
        linear.IALS(solver="lu")
    with pytest.raises(ValueError, match="alpha=-1"):
        linear.IALS(alpha=-1)
    with pytest.raises(ValueError, match="pattern of train"):
        linear.IALS().fit(train, weights=sp.csr_matrix(np.ones((10, 8))))
    with pytest.raises(ValueError, match=r"fixed has shape \(5, 3\); expected \(8, k\)"):
        linear.ials_solve(train, torch.zeros(5, 3), 1.0, 1.0)
    with pytest.raises(ValueError, match="before fit_iteration"):
        linear.IALS().fit_iteration()


# ------------------------------------------------------------------------------------- debiased MSE


@pytest.mark.parametrize("tau_plus", [0.0, 0.02, 0.1])
@pytest.mark.parametrize("neg_weight", [1.0, 4.0])
def test_debiased_ials_equals_plain_ials_with_mapped_weights(neg_weight: float, tau_plus: float) -> None:
    """Li & Jin's 'iALS is inherently debiased' to float64 round-off, one exact half-step per side."""
    matrix = random_binary(40, 30, 0.2, seed=8)
    density = matrix.sum() / matrix.size
    mapped = linear.debiased_weights(neg_weight, tau_plus, density, l2=0.7)
    scale = math.sqrt(mapped["observed_coefficient"])
    rng = np.random.default_rng(9)
    for side in (matrix, matrix.T):  # users with items fixed, then items with users fixed
        fixed = rng.standard_normal((side.shape[1], 5))
        debiased = linear.solve_debiased_rows(side, fixed, neg_weight, tau_plus, l2=0.7)
        plain = linear.ials_solve(
            sp.csr_matrix(side),
            torch.from_numpy(scale * fixed),
            mapped["unobserved_weight"],
            mapped["l2"],
            solver="cholesky",
        ).numpy()
        np.testing.assert_allclose(plain, scale * debiased, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(
            debiased @ fixed.T, mapped["score_scale"] * (plain @ (scale * fixed).T), rtol=1e-10, atol=1e-13
        )


def test_debiased_mse_with_row_negatives_is_biased_mse_with_mapped_weight() -> None:
    """The spec's per-row E_j: debiased (w, tau+) = biased (w'') on the same data, scores times 1 / (1 - c)."""
    matrix = random_binary(40, 30, 0.2, seed=11)
    neg_weight, tau_plus, l2 = 3.0, 0.05, 0.5
    mapped = linear.debiased_weights(neg_weight, tau_plus, 0.2, l2)
    scale = 1 / (1 - mapped["correction"])
    fixed = np.random.default_rng(12).standard_normal((30, 4))
    debiased = linear.solve_debiased_rows(matrix, fixed, neg_weight, tau_plus, l2, negatives="rows")
    biased = linear.solve_debiased_rows(matrix, fixed, mapped["neg_weight_plain"], 0.0, l2 * scale, negatives="rows")
    np.testing.assert_allclose(debiased, scale * biased, rtol=1e-10, atol=1e-13)


def test_debiased_ease_equals_ease_at_matching_tau_plus() -> None:
    matrix = random_binary(60, 25, 0.2, seed=10)
    neg_weight, l2 = 3.0, 0.8
    tau_plus = 1 / (1 + neg_weight)
    mapped = linear.debiased_weights(neg_weight, tau_plus, matrix.sum() / matrix.size, l2, model="ease")
    assert mapped["unobserved_weight"] == pytest.approx(1.0)
    debiased = linear.solve_debiased_linear(matrix, neg_weight, tau_plus, l2)
    plain = linear.ease_weights(matrix.T @ matrix, mapped["l2"])
    np.testing.assert_allclose(debiased, mapped["score_scale"] * plain, rtol=1e-10, atol=1e-13)
    # at another tau_plus the observed entries weigh differently from the unobserved ones: no EASE matches
    with pytest.raises(ValueError, match="EASE matches the debiased MSE only at tau_plus"):
        linear.debiased_weights(neg_weight, 0.1, 0.2, l2, model="ease")


def test_debiased_weights_identities() -> None:
    neg_weight, tau_plus, density = 4.0, 0.05, 0.01
    mapped = linear.debiased_weights(neg_weight, tau_plus, density, l2=1.0)
    assert mapped["neg_weight_plain"] == pytest.approx(neg_weight / (1 - tau_plus * (1 + neg_weight)))
    # the biased mse with that weight is the same plain problem
    biased = linear.debiased_weights(mapped["neg_weight_plain"], 0.0, density, l2=1.0)
    assert biased["unobserved_weight"] == pytest.approx(mapped["unobserved_weight"], rel=1e-12)
    assert linear.debiased_weights(neg_weight, 0.0, density, 1.0)["unobserved_weight"] == pytest.approx(
        neg_weight * density / (1 + neg_weight * density)
    )
    with pytest.raises(ValueError, match="unbounded below"):
        linear.debiased_weights(10.0, 0.5, 0.01, 1.0)
    with pytest.raises(ValueError, match=r"tau_plus=1.0: must lie in \[0, 1\)"):
        linear.debiased_weights(1.0, 1.0, 0.01, 1.0)


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.slow
def test_linear_models_beat_popularity_on_ml100k() -> None:
    from recloss_lite.core import data, metrics

    ds = data.load("ml-100k")
    popularity = torch.from_numpy(np.asarray(ds.train.sum(axis=0), dtype=np.float32).ravel())

    def by_popularity(users: torch.Tensor) -> torch.Tensor:
        return popularity.expand(len(users), -1).clone()

    baseline = metrics.evaluate(by_popularity, ds.train, ds.test)["recall@20"]
    ease = metrics.evaluate(linear.EASE(l2=100.0).fit(ds.train).scores, ds.train, ds.test)["recall@20"]
    ials = linear.IALS(factors=32, alpha=0.0, l2=3.0, unobserved_weight=0.1, iterations=8).fit(ds.train)
    ials_recall = metrics.evaluate(ials.scores, ds.train, ds.test)["recall@20"]
    # measured: popularity 0.173, EASE 0.355, iALS 0.360
    assert ease > 1.5 * baseline and ials_recall > 1.5 * baseline, (baseline, ease, ials_recall)
    bench = linear.bench_ials(ds, factors=16, iterations=1)
    assert bench["seconds_per_iteration"] > 0 and bench["interactions"] == ds.train.nnz


# ------------------------------------------------------------------------------------- non-finite input


def with_bad_values(matrix: sp.csr_matrix, *values: float) -> sp.csr_matrix:
    """A copy of ``matrix`` whose first stored entries are replaced by ``values``."""
    matrix = matrix.copy()
    matrix.data[: len(values)] = values
    return matrix


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_input_matrices_are_named_with_their_count(bad: float) -> None:
    train = sp.csr_matrix(random_binary(10, 8, 0.3, seed=7))
    n = train.nnz
    with pytest.raises(ValueError) as error:
        linear.IALS(iterations=1).fit(with_bad_values(train, bad, 1.0, bad))
    assert str(error.value) == f"train (10, 8) holds 2 non-finite values (NaN or inf) among its {n} values"
    with pytest.raises(ValueError, match=rf"^weights \(10, 8\) holds 1 non-finite values \(NaN or inf\) among its {n}"):
        linear.IALS(iterations=1).fit(train, weights=with_bad_values(train, bad))
    with pytest.raises(ValueError, match=r"^confidence \(10, 8\) holds 3 non-finite values"):
        linear.ials_solve(with_bad_values(train, bad, bad, bad), torch.zeros(8, 2), 1.0, 1.0)
    # EASE used to answer "not positive definite ... raise l2"
    with pytest.raises(ValueError, match=rf"^train \(10, 8\) holds 1 non-finite values \(NaN or inf\) among its {n}"):
        linear.EASE(l2=1.0).fit(with_bad_values(train, bad))
    gram = linear.gram_matrix(train, dtype=np.float64)
    gram[2, 5] = gram[5, 2] = bad
    with pytest.raises(ValueError, match=r"^gram holds 2 non-finite values \(NaN or inf\) among its 64 values"):
        linear.ease_weights(gram, 1.0)


def test_diverged_ials_sweep_raises_floating_point_error() -> None:
    train = sp.csr_matrix(random_binary(10, 8, 0.3, seed=7))
    # Finite but absurd confidences overflow float32 in the CG solves: NaN factors, no longer silent.
    with pytest.raises(
        FloatingPointError,
        match=r"^iALS sweep 1: \d+ user and \d+ item factor values are NaN or "
        r"inf; .*use a larger l2 \(now 3\.0\)",
    ):
        linear.IALS(factors=3, iterations=2, solver="cg").fit(train, weights=train * 3e38)
    model = linear.IALS(factors=3, solver="cg").start(train).fit_iteration().fit_iteration()
    assert torch.isfinite(model.user_factors).all()
    model.item_factors[0, 0] = math.inf  # sweeps are counted from start(): this is the third
    with pytest.raises(FloatingPointError, match=r"^iALS sweep 3: 30 user and 24 item factor values"):
        model.fit_iteration()
    assert model.start(train).fit_iteration()._sweeps == 1
