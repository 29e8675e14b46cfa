"""The compiled kernels: built cleanly from kernels.c, the same numbers as autograd and as the PyTorch path, and every
bad argument refused before C touches memory. Small random tensors, no data set."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from recloss_lite.core import kernels, losses
from recloss_lite.core.training import RowAdam

N_ROWS, DIM = 20, 5
ADAM = (0.9, 0.999, 1e-8, 1e-3)  # beta1, beta2, eps, step size
HAS_COMPILER = bool(os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc"))


@pytest.fixture
def library():
    """The compiled kernels; the test is skipped where they are off."""
    if kernels.library() is None:
        pytest.skip("the compiled kernels are off here (RECLOSS_KERNELS=0 or no C compiler)")
    return kernels.library()


@pytest.fixture
def fresh(monkeypatch, tmp_path) -> Path:
    """kernels.library() as on first use: nothing loaded in the module, an empty build cache under tmp_path."""
    monkeypatch.setattr(kernels, "_tried", False)
    monkeypatch.setattr(kernels, "_library", None)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "recloss-lite" / "kernels"


def _table(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A table (N_ROWS, DIM) and its Adam moments (N_ROWS, 2, DIM)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(N_ROWS, DIM, generator=generator), torch.rand(N_ROWS, 2, DIM, generator=generator)


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """The arguments of batch_scores_backward after the table: a batch of B=4 rows with N=3 negatives each, their
    upstream gradients, and the slots of their distinct ids (slot (B * (2 + N),) in [0, n_slots))."""
    generator = torch.Generator().manual_seed(seed)
    users, items = torch.tensor([0, 1, 1, 2]), torch.tensor([10, 11, 12, 10])
    negatives = torch.tensor([[13, 10, 19], [14, 14, 3], [12, 18, 17], [19, 11, 16]])
    _, slot = torch.unique(torch.cat([users, items, negatives.reshape(-1)]), return_inverse=True)
    return {
        "users": users,
        "items": items,
        "negatives": negatives,
        "grad_pos": torch.randn(4, generator=generator),
        "grad_neg": torch.randn(4, 3, generator=generator),
        "slot": slot,
        "n_slots": int(slot.max()) + 1,
    }


def _scores(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The arguments of batch_scores after the table."""
    return {name: batch[name] for name in ("users", "items", "negatives")}


def _adam_args(seed: int = 0) -> dict[str, torch.Tensor]:
    """The arguments of row_adam after the table and moments: ids (K,), grads (K, DIM), decay (K,)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.tensor([3, 7, 0, 19])
    return {"ids": ids, "grads": torch.randn(4, DIM, generator=generator), "decay": torch.rand(4, generator=generator)}


def _autograd(weight: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Reference scores pos (B,), neg (B, N) and the gradient (n, d) of <grad_pos, pos> + <grad_neg, neg>."""
    leaf = weight.clone().requires_grad_(True)
    users, items, negatives = leaf[batch["users"]], leaf[batch["items"]], leaf[batch["negatives"]]
    pos, neg = (users * items).sum(-1), (negatives * users.unsqueeze(1)).sum(-1)
    (grad,) = torch.autograd.grad((pos * batch["grad_pos"]).sum() + (neg * batch["grad_neg"]).sum(), leaf)
    return pos.detach(), neg.detach(), grad


def test_kernels_build_on_this_machine(fresh, monkeypatch) -> None:
    # CI has a C compiler: the fast path must really run there, not silently fall back.
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine")
    monkeypatch.setenv("RECLOSS_KERNELS", "1")
    assert {"-Wall", "-Wextra", "-Werror"} <= set(kernels.FLAGS)
    assert kernels._source() == (Path(kernels.__file__).parent / "kernels.c").read_text(encoding="utf-8")
    assert kernels.library() is not None
    assert [path.suffix for path in fresh.iterdir()] == [".so"]


def test_a_warning_in_the_source_fails_the_build_to_the_pytorch_path(fresh, monkeypatch) -> None:
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine")
    monkeypatch.setenv("RECLOSS_KERNELS", "1")
    source = kernels._source()  # the real kernels.c plus a function with an unused parameter, a -Wextra warning
    monkeypatch.setattr(kernels, "_source", lambda: source + "\nint unused_parameter(int x) { return 0; }\n")
    with pytest.warns(RuntimeWarning, match=r"(?s)could not build the training kernels .*unused parameter"):
        assert kernels.library() is None
    weight, moments = _table()
    assert kernels.row_adam(weight, moments, **_adam_args(), beta1=0.9, beta2=0.999, eps=1e-8, step_size=1e-3) is False
    assert kernels.batch_scores(weight, **_scores(_batch())) is None
    assert not list(fresh.glob("*.so"))


