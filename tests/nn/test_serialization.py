"""nn.save / nn.load: .npz and .safetensors round trips, atomic writes, clear errors."""

import os
import zipfile

import numpy as np
import pytest

import nn
from autograd import Tensor

FORMATS = [".npz", ".safetensors"]


def _state() -> dict:
    rng = np.random.default_rng(0)
    return {
        "layers.0.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "layers.0.bias": rng.standard_normal(4).astype(np.float32),
        "bn.running_var": rng.random(4),  # float64 stays float64
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "mask": np.array([True, False]),
        "tokens": np.arange(6, dtype=np.int32).reshape(2, 3),
        "file": np.ones(1, dtype=np.float32),  # a key np.savez(file, **kw) would choke on
    }


@pytest.mark.parametrize("suffix", FORMATS)
def test_round_trip_is_bit_identical_with_dtypes_and_order(tmp_path, suffix):
    state = _state()
    path = tmp_path / f"model{suffix}"
    assert nn.save(state, path) is None
    loaded = nn.load(path)
    assert list(loaded) == list(state)
    for key, array in state.items():
        assert loaded[key].dtype == array.dtype, key
        assert loaded[key].shape == array.shape, key
        assert loaded[key].tobytes() == array.tobytes(), key
    assert loaded["layers.0.weight"].flags.writeable  # usable like any array
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("suffix", FORMATS)
def test_numbers_and_tensors_are_stored_as_arrays(tmp_path, suffix):
    path = tmp_path / f"s{suffix}"
    nn.save({"step": 3, "lr": 0.5, "t": Tensor([1.0, 2.0])}, str(path))  # str paths work too
    loaded = nn.load(str(path))
    assert loaded["step"].shape == () and loaded["step"].item() == 3
    assert loaded["lr"].item() == 0.5
    np.testing.assert_array_equal(loaded["t"], np.array([1, 2], dtype=np.float32))
    assert loaded["t"].dtype == np.float32


def test_npz_is_plain_numpy_and_safetensors_is_plain_safetensors(tmp_path):
    state = _state()
    nn.save(state, tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz", allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["layers.0.weight"], state["layers.0.weight"])
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    nn.save(state, tmp_path / "a.safetensors")
    raw = safetensors_numpy.load_file(str(tmp_path / "a.safetensors"))
    np.testing.assert_array_equal(raw["layers.0.bias"], state["layers.0.bias"])


def test_other_suffixes_are_written_as_npz_at_the_exact_path(tmp_path):
    path = tmp_path / "checkpoint.bin"
    nn.save({"w": np.ones(2, dtype=np.float32)}, path)
    assert path.exists() and zipfile.is_zipfile(path)
    np.testing.assert_array_equal(nn.load(path)["w"], [1, 1])


def test_module_state_dict_round_trip(tmp_path):
    class Small(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(np.random.default_rng(1).standard_normal((3, 2)))
            self.register_buffer("count", np.array(5))

    source, target = Small(), Small()
    target.w.data[...] = 0
    for suffix in FORMATS:
        path = tmp_path / f"small{suffix}"
        nn.save(source.state_dict(), path)
        target.load_state_dict(nn.load(path))
        np.testing.assert_array_equal(target.w.data, source.w.data)
        assert target.count.item() == 5


def test_overwrite_replaces_the_old_file(tmp_path):
    path = tmp_path / "m.npz"
    nn.save({"a": np.zeros(2)}, path)
    nn.save({"b": np.ones(3)}, path)
    assert list(nn.load(path)) == ["b"]
    assert os.listdir(tmp_path) == ["m.npz"]


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    nn.save({"a": np.arange(3)}, path)
    before = path.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C arrived while the archive was written

    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        nn.save({"a": np.arange(1000)}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_object_arrays_are_refused_not_pickled(tmp_path):
    with pytest.raises(TypeError, match="'meta'"):
        nn.save({"meta": np.array([{"a": 1}], dtype=object)}, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="'name'"):
        nn.save({"name": "mlp"}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []
    # a hand-made .npz with a pickled object array is refused on load
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled.npz"):
        nn.load(tmp_path / "pickled.npz")


def test_save_into_a_missing_directory_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        nn.save({"a": np.zeros(1)}, tmp_path / "nowhere" / "m.npz")


def test_missing_file_is_file_not_found_naming_the_path(tmp_path):
    for suffix in FORMATS:
        path = tmp_path / f"absent{suffix}"
        with pytest.raises(FileNotFoundError, match=f"absent\\{suffix}"):
            nn.load(path)


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.95])
def test_truncated_file_is_value_error_naming_the_path(tmp_path, suffix, keep):
    path = tmp_path / f"model{suffix}"
    nn.save(_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=f"model\\{suffix}"):
        nn.load(path)


@pytest.mark.parametrize("suffix", FORMATS)
def test_garbage_file_is_value_error_naming_the_path(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(ValueError, match=f"junk\\{suffix}"):
        nn.load(path)


def test_single_npy_array_is_not_a_state_dict(tmp_path):
    path = tmp_path / "lonely.npy"
    np.save(path, np.ones(3))
    with pytest.raises(ValueError, match="lonely.npy"):
        nn.load(path)


def test_missing_safetensors_package_is_a_clear_import_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(ImportError, match="pip install safetensors"):
        nn.save({"a": np.zeros(1)}, tmp_path / "a.safetensors")
    assert os.listdir(tmp_path) == []
