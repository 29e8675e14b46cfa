"""Small compiled kernels for the trainer's hot loop: dot-product scores of a batch straight from the embedding
table, their backward, and the lazy Adam update of the rows a batch touches.

PyTorch does each of these in several passes (gathers, elementwise operations, scatters), each a separate walk over
rows scattered through tables of tens of megabytes; the C functions of ``kernels.c`` (next to this file) make one
pass per row. They are compiled on first use with the system's C compiler, warnings as errors, into a per-user cache
and loaded with :mod:`ctypes`. Where no compiler is found or the build fails, where the table is not a contiguous
float32 CPU tensor, or with ``RECLOSS_KERNELS=0`` in the environment, :func:`row_adam` returns ``False`` and
:func:`pair_scores` / :func:`pair_scores_backward` ``None``, and the caller runs the PyTorch version, which gives the
same numbers (``tests/test_kernels.py`` checks the two against each other and against autograd).
``recloss-lite bench`` prints which one ran.

Where a kernel applies, every other argument is checked before C sees a pointer, in O(number of ids) tensor
operations: ids must be int64 CPU tensors within the rows they index (``IndexError`` otherwise, naming the argument,
the value and the range), float arguments float32 on the CPU (``TypeError``), and shapes must agree (``ValueError``).
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
from importlib import resources
from pathlib import Path

import torch

# -fopenmp-simd only lets the dot products use vector registers (no OpenMP runtime is linked); AVX2 where the
# CPU has it, as PyTorch reports, since the square roots and divisions of Adam are the kernel's arithmetic cost.
# Warnings are errors: a kernel that does not compile cleanly falls back to PyTorch (with a RuntimeWarning).
FLAGS = ["-O3", "-fno-math-errno", "-fopenmp-simd", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"]
if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
    FLAGS += ["-mavx2", "-mfma"]

_library: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recloss-lite" / "kernels"


def _source() -> str:
    """The C source of the kernels, ``kernels.c`` of this package."""
    return resources.files(__package__).joinpath("kernels.c").read_text(encoding="utf-8")


def _build() -> ctypes.CDLL | None:
    """Compile (once per source, flags and platform) and load the kernel library; ``None`` if that fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        text = _source()
        key = hashlib.sha256("\n".join([text, *FLAGS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"kernels-{key}.so"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                source = Path(scratch) / "kernels.c"
                source.write_text(text, encoding="utf-8")  # the very text the key hashes
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


def _applies(weight: torch.Tensor) -> bool:
    """Whether the kernels take this table: a contiguous float32 CPU tensor, and the library is built."""
    return (weight.dtype == torch.float32 and weight.device.type == "cpu" and weight.is_contiguous()
            and library() is not None)


def _table(function: str, weight: torch.Tensor) -> tuple[int, int]:
    """The shape (n, d) of the table ``weight``; ValueError if it is not 2-D."""
    if weight.dim() != 2:
        raise ValueError(f"{function}: weight {tuple(weight.shape)} must be a table (n, d)")
    return weight.shape[0], weight.shape[1]


def _ids(function: str, name: str, ids: torch.Tensor, shape: tuple[int, ...], meaning: str, n_rows: int,
         rows: str) -> torch.Tensor:
    """``ids`` as a contiguous int64 CPU tensor of ``shape``, every id in [0, n_rows). Otherwise IndexError naming
    the argument and its dtype or device, or its smallest (if negative, else largest) id and the range, which
    ``rows`` explains; ValueError for another shape. One min-max pass over the ids, no Python loop."""
    if ids.dtype != torch.int64 or ids.device.type != "cpu":
        raise IndexError(f"{function}: {name} must be an int64 tensor on the CPU, not {ids.dtype} on {ids.device}")
    if ids.shape != shape:
        raise ValueError(f"{function}: {name} {tuple(ids.shape)} must be {meaning} = {shape}")
    if ids.numel():
        low, high = (int(bound) for bound in torch.aminmax(ids))
        if low < 0 or high >= n_rows:
            raise IndexError(f"{function}: {name} holds {low if low < 0 else high} outside [0, {n_rows}) ({rows})")
    return ids.contiguous()


def _floats(function: str, name: str, tensor: torch.Tensor, shape: tuple[int, ...], meaning: str,
            in_place: bool = False) -> torch.Tensor:
    """``tensor`` as a contiguous float32 CPU tensor of ``shape``: TypeError for another dtype or device, ValueError
    for another shape, or where ``in_place`` (the kernel writes it) and it is not contiguous already."""
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu":
        raise TypeError(f"{function}: {name} must be a float32 tensor on the CPU, not {tensor.dtype} on "
                        f"{tensor.device}")
    if tensor.shape != shape:
        raise ValueError(f"{function}: {name} {tuple(tensor.shape)} must be {meaning} = {shape}")
    if in_place and not tensor.is_contiguous():
        raise ValueError(f"{function}: {name} must be contiguous: the kernel updates it in place")
    return tensor.contiguous()


def _overlap(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Whether two contiguous tensors share memory."""
    return (first.data_ptr() < second.data_ptr() + second.nbytes
            and second.data_ptr() < first.data_ptr() + first.nbytes)


def _batch(function: str, weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
           negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The checked ids of a batch of :func:`pair_scores`: users (B,), items (B,), negatives (B, N), all rows of
    ``weight`` (n, d)."""
    n, _ = _table(function, weight)
    if negatives.dim() != 2:
        raise ValueError(f"{function}: negatives {tuple(negatives.shape)} must be 2-D (B, N)")
    batch, rows = negatives.shape[0], f"the table has {n} rows"
    return (_ids(function, "users", users, (batch,), "(B,)", n, rows),
            _ids(function, "items", items, (batch,), "(B,)", n, rows),
            _ids(function, "negatives", negatives, tuple(negatives.shape), "(B, N)", n, rows))


def row_adam(weight: torch.Tensor, moments: torch.Tensor, ids: torch.Tensor, grads: torch.Tensor,
             decay: torch.Tensor | None, beta1: float, beta2: float, eps: float, step_size: float) -> bool:
    """One Adam step on rows ``ids`` (K,) (distinct, int64) of ``weight`` (n, d) in place, moments (n, 2, d) in
    place, with ``grads`` (K, d) plus, where ``decay`` (K,) is given, the L2 gradient ``decay[r] * w``.
    Returns ``False``, touching nothing, where the kernel does not apply (the table not a contiguous float32 CPU
    tensor, no compiler, ``RECLOSS_KERNELS=0``): the caller then does the step itself. Raises, touching nothing,
    on a bad argument (see the module's docstring), or where two of them share memory."""
    if not _applies(weight):
        return False
    n, d = _table("row_adam", weight)
    ids = _ids("row_adam", "ids", ids, (ids.numel(),), "(K,)", n, f"the table has {n} rows")
    moments = _floats("row_adam", "moments", moments, (n, 2, d), "(n, 2, d)", in_place=True)
    grads = _floats("row_adam", "grads", grads, (len(ids), d), "(len(ids), d)")
    if decay is not None:
        decay = _floats("row_adam", "decay", decay, (len(ids),), "(len(ids),)")
    for name, tensor in (("moments", moments), ("ids", ids), ("grads", grads), ("decay", decay)):
        if tensor is not None and (_overlap(tensor, weight) or (tensor is not moments and _overlap(tensor, moments))):
            raise ValueError(f"row_adam: {name} shares memory with weight or moments, which the kernel updates")
    library().row_adam(weight.data_ptr(), moments.data_ptr(), ids.data_ptr(), grads.data_ptr(),
                       None if decay is None else decay.data_ptr(), len(ids), d, beta1, beta2, eps, step_size)
    return True


def pair_scores(weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Dot-product scores pos (B,) = <w_users, w_items> and neg (B, N) = <w_users, w_negatives> read straight from
    ``weight`` (n, d) by row ids users (B,), items (B,), negatives (B, N); plain tensors, without autograd (the
    gradient comes from :func:`pair_scores_backward`). ``None`` where the kernel does not apply."""
    if not _applies(weight):
        return None
    users, items, negatives = _batch("pair_scores", weight, users, items, negatives)
    batch, n_neg = negatives.shape
    pos = torch.empty(batch, dtype=weight.dtype)
    neg = torch.empty(batch, n_neg, dtype=weight.dtype)
    library().pair_scores(weight.data_ptr(), weight.shape[1], users.data_ptr(), items.data_ptr(),
                          negatives.data_ptr(), batch, n_neg, pos.data_ptr(), neg.data_ptr())
    return pos, neg


def pair_scores_backward(weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor,
                         grad_pos: torch.Tensor, grad_neg: torch.Tensor, slot: torch.Tensor,
                         n_slots: int) -> torch.Tensor | None:
    """The gradient of :func:`pair_scores` with respect to the rows: (n_slots, d), where occurrence ``i`` of the
    ids users (B,), items (B,), negatives (B, N) (concatenated, flattened: B * (2 + N) of them) adds its gradient,
    from grad_pos (B,) and grad_neg (B, N), to row ``slot[i]`` in [0, n_slots). ``None`` where the kernel does not
    apply (as for :func:`pair_scores`)."""
    if not _applies(weight):
        return None
    function = "pair_scores_backward"
    users, items, negatives = _batch(function, weight, users, items, negatives)
    batch, n_neg = negatives.shape
    slot = _ids(function, "slot", slot, (batch * (2 + n_neg),), "(B * (2 + N),)", n_slots, f"n_slots = {n_slots}")
    grad_pos = _floats(function, "grad_pos", grad_pos, (batch,), "(B,)")
    grad_neg = _floats(function, "grad_neg", grad_neg, (batch, n_neg), "(B, N)")
    grads = torch.zeros(n_slots, weight.shape[1], dtype=weight.dtype)
    library().pair_scores_backward(weight.data_ptr(), weight.shape[1], users.data_ptr(), items.data_ptr(),
                                   negatives.data_ptr(), batch, n_neg, grad_pos.data_ptr(), grad_neg.data_ptr(),
                                   slot.data_ptr(), grads.data_ptr())
    return grads
