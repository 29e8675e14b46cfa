"""The fit loop: MF trained with any loss of :mod:`recloss_lite.core.losses` (chapter 07_training).

One configuration dataclass, one loop. The loss is looked up by name; negatives come from
:class:`~.sampling.NegativeSampler`; embeddings are updated by a lazy row-wise Adam that touches only the
rows of the batch. Early stopping uses a validation split carved out of train (the test set never selects a model);
each epoch is seeded from (seed, epoch), so a resumed run gives exactly the numbers of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from . import data as data_module
from . import kernels, losses, metrics
from .models import MF, batch_scores
from .sampling import KINDS, NegativeSampler

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = ("mf", "ials", "ease", "hdccf")
RESUME_MAY_CHANGE = ("epochs", "max_seconds")  # --resume with a larger budget continues a finished run


class RowAdam:
    """Adam that updates only the rows a step touches ("lazy" Adam, as torch.optim.SparseAdam).

    The moments of all rows live in one (n, 2, d) tensor. A training step asks :meth:`distinct` for the distinct
    rows among every row id of its batch, sums each row's gradients over its occurrences (autograd through one
    leaf from :meth:`gather`, or the compiled backward of :mod:`recloss_lite.core.kernels`), and :meth:`step` then
    updates exactly those rows, in one compiled pass where the kernels are available.
    """

    def __init__(self, weight: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.weight, self.lr, self.betas, self.eps = weight, lr, betas, eps
        self.moments = torch.zeros(weight.shape[0], 2, weight.shape[1], dtype=weight.dtype, device=weight.device)
        self.steps = 0
        # Scratch for distinct(): a mark and a position per row; distinct ids by marking, not sorting (2x faster).
        self._marked = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
        self._position = torch.zeros(weight.shape[0], dtype=torch.int64, device=weight.device)

    def distinct(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The distinct rows among ``ids``, in increasing order, as ``torch.unique`` gives them: (unique ids (K,),
        inverse (len(ids),) with ``ids == unique[inverse]``, counts (K,))."""
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
    def step(self, ids: torch.Tensor, grads: torch.Tensor, unique: bool = False,
             decay: torch.Tensor | None = None) -> None:
        """Apply one Adam step to rows ``ids`` (K,) with gradients ``grads`` (K, d). Gradients of duplicate ids are
        summed; ``unique=True`` says ``ids`` has none (as from :meth:`distinct`) and skips that work. ``decay``
        (K,), with distinct ids only, adds the L2 gradient ``decay[r] * w_r`` to row r's gradient."""
        self.steps += 1
        if not unique:
            ids, inverse, _ = self.distinct(ids)
            grads = torch.zeros(len(ids), grads.shape[1], dtype=grads.dtype, device=grads.device).index_add_(
                0, inverse, grads)
        beta1, beta2 = self.betas
        step_size = self.lr * math.sqrt(1 - beta2 ** self.steps) / (1 - beta1 ** self.steps)
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

    def state_dict(self) -> dict:
        return {"moments": self.moments, "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state: dict) -> None:
        self.moments.copy_(state["moments"])
        self.steps = int(state["steps"])
        self.lr = float(state.get("lr", self.lr))


@dataclass
class TrainConfig:
    """Everything that defines a training run; ``recloss-lite train`` exposes each field as an option."""

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
    l2: float = 1e-4
    epochs: int = 100
    eval_every: int = 1
    patience: int = 5
    valid_fraction: float = 0.1
    ks: tuple[int, ...] = (20,)
    seed: int = 0
    init_std: float = 0.1
    max_seconds: float | None = None
    eval_batch_size: int = 1024
    device: str = "cpu"
    data_dir: str | None = None

    def __post_init__(self) -> None:
        self.ks = tuple(int(k) for k in self.ks)
        checks = [
            ("dim", self.dim >= 1, ">= 1"), ("num_negatives", self.num_negatives >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 2, ">= 2"), ("lr", self.lr > 0, "> 0"), ("l2", self.l2 >= 0, ">= 0"),
            ("lr_decay", 0 < self.lr_decay <= 1, "in (0, 1]"),
            ("epochs", self.epochs >= 1, ">= 1"), ("eval_every", self.eval_every >= 1, ">= 1"),
            ("patience", self.patience >= 1, ">= 1"), ("valid_fraction", 0 < self.valid_fraction < 1, "in (0, 1)"),
            ("ks", len(self.ks) > 0 and min(self.ks) >= 1, "non-empty, each >= 1"),
            ("init_std", self.init_std > 0, "> 0"), ("candidates", self.candidates >= 1, ">= 1"),
            ("max_seconds", self.max_seconds is None or self.max_seconds > 0, "> 0 or None"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: allowed range is {allowed}")
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: allowed values are {MODELS}")
        if self.sampler not in KINDS:
            raise ValueError(f"sampler={self.sampler!r}: allowed values are {KINDS}")
        loss = losses.make(self.loss, **self.loss_params)  # fails now, with the loss module's message, not mid-run
        if self.sampler == "dns" and loss.name == "softmax":
            raise ValueError("sampler='dns' has no closed-form sampling probability, which the softmax loss's log-Q "
                             "correction needs: use sampler='uniform' or 'popularity' with loss='softmax'")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r}: allowed values are cpu, cuda, cuda:N")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """A short name for this configuration: dataset-model-loss-hash."""
        digest = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        label = f"mf-{self.loss}" if self.model == "mf" else self.model
        return f"{self.dataset}-{label}-{digest}"


def git_commit() -> str:
    """The repository's HEAD commit (with ``-dirty`` if the library has uncommitted changes), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "recloss_lite"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
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


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def interaction_pairs(matrix: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor]:
    """(users, items) of every stored entry of a CSR matrix, as int64 tensors."""
    matrix = matrix.tocsr()
    users = data_module.entry_rows(matrix)
    return torch.from_numpy(users), torch.from_numpy(matrix.indices.astype(np.int64))


def config_sampler(train: sp.csr_matrix, config: TrainConfig) -> NegativeSampler:
    """The negative sampler ``config`` asks for, over the training matrix ``train``."""
    return NegativeSampler(train, config.sampler, config.num_negatives, config.shared_negatives, config.pop_alpha,
                           config.candidates)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch, a function of (seed, epoch) only: resuming reproduces it exactly."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_epoch(model: MF, optimizer: RowAdam, loss_fn: Callable, sampler: NegativeSampler,
                users: torch.Tensor, items: torch.Tensor, config: TrainConfig, generator: torch.Generator,
                progress: bool = False) -> float:
    """One pass over the training pairs in shuffled batches; returns the mean training loss."""
    order = torch.randperm(len(users), generator=generator)
    users, items = users[order], items[order]  # two gathers an epoch instead of two a batch
    total, count = 0.0, 0
    wants_log_q = loss_fn.name == "softmax"
    device = model.weight.device

    def scorer(batch_users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return model.pair_scores(batch_users.to(device), candidates.to(device)).cpu()

    batches = range(0, len(order), config.batch_size)
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc="batches", leave=False, mininterval=1.0)
    for start in batches:
        batch_users, batch_items = users[start:start + config.batch_size], items[start:start + config.batch_size]
        if len(batch_users) < 2:
            continue
        negatives = sampler.sample(batch_users, batch_items, generator, scorer=scorer)
        size = len(batch_users)
        parts = [batch_users, batch_items + model.n_users]
        if not negatives.in_batch:
            parts.append(negatives.items.reshape(-1) + model.n_users)
        ids = torch.cat(parts).to(device)
        unique_ids, inverse, counts = optimizer.distinct(ids)
        extra = {}
        if wants_log_q:
            log_q_neg = negatives.log_q.to(device)
            if negatives.in_batch:
                log_q_neg = log_q_neg.expand(size, size)[~torch.eye(size, dtype=torch.bool)].view(size, size - 1)
            elif negatives.shared:
                log_q_neg = log_q_neg.expand(size, -1)
            extra = {"log_q_pos": negatives.log_q_pos.to(device), "log_q_neg": log_q_neg}
        # Dot product, per-row negatives, on the CPU: scores and their backward by the compiled kernels, which read
        # the rows in place. Otherwise autograd through one leaf of the batch's distinct rows. Either way the loss
        # is differentiated by autograd and every row gets the sum of its occurrences' gradients.
        scores = None
        if model.similarity == "dot" and not negatives.shared and not negatives.in_batch:
            kernel_args = (model.weight.data, parts[0], parts[1], parts[2].view(size, -1))
            scores = kernels.pair_scores(*kernel_args)
        if scores is not None:
            pos, neg = (part.requires_grad_(True) for part in scores)
            loss = loss_fn(pos, neg, **extra)
            grad = kernels.pair_scores_backward(*kernel_args, *torch.autograd.grad(loss, (pos, neg)), inverse,
                                                len(unique_ids))
        else:
            rows = optimizer.gather(unique_ids)
            vectors = model.normalize(rows)
            user_vectors, pos_vectors, *rest = [vectors.index_select(0, slots) for slots in
                                                inverse.split([len(part) for part in parts])]
            neg_vectors = rest[0].view(*negatives.items.shape, -1) if rest else None
            pos, neg = batch_scores(user_vectors, pos_vectors, neg_vectors, shared=negatives.shared,
                                    in_batch=negatives.in_batch)
            loss = loss_fn(pos, neg, **extra)
            (grad,) = torch.autograd.grad(loss, rows)
        # LightGCN's L2 on the rows a batch touches: d/dw of l2 * 0.5 * ||w||^2 / B for each occurrence.
        decay = counts.to(grad.dtype).mul_(config.l2 / size) if config.l2 > 0 else None
        optimizer.step(unique_ids, grad, unique=True, decay=decay)
        total += float(loss.detach()) * size
        count += size
    return total / max(count, 1)


def _load_dataset(config: TrainConfig, dataset: data_module.Dataset | None) -> data_module.Dataset:
    if dataset is not None:
        return dataset
    return data_module.load(config.dataset, folder=config.data_dir)


def fit(config: TrainConfig, dataset: data_module.Dataset | None = None, out_dir: str | Path | None = None,
        resume: bool = False, progress: bool = True) -> tuple[dict, MF]:
    """Train MF with ``config``; return the result (also written atomically to ``out_dir/result.json``) and model.

    The result holds the config, per-epoch history (training loss, validation metrics, seconds), the best epoch on
    validation, the test metrics of that epoch's model, wall time, commit and data checksum. With ``out_dir`` a
    checkpoint is written after every epoch and ``resume=True`` continues an interrupted run from it.
    """
    if config.model == "hdccf":
        return fit_hdccf_config(config, dataset, out_dir, progress)
    if config.model != "mf":
        return fit_linear(config, dataset, out_dir, progress)
    started = time.perf_counter()
    dataset = _load_dataset(config, dataset)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False on this machine")
    fit_train, valid = data_module.validation_split(dataset.train, config.valid_fraction, seed=config.seed)
    users, items = interaction_pairs(fit_train)
    model = MF(dataset.n_users, dataset.n_items, config.dim, config.similarity, config.init_std,
               config.seed).to(device)
    optimizer = RowAdam(model.weight, config.lr)
    loss_fn = losses.make(config.loss, **config.loss_params)
    sampler = config_sampler(fit_train, config)
    key = f"recall@{config.ks[0]}"
    # The commit is taken when the run starts (and kept through --resume): the code that trained is the code named.
    state = {"epoch": 0, "history": [], "best_epoch": 0, "best_valid": -1.0, "best_weight": None,
             "seconds": 0.0, "stale": 0, "commit": git_commit()}
    checkpoint = Path(out_dir) / "checkpoint.pt" if out_dir is not None else None
    if resume and checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        # A resumed run may get a longer budget (epochs, max_seconds); anything else must be the same.
        differs = sorted(name for name, value in config.to_dict().items()
                         if name not in RESUME_MAY_CHANGE and saved["config"].get(name) != value)
        if differs:
            raise ValueError(f"{checkpoint}: its configuration differs from this run's in {differs}; use another "
                             "--out folder or drop --resume")
        model.weight.data.copy_(saved["weight"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]

    def score_fn(batch_users: torch.Tensor) -> torch.Tensor:
        return model.scores(batch_users.to(device)).cpu()

    epochs = range(state["epoch"] + 1, config.epochs + 1)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc=f"{config.dataset} {config.loss}", initial=state["epoch"], total=config.epochs)
    stop_reason = "epochs"
    for epoch in epochs:
        epoch_start = time.perf_counter()
        mean_loss = train_epoch(model, optimizer, loss_fn, sampler, users, items, config,
                                epoch_generator(config.seed, epoch))
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"epoch {epoch}: training loss is {mean_loss}; lower lr={config.lr} or "
                                     f"check the loss parameters {config.loss_params}")
        entry = {"epoch": epoch, "loss": mean_loss, "train_seconds": time.perf_counter() - epoch_start}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            entry["valid"] = metrics.evaluate(score_fn, fit_train, valid, ks=config.ks,
                                              batch_size=config.eval_batch_size)
            if entry["valid"][key] > state["best_valid"]:
                state.update(best_valid=entry["valid"][key], best_epoch=epoch, stale=0,
                             best_weight=model.weight.detach().clone())
            else:
                state["stale"] += 1
                optimizer.lr *= config.lr_decay  # reduce on plateau: each evaluation without a new best
        state["seconds"] += time.perf_counter() - epoch_start
        entry["seconds"] = time.perf_counter() - epoch_start
        state["history"].append(entry)
        state["epoch"] = epoch
        if progress:
            epochs.set_postfix(loss=f"{mean_loss:.4f}", **({f"valid_{key}": f"{entry['valid'][key]:.4f}"}
                                                          if "valid" in entry else {}))
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_name("checkpoint.pt.tmp")
            torch.save({"config": config.to_dict(), "weight": model.weight.detach(),
                        "optimizer": optimizer.state_dict(), "state": state}, tmp)
            os.replace(tmp, checkpoint)
        if state["stale"] >= config.patience:
            stop_reason = "early stopping"
            break
        if config.max_seconds is not None and state["seconds"] >= config.max_seconds:
            stop_reason = "time budget"
            break
    if state["best_weight"] is not None:
        model.weight.data.copy_(state["best_weight"])
    result = _result(config, dataset, score_fn, state, stop_reason, started, out_dir)
    return result, model


