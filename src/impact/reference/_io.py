"""Reading the packaged reference CSVs (``impact/reference/tables_csv``) with explicit dtypes."""

from __future__ import annotations

import io
from functools import cache
from importlib.resources import files

import polars as pl

#: Calendar span covered by the time-indexed reference tables (inclusive).
FIRST_YEAR = 2015
LAST_YEAR = 2030


@cache
def _read_cached(name: str, schema_items: tuple[tuple[str, pl.DataType], ...]) -> pl.DataFrame:
    raw = files("impact.reference").joinpath("tables_csv", name).read_bytes()
    schema = pl.Schema(dict(schema_items))
    header = raw.split(b"\n", 1)[0].decode("utf-8").strip().split(",")
    if header != schema.names():
        raise ValueError(f"{name}: header {header} does not match {schema.names()}")
    return pl.read_csv(io.BytesIO(raw), schema=schema, encoding="utf8")


def read_table(name: str, schema: pl.Schema) -> pl.DataFrame:
    """Read ``data/<name>`` with exactly the given schema (column order and dtypes).

    The parsed frame is cached per process; callers get a cheap copy so that in-place
    changes to it can never leak into other callers.
    """
    return _read_cached(name, tuple(schema.items())).clone()
