"""Faults in the files the scripts read and write, made on purpose: one value of a parquet column, an
edited JSON file, a directory that looks like a mount point."""

import json
import os
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def set_value(path: pathlib.Path, column: str, row: int, value: float) -> None:
    """Set one value of a parquet file's column: row `row` (its first element, in a vector column)."""
    table = pq.read_table(path)
    values = np.array(table.column(column).to_pylist(), dtype=np.float32)
    values.reshape(len(values), -1)[row, 0] = value  # a view: scalar and vector columns alike
    array = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1]) if values.ndim == 2 else pa.array(values)
    pq.write_table(table.set_column(table.column_names.index(column), column, array), path)


def edit_json(path: pathlib.Path, change) -> None:
    """Rewrite a JSON file after `change(value)` has edited its value in place."""
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


def pretend_mount_point(monkeypatch, directory: pathlib.Path) -> None:
    """Make os.stat report `directory` on another device than its parent, as for a mount point (a test
    cannot mount a filesystem)."""
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        result = real_stat(path, *args, **kwargs)
        if isinstance(path, (str, os.PathLike)) and pathlib.Path(path) == directory:
            return os.stat_result((*result[:2], result.st_dev + 1, *result[3:]))
        return result

    monkeypatch.setattr(os, "stat", stat)