def _result(config: TrainConfig, dataset: data_module.Dataset, score_fn: Callable, state: dict, stop_reason: str,
            started: float, out_dir: str | Path | None) -> dict:
    """Evaluate the selected model on test and assemble (and write) the result record of a run."""
    test_metrics = metrics.evaluate(score_fn, dataset.train, dataset.test, ks=config.ks,
                                    batch_size=config.eval_batch_size)
    result = {
        "dataset": dataset.name, "model": config.model, "loss": config.loss if config.model == "mf" else None,
        "params": config.to_dict(), "metrics": test_metrics,
        "valid_metrics": next((e["valid"] for e in state["history"]
                               if e["epoch"] == state["best_epoch"] and "valid" in e), {}),
        "best_epoch": state["best_epoch"], "epochs": state["epoch"], "stop_reason": stop_reason,
        "history": state["history"], "seconds": state["seconds"],
        "wall_seconds_this_session": time.perf_counter() - started,
        "command": " ".join(["recloss-lite", *sys.argv[1:]]) if Path(sys.argv[0]).name == "recloss-lite"
        else " ".join(sys.argv),
        "data_checksum": matrix_checksum(dataset.train, dataset.test), "device": config.device,
        "torch": torch.__version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": state.get("commit") or git_commit(),
    }
    if out_dir is not None:
        write_json_atomic(Path(out_dir) / "result.json", result)
    return result


