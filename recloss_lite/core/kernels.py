"""Small compiled kernels for the trainer's hot loop and the evaluation: scores of a batch straight from the
embedding table and their backward, the same for hundreds of negatives per row in the grouped layout (with the
cosine normalisation), the distinct rows of a batch, the lazy Adam update of the rows a batch touches (and the dense
one of every row), the whole MF-BPR step in one call (:func:`bpr_step`, the four before it and the loss's
gradient), and the top-k of each row of a score matrix.

PyTorch does each of these in several passes (gathers, elementwise operations, scatters), each a separate walk over
rows scattered through tables of tens of megabytes; the C functions of ``kernels.c`` (next to this file) make one
pass per row. They are compiled on first use with the system's C compiler, warnings as errors, into a per-user cache
and loaded with :mod:`ctypes`; with OpenMP where the compiler has it (sharing PyTorch's runtime), so that the larger
loops run on ``torch.get_num_threads()`` threads, split so that the numbers do not depend on the thread count. Where
no compiler is found or the build fails, where the table is not a contiguous float32 CPU tensor, or with
``RECLOSS_KERNELS=0`` in the environment, :func:`row_adam` returns ``False`` and the others ``None``, and the caller
runs the PyTorch version, which gives the same numbers up to float32 rounding (the order of some sums differs;
``tests/test_kernels.py`` and ``tests/test_models.py`` check the two against each other and against autograd;
:func:`topk` gives exactly torch.topk's values and indices). ``recloss-lite bench`` prints which one ran.

Where a kernel applies, every other argument is checked before C sees a pointer, in O(number of ids) tensor
operations: ids must be int64 CPU tensors within the rows they index (``IndexError`` otherwise, naming the argument,
the value and the range), float arguments float32 on the CPU (``TypeError``), and shapes must agree (``ValueError``).
The few arrays of ids as long as a batch's occurrences (the ids of :func:`distinct`, the order and start of the
grouped layout) are checked by the kernel as it reads them, each entry before it is used; where one is out of range
the kernel stops using it and the same ``IndexError`` is raised.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
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

# AVX2 where the CPU has it, as PyTorch reports, since the square roots and divisions of Adam are the kernel's
# arithmetic cost. Warnings are errors: a kernel that does not compile cleanly falls back to PyTorch (with a
# RuntimeWarning). THREADED first: -fopenmp, whose libgomp is the one PyTorch has already loaded (one OpenMP runtime,
# one pool of threads); where the compiler has no OpenMP, the build retries with the vector pragmas alone (one thread).
FLAGS = ["-O3", "-fno-math-errno", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror"]
if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
    FLAGS += ["-mavx2", "-mfma"]
THREADED, SINGLE = ["-fopenmp"], ["-fopenmp-simd"]

# From this many negatives per row the dot product too is scored in the grouped layout (grouped_scores), which reads
# each distinct row once; below it, batch_scores reads the rows straight from the table.
GROUPED_FROM = 16
# grouped_scores_backward sums its users' gradients over PARTS ranges of rows, whatever the thread count, so that the
# numbers do not depend on it. Below PARALLEL_FROM rows a kernel runs on one thread: threads would cost more.
PARTS = 4
PARALLEL_FROM = 2048

_library: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recloss-lite" / "kernels"


def _source() -> str:
    """The C source of the kernels, ``kernels.c`` of this package."""
    return resources.files(__package__).joinpath("kernels.c").read_text(encoding="utf-8")


def _compile(compiler: str, text: str, flags: list[str]) -> ctypes.CDLL:
    """Compile ``text`` with ``flags`` (once per source, flags and platform, into the cache) and load it."""
    key = hashlib.sha256("\n".join([text, *flags, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"kernels-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
            source = Path(scratch) / "kernels.c"
            source.write_text(text, encoding="utf-8")  # the very text the key hashes
            built = Path(scratch) / target.name
            subprocess.run(
                [compiler, *flags, str(source), "-o", str(built), "-lm"], check=True, capture_output=True, text=True
            )
            os.replace(built, target)  # atomic: a concurrent process sees the whole library or none
    return ctypes.CDLL(str(target))


def _build() -> ctypes.CDLL | None:
    """Compile and load the kernel library, threaded where the compiler can; ``None`` if that fails."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    try:
        text = _source()
        try:
            library = _compile(compiler, text, FLAGS + THREADED)
        except (OSError, subprocess.CalledProcessError):
            library = _compile(compiler, text, FLAGS + SINGLE)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        warnings.warn(
            f"recloss-lite: could not build the training kernels with {compiler} ({detail.strip()}); "
            "using the PyTorch version, which is slower",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    pointer, size, real = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    signatures = {  # name: (argument types, result type)
        "batch_scores": ([pointer, size, pointer, pointer, pointer, size, size, pointer, pointer, size], None),
        "batch_scores_backward": (
            [pointer, size, pointer, pointer, pointer, size, size] + [pointer] * 4 + [size] * 2,
            None,
        ),
        "row_adam": ([pointer] * 5 + [size] * 2 + [real] * 4 + [size], None),
        "dense_adam": ([pointer] * 2 + [size] * 2 + [real] * 4 + [size], None),
        "first_outside": ([pointer, size, size], size),
        "distinct_rows": ([pointer, size, size] + [pointer] * 8 + [size], size),
        "topk_rows": ([pointer, size, size, size] + [pointer] * 4 + [size], size),
        "grouped_scores": ([pointer, size] + [pointer] * 3 + [size] * 3 + [pointer] * 3 + [size], size),
        "grouped_scores_backward": ([pointer, size] + [pointer] * 3 + [size] * 3 + [pointer] * 5 + [size] * 2, size),
        "normalize_rows": ([pointer, pointer, size, size, pointer, pointer, size], None),
        "normalize_rows_backward": ([pointer, pointer, size, size, pointer, size], None),
        "bpr_step": ([pointer, pointer, size, size, pointer, size, size] + [real] * 6 + [pointer] * 8 + [size], size),
    }
    for name, (arguments, result) in signatures.items():
        function = getattr(library, name)
        function.argtypes, function.restype = arguments, result
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


def _run(name: str, *args: torch.Tensor | int | float | None) -> int:
    """Call kernel ``name`` of the loaded library (:func:`_loaded`): a tensor passes its data pointer, None a NULL
    pointer, a number itself (ctypes converts it by the kernel's signature). Returns the kernel's result (0 for
    the kernels that return nothing)."""
    function = getattr(_loaded(), name)
    return function(*(arg.data_ptr() if isinstance(arg, torch.Tensor) else arg for arg in args)) or 0


def _loaded() -> ctypes.CDLL:
    """The loaded kernel library, for a kernel that has already checked it is there (:func:`_applies`, or
    ``library() is not None``); RuntimeError otherwise."""
    loaded = library()
    if loaded is None:
        raise RuntimeError("recloss-lite: the kernel library is not loaded; check _applies() before calling it")
    return loaded


def _threads(rows: int) -> int:
    """Threads for a kernel's loop over ``rows`` rows: torch's thread count, or one below PARALLEL_FROM rows."""
    return torch.get_num_threads() if rows >= PARALLEL_FROM else 1


def _applies(weight: torch.Tensor) -> bool:
    """Whether the kernels take this table: a contiguous float32 CPU tensor, and the library is built."""
    return (
        weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and library() is not None
    )


def _table(function: str, weight: torch.Tensor) -> tuple[int, int]:
    """The shape (n, d) of the table ``weight``; ValueError if it is not 2-D."""
    if weight.dim() != 2:
        raise ValueError(f"{function}: weight {tuple(weight.shape)} must be a table (n, d)")
    return weight.shape[0], weight.shape[1]


def _ids(
    function: str, name: str, ids: torch.Tensor, shape: tuple[int, ...], meaning: str, n_rows: int, rows: str
) -> torch.Tensor:
    """``ids`` as a contiguous int64 CPU tensor of ``shape``, every id in [0, n_rows). Otherwise IndexError naming
    the argument and its dtype or device, or its smallest (if negative, else largest) id and the range, which
    ``rows`` explains; ValueError for another shape. One compiled pass over the ids (the kernel ``first_outside``;
    a min-max pass where the library is off), no Python loop."""
    if ids.dtype != torch.int64 or ids.device.type != "cpu":
        raise IndexError(f"{function}: {name} must be an int64 tensor on the CPU, not {ids.dtype} on {ids.device}")
    if ids.shape != shape:
        raise ValueError(f"{function}: {name} {tuple(ids.shape)} must be {meaning} = {shape}")
    ids = ids.contiguous()
    if ids.numel() and (library() is None or _run("first_outside", ids, ids.numel(), n_rows) >= 0):
        low, high = (int(bound) for bound in torch.aminmax(ids))
        if low < 0 or high >= n_rows:
            raise IndexError(f"{function}: {name} holds {low if low < 0 else high} outside [0, {n_rows}) ({rows})")
    return ids


def _floats(
    function: str, name: str, tensor: torch.Tensor, shape: tuple[int, ...], meaning: str, in_place: bool = False
) -> torch.Tensor:
    """``tensor`` as a contiguous float32 CPU tensor of ``shape``: TypeError for another dtype or device, ValueError
    for another shape, or where ``in_place`` (the kernel writes it) and it is not contiguous already."""
    if tensor.dtype != torch.float32 or tensor.device.type != "cpu":
        raise TypeError(
            f"{function}: {name} must be a float32 tensor on the CPU, not {tensor.dtype} on {tensor.device}"
        )
    if tensor.shape != shape:
        raise ValueError(f"{function}: {name} {tuple(tensor.shape)} must be {meaning} = {shape}")
    if in_place and not tensor.is_contiguous():
        raise ValueError(f"{function}: {name} must be contiguous: the kernel updates it in place")
    return tensor.contiguous()


def _overlap(first: torch.Tensor, second: torch.Tensor) -> bool:
    """Whether two contiguous tensors share memory."""
    return first.data_ptr() < second.data_ptr() + second.nbytes and second.data_ptr() < first.data_ptr() + first.nbytes


def _batch(
    function: str, weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The checked ids of a batch of :func:`batch_scores`: users (B,), items (B,), negatives (B, N), all rows of
    ``weight`` (n, d)."""
    n, _ = _table(function, weight)
    if negatives.dim() != 2:
        raise ValueError(f"{function}: negatives {tuple(negatives.shape)} must be 2-D (B, N)")
    batch, rows = negatives.shape[0], f"the table has {n} rows"
    return (
        _ids(function, "users", users, (batch,), "(B,)", n, rows),
        _ids(function, "items", items, (batch,), "(B,)", n, rows),
        _ids(function, "negatives", negatives, tuple(negatives.shape), "(B, N)", n, rows),
    )


def row_adam(
    weight: torch.Tensor,
    moments: torch.Tensor,
    ids: torch.Tensor,
    grads: torch.Tensor,
    decay: torch.Tensor | None,
    beta1: float,
    beta2: float,
    eps: float,
    step_size: float,
) -> bool:
    """One Adam step on rows ``ids`` (K,) (distinct, int64: threads update them apart) of ``weight`` (n, d) in place,
    moments (n, 2, d) in place, with ``grads`` (K, d) plus, where ``decay`` (K,) is given, the L2 gradient
    ``decay[r] * w``.
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
    _run(
        "row_adam", weight, moments, ids, grads, decay, len(ids), d, beta1, beta2, eps, step_size, _threads(len(ids))
    )  # distinct rows: the threads update disjoint rows
    return True


def dense_adam(
    weight: torch.Tensor, moments: torch.Tensor, beta1: float, beta2: float, eps: float, step_size: float
) -> bool:
    """Adam's decay of the moments (n, 2, d) and its step on every row of ``weight`` (n, d), in place, in one pass:
    the dense part of :meth:`.training.RowAdam._dense_step`. Returns ``False``, touching nothing, where the kernel
    does not apply (as :func:`row_adam`); raises, touching nothing, on a bad shape or shared memory."""
    if not _applies(weight):
        return False
    n, d = _table("dense_adam", weight)
    moments = _floats("dense_adam", "moments", moments, (n, 2, d), "(n, 2, d)", in_place=True)
    if _overlap(moments, weight):
        raise ValueError("dense_adam: moments shares memory with weight; the kernel updates both")
    _run("dense_adam", weight, moments, n, d, beta1, beta2, eps, step_size, _threads(n))
    return True


def batch_scores(
    weight: torch.Tensor, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Dot-product scores pos (B,) = <w_users, w_items> and neg (B, N) = <w_users, w_negatives> read straight from
    ``weight`` (n, d) by row ids users (B,), items (B,), negatives (B, N); plain tensors, without autograd (the
    gradient comes from :func:`batch_scores_backward`). ``None`` where the kernel does not apply."""
    if not _applies(weight):
        return None
    users, items, negatives = _batch("batch_scores", weight, users, items, negatives)
    batch, n_neg = negatives.shape
    pos = torch.empty(batch, dtype=weight.dtype)
    neg = torch.empty(batch, n_neg, dtype=weight.dtype)
    _run(
        "batch_scores",
        weight,
        weight.shape[1],
        users,
        items,
        negatives,
        batch,
        n_neg,
        pos,
        neg,
        _threads(batch * (1 + n_neg)),
    )
    return pos, neg


def batch_scores_backward(
    weight: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    negatives: torch.Tensor,
    grad_pos: torch.Tensor,
    grad_neg: torch.Tensor,
    slot: torch.Tensor,
    n_slots: int,
) -> torch.Tensor | None:
    """The gradient of :func:`batch_scores` with respect to the rows: (n_slots, d), where occurrence ``i`` of the
    ids users (B,), items (B,), negatives (B, N) (concatenated, flattened: B * (2 + N) of them) adds its gradient,
    from grad_pos (B,) and grad_neg (B, N), to row ``slot[i]`` in [0, n_slots). ``None`` where the kernel does not
    apply (as for :func:`batch_scores`)."""
    if not _applies(weight):
        return None
    function = "batch_scores_backward"
    users, items, negatives = _batch(function, weight, users, items, negatives)
    batch, n_neg = negatives.shape
    slot = _ids(function, "slot", slot, (batch * (2 + n_neg),), "(B * (2 + N),)", n_slots, f"n_slots = {n_slots}")
    grad_pos = _floats(function, "grad_pos", grad_pos, (batch,), "(B,)")
    grad_neg = _floats(function, "grad_neg", grad_neg, (batch, n_neg), "(B, N)")
    grads = torch.empty(n_slots, weight.shape[1], dtype=weight.dtype)  # zeroed by the kernel, row range by thread
    _run(
        "batch_scores_backward",
        weight,
        weight.shape[1],
        users,
        items,
        negatives,
        batch,
        n_neg,
        grad_pos,
        grad_neg,
        slot,
        grads,
        n_slots,
        _threads(len(slot)),
    )
    return grads


def _scratch(function: str, marked: torch.Tensor, position: torch.Tensor, n: int) -> None:
    """Check the scratch of :func:`distinct`: ``marked`` a contiguous (n,) bool and ``position`` a contiguous (n,)
    int64 CPU tensor, apart from each other; ValueError otherwise."""
    if marked.dtype != torch.bool or marked.shape != (n,) or not marked.is_contiguous() or marked.device.type != "cpu":
        raise ValueError(
            f"{function}: marked must be a contiguous ({n},) bool CPU tensor, not {marked.dtype} {tuple(marked.shape)}"
        )
    if (
        position.dtype != torch.int64
        or position.shape != (n,)
        or not position.is_contiguous()
        or position.device.type != "cpu"
        or _overlap(position, marked)
    ):
        raise ValueError(f"{function}: position must be a contiguous ({n},) int64 CPU tensor apart from marked")


def distinct(
    ids: torch.Tensor, marked: torch.Tensor, position: torch.Tensor, grouped: bool = False
) -> tuple[torch.Tensor, ...] | None:
    """The distinct ids among ``ids`` (K,) in increasing order, as ``torch.unique(ids, return_inverse=True,
    return_counts=True)`` gives them, in one pass: (unique, inverse, counts). ``marked`` (n,) bool and ``position``
    (n,) int64 are scratch of the table's size n (every id must lie in [0, n)). With ``grouped``, also (order,
    start): the positions of the occurrences of distinct id s are ``order[start[s]:start[s + 1]]``, increasing (the
    layout of :func:`grouped_scores`). ``None`` where the kernels are off or the ids are not on the CPU."""
    if library() is None or ids.device.type != "cpu":
        return None
    n = marked.numel()
    if ids.dtype != torch.int64 or ids.dim() != 1:
        ids = _ids("distinct", "ids", ids, (ids.numel(),), "(K,)", n, f"the table has {n} rows")  # raises
    ids = ids.contiguous()  # the kernel checks each id as it reads it: one pass fewer
    _scratch("distinct", marked, position, n)
    most = min(len(ids), n)  # distinct ids
    unique, counts, start = (torch.empty(size, dtype=torch.int64) for size in (most, most, most + 1))
    if grouped and len(ids) >= 2**31:
        raise ValueError(f"distinct: {len(ids)} ids: the grouped layout takes fewer than 2^31")
    inverse, order, scratch = (
        torch.empty(len(ids) if use else 0, dtype=torch.int64) for use in (True, grouped, grouped)
    )
    found = _run(
        "distinct_rows",
        ids,
        len(ids),
        n,
        marked,
        position,
        unique,
        inverse,
        counts,
        *((start, order, scratch) if grouped else (None, None, None)),
        _threads(len(ids)) if grouped else 1,
    )
    if found < 0:
        _ids("distinct", "ids", ids, (ids.numel(),), "(K,)", n, f"the table has {n} rows")  # raises
    if grouped:
        return unique[:found], inverse, counts[:found], order, start[: found + 1]
    return unique[:found], inverse, counts[:found]


def bpr_step(
    weight: torch.Tensor,
    moments: torch.Tensor,
    ids: torch.Tensor,
    batch: int,
    tau: float,
    l2: float,
    adam: tuple[float, float, float, float],
    marked: torch.Tensor,
    position: torch.Tensor,
) -> float | None:
    """One whole MF-BPR training step in one compiled call (dot product, N negatives per row, no dropout): the
    loss ``mean_b sum_k softplus((neg[b, k] - pos[b]) / tau)`` of :func:`.losses.make` ``("bpr")`` on the scores
    of the batch whose ids (B * (2 + N),) are [users (B) | positives (B) | negatives (B x N)], rows of ``weight``
    (n, d); its gradient; and the Adam step (``adam`` = beta1, beta2, eps, step size) of :meth:`RowAdam.step
    <recloss_lite.core.training.RowAdam.step>` on the distinct rows with the L2 gradient ``l2 * count / B`` of a row
    that occurs ``count`` times. ``weight`` and ``moments`` (n, 2, d) are updated in place; ``marked`` and
    ``position`` are the scratch of :func:`distinct`. Returns the batch's mean loss, or ``None``, touching
    nothing, where the kernels do not apply. Raises, touching nothing, on a bad argument."""
    if not _applies(weight):
        return None
    function = "bpr_step"
    n, d = _table(function, weight)
    moments = _floats(function, "moments", moments, (n, 2, d), "(n, 2, d)", in_place=True)
    if _overlap(moments, weight):
        raise ValueError(f"{function}: moments shares memory with weight")
    if batch < 1 or ids.dim() != 1 or ids.numel() % batch or ids.numel() // batch < 3:
        raise ValueError(f"{function}: ids {tuple(ids.shape)} must be (B * (2 + N),) with B = {batch} and N >= 1")
    if ids.dtype != torch.int64 or ids.device.type != "cpu":
        _ids(function, "ids", ids, (ids.numel(),), "(B * (2 + N),)", n, f"the table has {n} rows")  # raises
    if not (math.isfinite(tau) and tau > 0.0 and math.isfinite(l2) and l2 >= 0.0):
        raise ValueError(f"{function}: tau = {tau} must be > 0 and l2 = {l2} >= 0, both finite")
    _scratch(function, marked, position, n)
    ids = ids.contiguous()  # checked by the kernel before any row is read
    for name, tensor in (("ids", ids), ("marked", marked), ("position", position)):
        if _overlap(tensor, weight) or _overlap(tensor, moments):
            raise ValueError(f"{function}: {name} shares memory with weight or moments, which the kernel updates")
    count = ids.numel()
    n_neg = count // batch - 2
    unique, inverse, counts = (torch.empty(count, dtype=torch.int64) for _ in range(3))
    floats = torch.empty(2 * batch * (1 + n_neg) + count, dtype=torch.float32)
    grads = torch.empty(count, d, dtype=torch.float32)
    loss = torch.empty(1, dtype=torch.float64)
    found = _run(
        "bpr_step",
        weight,
        moments,
        n,
        d,
        ids,
        batch,
        n_neg,
        tau,
        l2,
        *adam,
        marked,
        position,
        unique,
        inverse,
        counts,
        floats,
        grads,
        loss,
        _threads(count),
    )
    if found < 0:
        _ids(function, "ids", ids, (count,), "(B * (2 + N),)", n, f"the table has {n} rows")  # raises
    return float(loss)


def topk(
    scores: torch.Tensor, k: int, exclude_ptr: torch.Tensor, excluded: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | int | None:
    """``torch.topk(scores, k, dim=1)`` of a (B, n) float32 CPU matrix in which the items ``excluded[exclude_ptr[r]:
    exclude_ptr[r + 1]]`` (sorted per row) of each row r count as -inf, without writing them: the same values and
    indices, tied scores in the same order (the kernel repeats the heap select that torch.topk runs for k * 64 <= n).
    Returns (values (B, k), indices (B, k)); or r + 1 (an int) where row r holds NaN or +-inf, the first one; or
    ``None`` where the kernel does not apply (off, not float32 on the CPU, or k * 64 > n: torch sorts otherwise)."""
    if (
        library() is None
        or scores.dtype != torch.float32
        or scores.device.type != "cpu"
        or scores.dim() != 2
        or not 1 <= k
        or k * 64 > scores.shape[1]
    ):
        return None
    rows, n = scores.shape
    scores = scores.contiguous()
    exclude_ptr = _ids(
        "topk",
        "exclude_ptr",
        exclude_ptr,
        (rows + 1,),
        "(B + 1,)",
        len(excluded) + 1,
        f"{len(excluded)} excluded items",
    )
    if rows and (int(exclude_ptr[0]) != 0 or bool((exclude_ptr[1:] < exclude_ptr[:-1]).any())):
        raise ValueError("topk: exclude_ptr must start at 0 and never decrease")
    excluded = _ids("topk", "excluded", excluded, (excluded.numel(),), "(E,)", n, f"the rows have {n} items")
    values = torch.empty(rows, k, dtype=torch.float32)
    indices = torch.empty(rows, k, dtype=torch.int64)
    bad = _run("topk_rows", scores, rows, n, k, exclude_ptr, excluded, values, indices, _threads(rows * n // 1024))
    return int(bad) if bad else (values, indices)


def _grouped(
    function: str,
    table: torch.Tensor,
    users: torch.Tensor,
    order: torch.Tensor,
    start: torch.Tensor,
    n_neg: int,
    check: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ids of the grouped layout (:func:`grouped_scores`): users (B,) within the table's k rows (checked here),
    order (B * (2 + N),) and start (k + 1,) of int64 on the CPU. The values of order and start are checked by the
    kernel as it reads them; where it found one outside its range, ``check=True`` names it: order within its own
    length, start non-decreasing within [0, len(order)]."""
    k, _ = _table(function, table)
    batch = users.numel()
    occurrences = batch * (2 + n_neg)
    users = _ids(function, "users", users, (batch,), "(B,)", k, f"the table has {k} rows")
    for name, tensor, shape, meaning in (
        ("order", order, (occurrences,), "(B * (2 + N),)"),
        ("start", start, (k + 1,), "(k + 1,)"),
    ):
        if tensor.dtype != torch.int64 or tensor.device.type != "cpu" or tensor.shape != shape or check:
            _ids(
                function,
                name,
                tensor,
                shape,
                meaning,
                occurrences + (name == "start"),
                f"the batch has {occurrences} occurrences",
            )
    if check:
        if bool((start[1:] < start[:-1]).any()):
            raise ValueError(f"{function}: start must not decrease")
        raise ValueError(f"{function}: order or start out of range")  # not reached: the checks above name it
    return users, order.contiguous(), start.contiguous()


def grouped_scores(
    table: torch.Tensor, users: torch.Tensor, order: torch.Tensor, start: torch.Tensor, n_neg: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The scores pos (B,), neg (B, N) of :func:`batch_scores` for a batch in the grouped layout: rows of the
    (k, d) ``table`` of the batch's distinct rows (normalised, for cosine); ``users`` (B,) the users' rows, and
    the occurrences [users (B) | positives (B) | negatives (B x N)] of row s are ``order[start[s]:start[s + 1]]``
    (:func:`distinct` with ``grouped=True``). Row by row of the table, each row is read once: the layout for
    hundreds of negatives per row. ``None`` where the kernels do not apply."""
    if not _applies(table):
        return None
    users, order, start = _grouped("grouped_scores", table, users, order, start, n_neg)
    batch = len(users)
    pos = torch.empty(batch, dtype=torch.float32)
    neg = torch.empty(batch, n_neg, dtype=torch.float32)
    if _run(
        "grouped_scores",
        table,
        table.shape[1],
        users,
        order,
        start,
        table.shape[0],
        batch,
        n_neg,
        pos,
        neg,
        torch.empty(len(order), dtype=torch.float32),  # the scores in the grouped order
        _threads(len(order)),
    ):
        _grouped("grouped_scores", table, users, order, start, n_neg, check=True)  # raises
    return pos, neg


def grouped_scores_backward(
    table: torch.Tensor,
    users: torch.Tensor,
    order: torch.Tensor,
    start: torch.Tensor,
    grad_pos: torch.Tensor,
    grad_neg: torch.Tensor,
) -> torch.Tensor | None:
    """The gradient (k, d) of :func:`grouped_scores` with respect to the table's rows, from grad_pos (B,) and
    grad_neg (B, N). ``None`` where the kernels do not apply."""
    if not _applies(table):
        return None
    function = "grouped_scores_backward"
    n_neg = grad_neg.shape[1] if grad_neg.dim() == 2 else 0
    users, order, start = _grouped(function, table, users, order, start, n_neg)
    batch, (k, d) = len(users), table.shape
    grad_pos = _floats(function, "grad_pos", grad_pos, (batch,), "(B,)")
    grad_neg = _floats(function, "grad_neg", grad_neg, (batch, n_neg), "(B, N)")
    grads = torch.empty(k, d, dtype=torch.float32)  # both written by the kernel
    user_grads = torch.empty(PARTS, batch, d, dtype=torch.float32)  # one (B, d) block per part, added in order
    if _run(
        "grouped_scores_backward",
        table,
        d,
        users,
        order,
        start,
        k,
        batch,
        n_neg,
        grad_pos,
        grad_neg,
        grads,
        user_grads,
        torch.empty(len(order), dtype=torch.float32),  # the gradients in the grouped order
        PARTS,
        _threads(len(order)),
    ):
        _grouped(function, table, users, order, start, n_neg, check=True)  # raises
    return grads


def normalize(weight: torch.Tensor, ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``torch.nn.functional.normalize(weight[ids], dim=1)`` (all rows where ``ids`` is None) of a (n, d) float32 CPU
    table, gathered and scaled in one pass, and the clamped norms (k,) its backward needs. ``None`` where the
    kernels do not apply."""
    if not _applies(weight):
        return None
    n, d = _table("normalize", weight)
    if ids is not None:
        ids = _ids("normalize", "ids", ids, (ids.numel(),), "(k,)", n, f"the table has {n} rows")
    k = n if ids is None else len(ids)
    unit, norms = torch.empty(k, d, dtype=torch.float32), torch.empty(k, dtype=torch.float32)
    _run("normalize_rows", weight, ids, k, d, unit, norms, _threads(k))
    return unit, norms


def normalize_backward(unit: torch.Tensor, norms: torch.Tensor, grads: torch.Tensor) -> torch.Tensor | None:
    """The gradient with respect to the rows of :func:`normalize`, from the gradient ``grads`` (k, d) of its
    output, computed in place in ``grads`` (returned). ``None`` where the kernels do not apply."""
    function = "normalize_backward"
    if not _applies(unit):
        return None
    k, d = _table(function, unit)
    norms = _floats(function, "norms", norms, (k,), "(k,)")
    grads = _floats(function, "grads", grads, (k, d), "(k, d)", in_place=True)
    if _overlap(grads, unit) or _overlap(grads, norms):
        raise ValueError(f"{function}: grads shares memory with unit or norms")
    _run("normalize_rows_backward", unit, norms, k, d, grads, _threads(k))
    return grads