def test_kernels_off_report_not_applicable(fresh, monkeypatch) -> None:
    monkeypatch.setenv("RECLOSS_KERNELS", "0")
    assert kernels.library() is None
    weight, moments = _table()
    before = weight.clone(), moments.clone()
    assert kernels.row_adam(weight, moments, *_adam_args().values(), *ADAM) is False
    assert kernels.batch_scores(weight, **_scores(_batch())) is None
    assert kernels.batch_scores_backward(weight, **_batch()) is None
    assert torch.equal(weight, before[0]) and torch.equal(moments, before[1])
    assert not fresh.exists()  # nothing was compiled


@pytest.mark.parametrize("table", ["float64", "non-contiguous"])
def test_a_table_the_kernels_cannot_take_is_left_to_pytorch(library, table) -> None:
    weight, moments = _table()
    weight = weight.double() if table == "float64" else weight.T.contiguous().T
    before = weight.clone()
    assert kernels.row_adam(weight, moments, *_adam_args().values(), *ADAM) is False
    assert kernels.batch_scores(weight, **_scores(_batch())) is None
    assert kernels.batch_scores_backward(weight, **_batch()) is None
    assert torch.equal(weight, before)


def test_pair_score_kernels_match_autograd(library) -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(30, 8, generator=generator)
    users, items = torch.tensor([0, 1, 1, 2]), torch.tensor([10, 11, 12, 10])
    negatives = torch.tensor([[13, 10], [14, 14], [12, 20], [29, 11]])  # a positive drawn as a negative, repeats
    pos, neg = kernels.batch_scores(weight, users, items, negatives)
    leaf = weight.clone().requires_grad_(True)
    ref_pos = (leaf[users] * leaf[items]).sum(-1)
    ref_neg = (leaf[negatives] * leaf[users].unsqueeze(1)).sum(-1)
    assert torch.allclose(pos, ref_pos, atol=1e-5) and torch.allclose(neg, ref_neg, atol=1e-5)
    grad_pos, grad_neg = torch.randn(4, generator=generator), torch.randn(4, 2, generator=generator)
    (ref_grad,) = torch.autograd.grad((ref_pos * grad_pos).sum() + (ref_neg * grad_neg).sum(), leaf)
    ids = torch.cat([users, items, negatives.reshape(-1)])
    unique, inverse = torch.unique(ids, return_inverse=True)
    grads = kernels.batch_scores_backward(weight, users, items, negatives, grad_pos, grad_neg, inverse, len(unique))
    assert torch.allclose(grads, ref_grad[unique], atol=1e-5)
    with pytest.raises(ValueError, match=r"slot \(3,\) must be \(B \* \(2 \+ N\),\) = \(16,\)"):
        kernels.batch_scores_backward(weight, users, items, negatives, grad_pos, grad_neg, inverse[:3], 3)


@pytest.mark.parametrize(
    "negatives",
    [
        [
            [10, 10, 10],
            [11, 11, 5],
            [12, 7, 12],
            [13, 13, 13],
        ],  # each row's negatives equal its positive, or each other
        [[0, 10, 1], [1, 9, 9], [2, 2, 12], [3, 13, 3]],  # the user drawn as a negative: its row written twice per step
    ],
)
def test_backward_where_gradient_rows_coincide_matches_autograd(library, negatives) -> None:
    weight, _ = _table()
    batch = {
        "users": torch.arange(4),
        "items": torch.arange(10, 14),
        "negatives": torch.tensor(negatives),
        "grad_pos": torch.randn(4, generator=torch.Generator().manual_seed(1)),
        "grad_neg": torch.randn(4, 3, generator=torch.Generator().manual_seed(2)),
    }
    ref_pos, ref_neg, ref_grad = _autograd(weight, batch)
    pos, neg = kernels.batch_scores(weight, **_scores(batch))
    assert torch.allclose(pos, ref_pos, atol=1e-5) and torch.allclose(neg, ref_neg, atol=1e-5)
    unique, slot = torch.unique(torch.cat([batch[name].reshape(-1) for name in _scores(batch)]), return_inverse=True)
    grads = kernels.batch_scores_backward(weight, **batch, slot=slot, n_slots=len(unique))
    assert torch.allclose(grads, ref_grad[unique], atol=1e-5)
    # Every occurrence into one row: the sum of all the rows' gradients.
    grads = kernels.batch_scores_backward(weight, **batch, slot=torch.zeros_like(slot), n_slots=1)
    assert torch.allclose(grads, ref_grad.sum(0, keepdim=True), atol=1e-5)


