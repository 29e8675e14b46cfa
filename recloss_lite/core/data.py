"""Data sets, their registry, loaders and splits (taught in chapter 01_data).

A registered data set is found, in this order, in

1. the ``folder`` passed to :func:`load` (then nowhere else),
2. ``$RECLOSS_DATA/<name>``,
3. ``shared/data/<name>`` next to the repository (the development and CI copy, :data:`SHARED_DATA`),
4. the user cache ``$XDG_CACHE_HOME/recloss-lite/<name>`` (default ``~/.cache/recloss-lite/<name>``), where it
   is downloaded from its public origin when missing, checked against its sha256 and moved into place
   atomically.

A file whose sha256 differs from the registered one is refused (:class:`ChecksumError`) only in the user
cache, where it means a corrupt download; a copy found in any other place is the user's own choice and is
loaded with a :class:`ChecksumWarning` naming the file and both checksums.

Every interaction matrix is a ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)`` holding float32
ones, with sorted column indices and no duplicates.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11; only the type checker reads it

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
"""The development copy of the data sets, ``shared/data`` beside the repository (used when it exists)."""

DATA_ENV = "RECLOSS_DATA"
LIGHTGCN_URL = "https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data/{name}/{file}"


@dataclass(frozen=True)
class Source:
    """Where a registered data set comes from: its files with their sha256 and its public origin.

    ``url`` is either a template with ``{name}`` and ``{file}`` (one download per file) or the URL of a zip
    archive whose members ``archive_prefix + file`` are extracted. A sha256 of ``None`` means "not checked".
    """

    name: str
    files: dict[str, str | None]
    url: str
    kind: str  # "lightgcn" or "movielens": which loader parses the files
    archive_prefix: str | None = None

    def file_url(self, file: str) -> str:
        """The URL one file (or, for an archive, the whole archive) is downloaded from."""
        return self.url if self.archive_prefix is not None else self.url.format(name=self.name, file=file)


REGISTRY: dict[str, Source] = {
    source.name: source
    for source in (
        Source(
            "gowalla",
            {
                "train.txt": "7244696fdeb23911319cf7b689f2e15a3c4c92549c873a5677b44e3f13cc3e62",
                "test.txt": "099a2a73924e4b754dc6efd730d764f492321b53c38eb93298850c83acf57be3",
            },
            LIGHTGCN_URL,
            "lightgcn",
        ),
        Source(
            "yelp2018",
            {
                "train.txt": "1e9568725a9e833d0ac3bae01c94cd95367f73b3bb6104fd26b5f65ea5054093",
                "test.txt": "9cd9b37926cd1447a06625ffa7914527573fb097c10cb0bbdb1d1b8ded3742fe",
            },
            LIGHTGCN_URL,
            "lightgcn",
        ),
        # No local copy existed to hash when this entry was written: sha256 None = files not checked.
        Source("amazon-book", {"train.txt": None, "test.txt": None}, LIGHTGCN_URL, "lightgcn"),
        Source(
            "ml-100k",
            {"u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"},
            "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
            "movielens",
            archive_prefix="ml-100k/",
        ),
    )
}
"""Registered data sets by name (chapter 01_data)."""


class DatasetNotFoundError(FileNotFoundError):
    """A registered data set is in none of the searched places and could not be downloaded."""


class ChecksumError(ValueError):
    """A data file's sha256 differs from the registered one (a corrupted or different copy)."""


class ChecksumWarning(UserWarning):
    """A data file in a folder the user chose differs from the registered (published) copy; it is loaded."""


MAX_ID = 2**31 - 2
"""The largest user or item id the loaders accept: ``n_users`` and ``n_items`` (the largest id + 1) must fit a
32-bit index. An id must also leave the row pointers (:data:`BYTES_PER_ID` per id) room in the machine's
physical memory; :func:`id_limit` is the smaller of the two bounds."""

BYTES_PER_ID = 16
"""Bytes of CSR row pointers per id a loader may allocate (int64 pointers of the train and the test matrix)."""


@dataclass
class Dataset:
    """A split implicit-feedback data set (chapter 01_data).

    ``train`` and ``test`` are CSR matrices of shape ``(n_users, n_items)`` with float32 ones. ``timestamps``
    (only for data sets that have them, e.g. ml-100k) has the pattern of ``train + test`` and holds unix times
    (float64).
    """

    name: str
    train: sp.csr_matrix
    test: sp.csr_matrix
    n_users: int
    n_items: int
    timestamps: sp.csr_matrix | None = None


