"""Read one publication folder (and nothing else) for the report.

Only files of the publication are read: ``manifest.json``, ``indicators.parquet`` and
``indicators.json`` (definitions), ``tables/<name>.parquet`` and
``disclosure_report.json``. Every value of a row whose ``suppressed`` flag is set is
replaced by null here, whatever the file holds, so no later step can print or plot it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["Publication", "ReportError", "load_publication"]

#: tables of ``tables/`` the report uses (a missing one is shown as "not published")
TABLES = ("event_study", "income_curves", "career_step_km", "balance", "pre_trajectories",
          "twins_groups", "data_quality")
#: columns kept when a row is suppressed (they describe the cell, they do not measure it)
_KEEP = frozenset({
    "indicator", "indicator_label_en", "indicator_label_lv", "family", "dimension",
    "dimension_label_en", "dimension_label_lv", "group", "group_label_en", "group_label_lv",
    "horizon", "kind", "unit", "contrast", "period", "arm", "month", "suppressed",
    "suppression_reason"})


class ReportError(ValueError):
    """The folder is not a publication the report can be made from."""


@dataclass(frozen=True)
class Publication:
    """The parts of a publication the report shows.

    Attributes
    ----------
    path
        The publication folder.
    manifest
        ``manifest.json``.
    indicators
        ``indicators.parquet``, suppressed rows blanked (see the module docstring).
    definitions
        ``{indicator: {label_en, label_lv, definition_en, definition_lv, population,
        unit}}`` from ``indicators.json``.
    tables
        ``{name: table}`` for the tables of :data:`TABLES` present, suppressed rows blanked.
    disclosure
        ``disclosure_report.json`` (empty if absent).
    problems
        Integrity problems found by :func:`impact.publish.verify_publication` (empty: every
        file matches the manifest's checksums).
    """

    path: Path
    manifest: dict[str, Any]
    indicators: pl.DataFrame
    definitions: dict[str, dict[str, Any]]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    disclosure: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def run_id(self) -> str:
        """The run id (``manifest.json``)."""
        return str(self.manifest.get("run_id", ""))

    @property
    def min_persons(self) -> int | None:
        """Smallest number of persons in a published cell (disclosure threshold)."""
        value = (self.manifest.get("disclosure") or {}).get("min_persons")
        return int(value) if value is not None else None

    def table(self, name: str) -> pl.DataFrame | None:
        """One table of ``tables/`` (None if the publication has none of that name)."""
        return self.tables.get(name)


def blank_suppressed(df: pl.DataFrame) -> pl.DataFrame:
    """Every measuring column of a suppressed row set to null (no-op without the flag)."""
    if "suppressed" not in df.columns or df.height == 0:
        return df
    hidden = pl.col("suppressed").fill_null(True)
    return df.with_columns(
        pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c)
        for c in df.columns if c not in _KEEP)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path.name}: not a JSON object")
    return data


def load_publication(path: Path) -> Publication:
    """Read the publication folder ``path`` (e.g. ``data/demo/publish/latest``).

    Raises
    ------
    ReportError
        ``path`` has no ``manifest.json`` or ``indicators.parquet``, or they are unreadable.
    """
    from impact.publish import verify_publication

    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise ReportError(f"{path}: not a publication folder (no manifest.json)")
    manifest = _json(path / "manifest.json")
    try:
        indicators = pl.read_parquet(path / "indicators.parquet")
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ReportError(f"{path}: indicators.parquet unreadable ({exc})") from None
    for col, dtype in (("indicator", pl.String), ("dimension", pl.String),
                       ("group", pl.String), ("suppressed", pl.Boolean)):
        if col not in indicators.columns:
            raise ReportError(f"{path}: indicators.parquet has no column {col!r}")
        if indicators.schema[col] != dtype:
            raise ReportError(f"{path}: indicators.parquet column {col!r} is not {dtype}")
    definitions: dict[str, dict[str, Any]] = {}
    if (path / "indicators.json").is_file():
        meta = _json(path / "indicators.json").get("metadata") or {}
        definitions = {str(k): dict(v) for k, v in (meta.get("indicators") or {}).items()}
    tables: dict[str, pl.DataFrame] = {}
    for name in TABLES:
        f = path / "tables" / f"{name}.parquet"
        if f.is_file():
            try:
                tables[name] = blank_suppressed(pl.read_parquet(f))
            except (OSError, pl.exceptions.PolarsError) as exc:
                raise ReportError(f"{path}: tables/{name}.parquet unreadable ({exc})") from None
    disclosure = (_json(path / "disclosure_report.json")
                  if (path / "disclosure_report.json").is_file() else {})
    return Publication(path=path, manifest=manifest, indicators=blank_suppressed(indicators),
                       definitions=definitions, tables=tables, disclosure=disclosure,
                       problems=tuple(verify_publication(path)))
