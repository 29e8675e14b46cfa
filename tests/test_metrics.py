"""Tests of recloss_lite.core.metrics: hand-computed cases, a brute-force reference, batching and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recloss_lite.core import metrics


def csr(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(row) for row in rows])
    indices = np.array([item for row in rows for item in row], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(rows), n_items))


# Three users, five items. User 2 has no test item and is left out of the averages.
HAND_SCORES = torch.tensor(
    [
        [0.9, 0.1, 0.8, 0.3, 0.5],  # ranking 0, 2, 4, 3, 1
        [0.2, 0.7, 0.6, 0.1, 0.4],  # item 1 excluded -> ranking 2, 4, 0, 3, (1 at -inf)
        [0.5, 0.4, 0.3, 0.2, 0.1],
    ]
)
HAND_TEST = [[2, 3], [4], []]
HAND_EXCLUDE = [[], [1], []]
LOG2_3 = math.log2(3)


def test_hand_computed_values() -> None:
    result = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(1, 3, 10), exclude=HAND_EXCLUDE)
    # K=1: user 0's first item is 0, user 1's is 2: no hit anywhere.
    for metric in metrics.METRICS:
        assert result[f"{metric}@1"] == 0.0
    # K=3: user 0 hits item 2 at rank 1 of {2, 3}; user 1 hits item 4 at rank 1 of {4}.
    # recall = (1/2 + 1/1) / 2 = 0.75; precision = (1/3 + 1/3) / 2; hr = 1.
    # ndcg: user 0 = (1/log2 3) / (1 + 1/log2 3) = 0.386853, user 1 = (1/log2 3) / 1 = 0.630930.
    assert result["recall@3"] == pytest.approx(0.75)
    assert result["precision@3"] == pytest.approx(1 / 3)
    assert result["hr@3"] == 1.0
    ndcg_user0 = (1 / LOG2_3) / (1 + 1 / LOG2_3)
    assert ndcg_user0 == pytest.approx(0.386853, abs=1e-6)
    assert result["ndcg@3"] == pytest.approx((0.386853 + 0.630930) / 2, abs=1e-6)
    # K=10 > 5 items: user 0 hits at ranks 1, 3: DCG = 1/log2 3 + 1/log2 5 = 0.630930 + 0.430677 = 1.061606,
    # IDCG = 1 + 1/log2 3 = 1.630930, ndcg = 1.061606 / 1.630930 = 0.650921;
    # user 1 still hits only at rank 1 (the excluded item 1 ranks last and is no hit). precision = hits / 10.
    assert result["recall@10"] == pytest.approx(1.0)
    assert result["precision@10"] == pytest.approx((2 / 10 + 1 / 10) / 2)
    ndcg10_user0 = (1 / LOG2_3 + 1 / math.log2(5)) / (1 + 1 / LOG2_3)
    assert ndcg10_user0 == pytest.approx(0.650921, abs=1e-6)
    assert result["ndcg@10"] == pytest.approx((0.650921 + 0.630930) / 2, abs=1e-6)


def test_exclusion_changes_the_ranking() -> None:
    # Without excluding item 1, user 1's ranking is 1, 2, 4: the hit moves to rank 2, ndcg = 1/log2 4 = 0.5.
    per_row = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(3,), reduce=False)
    assert per_row["ndcg@3"][1] == pytest.approx(0.5)
    masked = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE, reduce=False)
    assert masked["ndcg@3"][1] == pytest.approx(1 / LOG2_3)


def test_excluded_test_item_is_never_a_hit() -> None:
    scores = torch.tensor([[3.0, 2.0, 1.0]])
    result = metrics.topk_metrics(scores, [[0]], ks=(3,), exclude=[[0]])
    assert result["hr@3"] == 0.0


def test_reduce_false_gives_rows_with_nan_for_empty_tests() -> None:
    per_row = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE, reduce=False)
    reduced = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE)
    assert set(per_row) == set(reduced) == {"recall@3", "ndcg@3", "hr@3", "precision@3"}
    for key, values in per_row.items():
        assert values.shape == (3,) and np.isnan(values[2])
        assert np.nanmean(values) == pytest.approx(reduced[key])


def test_scores_are_not_modified() -> None:
    scores = HAND_SCORES.clone()
    metrics.topk_metrics(scores, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE)
    assert torch.equal(scores, HAND_SCORES)


def test_integer_scores_rank_like_float_scores() -> None:
    integer_scores = (HAND_SCORES * 10).round().long()
    as_float = metrics.topk_metrics(integer_scores.float(), HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE)
    assert metrics.topk_metrics(integer_scores, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE) == as_float


def test_lists_equal_csr() -> None:
    from_lists = metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=(1, 3), exclude=HAND_EXCLUDE)
    from_csr = metrics.topk_metrics(HAND_SCORES, csr(HAND_TEST, 5), ks=(1, 3), exclude=csr(HAND_EXCLUDE, 5))
    assert from_lists == from_csr


def reference(scores: np.ndarray, test: list[list[int]], exclude: list[list[int]], k: int) -> dict[str, float]:
    """Brute force: sort each row, drop excluded items, read the metrics off the ranked list."""
    sums = dict.fromkeys(metrics.METRICS, 0.0)
    evaluated = 0
    for row, (test_items, excluded) in enumerate(zip(test, exclude, strict=True)):
        if not test_items:
            continue
        evaluated += 1
        ranked = [item for item in np.argsort(-scores[row]) if item not in excluded][:k]
        hit_ranks = [rank for rank, item in enumerate(ranked) if item in test_items]
        sums["recall"] += len(hit_ranks) / len(test_items)
        sums["precision"] += len(hit_ranks) / k
        sums["hr"] += float(bool(hit_ranks))
        ideal = sum(1 / math.log2(rank + 2) for rank in range(min(len(test_items), k)))
        sums["ndcg"] += sum(1 / math.log2(rank + 2) for rank in hit_ranks) / ideal
    return {f"{metric}@{k}": total / evaluated for metric, total in sums.items()}


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = 9, 40
    # A random permutation per row: distinct scores, so no ties.
    scores = np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float32)
    test, exclude = [], []
    for _ in range(n_users):
        items = rng.permutation(n_items)
        n_test, n_exclude = rng.integers(0, 8), rng.integers(0, 15)
        test.append(sorted(items[:n_test].tolist()))
        exclude.append(sorted(items[n_test : n_test + n_exclude].tolist()))
    ks = (1, 5, 20, 60)
    result = metrics.topk_metrics(torch.from_numpy(scores), test, ks=ks, exclude=exclude)
    for k in ks:
        expected = reference(scores, test, exclude, k)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-12), key


def random_split(seed: int, n_users: int = 50, n_items: int = 80) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(seed)
    interactions = (rng.random((n_users, n_items)) < 0.1).astype(np.float32)
    held_out = rng.random((n_users, n_items)) < 0.3
    return sp.csr_matrix(interactions * ~held_out), sp.csr_matrix(interactions * held_out)


def test_evaluate_batches_agree_with_one_matrix() -> None:
    train, test = random_split(0)
    generator = torch.Generator().manual_seed(0)
    user_factors, item_factors = (
        torch.randn(50, 8, generator=generator),
        torch.randn(80, 8, generator=generator),
    )

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return user_factors[users] @ item_factors.T

    users = np.flatnonzero(test.getnnz(axis=1))
    whole = metrics.topk_metrics(score_fn(torch.from_numpy(users)), test[users], ks=(5, 20), exclude=train[users])
    for batch_size in (1, 7, 1000):
        batched = metrics.evaluate(score_fn, train, test, ks=(5, 20), batch_size=batch_size)
        assert batched.keys() == whole.keys()
        for key in whole:
            assert batched[key] == pytest.approx(whole[key], abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_compiled_top_k_gives_the_same_metrics_as_torch(monkeypatch, seed: int) -> None:
    # Enough items (k * 64 <= n) for the compiled top-k; scores with many ties, so tie order matters for NDCG.
    train, test = random_split(seed, n_users=60, n_items=2000)
    scores = torch.randint(0, 4, (60, 2000), generator=torch.Generator().manual_seed(seed)).float()
    results = []
    for switch in ("1", "0"):
        monkeypatch.setenv("RECLOSS_KERNELS", switch)
        results.append(metrics.evaluate(lambda users: scores[users], train, test, ks=(5, 20), batch_size=16))
        results.append(metrics.topk_metrics(scores, test, ks=(5, 20), exclude=train))
    assert results[0] == results[2] and results[1] == results[3]  # exactly: the same ranking, ties included
    scores[7, 1500] = math.nan
    monkeypatch.setenv("RECLOSS_KERNELS", "1")
    with pytest.raises(ValueError, match=r"hold 1 non-finite entries .* first at user 7, item 1500: nan"):
        metrics.evaluate(lambda users: scores[users], train, test, ks=(20,), batch_size=16)


def test_evaluate_given_users_skips_empty_rows() -> None:
    train, test = random_split(1)
    test = test.tolil()
    test[3, :] = 0
    test = test.tocsr()
    test.eliminate_zeros()
    scores = torch.randn(50, 80, generator=torch.Generator().manual_seed(1))

    def score_fn(users: torch.Tensor) -> torch.Tensor:
        return scores[users]

    chosen = metrics.evaluate(score_fn, train, test, users=[2, 3, 4])
    only_filled = metrics.evaluate(score_fn, train, test, users=[2, 4])
    assert chosen == only_filled


def loo_example() -> tuple[sp.csr_matrix, sp.csr_matrix, torch.Tensor]:
    # One user, six items; train {0}, held-out item 3. Scores rank the non-train items 1, 2, 3, 4, 5.
    train = csr([[0]], 6)
    test = csr([[3]], 6)
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.5, 1.0, 0.0]])
    return train, test, scores


def test_leave_one_out_full_ranking_by_hand() -> None:
    train, test, scores = loo_example()
    result = metrics.leave_one_out_metrics(lambda users: scores[users], train, test, ks=(2, 3), num_candidates=None)
    # Item 3 has rank 2 (0-based) among items 1..5: hr@2 = 0, hr@3 = 1, ndcg@3 = 1 / log2(2 + 2) = 0.5.
    assert result == {"hr@2": 0.0, "ndcg@2": 0.0, "hr@3": 1.0, "ndcg@3": pytest.approx(0.5)}


def test_leave_one_out_sampled_with_every_unseen_item_equals_full_ranking() -> None:
    train, test, scores = loo_example()
    # 4 unseen items (1, 2, 4, 5) + the held-out one: the sample is every candidate, whatever the seed.
    for seed in range(3):
        result = metrics.leave_one_out_metrics(
            lambda users: scores[users], train, test, ks=(2, 3), num_candidates=5, seed=seed
        )
        assert result == {"hr@2": 0.0, "ndcg@2": 0.0, "hr@3": 1.0, "ndcg@3": pytest.approx(0.5)}


def test_sample_candidates_are_unseen_distinct_and_uniform() -> None:
    train, test = csr([[0]], 10), csr([[5]], 10)
    users = np.zeros(4000, dtype=np.int64)
    candidates, test_column = metrics.sample_candidates(train, test, users, num_candidates=4, seed=0)
    assert candidates.shape == (4000, 4)
    assert np.all(candidates[np.arange(4000), test_column] == 5)
    negatives = candidates[np.arange(4)[None, :] != test_column[:, None]].reshape(4000, 3)
    assert all(len(set(row)) == 3 for row in negatives.tolist())
    counts = np.bincount(negatives.ravel(), minlength=10)
    assert counts[0] == 0 and counts[5] == 0
    # 8 unseen items, 3 of them per row: 1500 draws each; the binomial std is ~31, allow 5 std.
    assert np.all(np.abs(counts[[1, 2, 3, 4, 6, 7, 8, 9]] - 1500) < 155)
    # The held-out item sits in every column about equally often.
    assert np.all(np.abs(np.bincount(test_column, minlength=4) - 1000) < 150)


def test_leave_one_out_sampled_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 30, 200
    train, _ = random_split(3, n_users, n_items)
    test_items = [int(rng.choice(np.setdiff1d(np.arange(n_items), train[user].indices))) for user in range(n_users)]
    test = csr([[item] for item in test_items], n_items)
    scores = torch.from_numpy(np.stack([rng.permutation(n_items) for _ in range(n_users)]).astype(np.float32))
    result = metrics.leave_one_out_metrics(lambda users: scores[users], train, test, ks=(5, 10), seed=7)
    candidates, _ = metrics.sample_candidates(train, test, np.arange(n_users), 100, seed=7)
    ranks = [int((scores[user, candidates[user]] > scores[user, test_items[user]]).sum()) for user in range(n_users)]
    for k in (5, 10):
        assert result[f"hr@{k}"] == pytest.approx(np.mean([rank < k for rank in ranks]))
        expected_ndcg = np.mean([1 / math.log2(rank + 2) if rank < k else 0.0 for rank in ranks])
        assert result[f"ndcg@{k}"] == pytest.approx(expected_ndcg)


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(3, 5\)"):
        metrics.topk_metrics(HAND_SCORES, csr([[0], [1], [2]], 4))
    with pytest.raises(ValueError, match=r"2 item lists.*\(3, 5\)"):
        metrics.topk_metrics(HAND_SCORES, [[0], [1]])
    with pytest.raises(ValueError, match="outside"):
        metrics.topk_metrics(HAND_SCORES, [[0], [7], []])


@pytest.mark.parametrize("ks", [(), (0,), (5, -1), (2.5,)])
def test_bad_ks(ks: tuple) -> None:
    with pytest.raises(ValueError, match="ks="):
        metrics.topk_metrics(HAND_SCORES, HAND_TEST, ks=ks)


def test_other_errors() -> None:
    with pytest.raises(ValueError, match="no row has a non-empty test set"):
        metrics.topk_metrics(HAND_SCORES, [[], [], []])
    train, test, scores = loo_example()
    with pytest.raises(ValueError, match=r"score_fn returned shape \(1, 5\)"):
        metrics.evaluate(lambda users: scores[users, :5], train, test)
    with pytest.raises(ValueError, match="user 0 has 2"):
        metrics.leave_one_out_metrics(lambda users: scores[users], train, csr([[2, 3]], 6))
    with pytest.raises(ValueError, match="only 4 unseen items"):
        metrics.leave_one_out_metrics(lambda users: scores[users], train, test, num_candidates=6)
    with pytest.raises(ValueError, match=r"test has shape \(1, 7\)"):
        metrics.evaluate(lambda users: scores[users], train, csr([[3]], 7))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_refused_with_count_and_first_user(bad: float) -> None:
    scores = HAND_SCORES.clone()
    scores[1, 3] = scores[2, 0] = bad
    with pytest.raises(ValueError) as error:
        metrics.topk_metrics(scores, HAND_TEST, ks=(3,), exclude=HAND_EXCLUDE)
    assert str(error.value).startswith(
        f"scores hold 2 non-finite entries (NaN or inf) of 15 (shape (3, 5)); first at user 1, item 3: {bad}."
    )


def test_all_nan_scores_are_not_silently_zero() -> None:
    # Before: NaN is ranked first and an all-NaN row scores 0.0 without a word.
    with pytest.raises(ValueError, match=r"scores hold 5 non-finite entries .* first at user 0, item 0: nan"):
        metrics.topk_metrics(torch.full((1, 5), math.nan), [[2]], ks=(3,))
    with pytest.raises(ValueError, match=r"first at user 0, item 0: nan"):
        metrics.topk_metrics(torch.full((1, 5), math.nan, dtype=torch.float16), [[2]], ks=(3,))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_evaluate_and_leave_one_out_name_the_user_of_the_batch(bad: float) -> None:
    train, test = random_split(2)
    scores = torch.randn(50, 80, generator=torch.Generator().manual_seed(2))
    users = np.flatnonzero(test.getnnz(axis=1))
    late_user = int(users[9])  # in the second batch of 8 users
    scores[late_user, [4, 7, 11]] = bad
    pattern = (
        r"score_fn's scores for a batch of 8 users hold 3 non-finite entries \(NaN or inf\) of 640 "
        rf"\(shape \(8, 80\)\); first at user {late_user}, item 4: {bad}"
    )
    with pytest.raises(ValueError, match=pattern):
        metrics.evaluate(lambda batch: scores[batch], train, test, ks=(5,), batch_size=8)
    loo_train, loo_test, loo_scores = loo_example()
    loo_scores = loo_scores.clone()
    loo_scores[0, 5] = bad
    for num_candidates in (None, 3):
        with pytest.raises(ValueError, match=r"batch of 1 users hold 1 non-finite entries .* user 0, item 5"):
            metrics.leave_one_out_metrics(
                lambda batch: loo_scores[batch], loo_train, loo_test, ks=(2,), num_candidates=num_candidates
            )


def test_training_items_are_still_masked_internally() -> None:
    # The internal -inf mask comes after the check: training items never count, finite scores pass.
    train, test, scores = loo_example()
    result = metrics.evaluate(lambda users: scores[users].clone(), train, test, ks=(1,))
    assert result["hr@1"] == 0.0  # item 0 (train, score 5) is masked; item 1 ranks first, not the test item 3
    huge = torch.tensor([[3e38, 3e38, 3e38, 3e38, 3e38, 3e38]])  # the sum overflows, every entry is finite
    assert metrics.topk_metrics(huge, [[3]], ks=(6,))["hr@6"] == 1.0


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True])
def test_bad_eval_batch_size_names_the_parameter_and_range(batch_size) -> None:
    train, test, scores = loo_example()
    expected = (
        f"eval batch_size={batch_size!r}: the number of users scored per call of score_fn (TrainConfig's "
        "eval_batch_size) must be an integer >= 1"
    )
    for call in (metrics.evaluate, metrics.leave_one_out_metrics):
        with pytest.raises(ValueError) as error:
            call(lambda users: scores[users], train, test, batch_size=batch_size)
        assert str(error.value) == expected
