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
another format, object arrays).
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


def _as_array(key: str, value: Any) -> np.ndarray:
    """A state-dict value as an array: Tensors give their data, numbers a 0-d array."""
    if isinstance(value, Tensor):
        value = value.data
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":  # bool, ints, floats, complex
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
    that cannot be read as a checkpoint.
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
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError("it holds a single array, not an archive of named arrays")
        with archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, KeyError) as error:
        raise ValueError(
            f"nn.load: {path} is not a readable .npz checkpoint (truncated or corrupt?): {error}"
        ) from error


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    _safetensors_numpy()  # the clear ImportError when the package is missing
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="np") as f:
            keys = list(f.keys())
            order = json.loads((f.metadata() or {}).get(_ORDER_KEY, "[]"))
            if sorted(order) == sorted(keys):
                keys = order  # the order they were saved in
            # np.array copies: the result owns its memory, not the file's mapping
            return {key: np.array(f.get_tensor(key)) for key in keys}
    except (SafetensorError, ValueError, TypeError) as error:
        raise ValueError(
            f"nn.load: {path} is not a readable .safetensors checkpoint (truncated or "
            f"corrupt?): {error}"
        ) from error
