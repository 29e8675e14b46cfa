"""MF and its training step on every path: the compiled kernels (straight from the table for a few dot-product
negatives, the grouped layout for cosine or many negatives) against the PyTorch path, deterministic for a seed and
independent of the thread count. Generated data: these never skip."""

from __future__ import annotations

import pytest
import torch

from recloss_lite.core import kernels
from recloss_lite.core.models import MF, batch_scores
from recloss_lite.core.training import MFTrainable, TrainConfig, epoch_generator


@pytest.fixture
def compiled():
    if kernels.library() is None:
        pytest.skip("the compiled kernels are off here (RECLOSS_KERNELS=0 or no C compiler)")


def _weights_after(toy, monkeypatch, switch: str, threads: int = 1, epochs: int = 2, **settings) -> tuple:
    """The MF table and the epochs' losses after training on the toy data set with the kernels on ("1") or off."""
    monkeypatch.setenv("RECLOSS_KERNELS", switch)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    monkeypatch.setattr(kernels, "PARALLEL_FROM", 1)  # threads even for the toy's small batches
    config = TrainConfig(**{"dataset": "toy", "dim": 8, "lr": 0.01, "batch_size": 64, "seed": 3, **settings})
    trainable = MFTrainable(config, toy.train, toy.n_users, toy.n_items)
    losses = [trainable.train_epoch(epoch_generator(config.seed, epoch), None) for epoch in range(1, epochs + 1)]
    return trainable.model.weight.detach().clone(), losses


@pytest.mark.parametrize(
    ("similarity", "negatives", "loss", "extra"),
    [
        ("dot", 1, "bpr", {}),  # the whole step in one call (kernels.bpr_step)
        ("dot", 4, "bpr", {"l2": 0.03, "loss_params": {"tau": 0.5}}),  # with its L2 term and temperature
        ("dot", 4, "mse", {}),  # kernels.batch_scores straight from the table
        ("dot", 20, "mine+", {}),  # the grouped layout
        ("cosine", 1, "bpr", {}),  # grouped, with the compiled normalisation
        ("cosine", 40, "infonce", {}),
    ],
)
def test_kernel_training_step_equals_pytorch(toy, monkeypatch, compiled, similarity, negatives, loss, extra) -> None:
    settings = {"similarity": similarity, "num_negatives": negatives, "loss": loss, **extra}
    fast, fast_losses = _weights_after(toy, monkeypatch, "1", **settings)
    slow, slow_losses = _weights_after(toy, monkeypatch, "0", **settings)
    assert torch.allclose(fast, slow, atol=1e-5)  # float32 sums in another order: equal to rounding
    assert fast_losses == pytest.approx(slow_losses, rel=1e-5)


@pytest.mark.parametrize(
    ("similarity", "negatives", "loss"), [("dot", 20, "mine+"), ("cosine", 20, "mine+"), ("dot", 2, "bpr")]
)
def test_kernel_training_is_deterministic_on_any_thread_count(
    toy, monkeypatch, compiled, similarity, negatives, loss
) -> None:
    settings = {"similarity": similarity, "num_negatives": negatives, "loss": loss}
    first, first_losses = _weights_after(toy, monkeypatch, "1", threads=1, **settings)
    again, again_losses = _weights_after(toy, monkeypatch, "1", threads=1, **settings)
    threaded, threaded_losses = _weights_after(toy, monkeypatch, "1", threads=2, **settings)
    assert torch.equal(first, again) and torch.equal(first, threaded)
    assert first_losses == again_losses == threaded_losses


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_row_scores_equal_the_batch_scores_of_the_vectors(similarity) -> None:
    model = MF(6, 9, 4, similarity=similarity, seed=1)
    users, items = torch.tensor([0, 5, 2]), torch.tensor([[1, 8, 8], [0, 3, 4], [7, 7, 2]])
    vectors = model.item_vectors(items)
    _, reference = batch_scores(model.user_vectors(users), vectors[:, 0], vectors, shared=False)
    assert torch.allclose(model.row_scores(users, items), reference, atol=1e-6)
    scores = model.scores(users)
    assert scores.shape == (3, 9)
    assert torch.allclose(scores.gather(1, items), reference, atol=1e-6)
    if similarity == "cosine":
        assert torch.allclose(model.normalize(model.weight).norm(dim=1), torch.ones(15), atol=1e-6)
