"""HDCCF (Yang et al., IJCAI 2022): losses against float64 evaluations of the paper's formulas, sampling,
Propositions 1-2, Theorem 1, and a short training run on ml-100k."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloss_lite.core import data, hdccf, losses, metrics
from recloss_lite.core.training import HDCCFTrainable, TrainConfig, epoch_generator

TAU = 0.5


def direct_negative_score(
    neg: np.ndarray, pos: np.ndarray, unobserved: np.ndarray, omega_plus: float, tau: float
) -> float:
    """Eqs. (15), (25) and (16) for one row, term by term: pi_0, pi_1, Q = |N^-|, clamp when omega^+ > 0."""
    q = len(neg)
    omega_minus = 1.0 - omega_plus
    pi_0 = q * unobserved / (omega_minus * unobserved.sum())
    pi_1 = q * omega_plus / (omega_minus * len(pos))
    value = sum(pi_0[j] * math.exp(neg[j] / tau) for j in range(q)) - sum(pi_1 * math.exp(c / tau) for c in pos)
    return max(value, q * math.exp(-1.0 / tau)) if omega_plus > 0 else value


def direct_user_item(pos, neg_u, neg_i, pos_u, pos_i, tau, omega_u, omega_i, mask_u, mask_i) -> np.ndarray:
    """Eq. (14) per row, from :func:`direct_negative_score`; positives are N^+ and the row's own pair."""
    rows = []
    for b in range(len(pos)):
        f_u = direct_negative_score(neg_u[b], np.append(pos_u[b], pos[b]), mask_u[b], omega_u, tau)
        f_i = direct_negative_score(neg_i[b], np.append(pos_i[b], pos[b]), mask_i[b], omega_i, tau)
        anchor = math.exp(pos[b] / tau)
        rows.append(-math.log(anchor / (f_u + f_i + anchor)))
    return np.array(rows)


def random_rows(seed: int, rows: int = 6, num_negatives: int = 9, num_positives: int = 3):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-1, 1, rows)
    neg_u, neg_i = rng.uniform(-1, 1, (rows, num_negatives)), rng.uniform(-1, 1, (rows, num_negatives))
    pos_u, pos_i = rng.uniform(-1, 1, (rows, num_positives)), rng.uniform(-1, 1, (rows, num_positives))
    mask_u, mask_i = rng.random((rows, num_negatives)) < 0.7, rng.random((rows, num_negatives)) < 0.7
    mask_u[:, 0] = mask_i[:, 0] = True
    return pos, neg_u, neg_i, pos_u, pos_i, mask_u, mask_i


def as_tensors(*arrays):
    return [torch.from_numpy(np.asarray(array)) for array in arrays]