def test_non_contiguous_inputs_give_the_same_numbers(library) -> None:
    weight, moments = _table()
    batch = _batch()
    strided = {
        **batch,
        "users": torch.stack([batch["users"], batch["users"]], 1)[:, 0],
        "negatives": batch["negatives"].T.contiguous().T,
        "grad_neg": batch["grad_neg"].T.contiguous().T,
    }
    assert not any(strided[name].is_contiguous() for name in ("users", "negatives", "grad_neg"))
    (pos, neg), (ref_pos, ref_neg) = (kernels.batch_scores(weight, **_scores(b)) for b in (strided, batch))
    assert torch.equal(pos, ref_pos) and torch.equal(neg, ref_neg)
    assert torch.equal(kernels.batch_scores_backward(weight, **strided), kernels.batch_scores_backward(weight, **batch))
    args = _adam_args()
    reference = weight.clone(), moments.clone()
    assert kernels.row_adam(*reference, *args.values(), *ADAM)
    assert kernels.row_adam(weight, moments, args["ids"], args["grads"].T.contiguous().T, args["decay"], *ADAM)
    assert torch.equal(weight, reference[0]) and torch.equal(moments, reference[1])


def test_row_adam_kernel_and_python_path_agree(monkeypatch) -> None:
    weights = []
    for switch in ("1", "0"):
        monkeypatch.setenv("RECLOSS_KERNELS", switch)
        if switch == "1" and kernels.library() is None:
            pytest.skip("no C compiler on this machine")
        weight = torch.randn(50, 4, generator=torch.Generator().manual_seed(1))
        adam = RowAdam(weight, lr=0.05)
        for step in range(4):
            ids = torch.tensor([3, 7, 7, 49, 0, step])
            unique, inverse, counts = adam.distinct(ids)
            assert torch.equal(unique, torch.unique(ids))
            noise = torch.randn(6, 4, generator=torch.Generator().manual_seed(step))
            grads = torch.zeros(len(unique), 4).index_add_(0, inverse, noise)
            adam.step(unique, grads, unique=True, decay=counts.float() * 0.1)
        weights.append(weight)
    assert torch.allclose(weights[0], weights[1], atol=1e-6)


# Refusals: each must leave the table and the moments bit-for-bit as they were.

BAD_IDS = [-1, N_ROWS, N_ROWS + 5]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_row_adam_refuses_an_id_outside_the_table(library, bad) -> None:
    weight, moments = _table()
    before = weight.clone(), moments.clone()
    args = {**_adam_args(), "ids": torch.tensor([3, bad, 0, 19])}
    with pytest.raises(IndexError, match=rf"^row_adam: ids holds {bad} outside \[0, 20\) \(the table has 20 rows\)$"):
        kernels.row_adam(weight, moments, *args.values(), *ADAM)
    assert torch.equal(weight, before[0]) and torch.equal(moments, before[1])


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("argument", ["users", "items", "negatives"])
def test_batch_scores_refuse_an_id_outside_the_table(library, argument, bad) -> None:
    weight, _ = _table()
    before = weight.clone()
    batch = _batch()
    batch[argument] = batch[argument].clone()
    batch[argument].view(-1)[1] = bad
    for function in (kernels.batch_scores, kernels.batch_scores_backward):
        message = rf"^{function.__name__}: {argument} holds {bad} outside \[0, 20\) \(the table has 20 rows\)$"
        with pytest.raises(IndexError, match=message):
            function(weight, **(batch if function is kernels.batch_scores_backward else _scores(batch)))
    assert torch.equal(weight, before)