def entry_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """The row index of every stored entry of a CSR matrix, in storage order (int64; chapter 01_data)."""
    return np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))


def canonical_csr(
    matrix: sp.spmatrix | sp.sparray,
    what: str,
    shape: tuple[int, int] | None = None,
    dtype: type | None = None,
    nonempty: bool = False,
) -> sp.csr_matrix:
    """A CSR copy of ``matrix`` (in ``dtype`` if given) with duplicate entries summed and sorted indices: the form
    the metrics, iALS/EASE and HDCCF's sampler read. ValueError naming ``what`` where its shape is not ``shape``
    (that of the train matrix it goes with) or, with ``nonempty``, where it holds no entry."""
    matrix = sp.csr_matrix(matrix, dtype=dtype, copy=True)
    if shape is not None and matrix.shape != shape:
        raise ValueError(f"{what} has shape {matrix.shape} but train has shape {shape}")
    matrix.sum_duplicates()
    matrix.sort_indices()
    if nonempty and matrix.nnz == 0:
        raise ValueError(f"{what} {matrix.shape} has no interactions")
    return matrix


def interaction_matrix(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR matrix of float32 ones at ``(users[j], items[j])``, sorted, no duplicates (chapter 01_data)."""
    matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (np.asarray(users), np.asarray(items))), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _physical_memory_bytes() -> int | None:
    """Total physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def id_limit() -> int:
    """The largest id the loaders accept: :data:`MAX_ID`, lowered so that :data:`BYTES_PER_ID` bytes per id
    fit in physical memory (chapter 01_data)."""
    memory = _physical_memory_bytes()
    return MAX_ID if memory is None else min(MAX_ID, memory // BYTES_PER_ID - 1)


def _id_rule(limit: int) -> str:
    memory = _physical_memory_bytes()
    room = "" if memory is None else f" and {BYTES_PER_ID} bytes per id must fit in {memory / 2**30:.1f} GiB"
    return (
        f"ids must lie in [0, {limit}] (n_users and n_items are the largest id + 1: at most 2**31 - 1 for "
        f"32-bit indices{room})"
    )


def _line_of(counts: np.ndarray, index: int) -> int:
    """The 1-based line holding entry ``index`` when line j holds ``counts[j - 1]`` entries."""
    return int(np.searchsorted(np.cumsum(counts), index, side="right")) + 1


def _check_ids(path: Path, tokens: np.ndarray, lengths: np.ndarray, is_id: np.ndarray | None = None) -> None:
    """ValueError naming the file, line and id of the first token (among ``is_id``) above :func:`id_limit`."""
    limit = id_limit()
    too_large = tokens > limit
    if is_id is not None:
        too_large &= is_id
    if too_large.any():
        index = int(np.argmax(too_large))
        raise ValueError(f"{path}:{_line_of(lengths, index)}: id {int(tokens[index])} is too large; {_id_rule(limit)}")


def _find_huge_token(text: bytes, path: Path) -> ValueError:
    """The ValueError for the first token of ``text`` beyond int64 (what made numpy's conversion overflow)."""
    for number, line in enumerate(text.split(b"\n"), start=1):
        for token in line.split():
            if int(token) > np.iinfo(np.int64).max:
                return ValueError(
                    f"{path}:{number}: {token.decode()} is too large (beyond int64); {_id_rule(id_limit())}"
                )
    return ValueError(f"{path}: a number does not fit a 64-bit integer")


def _find_bad_token(text: bytes, path: Path) -> ValueError:
    """The ValueError for the first line of ``text`` holding something other than a non-negative integer."""
    for number, line in enumerate(text.split(b"\n"), start=1):
        for token in line.split():
            if not token.isdigit():
                return ValueError(
                    f"{path}:{number}: expected non-negative integer ids, got "
                    f"{token.decode('utf-8', errors='replace')!r} in line "
                    f"{line.decode('utf-8', errors='replace').strip()!r}"
                )
    return ValueError(f"{path}: unexpected characters (only digits and whitespace are allowed)")


def _read_int_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All whitespace-separated tokens of a file of non-negative integers, and the token count of every line.

    Reads the whole file at once and converts with numpy (Gowalla's 1M ids in a fraction of a second). Blank
    lines count 0 tokens, so ``lengths[j]`` belongs to line ``j + 1``.
    """
    text = path.read_bytes()
    if text.translate(None, b"0123456789 \t\r\n"):
        raise _find_bad_token(text, path)
    lines = text.split(b"\n")
    lengths = np.fromiter((len(line.split()) for line in lines), dtype=np.int64, count=len(lines))
    try:
        return np.array(text.split(), dtype=np.int64), lengths
    except OverflowError:
        raise _find_huge_token(text, path) from None


def _read_lightgcn_file(path: Path) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Parse ``user item item ...`` lines into (users, items) arrays, the largest user id and the token count
    of every line (blank lines count 0). ValueError for an id above :func:`id_limit` or a file without any
    interaction."""
    tokens, all_lengths = _read_int_lines(path)
    _check_ids(path, tokens, all_lengths)
    lengths = all_lengths[all_lengths > 0]
    starts = np.cumsum(lengths) - lengths
    line_users = tokens[starts]
    is_item = np.ones(len(tokens), dtype=bool)
    is_item[starts] = False
    if len(tokens) == len(starts):
        raise ValueError(f"{path} holds no interaction (user item item ... lines)")
    return np.repeat(line_users, lengths - 1), tokens[is_item], int(line_users.max(initial=-1)), all_lengths


def _in_train(train: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Boolean mask over the pairs (users[j], items[j]): which are stored entries of the canonical CSR
    ``train`` (one binary search per pair on its row-major keys)."""
    keys = entry_rows(train) * train.shape[1] + train.indices
    if not len(keys):
        return np.zeros(len(users), dtype=bool)
    queries = users * train.shape[1] + items
    return keys[np.searchsorted(keys, queries).clip(max=len(keys) - 1)] == queries


def load_lightgcn(folder: str | Path, name: str | None = None, *, drop_overlap: bool = False) -> Dataset:
    """Load a LightGCN split: ``train.txt``, ``test.txt`` with lines ``user item item ...`` (chapter 01_data).

    This is the NGCF/LightGCN protocol's 80/20 per-user random split (Wang et al., SIGIR 2019; He et al.,
    SIGIR 2020). Blank lines and bare user ids (users without items) are allowed. ``n_users`` and ``n_items``
    are the largest id seen in either file plus one. ValueError, naming the file and its 1-based line, for a
    token that is not a non-negative integer or an id above :func:`id_limit`; ValueError naming the file for
    a file without any interaction.

    A test pair (user, item) that is also in the user's training items can never be a hit (the metrics mask
    training items), so it is refused: ValueError naming the test file's line, the pair and how many there
    are. With ``drop_overlap=True`` such pairs are dropped from ``test`` instead, with a warning saying how
    many.
    """
    folder = Path(folder)
    train_users, train_items, max_train_user, _ = _read_lightgcn_file(folder / "train.txt")
    test_users, test_items, max_test_user, test_lengths = _read_lightgcn_file(folder / "test.txt")
    n_users = max(max_train_user, max_test_user) + 1
    n_items = int(max(train_items.max(), test_items.max())) + 1
    shape = (n_users, n_items)
    train = interaction_matrix(train_users, train_items, shape)
    test = interaction_matrix(test_users, test_items, shape)
    count = train.multiply(test).nnz  # distinct test pairs also in train (a few ms on Gowalla)
    if count:
        overlap = _in_train(train, test_users, test_items)
        if not drop_overlap:
            first = int(np.argmax(overlap))
            line = _line_of(np.maximum(test_lengths - 1, 0), first)
            raise ValueError(
                f"{folder / 'test.txt'}:{line}: user {test_users[first]} item {test_items[first]} is also in "
                f"train.txt ({count} such pairs in all); pass drop_overlap=True to drop them from the test set"
            )
        warnings.warn(
            f"{folder / 'test.txt'}: dropped {count} (user, item) pairs that are also in train.txt",
            stacklevel=2,
        )
        test = interaction_matrix(test_users[~overlap], test_items[~overlap], shape)
    return Dataset(name=name or folder.name, train=train, test=test, n_users=n_users, n_items=n_items)


def _split_rows(matrix: sp.csr_matrix, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask over ``matrix``'s stored entries: a random ``fraction`` of each row is held out.

    Each row with n >= 2 entries holds out round(fraction * n) entries, at least 1 and at most n - 1; a row
    with one entry keeps it.
    """
    lengths = np.diff(matrix.indptr)
    rows = entry_rows(matrix)
    # Rank of each entry inside its row under a random order: sort by (row, random key).
    order = np.lexsort((rng.random(len(rows)), rows))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - np.repeat(matrix.indptr[:-1], lengths)
    held_per_row = np.clip(np.rint(fraction * lengths), 1, np.maximum(lengths - 1, 0)).astype(np.int64)
    return rank < held_per_row[rows]


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction={fraction}: allowed range is 0 < fraction < 1")


def _select(matrix: sp.csr_matrix, keep: np.ndarray) -> sp.csr_matrix:
    """The entries of ``matrix`` where the boolean mask ``keep`` (over its stored entries) is True."""
    coo = matrix.tocoo()
    return interaction_matrix(coo.row[keep], coo.col[keep], matrix.shape)


def validation_split(train: sp.csr_matrix, fraction: float = 0.1, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Carve a per-user validation set out of ``train`` for early stopping (chapters 01_data, 07_training).

    Returns ``(fit, valid)``, both of ``train``'s shape, disjoint, summing to ``train``. Each user with n >= 2
    items moves round(fraction * n) of them (at least 1, at most n - 1) to ``valid`` at random; a user with
    one item keeps it in ``fit``. Reproducible for a given ``seed``.
    """
    _check_fraction(fraction)
    train = sp.csr_matrix(train)
    train.sort_indices()
    held = _split_rows(train, fraction, np.random.default_rng(seed))
    return _select(train, ~held), _select(train, held)


def load_movielens(
    folder: str | Path,
    name: str = "ml-100k",
    min_rating: int = 1,
    test_fraction: float = 0.2,
    seed: int = 2020,
) -> Dataset:
    """Load MovieLens 100K's ``u.data`` as implicit feedback, split at random per user (chapter 01_data).

    Every rating >= ``min_rating`` counts as an interaction (the default 1 keeps every rating: implicit
    feedback is "the user rated it", not "the user liked it"). Ids become 0-based (``n_users``/``n_items``
    stay the largest id, so filtered-out users keep their row). Per user, a random ``test_fraction`` of the
    interactions (numpy ``default_rng(seed)``) goes to ``test``: a user with n >= 2 interactions keeps at
    least one in each part, a user with one keeps it in ``train``. ``timestamps`` holds the unix time of every
    kept rating.
    """
    _check_fraction(test_fraction)
    path = Path(folder) / "u.data"
    tokens, lengths = _read_int_lines(path)
    if np.any((lengths != 0) & (lengths != 4)):
        line = int(np.argmax((lengths != 0) & (lengths != 4))) + 1
        raise ValueError(f"{path}:{line}: expected 4 fields user item rating timestamp, got {lengths[line - 1]}")
    if not len(tokens):
        raise ValueError(f"{path} holds no interaction (user item rating timestamp lines)")
    _check_ids(path, tokens, lengths, np.tile([True, True, False, False], len(tokens) // 4))
    table = tokens.reshape(-1, 4)
    if np.any(table[:, :2] == 0):
        line = int(np.flatnonzero(lengths)[np.argmax((table[:, :2] == 0).any(axis=1))]) + 1
        raise ValueError(f"{path}:{line}: user and item ids are 1-based, got 0")
    shape = (int(table[:, 0].max(initial=0)), int(table[:, 1].max(initial=0)))
    table = table[table[:, 2] >= min_rating]
    users, items = table[:, 0] - 1, table[:, 1] - 1
    # A repeated (user, item) pair keeps its latest time: sum_duplicates would add the times up.
    order = np.lexsort((table[:, 3], items, users))
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (users[order][1:] != users[order][:-1]) | (items[order][1:] != items[order][:-1])
    kept = order[last]
    users, items = users[kept], items[kept]
    timestamps = sp.csr_matrix((table[kept, 3].astype(np.float64), (users, items)), shape=shape)
    timestamps.sort_indices()
    interactions = interaction_matrix(users, items, shape)
    held = _split_rows(interactions, test_fraction, np.random.default_rng(seed))
    return Dataset(
        name=name,
        train=_select(interactions, ~held),
        test=_select(interactions, held),
        n_users=shape[0],
        n_items=shape[1],
        timestamps=timestamps,
    )


def leave_one_out(
    interactions: sp.csr_matrix, timestamps: sp.csr_matrix
) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Leave-one-out split by time, the NCF/HDCCF protocol (He et al., WWW 2017; chapters 01_data, 10_hdccf).

    Returns ``(train, valid, test)``: per user, the latest interaction goes to ``test`` and the second latest
    to ``valid``; equal timestamps are ordered by item id (the larger id counts as later). A user with two
    interactions has no validation item, a user with one keeps it in ``train``. ``timestamps`` must have the
    pattern of ``interactions`` (e.g. ``ds.train + ds.test`` and ``ds.timestamps``).
    """
    interactions, timestamps = sp.csr_matrix(interactions), sp.csr_matrix(timestamps)
    interactions.sort_indices()
    timestamps.sort_indices()
    if (
        interactions.shape != timestamps.shape
        or not np.array_equal(interactions.indptr, timestamps.indptr)
        or not np.array_equal(interactions.indices, timestamps.indices)
    ):
        raise ValueError(
            f"interactions {interactions.shape} with {interactions.nnz} entries and timestamps "
            f"{timestamps.shape} with {timestamps.nnz} entries must have the same sparsity pattern"
        )
    lengths = np.diff(interactions.indptr)
    rows = entry_rows(interactions)
    order = np.lexsort((interactions.indices, timestamps.data, rows))
    # from_end[j] = 0 for a user's latest interaction, 1 for the one before, ...
    from_end = np.empty(len(rows), dtype=np.int64)
    from_end[order] = np.repeat(interactions.indptr[1:], lengths) - 1 - np.arange(len(rows))
    length_of = lengths[rows]
    is_test = (from_end == 0) & (length_of >= 2)
    is_valid = (from_end == 1) & (length_of >= 3)
    return (
        _select(interactions, ~(is_test | is_valid)),
        _select(interactions, is_valid),
        _select(interactions, is_test),
    )


def describe(ds: Dataset) -> dict[str, float | int]:
    """Summary statistics of a data set (chapter 01_data).

    Keys: ``users``, ``items``, ``interactions`` (train + test), ``train``, ``test``, ``density``
    (interactions / (users * items)), ``mean_items_per_user`` and ``median_items_per_user`` (train + test).
    """
    per_user = np.diff(ds.train.indptr) + np.diff(ds.test.indptr)
    interactions = int(ds.train.nnz + ds.test.nnz)
    return {
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": interactions,
        "train": int(ds.train.nnz),
        "test": int(ds.test.nnz),
        "density": interactions / (ds.n_users * ds.n_items),
        "mean_items_per_user": float(per_user.mean()),
        "median_items_per_user": float(np.median(per_user)),
    }


def item_popularity(train: sp.csr_matrix) -> np.ndarray:
    """Number of users who interacted with each item: int64 array of shape ``(n_items,)`` (chapter 01_data).

    Popularity drives popularity-based negative sampling and the popularity bias discussed in 04_hardness and
    05_debiasing.
    """
    train = sp.csr_matrix(train)
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.int64)


def cache_dir() -> Path:
    """The user cache for downloaded data sets: ``$XDG_CACHE_HOME/recloss-lite`` or
    ``~/.cache/recloss-lite``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "recloss-lite"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(source: Source, folder: Path, strict: bool = True) -> None:
    """Check the files of ``source`` in ``folder`` against their registered sha256.

    A mismatch raises :class:`ChecksumError` (``strict``, for the download cache: a corrupt download) or,
    with ``strict=False`` (a folder the user chose), warns with a :class:`ChecksumWarning` naming the file and
    both checksums.
    """
    for file, expected in source.files.items():
        if expected is not None and (actual := sha256_of(folder / file)) != expected:
            if strict:
                raise ChecksumError(
                    f"{folder / file}: sha256 {actual} differs from the registered {expected} for "
                    f"{source.name!r}; delete it and download it again from {source.file_url(file)}"
                )
            warnings.warn(
                f"{folder / file}: sha256 {actual} differs from the published copy of {source.name!r} "
                f"(sha256 {expected}, {source.file_url(file)}); loading this copy as given",
                ChecksumWarning,
                stacklevel=3,
            )


def _download(url: str, write: Callable[[bytes], object]) -> None:
    """Stream ``url`` into ``write`` with a tqdm progress bar."""
    with urllib.request.urlopen(url, timeout=60) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as progress:
            for block in iter(lambda: response.read(1 << 20), b""):
                write(block)
                progress.update(len(block))


def _install(content: bytes, target: Path, expected: str | None, url: str) -> None:
    """Check ``content`` against ``expected`` and write it to ``target`` atomically (temporary file +
    rename)."""
    actual = hashlib.sha256(content).hexdigest()
    if expected is not None and actual != expected:
        raise ChecksumError(f"{url}: downloaded {target.name} has sha256 {actual}, expected {expected}")
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def download(name: str, folder: str | Path) -> Path:
    """Download the registered data set ``name`` into ``folder`` from its public origin (chapter 01_data).

    Each file is checked against its registered sha256 before it is moved into place, so ``folder`` never
    holds a partial or corrupted file. Files already present are kept. Returns ``folder``.
    """
    source = _source(name)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    missing = [file for file in source.files if not (folder / file).is_file()]
    if source.archive_prefix is not None and missing:
        buffer = io.BytesIO()
        _download(source.url, buffer.write)
        with zipfile.ZipFile(buffer) as archive:
            for file in missing:
                content = archive.read(source.archive_prefix + file)
                _install(content, folder / file, source.files[file], source.url)
    else:
        for file in missing:
            chunks: list[bytes] = []
            _download(source.file_url(file), chunks.append)
            _install(b"".join(chunks), folder / file, source.files[file], source.file_url(file))
    return folder


def _source(name: str) -> Source:
    if name not in REGISTRY:
        raise ValueError(f"unknown data set {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def locate(name: str, folder: str | Path | None = None, fetch: bool = True) -> Path:
    """The folder holding data set ``name``, searched as described in the module docstring (chapter 01_data).

    With ``fetch`` the set is downloaded into the user cache when it is nowhere else. Raises
    :class:`DatasetNotFoundError` listing every place searched and the origin URL.
    """
    source = _source(name)
    if folder is not None:
        candidates = [Path(folder)]
    else:
        candidates = [Path(base) / name for base in (os.environ.get(DATA_ENV), SHARED_DATA) if base]
    for candidate in candidates:
        if all((candidate / file).is_file() for file in source.files):
            return candidate
    cache = cache_dir() / name
    problem = ""
    if folder is None:
        candidates.append(cache)
        if fetch:
            try:
                return download(name, cache)
            except (urllib.error.URLError, OSError) as error:
                problem = f"\nDownloading into {cache} failed: {error}"
    searched = "\n".join(f"  {candidate}" for candidate in candidates)
    files = ", ".join(source.files)
    raise DatasetNotFoundError(
        f"data set {name!r} ({files}) not found. Searched:\n{searched}\n"
        f"Get it from {source.file_url(next(iter(source.files)))} "
        f"or set ${DATA_ENV} to a folder holding {name}/.{problem}"
    )


class MovieLensOptions(TypedDict, total=False):
    """The options :func:`load` passes on to :func:`load_movielens`."""

    min_rating: int
    test_fraction: float
    seed: int


def load(
    name: str,
    folder: str | Path | None = None,
    *,
    fetch: bool = True,
    drop_overlap: bool = False,
    **options: Unpack[MovieLensOptions],
) -> Dataset:
    """Load the registered data set ``name`` (chapter 01_data).

    ``name`` is one of ``gowalla``, ``yelp2018``, ``amazon-book`` (LightGCN splits, :func:`load_lightgcn`) or
    ``ml-100k`` (:func:`load_movielens`, which takes ``options`` such as ``min_rating``). The folder is found
    by :func:`locate` and its files are checked against their registered sha256 before parsing: a mismatch
    raises :class:`ChecksumError` in the download cache and warns (:class:`ChecksumWarning`) elsewhere.
    ``drop_overlap`` is passed to :func:`load_lightgcn` (test pairs also in train: dropped with a warning
    instead of a ValueError); ml-100k's own split never overlaps.
    """
    source = _source(name)
    path = locate(name, folder, fetch=fetch)
    verify(source, path, strict=folder is None and path == cache_dir() / name)
    if source.kind == "movielens":
        return load_movielens(path, name=name, **options)
    if options:
        raise ValueError(f"load({name!r}) takes no options, got {sorted(options)}")
    return load_lightgcn(path, name=name, drop_overlap=drop_overlap)