@pytest.mark.parametrize("omega", [(0.0, 0.0), (0.1, 0.05), (0.6, 0.9)])
def test_user_item_loss_matches_equation_14(omega):
    pos, neg_u, neg_i, pos_u, pos_i, mask_u, mask_i = random_rows(1)
    expected = direct_user_item(pos, neg_u, neg_i, pos_u, pos_i, TAU, *omega, mask_u, mask_i)
    pos_t, neg_u_t, neg_i_t, pos_u_t, pos_i_t, mask_u_t, mask_i_t = as_tensors(
        pos, neg_u, neg_i, pos_u, pos_i, mask_u, mask_i
    )
    got = hdccf.user_item_loss(
        pos_t, neg_u_t, neg_i_t, pos_u_t, pos_i_t, TAU, *omega, mask_u_t, mask_i_t, reduction="none"
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    if omega[0] > 0.5:  # the large omega^+ makes the clamp (16) bind on some rows: both branches are covered
        floors = [
            direct_negative_score(neg_u[b], np.append(pos_u[b], pos[b]), mask_u[b], omega[0], TAU)
            for b in range(len(pos))
        ]
        assert any(math.isclose(f, neg_u.shape[1] * math.exp(-1 / TAU)) for f in floors)


def test_biased_loss_is_equation_1_and_infonce():
    pos, neg_u, neg_i, pos_u, pos_i, _, _ = random_rows(2)
    tensors = as_tensors(pos, neg_u, neg_i, pos_u, pos_i)
    got = hdccf.user_item_loss(*tensors, TAU, reduction="none").numpy()
    expected = [
        -math.log(
            math.exp(pos[b] / TAU)
            / (np.exp(neg_u[b] / TAU).sum() + np.exp(neg_i[b] / TAU).sum() + math.exp(pos[b] / TAU))
        )
        for b in range(len(pos))
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    infonce = losses.make("infonce", tau=TAU)(tensors[0], torch.cat(tensors[1:3], dim=1), reduction="none")
    np.testing.assert_allclose(got, infonce.numpy(), rtol=1e-12)


def test_debiased_with_zero_omega_and_no_observed_negatives_equals_biased():
    pos, neg_u, neg_i, pos_u, pos_i, mask_u, _ = random_rows(3)
    tensors = as_tensors(pos, neg_u, neg_i, pos_u, pos_i)
    everything = torch.ones(mask_u.shape, dtype=torch.bool)
    biased = hdccf.user_item_loss(*tensors, TAU, reduction="none")
    debiased = hdccf.user_item_loss(*tensors, TAU, 0.0, 0.0, everything, everything, reduction="none")
    torch.testing.assert_close(debiased, biased, rtol=1e-12, atol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_neighbour_loss_matches_equations_5_and_17(masked):
    rng = np.random.default_rng(4)
    pos, neg = rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, (5, 8))
    mask = rng.random((5, 8)) < 0.5 if masked else np.ones((5, 8), dtype=bool)
    mask[:, 0] = True
    expected = []
    for b in range(5):
        weights = len(neg[b]) * mask[b] / mask[b].sum()  # pi^{u-u}, eq. (27) with Q = |N^-|
        negative = sum(weights[j] * math.exp(neg[b, j] / TAU) for j in range(8))
        expected.append(sum(-math.log(math.exp(c / TAU) / (math.exp(c / TAU) + negative)) for c in pos[b]))
    got = hdccf.neighbour_loss(*as_tensors(pos, neg), TAU, torch.from_numpy(mask) if masked else None, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_rows_without_usable_negatives_are_finite_with_zero_gradient():
    neg = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[False] * 4, [True, False, True, False]])
    loss = hdccf.neighbour_loss(torch.zeros(2, 1, dtype=torch.float64), neg, TAU, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(neg.grad))
    assert torch.all(neg.grad[0] == 0) and torch.all(neg.grad[1, [1, 3]] == 0)


def test_gradcheck():
    pos, neg_u, neg_i, pos_u, pos_i, mask_u, mask_i = random_rows(5)
    scores = [tensor.requires_grad_(True) for tensor in as_tensors(pos, neg_u, neg_i, pos_u, pos_i)]
    masks = as_tensors(mask_u, mask_i)
    assert torch.autograd.gradcheck(
        lambda *s: hdccf.user_item_loss(*s, TAU, 0.1, 0.05, *masks, reduction="none"), scores
    )
    assert torch.autograd.gradcheck(
        lambda p, n: hdccf.neighbour_loss(p, n, TAU, masks[0], reduction="none"), [scores[3], scores[1]]
    )


def test_extreme_scores_are_finite():
    pos = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
    neg = torch.tensor([[-1e4, 1e4], [1e4, 1e4], [0.0, -1e4]], requires_grad=True)
    loss = hdccf.user_item_loss(pos, neg, neg, neg, neg, 0.01, 0.1, 0.1)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(pos.grad)) and torch.all(torch.isfinite(neg.grad))


