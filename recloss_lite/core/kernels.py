"""Small compiled kernels for the trainer's hot loop: dot-product scores of a batch straight from the embedding
table, their backward, and the lazy Adam update of the rows a batch touches.

PyTorch does each of these in several passes (gathers, elementwise operations, scatters), each a separate walk over
rows scattered through tables of tens of megabytes; the C functions below make one pass per row. They are compiled
on first use with the system's C compiler into a per-user cache and loaded with :mod:`ctypes`. Where no compiler
is found, or with ``RECLOSS_KERNELS=0`` in the environment, :func:`row_adam` returns ``False`` and
:func:`pair_scores` ``None``, and the caller runs the PyTorch version, which gives the same numbers
(``tests/test_train.py`` checks the two against each other and against torch's Adam). ``recloss-lite bench``
prints which one ran.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = r"""
#include <math.h>
#include <stdint.h>

/* The rows are scattered through a table of megabytes: ask for those of row b of the batch a few rows early. */
static inline void prefetch_rows(const float *weight, int64_t d, const int64_t *users, const int64_t *items,
                                 const int64_t *negatives, int64_t b, int64_t n_neg) {
    for (int64_t line = 0; line < d; line += 16) {
        __builtin_prefetch(weight + users[b] * d + line);
        __builtin_prefetch(weight + items[b] * d + line);
        for (int64_t k = 0; k < n_neg; k++) __builtin_prefetch(weight + negatives[b * n_neg + k] * d + line);
    }
}

/* Scores of a batch straight from the table (no gathered copies): pos[b] = <w[users[b]], w[items[b]]> and
   neg[b, j] = <w[users[b]], w[negatives[b, j]]>, with w the (n x d) table and N negatives per row. */
void pair_scores(const float *restrict weight, int64_t d, const int64_t *restrict users,
                 const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch, int64_t n_neg,
                 float *restrict pos, float *restrict neg) {
    for (int64_t b = 0; b < batch; b++) {
        if (b + 4 < batch) prefetch_rows(weight, d, users, items, negatives, b + 4, n_neg);
        const float *restrict u = weight + users[b] * d;
        const float *restrict p = weight + items[b] * d;
        float total = 0.0f;
        #pragma omp simd reduction(+:total)
        for (int64_t j = 0; j < d; j++) total += u[j] * p[j];
        pos[b] = total;
        for (int64_t k = 0; k < n_neg; k++) {
            const float *restrict q = weight + negatives[b * n_neg + k] * d;
            total = 0.0f;
            #pragma omp simd reduction(+:total)
            for (int64_t j = 0; j < d; j++) total += u[j] * q[j];
            neg[b * n_neg + k] = total;
        }
    }
}

/* The backward of pair_scores: given dL/dpos (batch) and dL/dneg (batch x N), add each occurrence's gradient to
   grads[slot] (K x d, zeroed by the caller), where slot[...] maps the users, then the items, then the negatives
   of the batch (in that order, batch * (2 + N) entries) to rows of grads. */
void pair_scores_backward(const float *restrict weight, int64_t d, const int64_t *restrict users,
                          const int64_t *restrict items, const int64_t *restrict negatives, int64_t batch,
                          int64_t n_neg, const float *restrict grad_pos, const float *restrict grad_neg,
                          const int64_t *restrict slot, float *restrict grads) {
    for (int64_t b = 0; b < batch; b++) {
        if (b + 4 < batch) prefetch_rows(weight, d, users, items, negatives, b + 4, n_neg);
        const float *restrict u = weight + users[b] * d;
        const float *restrict p = weight + items[b] * d;
        float *restrict gu = grads + slot[b] * d;
        float *restrict gp = grads + slot[batch + b] * d;
        float g = grad_pos[b];
        for (int64_t j = 0; j < d; j++) { gu[j] += g * p[j]; gp[j] += g * u[j]; }
        for (int64_t k = 0; k < n_neg; k++) {
            const float *restrict q = weight + negatives[b * n_neg + k] * d;
            float *restrict gq = grads + slot[2 * batch + b * n_neg + k] * d;
            g = grad_neg[b * n_neg + k];
            for (int64_t j = 0; j < d; j++) { gu[j] += g * q[j]; gq[j] += g * u[j]; }
        }
    }
}