def fit_linear(config: TrainConfig, dataset: data_module.Dataset | None = None,
               out_dir: str | Path | None = None, progress: bool = True) -> tuple[dict, object]:
    """Fit iALS or EASE (``config.model``, settings in ``config.model_params``) and evaluate like MF (06, 07).

    EASE is one closed-form solve on the whole training set. iALS runs up to ``config.epochs`` sweeps on the
    training set minus the validation split, evaluating every ``eval_every`` sweeps, keeps the factors of the
    best validation sweep and stops early after ``patience`` evaluations without improvement.
    """
    from . import linear

    started, commit = time.perf_counter(), git_commit()
    dataset = _load_dataset(config, dataset)
    state = {"epoch": 0, "history": [], "best_epoch": 0, "best_valid": -1.0, "seconds": 0.0, "stale": 0,
             "commit": commit}
    if config.model == "ease":
        model = linear.EASE(**config.model_params).fit(dataset.train)
        state.update(epoch=1, best_epoch=1, seconds=time.perf_counter() - started)
        return _result(config, dataset, model.scores, state, "closed form", started, out_dir), model
    fit_train, valid = data_module.validation_split(dataset.train, config.valid_fraction, seed=config.seed)
    model = linear.IALS(**{"factors": config.dim, "seed": config.seed, **config.model_params}).start(fit_train)
    key, best, stop_reason = f"recall@{config.ks[0]}", None, "epochs"
    for sweep in range(1, config.epochs + 1):
        sweep_start = time.perf_counter()
        model.fit_iteration()
        entry = {"epoch": sweep, "train_seconds": time.perf_counter() - sweep_start}
        if sweep % config.eval_every == 0 or sweep == config.epochs:
            entry["valid"] = metrics.evaluate(model.scores, fit_train, valid, ks=config.ks,
                                              batch_size=config.eval_batch_size)
            if entry["valid"][key] > state["best_valid"]:
                best = (model.user_factors.clone(), model.item_factors.clone())
                state.update(best_valid=entry["valid"][key], best_epoch=sweep, stale=0)
            else:
                state["stale"] += 1
        entry["seconds"] = time.perf_counter() - sweep_start
        state["seconds"] += entry["seconds"]
        state["history"].append(entry)
        state["epoch"] = sweep
        if progress:
            print(f"ials sweep {sweep}: " + (f"valid {key} {entry['valid'][key]:.4f}" if "valid" in entry else ""),
                  file=sys.stderr, flush=True)
        if state["stale"] >= config.patience:
            stop_reason = "early stopping"
            break
    if best is not None:
        model.user_factors, model.item_factors = best
    return _result(config, dataset, model.scores, state, stop_reason, started, out_dir), model