def test_bad_input_raises():
    pos, neg = torch.zeros(3), torch.zeros(3, 4)
    with pytest.raises(ValueError, match="neg_item_scores has shape"):
        hdccf.user_item_loss(pos, neg, torch.zeros(2, 4), neg, neg, TAU)
    with pytest.raises(ValueError, match="omega_plus_user"):
        hdccf.user_item_loss(pos, neg, neg, neg, neg, TAU, omega_plus_user=1.0)
    with pytest.raises(ValueError, match="tau"):
        hdccf.neighbour_loss(neg, neg, 0.0)
    with pytest.raises(ValueError, match="num_positives"):
        hdccf.HDCCF(3, 4, num_positives=0)


def tiny_matrix() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = rng.random((12, 15)) < 0.3
    dense[np.arange(12), np.arange(12)] = True  # every user and item has an interaction
    dense[:, 12:] |= rng.random((12, 3)) < 0.5
    dense[0, 12:] = True
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.mark.parametrize(("size", "positives"), [(1, 2), (2, 1), (5, 3)])
def test_other_rows_drop_exactly_the_diagonal_blocks_in_order_with_their_gradient(size, positives):
    block = torch.randn(size, size, positives, dtype=torch.float64, requires_grad=True)
    expected = [[block[k, m, p].item() for m in range(size) if m != k for p in range(positives)] for k in range(size)]
    rows = hdccf.other_rows(block)
    assert rows.shape == (size, (size - 1) * positives)
    assert rows.tolist() == expected
    weights = torch.randn_like(rows)
    (grad,) = torch.autograd.grad((rows * weights).sum(), block)
    off_diagonal = ~torch.eye(size, dtype=torch.bool)
    assert torch.equal(grad[off_diagonal], weights.reshape(-1, positives))  # each entry once, in the same order
    assert not grad[~off_diagonal].any()
    mask = torch.rand(size, size, positives) < 0.5  # the masks go through it too
    assert torch.equal(hdccf.other_rows(mask), mask[off_diagonal].reshape(size, -1))


def test_batches_follow_equation_9_and_masks_match_brute_force():
    matrix = tiny_matrix()
    dense = matrix.toarray() > 0
    batches = list(hdccf.sample_batches(matrix, 5, 3, torch.Generator().manual_seed(0)))
    assert sum(len(b.users) for b in batches) >= matrix.nnz - 1
    for batch in batches:
        size = len(batch.users)
        assert np.all(dense[batch.users, batch.items])
        assert np.all(dense[batch.user_neighbours, batch.items[:, None]])  # N_i^+ within U_i
        assert np.all(dense[batch.users[:, None], batch.item_neighbours])  # N_u^+ within I_u
        for k in range(size):
            others = [m for m in range(size) if m != k]
            assert batch.negative_items[k].tolist() == batch.item_neighbours[others].reshape(-1).tolist()
            assert batch.negative_users[k].tolist() == batch.user_neighbours[others].reshape(-1).tolist()
            users, items = batch.negative_users[k].numpy(), batch.negative_items[k].numpy()
            u, i = int(batch.users[k]), int(batch.items[k])
            assert batch.user_unobserved[k].tolist() == (~dense[users, i]).tolist()
            assert batch.item_unobserved[k].tolist() == (~dense[u, items]).tolist()
            assert batch.user_not_neighbour[k].tolist() == [not np.any(dense[u] & dense[v]) for v in users]
            assert batch.item_not_neighbour[k].tolist() == [not np.any(dense[:, i] & dense[:, j]) for j in items]


@pytest.fixture(scope="module")
def movielens():
    ds = data.load("ml-100k")
    return ds, *data.leave_one_out(ds.train + ds.test, ds.timestamps)


@pytest.mark.slow
def test_propositions_1_and_2_slope(movielens):
    _, train, _, _ = movielens
    counts = hdccf.negative_counts(train, 64, 2, 400, torch.Generator().manual_seed(0))
    assert counts["slope"] == pytest.approx(2 * 63 / (train.nnz - 1))
    for side in ("item", "user"):
        degree, count = counts[f"{side}_degree"], counts[f"{side}_counts"]
        fitted = float(degree @ count / (degree @ degree))  # least squares through the origin
        assert fitted == pytest.approx(counts["slope"], rel=0.03), side
        popular = degree >= np.quantile(degree, 0.9)  # enough counts per id for a per-id ratio
        assert np.mean(count[popular] / (counts["slope"] * degree[popular])) == pytest.approx(1.0, rel=0.05)