@pytest.mark.parametrize("offset", [-1, 0, 5])  # slot -1, n_slots, n_slots + 5
def test_batch_scores_backward_refuses_a_slot_outside_the_gradient(library, offset) -> None:
    weight, _ = _table()
    batch = _batch()
    n_slots = batch["n_slots"]
    bad = -1 if offset < 0 else n_slots + offset
    batch["slot"] = batch["slot"].clone()
    batch["slot"][-1] = bad
    with pytest.raises(
        IndexError,
        match=rf"^batch_scores_backward: slot holds {bad} outside \[0, {n_slots}\) "
        rf"\(n_slots = {n_slots}\)$",
    ):
        kernels.batch_scores_backward(weight, **batch)


def test_ids_must_be_int64(library) -> None:
    weight, moments = _table()
    args = {**_adam_args(), "ids": _adam_args()["ids"].int()}
    with pytest.raises(IndexError, match=r"row_adam: ids must be an int64 tensor on the CPU, not torch.int32"):
        kernels.row_adam(weight, moments, *args.values(), *ADAM)
    batch = {**_batch(), "users": _batch()["users"].int()}
    with pytest.raises(IndexError, match=r"batch_scores: users must be an int64 tensor on the CPU, not torch.int32"):
        kernels.batch_scores(weight, **_scores(batch))


@pytest.mark.parametrize("argument", ["moments", "grads", "decay"])
def test_row_adam_refuses_float64(library, argument) -> None:
    weight, moments = _table()
    args = {"moments": moments, **_adam_args()}
    before = weight.clone(), moments.clone()
    args[argument] = args[argument].double()
    with pytest.raises(
        TypeError,
        match=rf"^row_adam: {argument} must be a float32 tensor on the CPU, "
        r"not torch.float64 on cpu$",
    ):
        kernels.row_adam(weight, *args.values(), *ADAM)
    assert torch.equal(weight, before[0]) and torch.equal(moments, before[1])


@pytest.mark.parametrize("argument", ["grad_pos", "grad_neg"])
def test_batch_scores_backward_refuses_float64(library, argument) -> None:
    weight, _ = _table()
    batch = _batch()
    batch[argument] = batch[argument].double()
    with pytest.raises(
        TypeError,
        match=rf"^batch_scores_backward: {argument} must be a float32 tensor on the CPU, "
        r"not torch.float64 on cpu$",
    ):
        kernels.batch_scores_backward(weight, **batch)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("ids", torch.tensor([[3], [7]]), r"ids \(2, 1\) must be \(K,\) = \(2,\)"),
        ("moments", torch.zeros(N_ROWS, DIM), r"moments \(20, 5\) must be \(n, 2, d\) = \(20, 2, 5\)"),
        ("moments", torch.zeros(N_ROWS, DIM, 2).transpose(1, 2), r"moments must be contiguous"),
        ("grads", torch.zeros(4, DIM + 1), r"grads \(4, 6\) must be \(len\(ids\), d\) = \(4, 5\)"),
        ("grads", torch.zeros(3, DIM), r"grads \(3, 5\) must be \(len\(ids\), d\) = \(4, 5\)"),
        ("decay", torch.zeros(4, 1), r"decay \(4, 1\) must be \(len\(ids\),\) = \(4,\)"),
    ],
)
def test_row_adam_refuses_wrong_shapes(library, argument, value, message) -> None:
    weight, moments = _table()
    args = {"moments": moments, **_adam_args(), argument: value}
    before = weight.clone(), args["moments"].clone()
    with pytest.raises(ValueError, match=f"^row_adam: {message}"):
        kernels.row_adam(weight, *args.values(), *ADAM)
    assert torch.equal(weight, before[0]) and torch.equal(args["moments"], before[1])


