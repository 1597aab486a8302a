"""nn.save / nn.load: .npz and .safetensors round trips, atomic writes, clear errors."""

import json
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


# ----- members that are not plain numeric arrays ------------------------------------------------
def _zip(path, members: dict) -> None:
    """A hand-made .npz: `{member name: bytes}`."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def test_zip_member_that_is_not_npy_is_refused_naming_file_and_member(tmp_path):
    path = tmp_path / "raw.npz"
    # np.load's NpzFile would hand this back as {'weight': b'...'}
    _zip(path, {"bias.npy": _npy_bytes(np.zeros(2, np.float32)), "weight": b"\x00" * 64})
    with pytest.raises(ValueError, match=r"raw\.npz.*'weight'") as info:
        nn.load(path)
    assert "not an .npy array" in str(info.value)


def test_npy_named_member_with_garbage_inside_is_refused(tmp_path):
    path = tmp_path / "fake.npz"
    _zip(path, {"weight.npy": b"this is not an npy file" * 4})
    with pytest.raises(ValueError, match=r"fake\.npz.*'weight\.npy'"):
        nn.load(path)


def test_object_dtype_member_is_refused_naming_the_member(tmp_path):
    path = tmp_path / "objects.npz"
    pickled = _npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    _zip(path, {"w.npy": _npy_bytes(np.ones(3)), "meta.npy": pickled})
    with pytest.raises(ValueError, match=r"objects\.npz.*'meta\.npy'"):
        nn.load(path)


@pytest.mark.parametrize(
    "array",
    [
        np.array(["a", "bc"]),  # unicode strings
        np.array([b"xy"]),  # bytes
        np.zeros(2, dtype=[("x", np.float32), ("y", np.int8)]),  # structured
        np.array(["2024-01-01"], dtype="datetime64[D]"),
    ],
    ids=["str", "bytes", "structured", "datetime"],
)
def test_non_numeric_dtype_member_is_refused_naming_dtype_and_member(tmp_path, array):
    path = tmp_path / "odd.npz"
    _zip(path, {"good.npy": _npy_bytes(np.arange(3)), "odd.npy": _npy_bytes(array)})
    with pytest.raises(ValueError, match=r"odd\.npz.*'odd\.npy'") as info:
        nn.load(path)
    assert str(array.dtype) in str(info.value)


def test_hand_made_numeric_zip_still_loads(tmp_path):
    """The member-by-member reader accepts what np.savez and np.savez_compressed write."""
    path = tmp_path / "numpy.npz"
    np.savez_compressed(path, w=np.arange(6, dtype=np.int16).reshape(2, 3), flag=np.bool_(True))
    loaded = nn.load(path)
    assert list(loaded) == ["w", "flag"]
    assert loaded["w"].dtype == np.int16 and loaded["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert loaded["flag"].dtype == np.bool_ and loaded["flag"].shape == () and loaded["flag"]


def _safetensors_file(path, header: bytes, data: bytes) -> None:
    import struct

    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _good_safetensors(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "good.safetensors"
    nn.save({"w": np.arange(4, dtype=np.float32)}, path)
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return data[8 : 8 + size], data[8 + size :]


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda header: b"{" + b"\x00" * (len(header) - 1),  # not JSON
        lambda header: b"\xff" * len(header),  # not UTF-8
        lambda header: header.replace(b'"F32"', b'"X32"'),  # unknown dtype
        lambda header: header.replace(b"[0,16]", b"[0,99]"),  # offsets past the data
    ],
    ids=["json", "utf8", "dtype", "offsets"],
)
def test_corrupt_safetensors_header_is_value_error_naming_the_path(tmp_path, corrupt):
    header, data = _good_safetensors(tmp_path)
    assert b"[0,16]" in header and b'"F32"' in header  # the bytes the corruptions edit
    path = tmp_path / "broken.safetensors"
    _safetensors_file(path, corrupt(header), data)
    with pytest.raises(ValueError, match=r"broken\.safetensors.*header"):
        nn.load(path)


def test_safetensors_header_length_past_the_file_is_refused(tmp_path):
    header, data = _good_safetensors(tmp_path)
    path = tmp_path / "long.safetensors"
    path.write_bytes((10**12).to_bytes(8, "little") + header + data)
    with pytest.raises(ValueError, match=r"long\.safetensors"):
        nn.load(path)


def test_safetensors_member_numpy_cannot_hold_is_refused_naming_it(tmp_path):
    """bfloat16 and float8 are valid safetensors dtypes with no numpy dtype."""
    pytest.importorskip("safetensors")
    header = json.dumps(
        {
            "ok": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            "half": {"dtype": "BF16", "shape": [2], "data_offsets": [2, 6]},
        }
    ).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "bf16.safetensors"
    _safetensors_file(path, header, bytes(6))
    with pytest.raises(ValueError, match=r"bf16\.safetensors.*'half'"):
        nn.load(path)