/* Adam on rows ids[0..k) of weight (n x d) with moments (n x 2 x d, first then second moment of each row);
   grads (k x d) holds one summed gradient per row, and the ids are distinct. With decay (k) not NULL, the L2
   term decay[r] * w is added to row r's gradient first. */
void row_adam(float *restrict weight, float *restrict moments, const int64_t *restrict ids,
              const float *restrict grads, const float *restrict decay, int64_t k, int64_t d, float beta1,
              float beta2, float eps, float step_size) {
    for (int64_t r = 0; r < k; r++) {
        if (r + 4 < k) {  /* as in prefetch_rows: the row, its moments */
            for (int64_t line = 0; line < d; line += 16) {
                __builtin_prefetch(weight + ids[r + 4] * d + line, 1);
                __builtin_prefetch(moments + ids[r + 4] * 2 * d + line, 1);
                __builtin_prefetch(moments + ids[r + 4] * 2 * d + d + line, 1);
            }
        }
        float *restrict w = weight + ids[r] * d;
        float *restrict m = moments + ids[r] * 2 * d;
        float *restrict v = m + d;
        const float *restrict g = grads + r * d;
        float c = decay ? decay[r] : 0.0f;
        for (int64_t j = 0; j < d; j++) {
            float gj = g[j] + c * w[j];
            float first = beta1 * m[j] + (1.0f - beta1) * gj;
            float second = beta2 * v[j] + (1.0f - beta2) * gj * gj;
            m[j] = first;
            v[j] = second;
            w[j] -= step_size * (first / (sqrtf(second) + eps));
        }
    }
}
"""
# -fopenmp-simd only lets the dot products use vector registers (no OpenMP runtime is linked); AVX2 where the
# CPU has it, as PyTorch reports, since the square roots and divisions of Adam are the kernel's arithmetic cost.
FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-shared", "-fPIC"]
if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
    FLAGS += ["-mavx2", "-mfma"]

_library: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recloss-lite" / "kernels"


def _build() -> ctypes.CDLL | None:
    """Compile (once per source, flags and platform) and load the kernel library; ``None`` if that fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    key = hashlib.sha256("\n".join([SOURCE, *FLAGS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                source = Path(scratch) / "kernels.c"
                source.write_text(SOURCE)
                built = Path(scratch) / target.name
                subprocess.run([compiler, *FLAGS, str(source), "-o", str(built), "-lm"], check=True,
                               capture_output=True, text=True)
                os.replace(built, target)  # atomic: a concurrent process sees the whole library or none
        library = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        warnings.warn(f"recloss-lite: could not build the training kernels with {compiler} ({detail.strip()}); "
                      "using the PyTorch version, which is slower", RuntimeWarning, stacklevel=3)
        return None
    pointer, size, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    library.pair_scores.argtypes = [pointer, size, pointer, pointer, pointer, size, size, pointer, pointer]
    library.pair_scores_backward.argtypes = [pointer, size, pointer, pointer, pointer, size, size, pointer,
                                             pointer, pointer, pointer]
    library.row_adam.argtypes = [pointer] * 5 + [size] * 2 + [real] * 4
    for function in (library.pair_scores, library.pair_scores_backward, library.row_adam):
        function.restype = None
    return library


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, or ``None`` where it is switched off or cannot be built."""
    global _library, _tried
    if os.environ.get("RECLOSS_KERNELS", "1") == "0":
        return None
    if not _tried:
        _tried = True
        _library = _build()
    return _library


def _applies(floats: list[torch.Tensor], ints: list[torch.Tensor]) -> bool:
    """Whether the kernels can take these tensors: built, and all on the CPU, contiguous, float32 / int64."""
    def ready(tensors: list[torch.Tensor], dtype: torch.dtype) -> bool:
        return all(t.device.type == "cpu" and t.is_contiguous() and t.dtype == dtype for t in tensors)

    return library() is not None and ready(floats, torch.float32) and ready(ints, torch.int64)


def row_adam(weight: torch.Tensor, moments: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor,
             decay: torch.Tensor | None, beta1: float, beta2: float, eps: float, step_size: float) -> bool:
    """One Adam step on rows ``ids`` (distinct, int64) of ``weight`` (n, d) in place, moments (n, 2, d) in place,
    with ``grads`` (len(ids), d) plus, where ``decay`` (len(ids),) is given, the L2 gradient ``decay[r] * w``.
    Returns ``False``, touching nothing, where the kernel does not apply (another device or dtype, no compiler,
    ``RECLOSS_KERNELS=0``): the caller then does the step itself."""
    if not _applies([weight, moments, grads] + ([] if decay is None else [decay]), [ids]):
        return False
    n, d = weight.shape
    if grads.shape != (len(ids), d) or moments.shape != (n, 2, d) or (decay is not None and decay.shape != ids.shape):
        raise ValueError(f"row_adam: grads {tuple(grads.shape)} must be (len(ids)={len(ids)}, d={d}), moments "
                         f"{tuple(moments.shape)} must be (n, 2, d) for weight {tuple(weight.shape)}, and decay "
                         f"{None if decay is None else tuple(decay.shape)} one value per id")
    library().row_adam(weight.data_ptr(), moments.data_ptr(), ids.data_ptr(), grads.data_ptr(),
                       None if decay is None else decay.data_ptr(), len(ids), d, beta1, beta2, eps, step_size)
    return True


def pair_scores(weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Dot-product scores pos (B,) = <w_users, w_items> and neg (B, N) = <w_users, w_negatives> read straight from
    ``weight`` (n, d) by row ids users (B,), items (B,), negatives (B, N); plain tensors, without autograd (the
    gradient comes from :func:`pair_scores_backward`). ``None`` where the kernel does not apply."""
    if not _applies([weight], [users, items, negatives]):
        return None
    batch, n_neg = negatives.shape
    if users.shape != (batch,) or items.shape != (batch,):
        raise ValueError(f"pair_scores: users {tuple(users.shape)} and items {tuple(items.shape)} must be (B,) for "
                         f"negatives {tuple(negatives.shape)} (B, N)")
    pos = torch.empty(batch, dtype=weight.dtype)
    neg = torch.empty(batch, n_neg, dtype=weight.dtype)
    library().pair_scores(weight.data_ptr(), weight.shape[1], users.data_ptr(), items.data_ptr(),
                          negatives.data_ptr(), batch, n_neg, pos.data_ptr(), neg.data_ptr())
    return pos, neg


def pair_scores_backward(weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                         grad_pos: torch.Tensor, grad_neg: torch.Tensor, slot: torch.Tensor,
                         n_slots: int) -> torch.Tensor:
    """The gradient of :func:`pair_scores` with respect to the rows: (n_slots, d), where occurrence ``i`` of the
    ids users, items, negatives (concatenated, flattened) adds its gradient to row ``slot[i]``."""
    batch, n_neg = negatives.shape
    if len(slot) != batch * (2 + n_neg) or grad_pos.shape != (batch,) or grad_neg.shape != (batch, n_neg):
        raise ValueError(f"pair_scores_backward: slot ({len(slot)},) must have B * (2 + N) = {batch * (2 + n_neg)} "
                         f"entries, grad_pos {tuple(grad_pos.shape)} be (B,), grad_neg {tuple(grad_neg.shape)} "
                         "be (B, N)")
    grad_pos, grad_neg = grad_pos.contiguous(), grad_neg.contiguous()
    grads = torch.zeros(n_slots, weight.shape[1], dtype=weight.dtype)
    library().pair_scores_backward(weight.data_ptr(), weight.shape[1], users.data_ptr(), items.data_ptr(),
                                   negatives.data_ptr(), batch, n_neg, grad_pos.data_ptr(), grad_neg.data_ptr(),
                                   slot.data_ptr(), grads.data_ptr())
    return grads
