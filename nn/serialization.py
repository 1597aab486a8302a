"""`save` and `load` of state dicts (`{name: array}`), as `torch.save` / `torch.load` are used.

Two formats, chosen by the path's suffix:

- `.safetensors`: the safetensors format (needs `pip install safetensors`), which PyTorch's
  `safetensors.torch.load_file` reads too;
- anything else (`.npz` by convention): numpy's zip of `.npy` files, what `np.savez` writes
  and `np.load` reads.

Never pickle: arrays of Python objects are refused on save and on load.

Saving is atomic: the file is written under a temporary name in the same directory and then
renamed over `path` (`os.replace`), so an interrupted save leaves the previous file intact
and never a half-written one.

Errors of `load`: `FileNotFoundError` (an `OSError`) for a path that does not exist;
`ValueError` naming the path for a file that is not a readable checkpoint (truncated, corrupt,
another format, a corrupt safetensors header), and naming the member too for one entry that is
not a plain numeric array (a zip member that is not an `.npy` file, object, string or
structured dtypes, a dtype numpy lacks).
"""

from __future__ import annotations

import json
import os
import secrets
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autograd import Tensor

__all__ = ["save", "load"]

# safetensors files do not keep the order of their tensors: keep it in the header metadata
_ORDER_KEY = "npgrad.keys"
# the dtype kinds a state dict may hold: bool, signed and unsigned ints, floats, complex
_NUMERIC_KINDS = "biufc"


def _as_array(key: str, value: Any) -> np.ndarray:
    """A state-dict value as an array: Tensors give their data, numbers a 0-d array."""
    if isinstance(value, Tensor):
        value = value.data
    array = np.asarray(value)
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"nn.save: {key!r} has dtype {array.dtype}; only numeric and bool arrays are "
            "saved (never pickled)"
        )
    return array


def save(state_dict: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write `state_dict` (`{name: array | Tensor | number}`) to `path` atomically.

    `.safetensors` suffix: safetensors format; otherwise numpy's `.npz` format (written to
    `path` exactly, no suffix added). Numbers are stored as 0-d arrays.
    """
    path = Path(path)
    arrays = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"nn.save: keys must be strings, got {key!r}")
        arrays[key] = _as_array(key, value)
    if path.suffix == ".safetensors":
        payload = _safetensors_bytes(arrays)
        write = lambda f: f.write(payload)  # noqa: E731
    else:
        write = lambda f: _write_npz(f, arrays)  # noqa: E731
    # a hidden temporary file next to the target: os.replace is atomic within a file system
    if not path.parent.is_dir():
        raise FileNotFoundError(f"nn.save: the directory of {path} does not exist")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as f:  # "x": never clobber; the umask sets permissions
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_npz(f: Any, arrays: dict[str, np.ndarray]) -> None:
    # What np.savez does, written out: np.savez(f, **arrays) would collide with its own
    # parameters for keys named "file" or "allow_pickle".
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, array in arrays.items():
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def _safetensors_numpy() -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            "nn.save/nn.load: the .safetensors format needs the safetensors package: "
            "pip install safetensors (or save to a .npz path)"
        ) from None
    return safetensors.numpy


def _safetensors_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    metadata = {_ORDER_KEY: json.dumps(list(arrays))}
    # (not np.ascontiguousarray: it turns 0-d arrays into 1-d ones)
    contiguous = {key: np.require(array, requirements="C") for key, array in arrays.items()}
    return _safetensors_numpy().save(contiguous, metadata=metadata)


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict written by `save` (or by numpy / safetensors) as `{name: array}`.

    Raises `FileNotFoundError` for a missing path and `ValueError` naming the path for a file
    that cannot be read as a checkpoint, and the member as well for an entry that is not a
    plain numeric array (never returns raw bytes, never unpickles).
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise IsADirectoryError(f"nn.load: {path} is not a file")
        raise FileNotFoundError(f"nn.load: no such file: {path}")
    if path.suffix == ".safetensors":
        return _load_safetensors(path)
    return _load_npz(path)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every member of the zip must be `NAME.npy` holding a numeric or bool array.

    Read member by member rather than through `np.load`: its `NpzFile` hands back the raw
    bytes of a member that is not an `.npy` file instead of refusing it.
    """
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError(
                f"nn.load: {path} holds a single .npy array, not an archive of named arrays"
            )
    state: dict[str, np.ndarray] = {}
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as error:
        raise ValueError(
            f"nn.load: {path} is not a readable .npz checkpoint (truncated or corrupt?): "
            f"{type(error).__name__}: {error}"
        ) from error
    with archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(
                    f"nn.load: {path}: member {name!r} is not an .npy array (a checkpoint "
                    "holds only NAME.npy members)"
                )
            key = name[: -len(".npy")]
            if key in state:
                raise ValueError(f"nn.load: {path}: member {name!r} appears twice")
            try:
                with archive.open(info) as member:
                    # allow_pickle=False: object arrays raise ValueError instead of unpickling
                    array = np.lib.format.read_array(member, allow_pickle=False)
            except (
                ValueError,  # object dtype, bad .npy header, too few bytes
                EOFError,
                MemoryError,  # a header claiming an absurd shape
                RuntimeError,  # an encrypted member
                NotImplementedError,  # an unknown compression method
                zipfile.BadZipFile,  # bad CRC, truncated member
            ) as error:
                raise ValueError(
                    f"nn.load: {path}: member {name!r} is not a readable numeric .npy array "
                    f"(truncated or corrupt?): {type(error).__name__}: {error}"
                ) from error
            if array.dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(
                    f"nn.load: {path}: member {name!r} has dtype {array.dtype}; a checkpoint "
                    "holds only numeric and bool arrays"
                )
            state[key] = array
    return state


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    _safetensors_numpy()  # the clear ImportError when the package is missing
    from safetensors import SafetensorError, safe_open

    try:
        handle = safe_open(path, framework="np")
    except (SafetensorError, OSError, ValueError) as error:
        if isinstance(error, FileNotFoundError | IsADirectoryError | PermissionError):
            raise
        raise ValueError(
            f"nn.load: {path} is not a readable .safetensors checkpoint (truncated, or a "
            f"corrupt header?): {error}"
        ) from error
    state: dict[str, np.ndarray] = {}
    with handle as f:
        keys = list(f.keys())
        try:
            order = json.loads((f.metadata() or {}).get(_ORDER_KEY, "[]"))
            if isinstance(order, list) and sorted(map(str, order)) == sorted(keys):
                keys = order  # the order they were saved in
        except (ValueError, TypeError):
            pass  # unreadable order metadata: the tensors themselves are still good
        for key in keys:
            try:
                # np.array copies: the result owns its memory, not the file's mapping
                array = np.array(f.get_tensor(key))
            except Exception as error:  # noqa: BLE001 (bf16/fp8 give TypeError, AttributeError)
                raise ValueError(
                    f"nn.load: {path}: member {key!r} is not readable as a numpy array: "
                    f"{type(error).__name__}: {error}"
                ) from error
            if array.dtype.kind not in _NUMERIC_KINDS:
                raise ValueError(
                    f"nn.load: {path}: member {key!r} has dtype {array.dtype}; a checkpoint "
                    "holds only numeric and bool arrays"
                )
            state[key] = array
    return state
