"""Tests of recloss_lite.core.data: parsing, errors, the registry's search and download, splits and statistics."""

from __future__ import annotations

import dataclasses
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recloss_lite.core import data

# shared/data sits beside the repository: <repo>/../shared/data.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def needs_shared(name: str) -> Path:
    folder = SHARED / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is not available")
    return folder


def write_lightgcn(folder: Path, train: str, test: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.txt").write_text(train)
    (folder / "test.txt").write_text(test)
    return folder


def rows(matrix: sp.csr_matrix) -> list[list[int]]:
    return [matrix.indices[matrix.indptr[r] : matrix.indptr[r + 1]].tolist() for r in range(matrix.shape[0])]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data reachable: $RECLOSS_DATA, shared/data and the user cache all point into an empty tmp_path."""
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "env"))
    monkeypatch.setattr(data, "SHARED_DATA", tmp_path / "shared")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_shared_data_path_is_relative_to_the_repository() -> None:
    assert data.SHARED_DATA == SHARED


def test_lightgcn_parsing_sorts_and_deduplicates(tmp_path: Path) -> None:
    folder = write_lightgcn(tmp_path / "toy", "0 3 1 3\n1 0\n2 2 4\n", "0 2\n1\n\n2 5\n")
    ds = data.load_lightgcn(folder)
    assert (ds.name, ds.n_users, ds.n_items) == ("toy", 3, 6)  # item 5 only occurs in test
    assert rows(ds.train) == [[1, 3], [0], [2, 4]]
    assert rows(ds.test) == [[2], [], [5]]  # a bare user id and a blank line are tolerated
    assert ds.train.dtype == np.float32 and set(ds.train.data) == {1.0}
    assert ds.train.has_sorted_indices and ds.timestamps is None


def test_bare_user_counts_towards_n_users(tmp_path: Path) -> None:
    ds = data.load_lightgcn(write_lightgcn(tmp_path / "toy", "0 1\n", "0 2\n4\n"))
    assert ds.n_users == 5 and ds.test.shape == (5, 3)


@pytest.mark.parametrize("bad", ["x7", "-1", "3.5", "1e3"])
def test_malformed_line_is_named(tmp_path: Path, bad: str) -> None:
    folder = write_lightgcn(tmp_path / "toy", f"0 1 2\n1 2\n2 5 {bad} 6\n", "0 3\n")
    with pytest.raises(ValueError, match=r"train\.txt:3: .*" + repr(bad).replace(".", r"\.")):
        data.load_lightgcn(folder)


def test_malformed_movielens_line_is_named(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n1\t2\t4\n")
    with pytest.raises(ValueError, match=r"u\.data:2: expected 4 fields"):
        data.load_movielens(tmp_path)
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n0\t2\t4\t100\n")
    with pytest.raises(ValueError, match=r"u\.data:2: .*1-based"):
        data.load_movielens(tmp_path)


# Users 1 and 2 have test items that are also their training items: (1, 3) on line 2, (2, 5) and (2, 4) on
# line 4 of test.txt.
OVERLAP_TRAIN, OVERLAP_TEST = "0 1 2\n1 3\n2 4 5\n", "0 3\n1 3\n\n2 5 4 6\n"


def test_test_pairs_also_in_train_are_refused(tmp_path: Path) -> None:
    folder = write_lightgcn(tmp_path / "toy", OVERLAP_TRAIN, OVERLAP_TEST)
    with pytest.raises(ValueError) as error:
        data.load_lightgcn(folder)
    assert str(error.value) == (
        f"{folder / 'test.txt'}:2: user 1 item 3 is also in train.txt (3 such pairs in all); "
        "pass drop_overlap=True to drop them from the test set"
    )


def test_drop_overlap_drops_them_with_a_warning(tmp_path: Path) -> None:
    folder = write_lightgcn(tmp_path / "toy", OVERLAP_TRAIN, OVERLAP_TEST)
    with pytest.warns(UserWarning, match=r"test\.txt: dropped 3 \(user, item\) pairs that are also in train"):
        ds = data.load_lightgcn(folder, drop_overlap=True)
    assert rows(ds.test) == [[3], [], [6]] and rows(ds.train) == [[1, 2], [3], [4, 5]]
    assert (ds.n_users, ds.n_items) == (3, 7)


def test_load_refuses_or_drops_the_overlap(isolated: Path) -> None:
    write_lightgcn(isolated / "env" / "amazon-book", OVERLAP_TRAIN, OVERLAP_TEST)  # no sha256 registered
    with pytest.raises(ValueError, match=r"amazon-book/test\.txt:2: user 1 item 3 .*\(3 such pairs in all\)"):
        data.load("amazon-book")
    with pytest.warns(UserWarning, match="dropped 3"):
        assert rows(data.load("amazon-book", drop_overlap=True).test) == [[3], [], [6]]


@pytest.mark.parametrize("name", ["gowalla", "yelp2018"])
def test_real_lightgcn_sets_load_silently(name: str) -> None:
    needs_shared(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = data.load(name, fetch=False)
    assert ds.train.multiply(ds.test).nnz == 0


@pytest.mark.parametrize(
    ("train", "test", "empty"),
    [
        ("", "0 1\n", "train.txt"),
        ("0 1\n", "", "test.txt"),
        ("0 1\n", "3\n\n 4 \n", "test.txt"),
        ("\n\n", "0 1\n", "train.txt"),
    ],
)
def test_file_without_interactions_is_named(tmp_path: Path, train: str, test: str, empty: str) -> None:
    folder = write_lightgcn(tmp_path / "toy", train, test)
    with pytest.raises(ValueError) as error:
        data.load_lightgcn(folder)
    assert str(error.value) == f"{folder / empty} holds no interaction (user item item ... lines)"


def test_empty_movielens_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("\n")
    with pytest.raises(ValueError) as error:
        data.load_movielens(tmp_path)
    assert str(error.value) == f"{tmp_path / 'u.data'} holds no interaction (user item rating timestamp lines)"


@pytest.mark.parametrize("huge", [10**12, 2**63 - 1, 2**63, 2**70, data.MAX_ID + 1])
@pytest.mark.parametrize("as_user", [False, True])
def test_huge_ids_name_file_line_id_and_limit(tmp_path: Path, huge: int, as_user: bool) -> None:
    line = f"{huge} 1" if as_user else f"1 2 {huge} 3"
    folder = write_lightgcn(tmp_path / "toy", f"0 1\n\n{line}\n", "0 2\n")
    with pytest.raises(ValueError) as error:
        data.load_lightgcn(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / 'train.txt'}:3: ") and f"{huge} is too large" in message
    assert f"ids must lie in [0, {data.id_limit()}]" in message and "2**31 - 1" in message


def test_id_limit_follows_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_lightgcn(tmp_path / "toy", "0 1\n", "0 2\n1 1000\n")
    assert data.load_lightgcn(folder).n_items == 1001
    monkeypatch.setattr(data, "_physical_memory_bytes", lambda: 1000 * data.BYTES_PER_ID)
    assert data.id_limit() == 999
    with pytest.raises(ValueError, match=r"test\.txt:2: id 1000 is too large; ids must lie in \[0, 999\]"):
        data.load_lightgcn(folder)
    monkeypatch.setattr(data, "_physical_memory_bytes", lambda: None)
    assert data.id_limit() == data.MAX_ID == 2**31 - 2


def test_largest_allowed_item_id_loads(tmp_path: Path) -> None:
    limit = data.id_limit()
    ds = data.load_lightgcn(write_lightgcn(tmp_path / "toy", f"0 1 {limit}\n", "0 2\n"))
    assert ds.n_items == limit + 1 and rows(ds.train) == [[1, limit]]


def test_huge_movielens_ids_but_not_timestamps_are_refused(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t1\t5\t99999999999\n2\t3\t4\t100\n")
    assert data.load_movielens(tmp_path).timestamps[0, 0] == 99999999999
    (tmp_path / "u.data").write_text("1\t1\t5\t100\n2\t99999999999\t4\t100\n")
    with pytest.raises(ValueError, match=r"u\.data:2: id 99999999999 is too large; ids must lie in"):
        data.load_movielens(tmp_path)


def test_unknown_name_lists_registered_sets() -> None:
    with pytest.raises(ValueError, match="amazon-book, gowalla, ml-100k, yelp2018"):
        data.load("netflix")


def test_missing_set_lists_every_place_searched(isolated: Path) -> None:
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load("gowalla", fetch=False)
    message = str(error.value)
    for place in (isolated / "env" / "gowalla", isolated / "shared" / "gowalla", isolated / "cache"):
        assert str(place) in message
    assert "https://raw.githubusercontent.com/kuandeng/LightGCN/master/Data/gowalla/train.txt" in message
    assert isinstance(error.value, FileNotFoundError)


def test_failed_download_is_reported(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = dataclasses.replace(data.REGISTRY["gowalla"], url=(isolated / "nowhere").as_uri() + "/{file}")
    monkeypatch.setitem(data.REGISTRY, "gowalla", source)
    with pytest.raises(data.DatasetNotFoundError, match="(?s)Searched:.*failed"):
        data.load("gowalla")


def test_explicit_folder_is_the_only_place_searched(isolated: Path) -> None:
    with pytest.raises(data.DatasetNotFoundError) as error:
        data.load("gowalla", folder=isolated / "mine")
    assert str(isolated / "mine") in str(error.value)
    assert str(isolated / "cache") not in str(error.value)


def test_download_of_an_archive_into_the_cache(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = needs_shared("ml-100k") / "u.data"
    archive = isolated / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(origin, "ml-100k/u.data")
    monkeypatch.setitem(data.REGISTRY, "ml-100k", dataclasses.replace(data.REGISTRY["ml-100k"], url=archive.as_uri()))
    ds = data.load("ml-100k")
    cached = isolated / "cache" / "recloss-lite" / "ml-100k" / "u.data"
    assert cached.read_bytes() == origin.read_bytes()
    assert data.describe(ds)["interactions"] == 100_000


@pytest.mark.parametrize("place", ["folder", "env", "shared"])
def test_own_copy_that_differs_is_loaded_with_a_warning(isolated: Path, place: str) -> None:
    # A folder the user chose (folder=, $RECLOSS_DATA, the shared copy): their files, loaded with a note.
    base = {"folder": isolated / "mine", "env": isolated / "env", "shared": isolated / "shared"}[place]
    folder = write_lightgcn(base / "gowalla", "0 1 2\n1 2\n", "0 3\n")
    with pytest.warns(data.ChecksumWarning) as caught:
        ds = data.load("gowalla", folder=folder if place == "folder" else None)
    assert (ds.n_users, ds.n_items, ds.train.nnz, ds.test.nnz) == (2, 4, 3, 1)
    source = data.REGISTRY["gowalla"]
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 2
    for message, file in zip(messages, ("train.txt", "test.txt"), strict=True):
        assert message.startswith(f"{folder / file}: sha256 {data.sha256_of(folder / file)} differs")
        assert f"(sha256 {source.files[file]}, " in message and "loading this copy as given" in message


def test_corrupted_copy_in_the_cache_fails_the_sha256_check(isolated: Path) -> None:
    # In the download cache a mismatch means a corrupt download: refused, with the way out.
    cached = write_lightgcn(isolated / "cache" / "recloss-lite" / "gowalla", "0 1\n", "0 2\n")
    expected = data.REGISTRY["gowalla"].files["train.txt"]
    with pytest.raises(data.ChecksumError) as error:
        data.load("gowalla")
    assert str(error.value) == (
        f"{cached / 'train.txt'}: sha256 {data.sha256_of(cached / 'train.txt')} differs from the registered "
        f"{expected} for 'gowalla'; delete it and download it again from "
        f"{data.REGISTRY['gowalla'].file_url('train.txt')}"
    )


def test_corrupted_download_leaves_nothing_behind(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = write_lightgcn(isolated / "origin" / "gowalla", "0 1\n", "0 2\n")
    source = dataclasses.replace(data.REGISTRY["gowalla"], url=origin.parent.as_uri() + "/{name}/{file}")
    monkeypatch.setitem(data.REGISTRY, "gowalla", source)
    with pytest.raises(data.ChecksumError, match="train.txt has sha256"):
        data.load("gowalla")
    assert list((isolated / "cache" / "recloss-lite" / "gowalla").iterdir()) == []


def test_environment_variable_is_searched(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_lightgcn(isolated / "env" / "amazon-book", "0 1\n", "0 2\n")  # amazon-book: no sha256 registered
    assert data.load("amazon-book").n_items == 3


def test_gowalla_statistics() -> None:
    needs_shared("gowalla")
    ds = data.load("gowalla")
    stats = data.describe(ds)
    assert (stats["users"], stats["items"], stats["interactions"]) == (29_858, 40_981, 1_027_370)
    assert (stats["train"], stats["test"]) == (810_128, 217_242)
    assert stats["density"] == pytest.approx(1_027_370 / (29_858 * 40_981))
    # The README's promises: train and test disjoint per user, every test item also occurs in train.
    assert ds.train.multiply(ds.test).nnz == 0
    popularity = data.item_popularity(ds.train)
    assert popularity.sum() == 810_128 and np.all(popularity[np.unique(ds.test.indices)] > 0)


def test_yelp2018_statistics() -> None:
    needs_shared("yelp2018")
    stats = data.describe(data.load("yelp2018"))
    assert (stats["users"], stats["items"], stats["interactions"]) == (31_668, 38_048, 1_561_406)
    assert (stats["train"], stats["test"]) == (1_237_259, 324_147)


def test_movielens_statistics_and_split() -> None:
    folder = needs_shared("ml-100k")
    ds = data.load("ml-100k")
    stats = data.describe(ds)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    train_per_user, test_per_user = ds.train.getnnz(axis=1), ds.test.getnnz(axis=1)
    assert np.all(train_per_user >= 1) and np.all(test_per_user >= 1)
    assert np.all(np.abs(test_per_user - 0.2 * (train_per_user + test_per_user)) <= 0.5)
    assert ds.train.multiply(ds.test).nnz == 0
    # The timestamps have the pattern of train + test and the times of u.data.
    both = (ds.train + ds.test).tocsr()
    assert np.array_equal(both.indptr, ds.timestamps.indptr) and np.array_equal(both.indices, ds.timestamps.indices)
    table = np.loadtxt(folder / "u.data", dtype=np.int64)
    assert ds.timestamps[table[0, 0] - 1, table[0, 1] - 1] == table[0, 3]
    # Reproducible; the threshold keeps exactly the ratings >= 4.
    again = data.load("ml-100k")
    assert (again.test != ds.test).nnz == 0
    liked = data.load("ml-100k", min_rating=4)
    assert data.describe(liked)["interactions"] == int((table[:, 2] >= 4).sum())


def test_validation_split_is_disjoint_and_reproducible() -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((40, 60)) < 0.2).astype(np.float32)
    dense[5] = 0
    dense[5, 7] = 1  # a user with a single item keeps it
    train = sp.csr_matrix(dense)
    fit, valid = data.validation_split(train, fraction=0.25, seed=3)
    assert fit.multiply(valid).nnz == 0
    assert ((fit + valid) != train).nnz == 0
    assert rows(fit)[5] == [7] and rows(valid)[5] == []
    sizes, held = train.getnnz(axis=1), valid.getnnz(axis=1)
    multi = sizes >= 2
    assert np.all(held[multi] >= 1) and np.all(held[multi] <= sizes[multi] - 1)
    fit_again, valid_again = data.validation_split(train, fraction=0.25, seed=3)
    assert (valid_again != valid).nnz == 0 and (fit_again != fit).nnz == 0
    _, valid_other = data.validation_split(train, fraction=0.25, seed=4)
    assert (valid_other != valid).nnz > 0
    with pytest.raises(ValueError, match="fraction=1.5"):
        data.validation_split(train, fraction=1.5)


def test_leave_one_out_by_hand() -> None:
    # user 0: items 0,1,2,3 at times 10,40,20,30 -> test 1 (t=40), valid 3 (t=30), train 0, 2;
    # user 1: items 1,4 both at t=5 -> the tie goes to the larger id: test 4, no valid, train 1;
    # user 2: one item -> stays in train.
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    items = np.array([0, 1, 2, 3, 1, 4, 2])
    times = np.array([10, 40, 20, 30, 5, 5, 99], dtype=np.float64)
    interactions = data.interaction_matrix(users, items, (3, 5))
    timestamps = sp.csr_matrix((times, (users, items)), shape=(3, 5))
    train, valid, test = data.leave_one_out(interactions, timestamps)
    assert rows(train) == [[0, 2], [1], [2]]
    assert rows(valid) == [[3], [], []]
    assert rows(test) == [[1], [4], []]
    with pytest.raises(ValueError, match="same sparsity pattern"):
        data.leave_one_out(interactions, sp.csr_matrix((times[1:], (users[1:], items[1:])), shape=(3, 5)))


def test_leave_one_out_picks_the_latest_rating() -> None:
    needs_shared("ml-100k")
    ds = data.load("ml-100k")
    train, valid, test = data.leave_one_out(ds.train + ds.test, ds.timestamps)
    assert train.nnz + valid.nnz + test.nnz == 100_000
    times = ds.timestamps
    for user in range(0, ds.n_users, 37):
        start, stop = times.indptr[user], times.indptr[user + 1]
        order = np.lexsort((times.indices[start:stop], times.data[start:stop]))
        assert rows(test)[user] == [times.indices[start:stop][order[-1]]]
        assert rows(valid)[user] == [times.indices[start:stop][order[-2]]]


def test_item_popularity_and_describe_by_hand() -> None:
    train = data.interaction_matrix(np.array([0, 0, 1, 2]), np.array([0, 2, 2, 2]), (3, 4))
    test = data.interaction_matrix(np.array([1]), np.array([3]), (3, 4))
    assert data.item_popularity(train).tolist() == [1, 0, 3, 0]
    stats = data.describe(data.Dataset("toy", train, test, 3, 4))
    # 5 interactions over 3 x 4 cells; per user 2, 2, 1 -> mean 5/3, median 2.
    assert stats == {
        "users": 3,
        "items": 4,
        "interactions": 5,
        "train": 4,
        "test": 1,
        "density": pytest.approx(5 / 12),
        "mean_items_per_user": pytest.approx(5 / 3),
        "median_items_per_user": 2.0,
    }


def test_canonical_csr_sums_duplicates_sorts_and_names_a_bad_shape() -> None:
    coo = sp.coo_matrix((np.ones(4), ([1, 1, 0, 1], [3, 0, 2, 3])), shape=(2, 5))
    matrix = data.canonical_csr(coo, "test", shape=(2, 5), dtype=np.float32)
    assert matrix.dtype == np.float32 and matrix.has_sorted_indices and matrix.nnz == 3
    assert matrix[1, 3] == 2.0 and list(matrix.indices) == [2, 0, 3]
    assert coo.nnz == 4  # a copy: the input is untouched
    with pytest.raises(ValueError, match=r"test has shape \(2, 5\) but train has shape \(3, 5\)"):
        data.canonical_csr(coo, "test", shape=(3, 5))
    with pytest.raises(ValueError, match=r"train \(2, 5\) has no interactions"):
        data.canonical_csr(sp.csr_matrix((2, 5)), "train", nonempty=True)