def test_row_adam_refuses_gradients_that_share_the_tables_memory(library) -> None:
    weight, moments = _table()
    args = {**_adam_args(), "grads": weight[:4]}  # a view of the rows the step writes
    before = weight.clone()
    with pytest.raises(ValueError, match="row_adam: grads shares memory with weight or moments"):
        kernels.row_adam(weight, moments, *args.values(), *ADAM)
    assert torch.equal(weight, before)


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("users", torch.tensor([0, 1, 2]), r"users \(3,\) must be \(B,\) = \(4,\)"),
        ("items", torch.tensor([[10], [11], [12], [13]]), r"items \(4, 1\) must be \(B,\) = \(4,\)"),
        ("negatives", torch.tensor([13, 14, 12, 19]), r"negatives \(4,\) must be 2-D \(B, N\)"),
        ("grad_pos", torch.zeros(5), r"grad_pos \(5,\) must be \(B,\) = \(4,\)"),
        ("grad_neg", torch.zeros(4, 2), r"grad_neg \(4, 2\) must be \(B, N\) = \(4, 3\)"),
        ("slot", torch.zeros(19, dtype=torch.int64), r"slot \(19,\) must be \(B \* \(2 \+ N\),\) = \(20,\)"),
    ],
)
def test_batch_scores_refuse_wrong_shapes(library, argument, value, message) -> None:
    weight, _ = _table()
    batch = {**_batch(), argument: value}
    functions = [kernels.batch_scores_backward] + ([kernels.batch_scores] if argument in _scores(batch) else [])
    for function in functions:
        with pytest.raises(ValueError, match=f"^{function.__name__}: {message}"):
            function(weight, **(batch if function is kernels.batch_scores_backward else _scores(batch)))
    with pytest.raises(ValueError, match=r"^batch_scores: weight \(100,\) must be a table \(n, d\)"):
        kernels.batch_scores(torch.zeros(100), **_scores(_batch()))


# ---- distinct rows, the grouped layout (many negatives per row), normalisation and top-k --------------------------