def fit_hdccf_config(config: TrainConfig, dataset: data_module.Dataset | None = None,
                     out_dir: str | Path | None = None, progress: bool = True) -> tuple[dict, object]:
    """Train HDCCF (paper 003; chapter 10_hdccf) with ``config``: its own settings (tau, num_positives,
    omega_plus_user, ...) come from ``config.model_params``; the batch (M users) is ``config.batch_size``.
    Early stopping on the validation split, then the same test evaluation and result record as MF."""
    from . import hdccf

    started, commit = time.perf_counter(), git_commit()
    dataset = _load_dataset(config, dataset)
    fit_train, valid = data_module.validation_split(dataset.train, config.valid_fraction, seed=config.seed)
    model = hdccf.HDCCF(dataset.n_users, dataset.n_items, dim=config.dim, seed=config.seed, **config.model_params)
    key = f"recall@{config.ks[0]}"
    history = hdccf.fit_hdccf(model, fit_train, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                              patience=config.patience, seed=config.seed, key=key, progress=progress,
                              max_seconds=config.max_seconds,
                              evaluate_fn=lambda current: metrics.evaluate(current.scores, fit_train, valid,
                                                                           ks=config.ks))
    best = max(history, key=lambda entry: entry["valid"][key])
    state = {"epoch": len(history), "history": history, "best_epoch": best["epoch"],
             "seconds": time.perf_counter() - started, "commit": commit}
    stop_reason = ("epochs" if len(history) == config.epochs else
                   "early stopping" if history[-1]["epoch"] - best["epoch"] >= config.patience else "time budget")
    return _result(config, dataset, model.scores, state, stop_reason, started, out_dir), model
