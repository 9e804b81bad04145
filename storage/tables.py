"""Parquet tables of fixed-shape arrays.

Every cached array in the working directory (decoded images, superpixels, activations,
gradients) is a Parquet file whose array columns hold each row's raw bytes (fixed-size binary:
read back with one copy, ~10x faster than Parquet's nested lists), with each column's shape and
dtype in the schema metadata. ``bfloat16`` columns (activations computed in bf16) are stored as
their 16-bit patterns and read back as float32. Tables are written one row group per
``append`` (so writers never hold the whole table) and read back by columns, by row groups, or
for a subset of rows, so readers never need more than one row group at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ace.storage.atomic import atomic_path

if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    # Arrow's buffers from the process's malloc (tuned by ace.flows.process.tune_malloc)
    # rather than Arrow's own mimalloc pool, which kept what a class read: a crop-mode sweep's
    # memory at rest grew 1,263 -> 1,321 MB over 7 classes, and stays at 1,246-1,263 MB this way
    pa.set_memory_pool(pa.system_memory_pool())

_META_KEY = b"ace"
_DTYPES = ("uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64", "bool")


class BF16(np.ndarray):
    """Marks a uint16 array as the bit patterns of bfloat16 values (numpy has no bfloat16)."""


def as_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """Wrap uint16 bfloat16 bit patterns so that a table stores them as a ``bfloat16`` column."""
    return np.asarray(bits, dtype=np.uint16).view(BF16)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    out = np.asarray(bits, dtype=np.uint16).astype(np.uint32)
    out <<= 16
    return out.view(np.float32)


def _array_column(values: np.ndarray) -> tuple[pa.Array, dict]:
    dtype = "bfloat16" if isinstance(values, BF16) else str(values.dtype)
    values = np.ascontiguousarray(values.view(np.ndarray))
    if dtype not in _DTYPES:
        raise TypeError(f"unsupported dtype {dtype} for a table column")
    shape = list(values.shape[1:])
    row_bytes = int(values[0].nbytes) if len(values) else int(np.prod(shape) * values.itemsize)
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(max(row_bytes, 1)), len(values),
                                               [None, pa.py_buffer(values.tobytes())])
    return arr, {"shape": shape, "dtype": dtype}


def _rows_to_numpy(arr: pa.FixedSizeBinaryArray, info: dict) -> np.ndarray:
    raw_dtype = np.uint16 if info["dtype"] == "bfloat16" else np.dtype(info["dtype"])
    if len(arr) == 0:
        return np.zeros((0, *info["shape"]), np.float32 if info["dtype"] == "bfloat16" else raw_dtype)
    width = arr.type.byte_width
    data = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset * width:(arr.offset + len(arr)) * width]
    out = data.view(raw_dtype).reshape(len(arr), *info["shape"])
    return bf16_to_float32(out) if info["dtype"] == "bfloat16" else out.copy()


class TableWriter:
    """Write a table row group by row group; the file appears atomically on ``close``.

    Use as a context manager: ``with TableWriter(path, meta) as w: w.append(act=..., name=[...])``.
    Array columns are numpy arrays with a leading row axis; other columns are lists of str/int/float.
    """

    def __init__(self, path: str | Path, meta: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.meta = dict(meta or {})
        self._ctx = None
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None
        self._shapes: dict[str, dict] = {}
        self.num_rows = 0

    def __enter__(self) -> "TableWriter":
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        return self

    def append(self, **columns: Any) -> None:
        arrays, names, shapes = [], [], {}
        n = None
        for name, value in columns.items():
            if isinstance(value, np.ndarray):
                arr, info = _array_column(value)
                shapes[name] = info
            else:
                arr = pa.array(list(value))
            n = len(arr) if n is None else n
            if len(arr) != n:
                raise ValueError(f"column {name!r} has {len(arr)} rows, expected {n}")
            arrays.append(arr)
            names.append(name)
        batch = pa.RecordBatch.from_arrays(arrays, names=names)
        if self._writer is None:
            self._shapes = shapes
            meta = {"columns": shapes, "meta": self.meta}
            self._schema = batch.schema.with_metadata({_META_KEY: json.dumps(meta).encode()})
            # zstd level 1: images and masks shrink a lot, bf16 activations by ~20%, at >1 GB/s reads
            self._writer = pq.ParquetWriter(
                self._tmp, self._schema, compression="zstd", compression_level=1, use_dictionary=False,
                write_statistics=False,
            )
        elif shapes != self._shapes:
            raise ValueError(f"column shapes changed mid-table: {shapes} != {self._shapes}")
        self._writer.write_table(pa.Table.from_batches([batch.cast(self._schema)]))
        self.num_rows += n or 0

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self._writer is None:
            # an empty table still needs a schema: write metadata only
            self._schema = pa.schema([], metadata={_META_KEY: json.dumps({"columns": {}, "meta": self.meta}).encode()})
            self._writer = pq.ParquetWriter(self._tmp, self._schema)
        if self._writer is not None:
            self._writer.close()
        self._ctx.__exit__(exc_type, exc, tb)


def write_table(path: str | Path, meta: Mapping[str, Any] | None = None, **columns: Any) -> Path:
    """Write a whole (small) table at once, atomically. Returns ``path``."""
    with TableWriter(path, meta) as w:
        w.append(**columns)
    return Path(path)


def read_table_meta(path: str | Path) -> dict:
    schema = pq.read_schema(path)
    return json.loads(schema.metadata[_META_KEY])["meta"]


class ArrayTable:
    """Read side of a table written by :class:`TableWriter`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = pq.ParquetFile(self.path)
        info = json.loads(self._file.schema_arrow.metadata[_META_KEY])
        self.meta: dict = info["meta"]
        self.columns: dict[str, dict] = info["columns"]
        self.num_rows: int = self._file.metadata.num_rows
        md = self._file.metadata
        self._group_starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])

    def __len__(self) -> int:
        return self.num_rows

    def shape(self, column: str) -> tuple[int, ...]:
        return tuple(self.columns[column]["shape"])

    def _to_numpy(self, name: str, arr: pa.ChunkedArray | pa.Array) -> np.ndarray | list:
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        if name in self.columns:
            return _rows_to_numpy(arr, self.columns[name])
        return arr.to_pylist()

    def read(self, column: str, rows: Sequence[int] | np.ndarray | None = None):
        """The column as a numpy array (array columns) or a list, for all rows or the given rows,
        in the order given. Reads one row group at a time."""
        if rows is None:
            return self._to_numpy(column, self._file.read(columns=[column]).column(0))
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_rows):
            raise IndexError(f"row index out of range for {self.path} ({self.num_rows} rows)")
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        parts: dict[int, Any] = {}
        for g in np.unique(groups):
            sel = np.nonzero(groups == g)[0]
            local = rows[sel] - self._group_starts[g]
            col = self._file.read_row_group(int(g), columns=[column]).column(0)
            parts[int(g)] = (sel, self._to_numpy(column, col.take(pa.array(local))))
        if column in self.columns:
            info = self.columns[column]
            dtype = np.float32 if info["dtype"] == "bfloat16" else info["dtype"]
            out = np.empty((len(rows), *info["shape"]), dtype=dtype)
            for sel, vals in parts.values():
                out[sel] = vals
            return out
        out_list: list = [None] * len(rows)
        for sel, vals in parts.values():
            for i, v in zip(sel, vals):
                out_list[i] = v
        return out_list

    def iter_batches(self, columns: Iterable[str]) -> Iterator[dict]:
        """Yield dicts of column -> values, one row group at a time."""
        columns = list(columns)
        for g in range(self._file.num_row_groups):
            t = self._file.read_row_group(g, columns=columns)
            yield {c: self._to_numpy(c, t.column(c)) for c in columns}
