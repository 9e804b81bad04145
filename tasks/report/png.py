"""PNG files of the report: encoded here, 2-3x faster than Pillow's encoder.

A report writes about 1,500 small PNGs (every significant concept's superpixels and patches). Pillow
tries every PNG filter on every row; here each row gets the "Up" filter (the row minus the one
above, vectorised) and zlib level 1, which releases the GIL, so two threads encode two files at
once. Files are standard 8-bit RGB (or grey) PNGs that any viewer reads back pixel for pixel.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ace.storage.atomic import atomic_path

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2  # PNG filter type: each byte minus the byte above it


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 by 255 and clipping (the original's ``x * 256`` wrapped 1.0 to 0)."""
    if x.dtype == np.uint8:
        return x
    return np.clip(np.round(np.asarray(x, np.float64) * 255.0), 0, 255).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(array: np.ndarray, level: int = 1) -> bytes:
    """The PNG bytes of an (H, W, 3) RGB or (H, W) grey image ([0, 1] floats or uint8)."""
    a = to_uint8(np.asarray(array))
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3) or 0 in a.shape:
        raise ValueError(f"encode_png takes (H, W, 3) or (H, W) images, got {a.shape}")
    h, w = a.shape[:2]
    rows = np.ascontiguousarray(a).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = _UP
    filtered[0, 0] = 0  # the first row has no row above: unfiltered
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter defines
    color_type = 2 if a.ndim == 3 else 0
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level))
            + _chunk(b"IEND", b""))


def save_png(path: Path, array: np.ndarray, atomic: bool = True) -> None:
    """Write a PNG; ``atomic=False`` inside a folder that is itself swapped in whole."""
    data = encode_png(array)
    if not atomic:
        Path(path).write_bytes(data)
        return
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
