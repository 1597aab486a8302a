"""Tests for nn.data: DataLoader and load_mnist (on the shipped subset, offline)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from nn.data import DataLoader, MnistSourceError, default_cache_dir, load_mnist

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO / "tests" / "data" / "mnist"
TRAIN_PARQUET = SUBSET / "mnist" / "train-00000-of-00001.parquet"
TEST_PARQUET = SUBSET / "mnist" / "test-00000-of-00001.parquet"
SHIPPED = REPO / "data" / "mnist"  # the full copy train_mnist.py reads by default


# --------------------------------------------------------------------------------------
# DataLoader
# --------------------------------------------------------------------------------------


def _xy(n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2)  # sample i holds 4i..4i+3
    y = np.arange(n, dtype=np.int64) * 10
    return x, y


def _epoch_ids(loader: DataLoader) -> np.ndarray:
    """The sample ids an epoch visits, recovered from the labels (id * 10)."""
    return np.concatenate([y // 10 for _, y in loader])


def test_no_shuffle_order_and_views() -> None:
    x, y = _xy(10)
    batches = list(DataLoader(x, y, batch_size=3))
    assert [b[1].tolist() for b in batches] == [[0, 10, 20], [30, 40, 50], [60, 70, 80], [90]]
    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    assert batches[0][0].shape == (3, 2, 2) and batches[-1][0].shape == (1, 2, 2)
    np.testing.assert_array_equal(batches[1][0], x[3:6])
    # Unshuffled batches are views, not copies.
    assert all(np.shares_memory(bx, x) and np.shares_memory(by, y) for bx, by in batches)
    # A seed without shuffle changes nothing.
    assert _epoch_ids(DataLoader(x, y, batch_size=4, seed=3)).tolist() == list(range(10))


def test_single_array_yields_one_tuples() -> None:
    batches = list(DataLoader(np.arange(5), batch_size=2))
    assert [b[0].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert all(len(b) == 1 for b in batches)


@pytest.mark.parametrize(
    ("n", "bs", "drop_last", "sizes"),
    [
        (10, 3, False, [3, 3, 3, 1]),
        (10, 3, True, [3, 3, 3]),
        (9, 3, False, [3, 3, 3]),
        (9, 3, True, [3, 3, 3]),
        (2, 5, False, [2]),
        (2, 5, True, []),
        (0, 4, False, []),
    ],
)
def test_len_and_drop_last(n: int, bs: int, drop_last: bool, sizes: list[int]) -> None:
    x, y = _xy(n)
    for shuffle in (False, True):
        loader = DataLoader(x, y, batch_size=bs, drop_last=drop_last, shuffle=shuffle, seed=0)
        assert len(loader) == len(sizes)
        assert [len(bx) for bx, _ in loader] == sizes


def test_seeded_shuffle_is_reproducible_permutation() -> None:
    x, y = _xy(50)
    a = DataLoader(x, y, batch_size=8, shuffle=True, seed=123)
    b = DataLoader(x, y, batch_size=8, shuffle=True, seed=123)
    a0, a1, a2 = _epoch_ids(a), _epoch_ids(a), _epoch_ids(a)
    b0, b1 = _epoch_ids(b), _epoch_ids(b)
    np.testing.assert_array_equal(a0, b0)  # same seed, same epoch: same order
    np.testing.assert_array_equal(a1, b1)
    for ids in (a0, a1, a2):  # every index exactly once
        assert ids.shape == (50,)
        np.testing.assert_array_equal(np.sort(ids), np.arange(50))
    assert not np.array_equal(a0, np.arange(50))  # actually shuffled
    assert not np.array_equal(a0, a1)  # a new order each epoch
    assert not np.array_equal(a1, a2)
    # The documented derivation: epoch k uses default_rng([seed, k]).
    np.testing.assert_array_equal(a1, np.random.default_rng([123, 1]).permutation(50))
    # set_epoch replays an epoch's order (for resuming).
    a.set_epoch(1)
    np.testing.assert_array_equal(_epoch_ids(a), a1)


def test_shuffle_keeps_arrays_aligned() -> None:
    x, y = _xy(20)
    for bx, by in DataLoader(x, y, batch_size=6, shuffle=True, seed=1):
        np.testing.assert_array_equal(bx[:, 0, 0], 4 * (by // 10))


def test_different_seeds_differ() -> None:
    x, y = _xy(50)
    orders = [_epoch_ids(DataLoader(x, y, batch_size=7, shuffle=True, seed=s)) for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.array_equal(orders[i], orders[j])


def test_unseeded_shuffle_is_a_permutation() -> None:
    x, y = _xy(30)
    ids = _epoch_ids(DataLoader(x, y, batch_size=4, shuffle=True))
    np.testing.assert_array_equal(np.sort(ids), np.arange(30))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match=r"\[10, 7\]"):
        DataLoader(np.zeros((10, 3)), np.zeros(7))


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": -2}, {"seed": -1}])
def test_bad_arguments_raise(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        DataLoader(np.zeros(4), **kwargs)


def test_no_arrays_or_scalar_raise() -> None:
    with pytest.raises(ValueError):
        DataLoader()
    with pytest.raises(ValueError):
        DataLoader(np.float32(1.0))


def test_transform() -> None:
    images = np.array([[[0, 255]], [[51, 102]], [[255, 0]]], dtype=np.uint8)  # (3, 1, 2)
    labels = np.array([3, 1, 4])

    def normalise(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.astype(np.float32) / 255, y

    batches = list(DataLoader(images, labels, batch_size=2, transform=normalise))
    (x0, y0), (x1, y1) = batches
    assert x0.dtype == np.float32 and x0.shape == (2, 1, 2)
    np.testing.assert_allclose(x0, [[[0.0, 1.0]], [[0.2, 0.4]]], rtol=1e-6)
    np.testing.assert_array_equal(y0, [3, 1])
    np.testing.assert_allclose(x1, [[[1.0, 0.0]]])
    np.testing.assert_array_equal(y1, [4])
    assert images.dtype == np.uint8 and images[0, 0, 1] == 255  # input untouched
    # A transform returning one array yields 1-tuples.
    single = list(DataLoader(np.arange(4), batch_size=4, transform=lambda a: a * 2))
    assert len(single) == 1 and len(single[0]) == 1
    np.testing.assert_array_equal(single[0][0], [0, 2, 4, 6])


def test_as_tensor() -> None:
    autograd = pytest.importorskip("autograd")
    if not hasattr(autograd, "Tensor"):
        pytest.skip("autograd.Tensor not written yet")
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6, dtype=np.int64)
    batches = list(
        DataLoader(x, y, batch_size=4, as_tensor=True, transform=lambda a, b: (a * 2, b))
    )
    assert len(batches) == 2
    bx, by = batches[0]
    assert isinstance(bx, autograd.Tensor) and isinstance(by, autograd.Tensor)
    np.testing.assert_array_equal(np.asarray(bx.data), x[:4] * 2)
    np.testing.assert_array_equal(np.asarray(by.data), y[:4])
    assert bx.shape == (4, 2) and batches[1][0].shape == (2, 2)
    assert not bx.requires_grad


# --------------------------------------------------------------------------------------
# load_mnist
# --------------------------------------------------------------------------------------


# `hf_offline` (datasets kept offline, its cache in a tmp dir) comes from tests/conftest.py


@pytest.fixture
def npgrad_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hf_offline: None) -> Path:
    """A fresh, empty npgrad cache, also set as NPGRAD_CACHE so nothing can reach ~."""
    cache = tmp_path / "npgrad-cache"
    monkeypatch.setenv("NPGRAD_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def subset(hf_offline: None, tmp_path_factory: pytest.TempPathFactory):
    """The shipped subset loaded once per module: (cache dir, {split: (images, labels)})."""
    cache = tmp_path_factory.mktemp("subset-cache")
    return cache, {s: load_mnist(SUBSET, split=s, cache_dir=cache) for s in ("train", "test")}


def _forbid_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("datasets.load_dataset must not be called")

    monkeypatch.setattr(datasets, "load_dataset", boom)


def test_load_mnist_shapes_and_dtypes(subset) -> None:
    _, data = subset
    for split, n in (("train", 1000), ("test", 500)):
        images, labels = data[split]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        assert labels.min() == 0 and labels.max() == 9
        assert images.max() == 255 and images.min() == 0


def test_load_mnist_labels_match_parquet(subset) -> None:
    _, data = subset
    for split, path in (("train", TRAIN_PARQUET), ("test", TEST_PARQUET)):
        expected = pq.read_table(path, columns=["label"]).column("label").to_numpy()
        np.testing.assert_array_equal(data[split][1], expected)
    # The well-known first digits of each MNIST split.
    assert data["train"][1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert data["test"][1][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(data["train"][1]).tolist() == [97, 116, 99, 93, 105, 92, 94, 117, 87, 100]


def test_load_mnist_pixels_match_png(subset) -> None:
    _, data = subset
    rows = pq.read_table(TEST_PARQUET, columns=["image"]).column("image").to_pylist()
    for i in (0, 123, 499):
        png = rows[i]["bytes"]
        expected = np.array(Image.open(io.BytesIO(png)))
        assert expected.shape == (28, 28)
        np.testing.assert_array_equal(data["test"][0][i], expected)
    # Train image 0 is the "5": a blank border and a few hundred inked pixels.
    five = data["train"][0][0]
    assert five[0].sum() == 0 and five[:, 0].sum() == 0
    assert 100 < np.count_nonzero(five) < 250


def test_cache_file_written_and_served(
    subset, monkeypatch: pytest.MonkeyPatch, hf_offline: None
) -> None:
    cache, data = subset
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and all(f.startswith("mnist-mnist-") for f in files), files
    assert any("-train-" in f for f in files) and any("-test-" in f for f in files)
    assert not list(cache.glob("*.tmp"))
    _forbid_datasets(monkeypatch)
    t0 = time.perf_counter()
    images, labels = load_mnist(SUBSET, split="train", cache_dir=cache)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(images, data["train"][0])
    np.testing.assert_array_equal(labels, data["train"][1])
    assert images.dtype == np.uint8 and labels.dtype == np.int64
    # A relative path to the same folder shares the cache entry.
    monkeypatch.chdir(REPO)
    np.testing.assert_array_equal(load_mnist("tests/data/mnist", "test", cache)[1], data["test"][1])


def test_cache_dir_from_env(npgrad_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_cache_dir() == npgrad_cache
    images, _ = load_mnist(SUBSET, split="test")
    assert images.shape == (500, 28, 28)
    assert [p.name for p in npgrad_cache.glob("mnist-*-test-*.npz")]
    monkeypatch.delenv("NPGRAD_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "npgrad"


def test_changed_folder_is_not_served_stale(npgrad_cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(SUBSET, folder)
    assert load_mnist(folder, "train")[0].shape == (1000, 28, 28)
    part = folder / "mnist" / "train-00000-of-00001.parquet"
    pq.write_table(pq.read_table(part).slice(0, 10), part)
    images, labels = load_mnist(folder, "train")
    assert images.shape == (10, 28, 28)
    assert labels.tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_corrupt_cache_file_is_rebuilt(npgrad_cache: Path) -> None:
    load_mnist(SUBSET, "test")
    (entry,) = npgrad_cache.glob("*.npz")
    entry.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable MNIST cache"):
        images, _ = load_mnist(SUBSET, "test")
    assert images.shape == (500, 28, 28)
    assert np.load(entry)["images"].shape == (500, 28, 28)  # rewritten


def test_unknown_split_raises(npgrad_cache: Path) -> None:
    with pytest.raises(ValueError, match="'validation'"):
        load_mnist(SUBSET, split="validation")


@pytest.mark.parametrize("relative", [True, False])
def test_missing_folder_fails_fast(
    npgrad_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relative: bool
) -> None:
    _forbid_datasets(monkeypatch)  # no network, not even datasets: a typo fails at once
    monkeypatch.chdir(tmp_path)
    source = "./no/such/mnist" if relative else str(tmp_path / "missing")
    with pytest.raises(MnistSourceError) as info:
        load_mnist(source)
    message = str(info.value)
    assert source in message and "--dataset" in message and "\n" not in message
    assert info.value.source == source
    assert isinstance(info.value, RuntimeError)


def test_file_instead_of_folder(npgrad_cache: Path) -> None:
    with pytest.raises(MnistSourceError, match="not a folder"):
        load_mnist(TRAIN_PARQUET)


def test_corrupt_parquet(npgrad_cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(SUBSET, folder)
    (folder / "mnist" / "train-00000-of-00001.parquet").write_bytes(b"garbage " * 1000)
    with pytest.raises(MnistSourceError) as info:
        load_mnist(folder, "train")
    message = str(info.value)
    assert str(folder) in message and "--dataset" in message
    assert info.value.__cause__ is not None
    assert not list(npgrad_cache.glob("*.npz"))  # nothing cached for a failed load


def test_unreachable_hub_id_offline(npgrad_cache: Path) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    t0 = time.perf_counter()
    with pytest.raises(MnistSourceError) as info:
        load_mnist("ylecun/mnist", "train")
    assert time.perf_counter() - t0 < 5.0
    message = str(info.value)
    assert "'ylecun/mnist'" in message and "--dataset" in message
    # the way out names the shipped copy and --dataset PATH
    assert "data/mnist" in message and "--dataset PATH" in message


def test_unwritable_cache_only_warns(hf_offline: None, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(UserWarning, match="could not cache MNIST"):
        images, labels = load_mnist(SUBSET, "test", cache_dir=blocker / "cache")
    assert images.shape == (500, 28, 28) and labels.shape == (500,)


# --------------------------------------------------------------------------------------
# the full MNIST copy shipped in data/mnist
# --------------------------------------------------------------------------------------

# label counts of the original IDX files (README of data/mnist)
MNIST_COUNTS = {
    "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
}


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_copy_is_full_mnist_in_the_hub_layout(split: str) -> None:
    """Read straight from the parquet (no PNG decoding): rows, columns, label counts."""
    path = SHIPPED / "mnist" / f"{split}-00000-of-00001.parquet"
    table = pq.read_table(path)
    assert table.column_names == ["image", "label"]
    assert b"huggingface" in table.schema.metadata  # datasets reads the features from here
    labels = table.column("label").to_numpy()
    assert np.bincount(labels, minlength=10).tolist() == MNIST_COUNTS[split]
    first = {"train": [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], "test": [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]}
    assert labels[:10].tolist() == first[split]
    # the subset in tests/data is the first rows of these files, byte for byte
    subset = pq.read_table(SUBSET / "mnist" / f"{split}-00000-of-00001.parquet")
    assert subset.slice(0, 5).equals(table.slice(0, 5))


def test_shipped_test_split_loads_through_datasets(npgrad_cache: Path) -> None:
    images, labels = load_mnist(SHIPPED, split="test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == MNIST_COUNTS["test"]
    png = pq.read_table(SHIPPED / "mnist" / "test-00000-of-00001.parquet", columns=["image"])
    np.testing.assert_array_equal(
        images[9999], np.array(Image.open(io.BytesIO(png.column("image")[9999]["bytes"].as_py())))
    )


def test_shipped_copy_is_committed_not_ignored() -> None:
    """git must not ignore the parquet files (a fresh clone would lack its default data)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = [str(p.relative_to(REPO)) for p in sorted(SHIPPED.rglob("*.parquet"))]
    assert len(files) == 2
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", *files], cwd=REPO, capture_output=True, text=True
    )
    assert ignored.returncode == 1 and ignored.stdout == "", ignored.stdout  # 1: none ignored
