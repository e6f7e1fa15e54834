"""IDX files, the MNIST/Fashion-MNIST container: read (plain or gzip'd) and write.

Why a reader of our own rather than torchvision's ``read_sn3_pascalvincent_tensor``: that one
(torchvision 0.29) opens only an uncompressed path, while the Debian package
``dataset-fashion-mnist`` (our default source) ships ``.gz`` files only, so using it would mean
decompressing every file to a temporary file first. It also checks the file with bare
``assert`` statements (no file name, no "truncated" vs "too long", and gone under
``python -O``) and accepts only 1-3 dimensions. Parsing the format is one ``np.frombuffer``
once the header is checked, and the header check is needed anyway for the error messages;
``tests/test_data.py`` checks that both readers agree on every dtype.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError, fail_if

__all__ = ["read_idx", "write_idx"]

# IDX header: 2 zero bytes, a dtype code, the number of dims, then one big-endian uint32 per dim.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or gzip'd; detected from the content, not the name).

    Returns a writable, native-byte-order array with the shape stored in the header, e.g.
    ``(N, 28, 28)`` uint8 for images or ``(N,)`` uint8 for labels. Raises :class:`DataError`
    naming the file if it is missing, not IDX, or truncated/too long.
    """
    path = Path(path)
    redo = "Delete it and reinstall or re-download the dataset."
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist. Check the dataset folder.") from None
    except (EOFError, zlib.error, OSError) as e:  # truncated or corrupt gzip stream, unreadable
        raise DataError(
            f"Cannot read IDX file {path}: {e}. It is probably truncated or corrupt. {redo}"
        ) from e
    fail_if(
        len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0,
        f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty file'}). {redo}",
    )
    ndim, header = raw[3], 4 + 4 * raw[3]
    fail_if(len(raw) < header, f"IDX file {path} is truncated inside its header. {redo}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    fail_if(
        len(raw) != expected,
        f"IDX file {path} is {'truncated' if len(raw) < expected else 'longer than its header'}: "
        f"the header declares shape {tuple(dims)} ({expected} bytes) but the file holds "
        f"{len(raw)} bytes (after decompression). {redo}",
    )
    try:  # an empty dimension beside huge ones matches the byte count but no array can hold it
        arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    except ValueError as e:
        raise DataError(
            f"IDX file {path} declares a shape no array can have, {tuple(dims)} ({e}). {redo}"
        ) from None
    return arr.astype(dtype.newbyteorder("="))  # copy: writable and native-endian


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip'd if ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder(">"): k for k, v in _IDX_DTYPES.items()}
    big = array.dtype.newbyteorder(">")
    if big not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    data = bytes([0, 0, codes[big], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(big).tobytes()
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
