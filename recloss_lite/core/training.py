"""The training driver: one loop for every model (chapter 07_training).

Every model fills one small contract, :class:`Trainable`: one training epoch, scores for a batch of users, and its
state to save and load. :func:`run_epochs` owns everything around it for MF, iALS, EASE and HDCCF alike: the
learning-rate schedule, validation and early stopping, the best state, the time budget and the checkpoint of every
epoch. :func:`fit` adds the run folder (never overwritten; ``resume`` continues it exactly), the optional refit on
the whole training set, the test evaluation and the result record.

Early stopping uses a validation split carved out of train (the test set never selects a model); each epoch's
random stream is a function of (seed, epoch) on the run's device, so a resumed run gives exactly the numbers of an
uninterrupted one. MF's embeddings are updated by a row-wise Adam: lazy (only the rows of a batch move) or, as
``torch.optim.Adam`` on a dense table, every row every step (``TrainConfig.optimizer``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from . import data as data_module
from . import kernels, losses, metrics
from .models import MF, batch_scores
from .sampling import KINDS, NegativeSampler

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("mf", "ials", "ease", "hdccf")
SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("lazy-adam", "adam")
# A reopened run may change these: a larger budget continues a finished run (--resume); the evaluation's batch size
# changes no number, only speed and memory.
RESUME_MAY_CHANGE = ("epochs", "max_seconds", "eval_batch_size")
CHECKPOINT, REFIT_CHECKPOINT, RESULT = "checkpoint.pt", "refit.pt", "result.json"


class RowAdam:
    """Adam on an embedding table whose gradient is a few rows: lazy, or dense.

    The moments of all rows live in one (n, 2, d) tensor. A training step asks :meth:`distinct` for the distinct
    rows among every row id of its batch, sums each row's gradients over its occurrences (autograd through one
    leaf from :meth:`gather`, or the compiled backward of :mod:`recloss_lite.core.kernels`), and :meth:`step` then
    updates the table, in compiled passes where the kernels are available.

    Lazy (``dense=False``, as ``torch.optim.SparseAdam``): only the rows the step touches move; a row's moments
    stand still between its steps. Dense (as ``torch.optim.Adam`` on the whole table, what SimpleX and the BSL
    authors train MF with): every row's moments decay every step and every row keeps moving with its momentum,
    so a row that a step touches with probability p moves about 1/sqrt(p) times as far per touch (its second
    moment averages the steps that do not touch it); a step costs the whole table instead of the batch's rows.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        dense: bool = False,
    ) -> None:
        self.weight, self.lr, self.betas, self.eps, self.dense = weight, lr, betas, eps, dense
        self.moments = torch.zeros(weight.shape[0], 2, weight.shape[1], dtype=weight.dtype, device=weight.device)
        self.steps = 0
        # Scratch for distinct(): a mark and a position per row; distinct ids by marking, not sorting (2x faster).
        self._marked = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
        self._position = torch.zeros(weight.shape[0], dtype=torch.int64, device=weight.device)

    def distinct(self, ids: torch.Tensor, grouped: bool = False) -> tuple[torch.Tensor, ...]:
        """The distinct rows among ``ids``, in increasing order, as ``torch.unique`` gives them: (unique ids (K,),
        inverse (len(ids),) with ``ids == unique[inverse]``, counts (K,)); one compiled pass where available, which
        with ``grouped`` also gives the (order, start) of :func:`.kernels.distinct`."""
        fast = kernels.distinct(ids, self._marked, self._position, grouped)
        if fast is not None:
            return fast
        self._marked.index_fill_(0, ids, True)
        unique_ids = torch.nonzero(self._marked).view(-1)
        self._marked.index_fill_(0, unique_ids, False)
        self._position.index_copy_(0, unique_ids, torch.arange(len(unique_ids), device=ids.device))
        inverse = self._position.index_select(0, ids)
        return unique_ids, inverse, torch.bincount(inverse, minlength=len(unique_ids))

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` of the table as a fresh leaf tensor that requires grad."""
        return self.weight.detach().index_select(0, ids).requires_grad_(True)

    @torch.no_grad()
    def step(
        self, ids: torch.Tensor, grads: torch.Tensor, unique: bool = False, decay: torch.Tensor | None = None
    ) -> None:
        """Apply one Adam step to rows ``ids`` (K,) with gradients ``grads`` (K, d). Gradients of duplicate ids are
        summed; ``unique=True`` says ``ids`` has none (as from :meth:`distinct`) and skips that work. ``decay``
        (K,), with distinct ids only, adds the L2 gradient ``decay[r] * w_r`` to row r's gradient."""
        if not unique:
            ids, inverse, _ = self.distinct(ids)
            grads = torch.zeros(len(ids), grads.shape[1], dtype=grads.dtype, device=grads.device).index_add_(
                0, inverse, grads
            )
        beta1, beta2, step_size = self._next_step()
        if self.dense:
            self._dense_step(ids, grads, decay, beta1, beta2, step_size)
            return
        if kernels.row_adam(self.weight.data, self.moments, ids, grads, decay, beta1, beta2, self.eps, step_size):
            return
        if decay is not None:
            grads = grads + decay.unsqueeze(1) * self.weight.data.index_select(0, ids)
        moments = self.moments.index_select(0, ids)
        first, second = moments[:, 0], moments[:, 1]
        first.lerp_(grads, 1 - beta1)
        second.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        self.moments.index_copy_(0, ids, moments)
        update = second.sqrt().add_(self.eps)
        torch.div(first, update, out=update)
        self.weight.data.index_add_(0, ids, update, alpha=-step_size)

    def _dense_step(
        self,
        ids: torch.Tensor,
        grads: torch.Tensor,
        decay: torch.Tensor | None,
        beta1: float,
        beta2: float,
        step_size: float,
    ) -> None:
        """Adam's step on the whole table, the gradient being ``grads`` on the distinct rows ``ids`` and 0 elsewhere.
        The touched rows' moments first get their gradient's share divided by beta (so that the decay of every row
        that follows leaves ``beta * m + (1 - beta) * g`` on them), then one pass decays all moments and moves all
        rows (:func:`.kernels.dense_adam`)."""
        if decay is not None:
            grads = grads + decay.unsqueeze(1) * self.weight.data.index_select(0, ids)
        first, second = self.moments[:, 0], self.moments[:, 1]
        first.index_add_(0, ids, grads, alpha=(1 - beta1) / beta1)
        second.index_add_(0, ids, grads * grads, alpha=(1 - beta2) / beta2)
        if kernels.dense_adam(self.weight.data, self.moments, beta1, beta2, self.eps, step_size):
            return
        first.mul_(beta1)
        second.mul_(beta2)
        update = second.sqrt().add_(self.eps)
        torch.div(first, update, out=update)
        self.weight.data.add_(update, alpha=-step_size)

    def _next_step(self) -> tuple[float, float, float]:
        """Count one more step; (beta1, beta2, the bias-corrected step size) of that step."""
        self.steps += 1
        beta1, beta2 = self.betas
        return beta1, beta2, self.lr * math.sqrt(1 - beta2**self.steps) / (1 - beta1**self.steps)

    @torch.no_grad()
    def bpr_step(self, ids: torch.Tensor, batch: int, tau: float, l2: float) -> float | None:
        """One whole MF-BPR step in one compiled call (:func:`.kernels.bpr_step`): the loss of the batch whose ids
        are [users (B) | positives (B) | negatives (B x N)] on the dot product, its gradient and this optimiser's
        step on the distinct rows, with the L2 term of :meth:`step`'s ``decay`` (``l2 * count / B``). Returns the
        batch's mean loss; ``None``, counting no step, where the kernels do not apply (or the optimiser is dense)."""
        if self.dense:
            return None
        beta1, beta2, step_size = self._next_step()
        loss = None
        try:
            loss = kernels.bpr_step(
                self.weight.data,
                self.moments,
                ids,
                batch,
                tau,
                l2,
                (beta1, beta2, self.eps, step_size),
                self._marked,
                self._position,
            )
        finally:
            if loss is None:  # refused, or the kernels do not apply: nothing was touched, no step happened
                self.steps -= 1
        return loss

    def state_dict(self) -> dict:
        return {"moments": self.moments, "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.moments.copy_(state["moments"])
        self.steps = int(state["steps"])
        self.lr = float(state.get("lr", self.lr))


def _model_class(model: str) -> type | None:
    """The class whose constructor takes ``model_params`` for ``model`` (None for MF, which takes none)."""
    from . import hdccf, linear

    return {"mf": None, "ials": linear.IALS, "ease": linear.EASE, "hdccf": hdccf.HDCCF}[model]


# Constructor arguments the driver fills itself: model_params may not name them.
_DRIVER_FILLS = {"n_users", "n_items", "dim", "seed", "self"}


def check_model_params(model: str, params: dict) -> None:
    """Each of ``params`` must be a parameter of ``model``'s constructor, of its default's type, finite: else one
    ValueError naming the parameter, what was given and what is allowed."""
    cls = _model_class(model)
    if cls is None:
        if params:
            raise ValueError(
                f"model_params {sorted(params)}: model 'mf' takes none (its settings are options: "
                "--l2, --dim, --init-std, ...)"
            )
        return
    signature = inspect.signature(cls).parameters  # the constructor's, without self
    allowed = {name: p.default for name, p in signature.items() if name not in _DRIVER_FILLS}
    if model == "ials":
        allowed["factors"] = signature["factors"].default  # iALS's embedding size may be set by name too
    for name, value in params.items():
        if name not in allowed:
            raise ValueError(f"model_params: {model} has no parameter {name!r}; allowed: {sorted(allowed)}")
        default = allowed[name]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            kind = "a finite number"
        else:
            ok, kind = isinstance(value, type(default)), type(default).__name__
        if not ok:
            raise ValueError(f"model_params: {model}'s {name}={value!r} must be {kind}")


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``recloss-lite train`` exposes each field as an option.

    The recipe fields: ``lr_schedule`` (``constant`` or ``cosine`` over ``epochs``), ``warmup_epochs`` (linear
    warm-up), ``lr_decay`` (times the rate after each validation without a new best), ``dropout`` (on the MF
    embeddings a batch uses, in training only) and ``refit`` (after the epoch count is chosen on validation,
    retrain on the whole training set for that many epochs, with the same rates, and test that model);
    ``optimizer`` (MF: ``lazy-adam`` moves only the rows of a batch, ``adam`` every row every step, as
    :class:`RowAdam` explains).
    ``test_curve`` also scores the test split along the refit, every ``eval_every`` epochs, into the refit's history:
    the curve from which a published number that picks its epoch on test would be read (chapter 07 shows it, so
    labelled). Nothing is chosen from it: the run's metrics stay those of the refit's last epoch.
    """

    dataset: str = "ml-100k"
    loss: str = "bpr"
    loss_params: dict = field(default_factory=dict)
    model: str = "mf"
    model_params: dict = field(default_factory=dict)
    dim: int = 64
    similarity: str = "dot"
    sampler: str = "uniform"
    num_negatives: int = 1
    shared_negatives: bool = False
    pop_alpha: float = 0.75
    candidates: int = 4
    batch_size: int = 2048
    lr: float = 1e-3
    lr_decay: float = 1.0
    lr_schedule: str = "constant"
    optimizer: str = "lazy-adam"
    warmup_epochs: int = 0
    dropout: float = 0.0
    l2: float = 1e-4
    epochs: int = 100
    eval_every: int = 1
    patience: int = 5
    valid_fraction: float = 0.1
    refit: bool = False
    test_curve: bool = False
    ks: tuple[int, ...] = (20,)
    seed: int = 0
    init_std: float = 0.1
    max_seconds: float | None = None
    eval_batch_size: int = 64
    device: str = "cpu"
    data_dir: str | None = None

    def __post_init__(self) -> None:
        self.ks = tuple(self.ks)
        for name, f in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if f.type in ("int", "float", "float | None") and value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"{name}={value!r}: must be a finite number")
                if f.type == "int" and not isinstance(value, int):
                    raise ValueError(f"{name}={value!r}: must be an integer")
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in self.ks):
            raise ValueError(f"ks={self.ks!r}: must be integers")
        checks = [
            ("dim", self.dim >= 1, ">= 1"),
            ("num_negatives", self.num_negatives >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 2, ">= 2"),
            ("lr", self.lr > 0, "> 0"),
            ("l2", self.l2 >= 0, ">= 0"),
            ("lr_decay", 0 < self.lr_decay <= 1, "in (0, 1]"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("eval_every", self.eval_every >= 1, ">= 1"),
            ("patience", self.patience >= 1, ">= 1"),
            ("valid_fraction", 0 < self.valid_fraction < 1, "in (0, 1)"),
            ("ks", len(self.ks) > 0 and min(self.ks) >= 1, "non-empty, each >= 1"),
            ("init_std", self.init_std > 0, "> 0"),
            ("candidates", self.candidates >= 1, ">= 1"),
            ("pop_alpha", 0 <= self.pop_alpha <= 2, "in [0, 2]"),
            ("max_seconds", self.max_seconds is None or self.max_seconds > 0, "> 0 or None"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: allowed range is {allowed}")
        for name, value, choices in (
            ("model", self.model, MODELS),
            ("sampler", self.sampler, KINDS),
            ("lr_schedule", self.lr_schedule, SCHEDULES),
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("similarity", self.similarity, ("dot", "cosine")),
        ):
            if value not in choices:
                raise ValueError(f"{name}={value!r}: allowed values are {choices}")
        if self.optimizer != "lazy-adam" and self.model != "mf":
            raise ValueError(f"optimizer={self.optimizer!r}: applies to model 'mf' only (model={self.model!r})")
        check_model_params(self.model, self.model_params)
        loss = losses.make(self.loss, **self.loss_params)  # fails now, with the loss module's message, not mid-run
        if self.sampler == "dns" and loss.name == "softmax":
            raise ValueError(
                "sampler='dns' has no closed-form sampling probability, which the softmax loss's log-Q "
                "correction needs: use sampler='uniform' or 'popularity' with loss='softmax'"
            )
        if self.device not in ("cpu", "cuda") and not (self.device.startswith("cuda:") and self.device[5:].isdigit()):
            raise ValueError(f"device={self.device!r}: allowed values are cpu, cuda, cuda:N")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """A short name for this configuration: dataset-model-loss-hash."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        label = f"mf-{self.loss}" if self.model == "mf" else self.model
        return f"{self.dataset}-{label}-{digest}"

    def lr_at(self, epoch: int) -> float:
        """The scheduled rate of ``epoch`` (1-based) before any reduce-on-plateau factor: warm-up, then cosine."""
        factor = min(1.0, epoch / self.warmup_epochs) if self.warmup_epochs else 1.0
        if self.lr_schedule == "cosine":
            factor *= 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        return self.lr * factor


@functools.cache
def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` if the library has uncommitted changes), or ``unknown``, as it
    was when this process first asked: the code a process runs is the code it imported, even if HEAD moves on
    during a long run."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "recloss_lite"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def matrix_checksum(*matrices: sp.csr_matrix) -> str:
    """sha256 over the CSR structure of the given matrices: identifies the exact data a run saw."""
    digest = hashlib.sha256()
    for matrix in matrices:
        matrix = matrix.tocsr()
        for array in (np.asarray(matrix.shape), matrix.indptr, matrix.indices):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` then rename ``tmp`` onto ``path``: readers never see half a file, and a failed write (a full
    disk, a read-only folder) removes its temporary file before the error propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (:func:`_write_atomic`)."""
    _write_atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n"))


def interaction_pairs(matrix: sp.csr_matrix, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) of every stored entry of a CSR matrix, as int64 tensors on ``device``."""
    matrix = matrix.tocsr()
    users = data_module.entry_rows(matrix)
    return (torch.from_numpy(users).to(device), torch.from_numpy(matrix.indices.astype(np.int64)).to(device))


def config_sampler(train: sp.csr_matrix, config: TrainConfig) -> NegativeSampler:
    """The negative sampler ``config`` asks for, over the training matrix ``train``, on the run's device."""
    return NegativeSampler(
        train,
        config.sampler,
        config.num_negatives,
        config.shared_negatives,
        config.pop_alpha,
        config.candidates,
        device=config.device,
    )


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The random stream of one epoch on ``device``, a function of (seed, epoch) only: resuming reproduces it."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


def _dropout(vectors: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout with the epoch's generator (not the global one), so a resumed epoch drops the same entries."""
    keep = torch.rand(vectors.shape, generator=generator, device=vectors.device) >= rate
    return vectors * keep / (1.0 - rate)


class NamedLoss(Protocol):
    """What :func:`train_epoch` needs of its loss: ``loss_fn(pos, neg, **extra)``, the registered ``name`` and its
    ``params`` (a :class:`.losses.Loss`, as :func:`.losses.make` gives it)."""

    name: str

    @property
    def params(self) -> dict[str, float]: ...

    def __call__(self, pos: torch.Tensor, neg: torch.Tensor, **extra: Any) -> torch.Tensor: ...


def train_epoch(
    model: MF,
    optimizer: RowAdam,
    loss_fn: NamedLoss,
    sampler: NegativeSampler,
    users: torch.Tensor,
    items: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    progress: bool = False,
) -> float:
    """One pass over the training pairs (on the model's device) in shuffled batches; returns the mean training loss.

    Everything stays on the device: the shuffle, the sampler, the loss accumulation and the optimiser; the only
    host synchronisation is the mean loss returned at the end.
    """
    device = model.weight.device
    order = torch.randperm(len(users), generator=generator, device=device)
    users, items = users[order], items[order]  # two gathers an epoch instead of two a batch
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    wants_log_q = loss_fn.name == "softmax"

    def scorer(batch_users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return model.row_scores(batch_users, candidates)

    batches = range(0, len(order), config.batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="batches", leave=False, mininterval=1.0)
    for start in batches:
        batch_users, batch_items = users[start : start + config.batch_size], items[start : start + config.batch_size]
        if len(batch_users) < 2:
            continue
        negatives = sampler.sample(batch_users, batch_items, generator, scorer=scorer)
        size = len(batch_users)
        parts = [batch_users, batch_items + model.n_users]
        if not negatives.in_batch:
            parts.append(negatives.items.reshape(-1) + model.n_users)
        ids = torch.cat(parts)
        # Per-row negatives on the CPU, no dropout: scores and their backward by the compiled kernels. The dot
        # product with a few negatives reads the rows in place; otherwise (cosine, or many negatives) the kernels
        # take the batch's distinct rows, normalised once each, row by row (kernels.grouped_scores). Else autograd
        # through one leaf of the batch's distinct rows. Either way the loss is differentiated by autograd and every
        # row gets the sum of its occurrences' gradients. BPR on the dot product with a few negatives, the commonest
        # step, is one compiled call (RowAdam.bpr_step): the same numbers, without the per-batch Python.
        per_row = (
            not negatives.shared
            and not negatives.in_batch
            and not config.dropout
            and device.type == "cpu"
            and model.weight.dtype == torch.float32
            and kernels.library() is not None
        )
        grouped = per_row and (model.similarity == "cosine" or negatives.items.shape[1] >= kernels.GROUPED_FROM)
        if per_row and not grouped and loss_fn.name == "bpr" and not optimizer.dense:  # one compiled call
            batch_loss = optimizer.bpr_step(ids, size, loss_fn.params["tau"], config.l2)
            assert batch_loss is not None  # per_row checked that the kernels apply
            total += batch_loss * size
            count += size
            continue
        unique_ids, inverse, counts, *groups = optimizer.distinct(ids, grouped=grouped)
        grouped = bool(groups)  # the layout came with the distinct rows
        extra = {}
        if wants_log_q:
            log_q_neg = negatives.log_q
            if negatives.in_batch:
                off_diagonal = ~torch.eye(size, dtype=torch.bool, device=device)
                log_q_neg = log_q_neg.expand(size, size)[off_diagonal].view(size, size - 1)
            elif negatives.shared:
                log_q_neg = log_q_neg.expand(size, -1)
            extra = {"log_q_pos": negatives.log_q_pos, "log_q_neg": log_q_neg}
        scores = norms = None
        if grouped:
            if model.similarity == "cosine":  # gathered and normalised in one pass
                gathered = kernels.normalize(model.weight.data, unique_ids)
                assert gathered is not None  # grouped: the kernels apply (per_row checked the table)
                table, norms = gathered
            else:
                table = model.weight.data.index_select(0, unique_ids)
            group_order, group_start = groups
            kernel_args = (table, inverse[:size], group_order, group_start)
            scores = kernels.grouped_scores(*kernel_args, negatives.items.shape[1])
        elif per_row and model.similarity == "dot":
            kernel_args = (model.weight.data, parts[0], parts[1], parts[2].view(size, -1))
            scores = kernels.batch_scores(*kernel_args)
        if scores is not None:
            pos, neg = (part.requires_grad_(True) for part in scores)
            loss = loss_fn(pos, neg, **extra)
            grad_pos, grad_neg = torch.autograd.grad(loss, (pos, neg))
            if grouped:
                grad = kernels.grouped_scores_backward(*kernel_args, grad_pos, grad_neg)
                if norms is not None:  # back through the normalisation
                    assert grad is not None  # the kernels gave the scores, so they apply to the backward too
                    grad = kernels.normalize_backward(table, norms, grad)
            else:
                grad = kernels.batch_scores_backward(*kernel_args, grad_pos, grad_neg, inverse, len(unique_ids))
            assert grad is not None  # as above
        else:
            rows = optimizer.gather(unique_ids)
            slots = inverse.split([len(part) for part in parts])
            if config.dropout:  # per occurrence, before the similarity's normalisation
                vectors = [model.normalize(_dropout(rows.index_select(0, s), config.dropout, generator)) for s in slots]
            else:
                normalized = model.normalize(rows)
                vectors = [normalized.index_select(0, s) for s in slots]
            user_vectors, pos_vectors, *rest = vectors
            neg_vectors = rest[0].view(*negatives.items.shape, -1) if rest else None
            pos, neg = batch_scores(
                user_vectors, pos_vectors, neg_vectors, shared=negatives.shared, in_batch=negatives.in_batch
            )
            loss = loss_fn(pos, neg, **extra)
            (grad,) = torch.autograd.grad(loss, rows)
        # LightGCN's L2 on the rows a batch touches: d/dw of l2 * 0.5 * ||w||^2 / B for each occurrence.
        decay = counts.to(grad.dtype).mul_(config.l2 / size) if config.l2 > 0 else None
        optimizer.step(unique_ids, grad, unique=True, decay=decay)
        total += loss.detach() * size
        count += size
    return float(total) / max(count, 1)


class Trainable(Protocol):
    """The model contract of :func:`run_epochs`: what each model (MF, iALS, EASE, HDCCF) provides.

    ``lr`` is set by the driver before each epoch (models without a rate ignore it); ``iterative`` is False for a
    closed-form model (EASE: one epoch, no validation split); ``saves_state`` is False where the state is too large
    to checkpoint and cheaper to recompute (EASE re-fits when a finished run is reopened).
    """

    @property
    def model(self) -> object:
        """The model trained (MF, IALS, EASE or HDCCF); read-only here, so each trainable may name its own type."""

    lr: float
    iterative: bool
    saves_state: bool
    generator_device: str  # where the epoch's random stream lives (the device its sampling runs on)

    def train_epoch(self, generator: torch.Generator, deadline: float | None) -> float | None:
        """One epoch; the mean training loss (None where the model has none). May stop at ``deadline``
        (``time.perf_counter()`` value) inside a long epoch."""

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Scores (U, n_items) of every item for ``users`` (U,): the evaluation contract."""

    def model_state(self) -> dict[str, torch.Tensor]:
        """The parameters that define the model's scores (the best epoch's are kept)."""

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None: ...

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly: parameters and optimiser state."""

    def load_state_dict(self, state: dict) -> None: ...


class MFTrainable:
    """MF with any loss of :mod:`.losses`, negatives from :class:`.sampling.NegativeSampler`, :class:`RowAdam`."""

    iterative, saves_state = True, True

    def __init__(self, config: TrainConfig, train: sp.csr_matrix, n_users: int, n_items: int) -> None:
        self.config, self.device, self.generator_device = config, torch.device(config.device), config.device
        self.model = MF(n_users, n_items, config.dim, config.similarity, config.init_std, config.seed).to(self.device)
        self.optimizer = RowAdam(self.model.weight, config.lr, dense=config.optimizer == "adam")
        # The epoch checks its mean loss: no per-batch finiteness check (a host synchronisation on a GPU).
        self.loss_fn = losses.make(config.loss, check_finite=False, **config.loss_params)
        self.sampler = config_sampler(train, config)
        self.users, self.items = interaction_pairs(train, self.device)

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def train_epoch(self, generator: torch.Generator, deadline: float | None) -> float:
        return train_epoch(
            self.model, self.optimizer, self.loss_fn, self.sampler, self.users, self.items, self.config, generator
        )

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.scores(users.to(self.device))

    def model_state(self) -> dict[str, torch.Tensor]:
        return {"weight": self.model.weight.detach().clone()}

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.weight.data.copy_(state["weight"])

    def state_dict(self) -> dict:
        return {"weight": self.model.weight.detach(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.load_model_state(state)
        self.optimizer.load_state_dict(state["optimizer"])


class IALSTrainable:
    """iALS (:class:`.linear.IALS`): an epoch is one sweep (users, then items); no learning rate."""

    iterative, saves_state, lr, generator_device = True, True, 0.0, "cpu"

    def __init__(self, config: TrainConfig, train: sp.csr_matrix, n_users: int, n_items: int) -> None:
        from .linear import IALS

        options = {"factors": config.dim, "seed": config.seed, "device": config.device, **config.model_params}
        self.model = IALS(**options).start(train)

    def train_epoch(self, generator: torch.Generator, deadline: float | None) -> None:
        self.model.fit_iteration()
        return None

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.scores(users)

    def model_state(self) -> dict[str, torch.Tensor]:
        user_factors, item_factors = self.model.user_factors, self.model.item_factors
        assert user_factors is not None and item_factors is not None  # drawn by start() in __init__
        return {"user_factors": user_factors.clone(), "item_factors": item_factors.clone()}

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.user_factors = state["user_factors"].to(self.model.device, copy=True)
        self.model.item_factors = state["item_factors"].to(self.model.device, copy=True)

    state_dict, load_state_dict = model_state, load_model_state


class EASETrainable:
    """EASE (:class:`.linear.EASE`): one closed-form epoch on the whole training set; its (n_items, n_items) weights
    are not checkpointed (a reopened run re-fits)."""

    iterative, saves_state, lr, generator_device = False, False, 0.0, "cpu"

    def __init__(self, config: TrainConfig, train: sp.csr_matrix, n_users: int, n_items: int) -> None:
        from .linear import EASE

        self.model, self.train = EASE(**{"device": config.device, **config.model_params}), train

    def train_epoch(self, generator: torch.Generator, deadline: float | None) -> None:
        self.model.fit(self.train)
        return None

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.scores(users)

    def model_state(self) -> dict[str, torch.Tensor]:
        return {}

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        pass

    state_dict, load_state_dict = model_state, load_model_state


class HDCCFTrainable:
    """HDCCF (:class:`.hdccf.HDCCF`, chapter 10_hdccf): batches of eq. (9); the embedding tables step with lazy
    Adam (``torch.optim.SparseAdam``: only the rows a batch touches), the modulator with Adam. An epoch stops at the
    deadline (its batches take minutes on the larger sets), and ``max_batches`` caps an epoch (the chapter's fast
    mode)."""

    iterative, saves_state, generator_device = True, True, "cpu"

    def __init__(
        self, config: TrainConfig, train: sp.csr_matrix, n_users: int, n_items: int, max_batches: int | None = None
    ) -> None:
        from .hdccf import HDCCF

        self.model = HDCCF(n_users, n_items, dim=config.dim, seed=config.seed, **config.model_params)
        self.device = torch.device(config.device)
        self.model.to(self.device)
        self.train, self.batch_size, self.max_batches = train, config.batch_size, max_batches
        params = dict(self.model.named_parameters())
        tables = [value for name, value in params.items() if name.endswith(("_embedding", "_factor"))]
        dense = [value for name, value in params.items() if not name.endswith(("_embedding", "_factor"))]
        self.optimizers = [torch.optim.SparseAdam(tables, lr=config.lr)] + (
            [torch.optim.Adam(dense, lr=config.lr)] if dense else []
        )

    @property
    def lr(self) -> float:
        return self.optimizers[0].param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = value

    def train_epoch(self, generator: torch.Generator, deadline: float | None) -> float:
        total, count = torch.zeros((), dtype=torch.float64, device=self.device), 0  # summed on the device
        for number, batch in enumerate(self.model.make_batches(self.train, self.batch_size, generator)):
            if self.max_batches is not None and number >= self.max_batches:
                break
            loss = self.model.batch_loss(batch.to(self.device))
            for optimizer in self.optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in self.optimizers:
                optimizer.step()
            total += loss.detach() * len(batch.users)
            count += len(batch.users)
            if deadline is not None and time.perf_counter() >= deadline:
                break  # the budget ends inside the epoch: the driver evaluates what was trained, then stops
        return float(total) / max(count, 1)

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.scores(users.to(self.device))

    def model_state(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().clone() for name, value in self.model.state_dict().items()}

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for optimizer, saved in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)


TRAINABLES: dict[str, type[MFTrainable | IALSTrainable | EASETrainable | HDCCFTrainable]] = {
    "mf": MFTrainable,
    "ials": IALSTrainable,
    "ease": EASETrainable,
    "hdccf": HDCCFTrainable,
}


def make_trainable(config: TrainConfig, train: sp.csr_matrix, n_users: int, n_items: int, **options) -> Trainable:
    """The :class:`Trainable` of ``config.model`` on the training matrix ``train``."""
    return TRAINABLES[config.model](config, train, n_users, n_items, **options)


ScoreFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Evaluation:
    """How a run is selected and tested. :func:`fit` builds the default (full ranking, NGCF/LightGCN protocol): the
    model trains on ``fit_train`` (train minus a validation split), ``validate(score_fn)`` ranks the validation
    split, ``key`` picks the best epoch, ``test(score_fn)`` scores the selected model. Chapter 10's leave-one-out
    ablations pass their own."""

    fit_train: sp.csr_matrix
    validate: Callable[[ScoreFn], dict] | None
    test: Callable[[ScoreFn], dict] | None  # None: no test metrics (a tuning trial)
    key: str


def full_ranking(config: TrainConfig, dataset: data_module.Dataset, iterative: bool = True) -> Evaluation:
    """The default :class:`Evaluation`: a ``valid_fraction`` validation split of train (none for a closed-form
    model, which trains on all of train), Recall/NDCG@ks by full ranking."""

    def ranking(train: sp.csr_matrix, test: sp.csr_matrix) -> Callable[[ScoreFn], dict]:
        return lambda score_fn: metrics.evaluate(score_fn, train, test, ks=config.ks, batch_size=config.eval_batch_size)

    test = ranking(dataset.train, dataset.test)
    key = f"recall@{config.ks[0]}"
    if not iterative:
        return Evaluation(dataset.train, None, test, key)
    fit_train, valid = data_module.validation_split(dataset.train, config.valid_fraction, seed=config.seed)
    return Evaluation(fit_train, ranking(fit_train, valid), test, key)


def new_state() -> dict:
    """The driver's state of a run that has not trained yet (all plain values: saved in every checkpoint)."""
    return {
        "epoch": 0,
        "history": [],
        "best_epoch": 0,
        "best_valid": -1.0,
        "stale": 0,
        "seconds": 0.0,
        "lr_scale": 1.0,
        "commit": git_commit(),
    }


def _stop_reason(config: TrainConfig, state: dict, epochs: int, iterative: bool, budgeted: bool) -> str | None:
    """Why the run stops before its next epoch, or None if it goes on (checked before every epoch, so a resumed
    run that had already finished trains no further)."""
    if not iterative and state["epoch"] >= 1:
        return "closed form"
    if state["stale"] >= config.patience:
        return "early stopping"
    if state["epoch"] >= epochs:
        return "epochs"
    if budgeted and config.max_seconds is not None and state["seconds"] >= config.max_seconds:
        return "time budget"
    return None


def run_epochs(
    trainable: Trainable,
    config: TrainConfig,
    state: dict,
    *,
    validate: Callable[[ScoreFn], dict] | None = None,
    key: str = "",
    lrs: list[float] | None = None,
    best: dict | None = None,
    save: Callable[[dict, dict | None], None] | None = None,
    progress: bool = False,
    label: str = "",
    watch: Callable[[ScoreFn], dict] | None = None,
) -> tuple[dict, dict | None, str]:
    """Train ``trainable`` epoch by epoch until it stops; return (state, best model state, stop reason).

    Selection (``validate`` given): the rate of epoch e is ``config.lr_at(e)`` times the plateau factor (times
    ``config.lr_decay`` after each validation without a new best), validation every ``eval_every`` epochs keeps the
    best model state, and the run stops after ``patience`` stale validations, ``config.epochs`` epochs or
    ``max_seconds``. Replay (``lrs`` given: the refit): exactly ``len(lrs)`` epochs at those rates, no validation.
    ``save(state, best)`` is called after every epoch (the checkpoint); ``state`` may come from one, and the run
    continues where it stopped. ``watch`` (a replay's ``TrainConfig.test_curve``) scores the model on the same
    epochs as a validation would, into the history's ``test``; nothing is chosen from it.
    """
    epochs = len(lrs) if lrs is not None else config.epochs
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=state["epoch"], desc=label)
    while (reason := _stop_reason(config, state, epochs, trainable.iterative, lrs is None)) is None:
        epoch = state["epoch"] + 1
        trainable.lr = lrs[epoch - 1] if lrs is not None else config.lr_at(epoch) * state["lr_scale"]
        started = time.perf_counter()
        deadline = (
            started + config.max_seconds - state["seconds"] if config.max_seconds is not None and lrs is None else None
        )
        loss = trainable.train_epoch(epoch_generator(config.seed, epoch, trainable.generator_device), deadline)
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(
                f"epoch {epoch}: the training loss is {loss}; lower lr={config.lr} or check "
                f"the loss parameters {config.loss_params}"
            )
        entry = {"epoch": epoch, "lr": trainable.lr, "train_seconds": time.perf_counter() - started}
        if loss is not None:
            entry["loss"] = loss
        scored = epoch % config.eval_every == 0 or epoch == epochs  # validation's epochs, and the test curve's
        if validate is not None and scored:
            entry["valid"] = validate(trainable.scores)
            if entry["valid"][key] > state["best_valid"]:
                state.update(best_valid=entry["valid"][key], best_epoch=epoch, stale=0)
                best = trainable.model_state()
            else:
                state["stale"] += 1
                state["lr_scale"] *= config.lr_decay  # reduce on plateau
        elif validate is None:
            state["best_epoch"] = epoch  # replay or closed form: the last epoch is the model
        if watch is not None and scored:
            entry["test"] = watch(trainable.scores)
        entry["seconds"] = time.perf_counter() - started
        state["seconds"] += entry["seconds"]
        state["history"].append(entry)
        state["epoch"] = epoch
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                **({"loss": f"{loss:.4f}"} if loss is not None else {}),
                **({key: f"{entry['valid'][key]:.4f}"} if "valid" in entry else {}),
            )
        if save is not None:
            save(state, best)
    if bar is not None:
        bar.close()
    return state, best, reason


def _comparable(settings: dict) -> dict:
    """A configuration as plain JSON values, fields missing from an older one at their defaults."""
    defaults = {
        f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        for f in dataclasses.fields(TrainConfig)
    }
    return json.loads(json.dumps({**defaults, **settings}))


class RunFolder:
    """A run's folder: ``checkpoint.pt`` (the selection's last epoch and best state), ``refit.pt`` (the refit's
    last epoch) and ``result.json`` (written last: a run is finished when it exists). Nothing here is overwritten
    unless asked: :meth:`open` decides whether a run starts, continues or is already done."""

    def __init__(self, path: str | Path, config: TrainConfig) -> None:
        self.path, self.config = Path(path), config
        self.settings = _comparable(config.to_dict())

    def file(self, name: str) -> Path:
        return self.path / name

    def differences(self, saved: dict) -> list[str]:
        """The settings in which ``saved`` differs from this run's, beyond a larger budget."""
        saved = _comparable(saved)
        return sorted(
            name for name, value in self.settings.items() if name not in RESUME_MAY_CHANGE and saved.get(name) != value
        )

    def check_writable(self) -> None:
        """Fail now, before any training, if the folder cannot be created or written to."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path, prefix=".write-test-"):
                pass
        except OSError as error:
            raise ValueError(f"--out {self.path}: cannot write the run there ({error.strerror or error})") from None

    def result(self) -> dict | None:
        path = self.file(RESULT)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable result ({error}); pass --overwrite to train again") from None

    def load(self, name: str) -> dict | None:
        """A checkpoint (``weights_only``: plain values and tensors, never code), or None if there is none."""
        path = self.file(name)
        if not path.exists():
            return None
        try:
            saved = torch.load(path, map_location=self.config.device, weights_only=True)
            settings = saved["config"]
        except (OSError, EOFError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as error:
            why = (
                "it is damaged or holds more than tensors and plain values, which are never unpickled"
                if isinstance(error, pickle.UnpicklingError)
                else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'truncated'}"
            )
            raise ValueError(
                f"{path}: not a readable checkpoint ({why}); remove it or pass --overwrite to train again"
            ) from None
        differs = self.differences(settings)
        if differs:
            raise ValueError(
                f"{path}: its configuration differs from this run's in {differs}; use another --out "
                "folder or pass --overwrite"
            )
        return saved

    def save(self, name: str, payload: dict) -> None:
        _write_atomic(self.file(name), lambda tmp: torch.save(payload, tmp))

    def open(self, resume: bool, overwrite: bool) -> dict | None:
        """Decide what this run does with its folder. Returns the stored result when the run is finished and stays
        so (the caller returns it unchanged); None when training starts (fresh, or from the checkpoints, which
        :meth:`load` then reads). Raises ValueError for a folder that holds another or an unfinished run."""
        self.check_writable()
        names = (RESULT, CHECKPOINT, REFIT_CHECKPOINT)
        if overwrite:
            for name in names:
                self.file(name).unlink(missing_ok=True)
            return None
        stored = self.result()
        if stored is not None:
            differs = self.differences(stored.get("params", {}))
            if differs:
                raise ValueError(
                    f"{self.path} holds a finished run whose configuration differs in {differs}; use "
                    "another --out folder or pass --overwrite"
                )
            old = _comparable(stored["params"])
            grew = self.config.epochs > old["epochs"] or (
                old["max_seconds"] is not None
                and (self.config.max_seconds is None or self.config.max_seconds > old["max_seconds"])
            )
            if resume and grew and stored.get("stop_reason") in ("epochs", "time budget"):
                return None  # continues from the checkpoint; the stored result stays until the new one replaces it
            return stored
        started = [name for name in names if self.file(name).exists()]
        if started and not resume:
            raise ValueError(
                f"{self.path} holds an unfinished run ({', '.join(started)}): pass --resume to "
                "continue it or --overwrite to start again"
            )
        return None


def _load_dataset(config: TrainConfig, dataset: data_module.Dataset | None) -> data_module.Dataset:
    if dataset is not None:
        return dataset
    return data_module.load(config.dataset, folder=config.data_dir)


def _check_device(config: TrainConfig) -> None:
    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={config.device!r} requested but torch.cuda.is_available() is False here")


def _train_phase(
    config: TrainConfig,
    trainable: Trainable,
    folder: RunFolder | None,
    name: str,
    saved: dict | None,
    progress: bool,
    label: str,
    initial: dict | None = None,
    **options,
) -> tuple[dict, dict | None, str]:
    """One phase (selection or refit) of :func:`fit`: from ``saved`` (its checkpoint) or from ``initial`` (default
    :func:`new_state`), saving checkpoint ``name`` in ``folder`` after every epoch."""
    state, best = initial or new_state(), None
    if saved is not None:
        state, best = saved["state"], saved.get("best")
        if trainable.saves_state:
            trainable.load_state_dict(saved["trainable"])
        elif state["epoch"]:  # EASE: nothing saved to continue from, so train again
            state = new_state()

    def save(state: dict, best: dict | None) -> None:
        assert folder is not None  # save is passed on only with a folder
        folder.save(
            name,
            {
                "config": config.to_dict(),
                "state": state,
                "best": best,
                "trainable": trainable.state_dict() if trainable.saves_state else {},
            },
        )

    return run_epochs(
        trainable,
        config,
        state,
        best=best,
        save=save if folder is not None else None,
        progress=progress,
        label=label,
        **options,
    )


def fit(
    config: TrainConfig,
    dataset: data_module.Dataset | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    evaluation: Evaluation | None = None,
    **trainable_options,
) -> tuple[dict, object]:
    """Train ``config.model`` with ``config``; return the result record (also written atomically to
    ``out_dir/result.json``) and the trained model (MF, IALS, EASE or HDCCF).

    The selection phase trains on train minus a validation split and keeps the best epoch on validation; with
    ``config.refit`` a second model then trains on the whole training set for that many epochs (same rates), and
    its test metrics become ``metrics`` (the selected model's stay as ``selected_metrics``). With ``out_dir`` a
    checkpoint is written after every epoch; a folder is never overwritten: a finished run returns its stored
    result (and the model, reloaded), ``resume=True`` continues an unfinished one or one whose budget grew, and
    ``overwrite=True`` starts again. ``evaluation`` replaces the full-ranking protocol (:func:`full_ranking`).
    """
    started = time.perf_counter()
    _check_device(config)
    folder = RunFolder(out_dir, config) if out_dir is not None else None
    stored = folder.open(resume, overwrite) if folder is not None else None
    dataset = _load_dataset(config, dataset)
    iterative = TRAINABLES[config.model].iterative
    evaluation = evaluation or full_ranking(config, dataset, iterative)
    shape = (dataset.n_users, dataset.n_items)
    trainable = make_trainable(config, evaluation.fit_train, *shape, **trainable_options)
    if stored is not None:
        assert folder is not None  # stored is read from the folder
        return stored, _reopen(config, dataset, folder, stored, trainable, trainable_options)
    label = f"{config.dataset} {config.loss if config.model == 'mf' else config.model}"
    state, best, stop_reason = _train_phase(
        config,
        trainable,
        folder,
        CHECKPOINT,
        folder.load(CHECKPOINT) if folder else None,
        progress,
        label,
        validate=evaluation.validate,
        key=evaluation.key,
    )
    if best is not None:
        trainable.load_model_state(best)
    selected = evaluation.test(trainable.scores) if evaluation.test is not None else {}
    final, refit = trainable, None
    # The refit is there for its test metrics: without a test split (a search's trials) it would train for nothing.
    if config.refit and iterative and state["best_epoch"] > 0 and evaluation.test is not None:
        lrs = [entry["lr"] for entry in state["history"][: state["best_epoch"]]]
        final = make_trainable(config, dataset.train, *shape, **trainable_options)
        saved = folder.load(REFIT_CHECKPOINT) if folder else None
        if saved is not None and saved["state"].get("lrs") != lrs:
            saved = None  # the selection changed (a resumed run with a larger budget): refit from the start
        refit_state, _, _ = _train_phase(
            config,
            final,
            folder,
            REFIT_CHECKPOINT,
            saved,
            progress,
            label + " refit",
            initial={**new_state(), "lrs": lrs},
            lrs=lrs,
            watch=evaluation.test if config.test_curve else None,
        )
        refit = {"epochs": refit_state["epoch"], "seconds": refit_state["seconds"], "history": refit_state["history"]}
    test_metrics = evaluation.test(final.scores) if final is not trainable and evaluation.test else selected
    result = _result(config, dataset, state, stop_reason, started, test_metrics, selected, refit)
    if folder is not None:
        write_json_atomic(folder.file(RESULT), result)
    return result, final.model


def _reopen(
    config: TrainConfig,
    dataset: data_module.Dataset,
    folder: RunFolder,
    stored: dict,
    trainable: Trainable,
    options: dict,
) -> object | None:
    """The model of a finished run, from its checkpoints (EASE re-fits); None where they are gone."""
    if not trainable.saves_state:
        trainable.train_epoch(epoch_generator(config.seed, 1), None)
        return trainable.model
    if stored.get("refit"):
        saved = folder.load(REFIT_CHECKPOINT)
        if saved is None:
            return None
        final = make_trainable(config, dataset.train, dataset.n_users, dataset.n_items, **options)
        final.load_state_dict(saved["trainable"])
        return final.model
    saved = folder.load(CHECKPOINT)
    if saved is None or saved.get("best") is None:
        return None
    trainable.load_model_state(saved["best"])
    return trainable.model


def command_line() -> str:
    """The command that started this process, as a user would type it (``recloss-lite ...``), or ``python``'s
    argv; inside a notebook kernel, where argv names the kernel launcher, ``(notebook)``."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program == "recloss-lite":
        return " ".join(["recloss-lite", *sys.argv[1:]])
    if "ipykernel" in program or any("ipykernel" in arg or "kernel-" in arg for arg in sys.argv[1:]):
        return "(notebook)"
    return " ".join(sys.argv)


def _result(
    config: TrainConfig,
    dataset: data_module.Dataset,
    state: dict,
    stop_reason: str,
    started: float,
    test_metrics: dict,
    selected_metrics: dict,
    refit: dict | None,
) -> dict:
    """The result record of a run: configuration, history, selection, test metrics and provenance."""
    result = {
        "dataset": dataset.name,
        "model": config.model,
        "loss": config.loss if config.model == "mf" else None,
        "params": config.to_dict(),
        "metrics": test_metrics,
        "valid_metrics": next(
            (e["valid"] for e in state["history"] if e["epoch"] == state["best_epoch"] and "valid" in e), {}
        ),
        "best_epoch": state["best_epoch"],
        "epochs": state["epoch"],
        "stop_reason": stop_reason,
        "history": state["history"],
        "seconds": state["seconds"] + (refit["seconds"] if refit else 0.0),
        "wall_seconds_this_session": time.perf_counter() - started,
        "command": command_line(),
        "data_checksum": matrix_checksum(dataset.train, dataset.test),
        "device": config.device,
        "torch": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": state.get("commit") or git_commit(),
    }
    if refit is not None:
        result.update(refit=refit, selected_metrics=selected_metrics)
    return json.loads(json.dumps(result))  # as stored: a reopened run returns the same values and types