def test_theorem_1_monte_carlo():
    rng = np.random.default_rng(0)
    result = hdccf.theorem1_monte_carlo(
        true_negative_scores=rng.uniform(-1, 0.2, 300),
        false_negative_scores=rng.uniform(0.2, 1, 30),
        observed_scores=rng.uniform(0.4, 1, 20),
        num_negatives=64,
        num_positives=4,
        tau=0.5,
        trials=20000,
        seed=1,
    )
    assert result["clamped"] < 1e-3  # the theorem is about the unclamped estimator: keep the clamp (16) idle
    assert abs(result["f_debiased_mean"] - result["f_ideal"]) < 4 * result["f_debiased_stderr"]
    assert result["f_biased_mean"] - result["f_ideal"] > 20 * result["f_biased_stderr"]
    assert abs(result["loss_debiased_mean"] - result["loss_ideal"]) < 0.1 * abs(
        result["loss_biased_mean"] - result["loss_ideal"]
    )


@pytest.mark.parametrize("modulation", [False, True])
def test_scores_contract(modulation):
    model = hdccf.HDCCF(5, 7, dim=4, modulation=modulation, seed=1)
    users = torch.tensor([0, 3, 4])
    scores = model.scores(users)
    assert scores.shape == (3, 7) and scores.dtype == torch.float32 and not scores.requires_grad
    torch.testing.assert_close(scores, model.all_pair_scores(users, torch.arange(7)).detach())
    torch.testing.assert_close(
        model.diagonal_scores(users, torch.tensor([1, 2, 6])).detach(), scores[[0, 1, 2], [1, 2, 6]]
    )


@pytest.mark.slow
def test_trains_on_movielens_and_beats_random(movielens):
    torch.set_num_threads(1)
    ds, train, valid, test = movielens
    # random ranking: HR@10 = 0.1 (standard error about 0.01 over 943 users)
    for modulation, max_batches, at_least in ((False, 150, 0.2), (True, 80, 0.15)):
        config = TrainConfig(
            model="hdccf", dim=16, lr=2e-2, batch_size=128, model_params={"num_positives": 2, "modulation": modulation}
        )
        trainable = HDCCFTrainable(config, train, ds.n_users, ds.n_items, max_batches=max_batches)
        loss = trainable.train_epoch(epoch_generator(0, 1), None)
        assert loss > 0 and math.isfinite(loss)
        model = trainable.model
        result = metrics.leave_one_out_metrics(model.scores, train + valid, test, ks=(10,), num_candidates=100)
        assert result["hr@10"] > at_least, (modulation, result)


@pytest.mark.parametrize("kind", ["entries", "shared"])
def test_relation_queries_match_the_dense_table(kind, monkeypatch):
    rng = np.random.default_rng(3)
    matrix = data.canonical_csr(
        sp.random(40, 60, density=0.08, random_state=4, format="csr"), "train", dtype=np.float32
    )
    rows = rng.integers(0, 40, 25)
    cols = rng.integers(0, 60 if kind == "entries" else 40, 30)  # with repeats, as in a batch
    dense = hdccf._Relation(matrix, kind)
    assert dense.table is not None
    monkeypatch.setattr(hdccf._Relation, "DENSE_LIMIT", 0)  # Gowalla's path: one sparse product per query
    sparse = hdccf._Relation(matrix, kind)
    assert sparse.table is None
    expected = (
        (matrix.toarray() > 0)[np.ix_(rows, cols)]
        if kind == "entries"
        else ((matrix @ matrix.T).toarray() > 0)[np.ix_(rows, cols)]
    )
    np.testing.assert_array_equal(dense.grid(rows, cols), expected)
    np.testing.assert_array_equal(sparse.grid(rows, cols), expected)