def _grouped_batch(seed: int, n_rows: int = 60, batch: int = 5, n_neg: int = 20):
    """A table (n_rows, 8), a batch's users, items and negatives (some users also drawn as items), upstream
    gradients, and the distinct rows with the grouped layout."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(n_rows, 8, generator=generator)
    users = torch.randint(0, 10, (batch,), generator=generator)
    items = torch.randint(0, n_rows, (batch,), generator=generator)
    negatives = torch.randint(0, n_rows, (batch, n_neg), generator=generator)
    negatives[0, :3] = users[0]  # the user drawn as its own negative: one row in both roles
    negatives[1, 1] = items[1]  # the positive drawn as a negative
    ids = torch.cat([users, items, negatives.reshape(-1)])
    adam = RowAdam(weight.clone(), lr=0.1)
    unique, inverse, counts, order, start = adam.distinct(ids, grouped=True)
    grads = torch.randn(batch, generator=generator), torch.randn(batch, n_neg, generator=generator)
    return weight, users, items, negatives, ids, (unique, inverse, counts, order, start), grads


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distinct_equals_torch_unique_and_groups_every_occurrence(library, seed) -> None:
    *_, ids, (unique, inverse, counts, order, start), _ = _grouped_batch(seed)
    ref_unique, ref_inverse, ref_counts = torch.unique(ids, return_inverse=True, return_counts=True)
    assert torch.equal(unique, ref_unique) and torch.equal(inverse, ref_inverse) and torch.equal(counts, ref_counts)
    assert torch.equal(start, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))
    for row in range(len(unique)):  # the occurrences of each row, in increasing order
        assert torch.equal(order[start[row] : start[row + 1]], torch.nonzero(inverse == row).view(-1))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_distinct_groups_many_rows_the_same_on_any_thread_count(library, monkeypatch, threads) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # the parts of the counting sort
    generator = torch.Generator().manual_seed(threads)
    n = 150_000  # more than 2^16 distinct rows: ranges of more than 2^8 rows each
    ids = torch.cat([torch.randint(0, n, (200_000,), generator=generator), torch.arange(0, n, 7)])
    adam = RowAdam(torch.zeros(n, 1), lr=0.1)
    unique, inverse, counts, order, start = adam.distinct(ids, grouped=True)
    ref_unique, ref_inverse, ref_counts = torch.unique(ids, return_inverse=True, return_counts=True)
    assert len(unique) > 2**16
    assert torch.equal(unique, ref_unique) and torch.equal(inverse, ref_inverse) and torch.equal(counts, ref_counts)
    assert torch.equal(start, torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]))
    assert torch.equal(order, torch.sort(inverse, stable=True).indices)  # by row, each row's in increasing order


def test_distinct_refuses_an_id_outside_the_table(library) -> None:
    adam = RowAdam(torch.zeros(20, 3), lr=0.1)
    for bad in (-1, 20):
        message = rf"^distinct: ids holds {bad} outside \[0, 20\) \(the table has 20 rows\)$"
        with pytest.raises(IndexError, match=message):
            adam.distinct(torch.tensor([3, bad, 5]))
    assert torch.equal(adam.distinct(torch.tensor([4, 1, 4]))[0], torch.tensor([1, 4]))  # the scratch is reusable


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("threads", [1, 2])
def test_grouped_kernels_match_batch_scores_and_autograd(library, monkeypatch, seed, threads) -> None:
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 1)  # threads even for a small batch
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)  # one or two threads: the same numbers
    weight, users, items, negatives, _, (unique, inverse, _, order, start), (grad_pos, grad_neg) = _grouped_batch(seed)
    table = weight[unique]
    pos, neg = kernels.grouped_scores(table, inverse[: len(users)], order, start, negatives.shape[1])
    ref_pos, ref_neg, ref_grad = _autograd(
        weight, {"users": users, "items": items, "negatives": negatives, "grad_pos": grad_pos, "grad_neg": grad_neg}
    )
    assert torch.allclose(pos, ref_pos, atol=1e-5) and torch.allclose(neg, ref_neg, atol=1e-5)
    grads = kernels.grouped_scores_backward(table, inverse[: len(users)], order, start, grad_pos, grad_neg)
    assert torch.allclose(grads, ref_grad[unique], atol=1e-5)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3 - threads)
    assert torch.equal(
        grads, kernels.grouped_scores_backward(table, inverse[: len(users)], order, start, grad_pos, grad_neg)
    )


def test_grouped_kernels_refuse_order_and_start_outside_their_range(library) -> None:
    weight, users, _, negatives, _, (unique, inverse, _, order, start), (grad_pos, grad_neg) = _grouped_batch(0)
    table, user_rows, n_neg = weight[unique], inverse[: len(users)], negatives.shape[1]
    occurrences = len(order)
    bad_order = order.clone()
    bad_order[7] = occurrences
    with pytest.raises(IndexError, match=rf"^grouped_scores: order holds {occurrences} outside \[0, {occurrences}\)"):
        kernels.grouped_scores(table, user_rows, bad_order, start, n_neg)
    bad_start = start.clone()
    bad_start[2] = occurrences + 5
    with pytest.raises(IndexError, match=r"^grouped_scores_backward: start holds"):
        kernels.grouped_scores_backward(table, user_rows, order, bad_start, grad_pos, grad_neg)
    bad_start = start.clone()
    bad_start[1], bad_start[2] = start[2], start[1] - 1  # a decreasing range
    with pytest.raises(ValueError, match=r"^grouped_scores: start must not decrease"):
        kernels.grouped_scores(table, user_rows, order, bad_start, n_neg)
    with pytest.raises(IndexError, match=r"^grouped_scores: users holds"):
        kernels.grouped_scores(table, user_rows + len(table), order, start, n_neg)
    with pytest.raises(ValueError, match=r"order \(10,\) must be"):
        kernels.grouped_scores(table, user_rows, order[:10], start, n_neg)


def test_normalize_kernels_match_torch_normalize(library) -> None:
    rows = torch.randn(30, 7, generator=torch.Generator().manual_seed(3))
    rows[4] = 0.0  # a zero row: the clamped norm, as torch.nn.functional.normalize
    unit, norms = kernels.normalize(rows)
    picked = torch.tensor([4, 0, 29, 4])
    assert torch.equal(kernels.normalize(rows, picked)[0], unit[picked])  # gathered in the same pass
    with pytest.raises(IndexError, match=r"^normalize: ids holds 30 outside \[0, 30\)"):
        kernels.normalize(rows, torch.tensor([30]))
    leaf = rows.clone().requires_grad_(True)
    reference = torch.nn.functional.normalize(leaf, dim=1)
    assert torch.allclose(unit, reference, atol=1e-6)
    upstream = torch.randn(30, 7, generator=torch.Generator().manual_seed(4))
    (expected,) = torch.autograd.grad(reference, leaf, upstream)
    grads = upstream.clone()
    assert kernels.normalize_backward(unit, norms, grads) is grads
    assert torch.allclose(grads, expected, rtol=1e-5, atol=1e-4)


def _masked_topk(scores: torch.Tensor, k: int, excluded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    masked = scores.clone()
    for row, items in enumerate(excluded):
        masked[row, items] = -torch.inf
    return torch.topk(masked, k, dim=1)


def _csr(excluded: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    pointers = torch.tensor([0] + [len(items) for items in excluded]).cumsum(0)
    return pointers, torch.tensor([item for items in excluded for item in sorted(items)], dtype=torch.int64)


@pytest.mark.parametrize("seed", range(6))
def test_topk_kernel_equals_torch_topk_ties_included(library, seed) -> None:
    generator = torch.Generator().manual_seed(seed)
    rows, n_items, k = 7, int(torch.randint(64, 2000, (), generator=generator)), 0
    k = int(torch.randint(1, n_items // 64 + 1, (), generator=generator))
    levels = [2, 5, 1000][seed % 3]  # few distinct values: many ties, ordered as torch.topk orders them
    scores = torch.randint(0, levels, (rows, n_items), generator=generator).float()
    excluded = [
        sorted(set(torch.randint(0, n_items, (int(n_items * share),), generator=generator).tolist()))
        for share in (0.0, 0.1, 0.5, 0.9, 0.99, 1.0, 0.3)
    ]
    excluded[5] = list(range(n_items))  # every item excluded: all -inf
    before = scores.clone()
    values, indices = kernels.topk(scores, k, *_csr(excluded))
    ref_values, ref_indices = _masked_topk(scores, k, excluded)
    assert torch.equal(values, ref_values) and torch.equal(indices, ref_indices)
    assert torch.equal(scores, before)  # read only


def test_topk_kernel_reports_the_first_non_finite_row_and_leaves_other_cases_to_torch(library) -> None:
    scores = torch.randn(4, 200)
    none = torch.zeros(5, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    scores[2, 150] = torch.nan
    scores[3, 0] = torch.inf
    assert kernels.topk(scores, 3, *none) == 3  # row 2, 1-based
    assert kernels.topk(scores, 4, *none) is None  # k * 64 > n: torch sorts another way
    assert kernels.topk(scores.double(), 3, *none) is None
    with pytest.raises(IndexError, match=r"^topk: excluded holds 200 outside \[0, 200\)"):
        kernels.topk(scores, 3, torch.tensor([0, 0, 0, 0, 1]), torch.tensor([200]))
    with pytest.raises(ValueError, match="^topk: exclude_ptr must start at 0 and never decrease"):
        kernels.topk(scores, 3, torch.tensor([0, 1, 0, 1, 1]), torch.tensor([5]))


def test_first_outside_finds_the_first_id_out_of_range(library) -> None:
    ids = torch.tensor([0, 5, -1, 9, 6], dtype=torch.int64)
    assert kernels._run("first_outside", ids, len(ids), 6) == 2  # -1 comes before 6 and 9
    assert kernels._run("first_outside", ids[3:], 2, 6) == 0
    assert kernels._run("first_outside", ids[:2], 2, 6) == -1
    assert kernels._run("first_outside", ids, len(ids), 10) == 2
    assert kernels._run("first_outside", torch.tensor([2**62, 1]), 2, 10) == 0  # huge ids too, without overflow


def _bpr_reference(weight, moments, ids, batch, tau, l2, adam_steps=1) -> tuple[torch.Tensor, ...]:
    """The BPR step of the general path on copies: the loss of losses.make("bpr") on the dot products, autograd,
    and RowAdam.step with the L2 term l2 * count / B; returns (mean loss, weight, moments)."""
    weight, moments = weight.clone(), moments.clone()
    adam = RowAdam(weight, lr=0.01)
    adam.moments.copy_(moments)
    adam.steps = adam_steps - 1
    unique, inverse, counts = adam.distinct(ids)
    leaf = weight[unique].clone().requires_grad_(True)
    rows = leaf[inverse]
    users, items, negatives = rows[:batch], rows[batch : 2 * batch], rows[2 * batch :].view(batch, -1, DIM)
    pos, neg = (users * items).sum(-1), (negatives * users.unsqueeze(1)).sum(-1)
    loss = losses.make("bpr", tau=tau)(pos, neg)
    (grads,) = torch.autograd.grad(loss, leaf)
    adam.step(unique, grads, unique=True, decay=counts.float() * (l2 / batch) if l2 else None)
    return loss.detach(), weight, adam.moments


@pytest.mark.parametrize(("tau", "l2"), [(1.0, 0.0), (0.5, 0.03)])
def test_bpr_step_equals_autograd_and_row_adam(library, tau, l2) -> None:
    weight, moments = _table()
    batch = _batch()
    ids = torch.cat([batch["users"], batch["items"], batch["negatives"].reshape(-1)])  # repeats, a positive as negative
    ref_loss, ref_weight, ref_moments = _bpr_reference(weight, moments, ids, 4, tau, l2, adam_steps=3)
    adam = RowAdam(weight, lr=0.01)
    adam.moments.copy_(moments)
    adam.steps = 2
    loss = adam.bpr_step(ids, 4, tau, l2)
    assert adam.steps == 3
    assert loss == pytest.approx(float(ref_loss), rel=1e-6)
    assert torch.allclose(weight, ref_weight, atol=1e-6) and torch.allclose(adam.moments, ref_moments, atol=1e-7)


def test_bpr_step_is_finite_for_scores_of_1e4(library) -> None:
    weight = torch.zeros(6, 2)
    weight[0], weight[1], weight[2] = (
        torch.tensor([100.0, 0.0]),
        torch.tensor([-100.0, 0.0]),
        torch.tensor([100.0, 0.0]),
    )
    adam = RowAdam(weight, lr=0.01)
    loss = adam.bpr_step(torch.tensor([0, 1, 2]), 1, 1.0, 0.0)  # pos -1e4, neg +1e4: softplus(2e4) = 2e4
    assert loss == pytest.approx(2e4) and torch.isfinite(weight).all()
    assert adam.bpr_step(torch.tensor([0, 2, 1]), 1, 1.0, 0.0) == pytest.approx(0.0, abs=1e-30)  # the other way round


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bpr_step_refuses_an_id_outside_the_table_and_counts_no_step(library, bad) -> None:
    weight, moments = _table()
    adam = RowAdam(weight, lr=0.01)
    adam.moments.copy_(moments)
    before = weight.clone(), moments.clone()
    ids = torch.tensor([0, 1, 10, 11, 12, bad])
    with pytest.raises(IndexError, match=rf"^bpr_step: ids holds {bad} outside \[0, 20\) \(the table has 20 rows\)$"):
        adam.bpr_step(ids, 2, 1.0, 0.0)
    assert torch.equal(weight, before[0]) and torch.equal(adam.moments, before[1]) and adam.steps == 0


@pytest.mark.parametrize(
    ("ids", "batch", "tau", "l2", "error", "message"),
    [
        (torch.arange(6), 4, 1.0, 0.0, ValueError, r"ids \(6,\) must be \(B \* \(2 \+ N\),\) with B = 4 and N >= 1"),
        (torch.arange(4), 2, 1.0, 0.0, ValueError, r"ids \(4,\) must be \(B \* \(2 \+ N\),\) with B = 2 and N >= 1"),
        (torch.arange(6, dtype=torch.int32), 2, 1.0, 0.0, IndexError, "ids must be an int64 tensor on the CPU"),
        (torch.arange(6), 2, 0.0, 0.0, ValueError, r"tau = 0.0 must be > 0 and l2 = 0.0 >= 0, both finite"),
        (torch.arange(6), 2, 1.0, float("nan"), ValueError, r"tau = 1.0 must be > 0 and l2 = nan >= 0"),
    ],
)
def test_bpr_step_refuses_bad_arguments(library, ids, batch, tau, l2, error, message) -> None:
    weight, moments = _table()
    before = weight.clone()
    with pytest.raises(error, match=f"^bpr_step: {message}"):
        kernels.bpr_step(weight, moments, ids, batch, tau, l2, ADAM, *_scratch_of(weight))
    assert torch.equal(weight, before)


def test_bpr_step_refuses_scratch_that_shares_the_tables_memory(library) -> None:
    weight, moments = _table()
    before = weight.clone()
    position = weight.view(-1).view(torch.int64)[:N_ROWS]  # the table's own bytes
    with pytest.raises(ValueError, match="^bpr_step: position shares memory with weight or moments"):
        kernels.bpr_step(weight, moments, torch.arange(6), 2, 1.0, 0.0, ADAM, _scratch_of(weight)[0], position)
    assert torch.equal(weight, before)


def _scratch_of(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(len(weight), dtype=torch.bool), torch.zeros(len(weight), dtype=torch.int64)


def test_dense_adam_refuses_moments_of_another_shape_and_touches_nothing(library) -> None:
    weight, moments = torch.ones(5, 3), torch.ones(5, 3)
    with pytest.raises(ValueError, match=r"^dense_adam: moments \(5, 3\) must be \(n, 2, d\) = \(5, 2, 3\)$"):
        kernels.dense_adam(weight, moments, 0.9, 0.999, 1e-8, 0.1)
    assert torch.equal(weight, torch.ones(5, 3)) and torch.equal(moments, torch.ones(5, 3))
