"""Publish one evaluation run: a complete, deterministic, checksummed folder, atomically.

:func:`publish` writes the indicator table of a run (after disclosure control), any extra
tables, the disclosure report and an open-data extract to ``root/<run_id>/`` and points
``root/latest`` (symlink) and ``root/LATEST`` (text file) at it::

    root/
      latest -> 2025-06-3f9a0c1d2e4b     relative symlink, replaced atomically
      LATEST                              "2025-06-3f9a0c1d2e4b\\n" (readers without symlinks)
      2025-06-3f9a0c1d2e4b/
        indicators.csv | .parquet | .json
        tables/<name>.csv | .parquet      extra tables (event-study curves, ...)
        disclosure_report.json | .md
        open_data/<name>.csv, README.md, datapackage.json
        manifest.json                     run metadata + sha256 and size of every other file

Determinism
-----------
The run id is ``<data_vintage>-<12 hex>``, a hash of the input checksums, the config hash,
the seeds and the code version (:func:`run_id`). Nothing time-dependent is written: no
timestamps, no host names, no absolute paths. Rows are sorted, JSON keys are sorted, floats
are printed in their shortest round-trip form (polars for CSV, :func:`repr` for JSON),
Parquet is written by polars with fixed options (zstd level 3; its metadata holds the polars
version and the Arrow schema, no time). Re-publishing the same inputs with the same library
versions therefore gives byte-identical files. Non-finite floats (NaN, +-inf) are published
as null in every format (JSON has no NaN; "not available" is their meaning in an indicator
table).

Atomicity
---------
Every file is rendered in memory first (publication tables are aggregates: small), then
written into ``root/.tmp-<run_id>-<pid>-<random>/`` with ``fsync`` of every file and
folder, scanned, and renamed to ``root/<run_id>``. Only then is ``latest`` replaced
(``os.replace`` of a fresh symlink) and ``LATEST`` rewritten (temporary file + ``fsync`` +
``os.replace``). A reader following ``latest`` thus always sees a complete publication.

If ``root/<run_id>`` already exists and holds exactly the same publication (same
``manifest.json`` and every checksum verifies), it is left untouched. Otherwise the old
folder is renamed aside (``.old-*``), the new one renamed in, the old one removed. Between
these two renames (microseconds) ``root/<run_id>`` does not exist: a reader resolving it in
that window finds nothing and must retry. A crash inside the window leaves the previous
publication in ``.old-*``; the next :func:`publish` renames it back.

Leftovers of killed runs (``.tmp-*``, ``.old-*``, ``.latest-*``) are never considered a
publication (:func:`latest_publication` accepts only run-id names) and are removed by the
next :func:`publish`. On POSIX a ``flock`` on ``root/.publish.lock`` serialises publishers,
so every leftover found under the lock is stale; elsewhere only leftovers whose process is
no longer running are removed. ``root`` is assumed to be on a local file system used by one
host (``flock`` and process ids are host-local).

Disclosure
----------
The tables must already have passed disclosure control; :func:`publish` re-checks what it
can cheaply and refuses to publish otherwise: no column starting with ``_``; a boolean
``suppressed`` column without nulls; no unsuppressed row with ``n_participants`` or
``n_twins`` missing or below ``min_persons``; no string value shaped like a personal code
or a pseudonym. Given the raw codes of the input (and/or the pseudonym key), the finished
temporary folder is also scanned with :mod:`impact.privacy_scan` before the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import polars as pl

from impact.faults import checkpoint
from impact.manifest import sha256_file

if TYPE_CHECKING:
    import numpy as np

    from impact.pseudonym import PseudonymKey

__all__ = [
    "DisclosureReport",
    "InputFile",
    "Labels",
    "PublicationError",
    "RunMeta",
    "config_hash",
    "latest_publication",
    "library_versions",
    "publish",
    "run_id",
    "verify_publication",
]

#: name of the indicator table (files ``indicators.*``; default open-data table)
INDICATORS = "indicators"
MANIFEST = "manifest.json"
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
FORMAT_VERSION = 1
#: libraries whose versions :func:`library_versions` records
LIBRARIES = ("polars", "pyarrow", "numpy", "scipy", "statsmodels", "scikit-learn", "dowhy",
             "pandas", "duckdb", "pydantic", "impact")

_TMP, _OLD, _LINK_TMP = ".tmp-", ".old-", ".latest-"
_LOCK = ".publish.lock"
_ID_COLUMNS = ("indicator", "dimension", "group")
_COUNT_COLUMNS = ("n_participants", "n_twins")
_SORT_FIRST = ("indicator", "dimension", "group", "horizon", "kind")
_RUN_ID = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9a-f]{12}$")
_VINTAGE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
# personal-code and pseudonym shapes inside a string value (Rust regex: no look-arounds)
_CODE_SHAPE = r"(^|[^0-9])[0-9]{6}-?[0-9]{5}([^0-9]|$)"
_PSEUDONYM_SHAPE = r"(^|[^0-9a-f])[PE][0-9a-f]{32}([^0-9a-f]|$)"
_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 3,
                                    "statistics": True}


class PublicationError(ValueError):
    """A publication that must not be written (disclosure, labels, malformed input)."""


class DisclosureReport(Protocol):
    """What :func:`publish` needs of the disclosure-control report."""

    def to_dict(self) -> Mapping[str, Any]: ...

    def to_markdown(self) -> str: ...


# --------------------------------------------------------------------------- metadata


class InputFile(NamedTuple):
    """One input file of a run: path relative to the data root, SHA-256, size in bytes."""

    path: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, path: Path, base: Path) -> InputFile:
        """Describe the file ``path`` (checksummed now), named relative to ``base``."""
        return cls(Path(path).relative_to(base).as_posix(), sha256_file(Path(path)),
                   Path(path).stat().st_size)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (``importlib.metadata``; missing ones skipped)."""
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def _canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8, no NaN; raises on non-JSON."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def config_hash(config: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of a resolved config (sorted keys, compact).

    Assumes ``config`` is JSON-safe (str keys; str, int, float, bool, None, lists, dicts),
    e.g. ``EvaluationConfig.model_dump(mode="json")``. ``1`` and ``1.0`` hash differently.

    Raises
    ------
    PublicationError
        If ``config`` is not JSON-safe.
    """
    try:
        return hashlib.sha256(_canonical(config)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise PublicationError(f"config is not JSON-safe: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class RunMeta:
    """Everything that identifies and documents one evaluation run.

    Parameters
    ----------
    data_vintage
        ``"YYYY-MM"``: the last month of register data.
    config
        The resolved config, JSON-safe (see :func:`config_hash`).
    code_version
        E.g. the git commit of the code that ran.
    input_files
        ``(relative path, sha256, bytes)`` of every input; stored sorted by path. Paths must
        be relative POSIX paths (absolute paths would tie the run id to one machine).
    seeds
        Random seeds used (JSON-safe); part of the run id.
    estimator, control_group
        Free-form descriptions, copied into ``indicators.json`` and ``manifest.json``.
    libraries
        Library versions; default :func:`library_versions` at construction time. Recorded in
        the manifest, not part of the run id.
    """

    data_vintage: str
    config: Mapping[str, Any]
    code_version: str
    input_files: Sequence[InputFile | tuple[str, str, int]] = ()
    seeds: Mapping[str, Any] = field(default_factory=dict)
    estimator: Mapping[str, Any] = field(default_factory=dict)
    control_group: Mapping[str, Any] = field(default_factory=dict)
    libraries: Mapping[str, str] = field(default_factory=library_versions)

    def __post_init__(self) -> None:
        if not _VINTAGE.match(self.data_vintage):
            raise PublicationError(f"data_vintage must be 'YYYY-MM' (got {self.data_vintage!r})")
        if not self.code_version.strip():
            raise PublicationError("code_version must not be empty")
        files = tuple(sorted(InputFile(*f) for f in self.input_files))
        for f in files:
            p = PurePosixPath(f.path)
            if not f.path or p.is_absolute() or ".." in p.parts or "\\" in f.path:
                raise PublicationError(f"input file path must be relative POSIX: {f.path!r}")
            if not _SHA256.match(f.sha256):
                raise PublicationError(f"input file {f.path!r}: sha256 must be 64 lowercase hex")
            if not isinstance(f.bytes, int) or f.bytes < 0:
                raise PublicationError(f"input file {f.path!r}: bytes must be an int >= 0")
        paths = [f.path for f in files]
        if len(set(paths)) != len(paths):
            raise PublicationError("input files: duplicate paths")
        object.__setattr__(self, "input_files", files)
        config_hash(self.config)  # JSON-safe or raise
        for name in ("seeds", "estimator", "control_group", "libraries"):
            try:
                _canonical(getattr(self, name))
            except (TypeError, ValueError) as exc:
                raise PublicationError(f"{name} is not JSON-safe: {exc}") from None


def run_id(meta: RunMeta) -> str:
    """Deterministic id of a run: ``f"{data_vintage}-{digest[:12]}"``.

    ``digest`` is the SHA-256 of the canonical JSON of the input checksums (sorted by
    path), :func:`config_hash` of the config, the seeds and the code version: the same
    inputs, config, seeds and code give the same id.
    """
    payload = {
        "code_version": meta.code_version,
        "config_hash": config_hash(meta.config),
        "inputs": [list(f) for f in meta.input_files],
        "seeds": meta.seeds,
    }
    return f"{meta.data_vintage}-{hashlib.sha256(_canonical(payload)).hexdigest()[:12]}"


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """English and Latvian labels of indicators, dimensions and groups.

    Attributes
    ----------
    indicator
        ``{id: {"en", "lv", "definition_en", "definition_lv", "unit", "population"}}``.
        Every published indicator needs an entry (:func:`publish` raises otherwise); a
        missing ``en``/``lv`` inside an entry falls back to the id, missing definition
        fields are null.
    dimension
        ``{id: {"en", "lv"}}``; missing labels fall back to the id.
    group
        ``{(dimension, group): {"en", "lv"}}``; missing labels fall back to the group id.
    """

    indicator: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    dimension: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    group: Mapping[tuple[str, str], Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("indicator", "dimension", "group"):
            object.__setattr__(self, name, {k: dict(v) for k, v in getattr(self, name).items()})
        bad = [k for k in self.group if not (isinstance(k, tuple) and len(k) == 2)]
        if bad:
            raise PublicationError(f"group label keys must be (dimension, group): {bad[:3]}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Labels:
        """From plain (JSON/YAML) dicts; groups nested as ``{dimension: {group: {...}}}``."""
        groups: dict[tuple[str, str], Mapping[str, str]] = {}
        for dim, members in (data.get("group") or {}).items():
            if isinstance(dim, tuple):
                groups[dim] = members
            else:
                groups.update({(dim, g): v for g, v in members.items()})
        return cls(indicator=data.get("indicator") or {}, dimension=data.get("dimension") or {},
                   group=groups)

    def indicator_text(self, indicator: str, lang: str) -> str:
        """Label of an indicator in ``lang`` (``"en"``/``"lv"``); KeyError if unlabelled."""
        return self.indicator[indicator].get(lang) or indicator

    def dimension_text(self, dimension: str, lang: str) -> str:
        """Label of a dimension (falls back to its id)."""
        return self.dimension.get(dimension, {}).get(lang) or dimension

    def group_text(self, dimension: str, group: str, lang: str) -> str:
        """Label of a group within a dimension (falls back to the group id)."""
        return self.group.get((dimension, group), {}).get(lang) or group

    def definition(self, indicator: str) -> dict[str, str | None]:
        """Labels and definition of an indicator, as written to ``indicators.json``."""
        entry = self.indicator[indicator]
        return {
            "label_en": self.indicator_text(indicator, "en"),
            "label_lv": self.indicator_text(indicator, "lv"),
            **{k: entry.get(k) for k in ("definition_en", "definition_lv", "population",
                                         "unit")},
        }


# --------------------------------------------------------------------------- checks


def _cells(df: pl.DataFrame, limit: int = 5) -> str:
    keys = [c for c in (*_ID_COLUMNS, "horizon") if c in df.columns]
    rows = df.select(keys).head(limit).to_dicts() if keys else []
    text = "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in rows)
    more = f" (and {df.height - limit} more)" if df.height > limit else ""
    return (text or f"{df.height} rows") + more


def _check_table(name: str, df: pl.DataFrame, *, min_persons: int, indicator_table: bool
                 ) -> None:
    """Refuse a table that cannot be published (see the module docstring, Disclosure)."""
    where = f"table {name!r}"
    private = [c for c in df.columns if c.startswith("_")]
    if private:
        raise PublicationError(f"{where}: internal columns must not be published: {private}")
    labels = [c for c in df.columns if re.fullmatch(r"(indicator|dimension|group)_label_(en|lv)",
                                                     c)]
    if labels:
        raise PublicationError(f"{where}: label columns are added by publish; drop {labels}")
    nested = [c for c, t in df.schema.items() if t.is_nested() or t in (pl.Object, pl.Binary)]
    if nested:
        raise PublicationError(f"{where}: nested/binary columns cannot go to CSV: {nested}")
    if indicator_table:
        missing = [c for c in (*_ID_COLUMNS, *_COUNT_COLUMNS, "suppressed")
                   if c not in df.columns]
        if missing:
            raise PublicationError(f"{where}: missing columns {missing}")
        nulls = [c for c in _ID_COLUMNS if df[c].null_count()]
        if nulls:
            raise PublicationError(f"{where}: null ids in {nulls}")
    if "suppressed" in df.columns:
        if df.schema["suppressed"] != pl.Boolean or df["suppressed"].null_count():
            raise PublicationError(f"{where}: 'suppressed' must be Boolean without nulls")
        released = df.filter(~pl.col("suppressed"))
    else:
        released = df
    for c in _COUNT_COLUMNS:
        if c in df.columns:
            small = released.filter(pl.col(c).is_null() | (pl.col(c) < min_persons))
            if small.height:
                raise PublicationError(
                    f"{where}: unsuppressed cells with {c} missing or below {min_persons}: "
                    f"{_cells(small)}")


def _check_strings(name: str, df: pl.DataFrame) -> None:
    """Refuse string values shaped like a personal code or a pseudonym (labels included)."""
    for c, t in df.schema.items():
        if t in (pl.String, pl.Categorical, pl.Enum):
            s = df[c].cast(pl.String)
            if s.str.contains(_CODE_SHAPE).any() or s.str.contains(_PSEUDONYM_SHAPE).any():
                raise PublicationError(
                    f"table {name!r}: column {c!r} holds values shaped like a personal code or "
                    "a pseudonym (person-level data must not be published)")


# --------------------------------------------------------------------------- tables


def _finite(df: pl.DataFrame) -> pl.DataFrame:
    floats = [c for c, t in df.schema.items() if t.is_float()]
    return df.with_columns(
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats)


def _with_labels(df: pl.DataFrame, labels: Labels, name: str) -> pl.DataFrame:
    """Add ``<id>_label_en/lv`` right after each id column present."""
    cols = df.columns
    new: dict[str, pl.Expr | pl.Series] = {}
    if "indicator" in cols:
        ids = df["indicator"].drop_nulls().unique().sort().to_list()
        missing = [i for i in ids if i not in labels.indicator]
        if missing:
            raise PublicationError(f"table {name!r}: indicators without labels: {missing}")
        for lang in ("en", "lv"):
            m = {i: labels.indicator_text(i, lang) for i in ids}
            new[f"indicator_label_{lang}"] = pl.col("indicator").replace_strict(
                m, default=None, return_dtype=pl.String)
    if "dimension" in cols:
        ids = df["dimension"].drop_nulls().unique().to_list()
        for lang in ("en", "lv"):
            m = {d: labels.dimension_text(d, lang) for d in ids}
            new[f"dimension_label_{lang}"] = pl.col("dimension").replace_strict(
                m, default=None, return_dtype=pl.String)
    if "group" in cols:
        dims = df["dimension"] if "dimension" in cols else pl.Series([None] * df.height,
                                                                    dtype=pl.String)
        pairs = list(zip(dims.to_list(), df["group"].to_list(), strict=True))
        for lang in ("en", "lv"):
            new[f"group_label_{lang}"] = pl.Series(
                [None if g is None else labels.group_text(d, g, lang) for d, g in pairs],
                dtype=pl.String)
    df = df.with_columns(**new)
    order: list[str] = []
    for c in cols:
        order.append(c)
        if c in _ID_COLUMNS:
            order += [f"{c}_label_en", f"{c}_label_lv"]
    return df.select(order)


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in a fixed order: the key columns first, then every other column (nulls first)."""
    keys = [c for c in _SORT_FIRST if c in df.columns]
    keys += [c for c in df.columns if c not in keys]
    return df.sort(keys, nulls_last=False, maintain_order=True) if keys and df.height else df


def _prepare(df: pl.DataFrame, labels: Labels, name: str) -> pl.DataFrame:
    return _sorted(_with_labels(_finite(df), labels, name))


# --------------------------------------------------------------------------- rendering


def _json_safe(obj: Any) -> Any:
    """Plain JSON values: non-finite floats -> None, dates -> ISO, sets sorted; else TypeError."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k) if not isinstance(k, tuple) else "/".join(map(str, k)): _json_safe(v)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_json_safe(v) for v in obj), key=_canonical)
    if isinstance(obj, datetime | date | time):
        return obj.isoformat()
    if isinstance(obj, PurePosixPath | Path):
        return obj.as_posix()
    if isinstance(obj, Enum):
        return _json_safe(obj.value)
    if type(obj).__module__ == "numpy" and hasattr(obj, "item"):
        return _json_safe(obj.item())
    raise PublicationError(f"not JSON-safe for publication: {type(obj).__name__}")


def _json_bytes(obj: Any) -> bytes:
    text = json.dumps(_json_safe(obj), sort_keys=True, indent=2, ensure_ascii=False,
                      allow_nan=False)
    return (text + "\n").encode("utf-8")


def _csv_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_csv(buf, include_bom=False, separator=",", line_terminator="\n", quote_char='"',
                 quote_style="necessary", null_value="", float_scientific=None,
                 float_precision=None)
    return buf.getvalue()


def _parquet_bytes(df: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, **_PARQUET_OPTIONS)
    return buf.getvalue()


def _frictionless_type(t: pl.DataType) -> str:
    if t == pl.Boolean:
        return "boolean"
    if t.is_integer():
        return "integer"
    if t.is_float() or t.is_decimal():
        return "number"
    if t == pl.Date:
        return "date"
    if t == pl.Datetime:
        return "datetime"
    return "string"


#: column -> (English, Latvian) descriptions for the open-data README and datapackage
COLUMN_DOCS: dict[str, tuple[str, str]] = {
    "indicator": ("Indicator id", "Rādītāja identifikators"),
    "indicator_label_en": ("Indicator name, English", "Rādītāja nosaukums angliski"),
    "indicator_label_lv": ("Indicator name, Latvian", "Rādītāja nosaukums latviski"),
    "dimension": ("Breakdown dimension id (e.g. sex, region)",
                  "Griezuma dimensijas identifikators (piem., dzimums, reģions)"),
    "dimension_label_en": ("Breakdown dimension name, English",
                           "Griezuma dimensijas nosaukums angliski"),
    "dimension_label_lv": ("Breakdown dimension name, Latvian",
                           "Griezuma dimensijas nosaukums latviski"),
    "group": ("Group id within the dimension", "Grupas identifikators dimensijā"),
    "group_label_en": ("Group name, English", "Grupas nosaukums angliski"),
    "group_label_lv": ("Group name, Latvian", "Grupas nosaukums latviski"),
    "horizon": ("Months after the reference event; empty if not applicable",
                "Mēneši pēc atskaites notikuma; tukšs, ja nav piemērojams"),
    "kind": ("Kind of value", "Vērtības veids"),
    "unit": ("Unit of the values", "Vērtību mērvienība"),
    "n_participants": ("Number of participants", "Dalībnieku skaits"),
    "n_twins": ("Number of statistical twins (comparison persons)",
                "Statistisko dvīņu (salīdzinājuma personu) skaits"),
    "participants": ("Value for participants", "Vērtība dalībniekiem"),
    "twins": ("Value for statistical twins (counterfactual)",
              "Vērtība statistiskajiem dvīņiem (kontrafaktuālā)"),
    "net": ("Net effect estimate (participants compared with twins)",
            "Neto ietekmes novērtējums (dalībnieki salīdzinājumā ar dvīņiem)"),
    "se": ("Standard error of the net effect", "Neto ietekmes standartkļūda"),
    "ci_low": ("Lower bound of the confidence interval", "Ticamības intervāla apakšējā robeža"),
    "ci_high": ("Upper bound of the confidence interval", "Ticamības intervāla augšējā robeža"),
    "p_value": ("p-value of the net effect", "Neto ietekmes p-vērtība"),
    "p_holm": ("p-value adjusted for multiple comparisons (Holm)",
               "p-vērtība, koriģēta daudzkārtējiem salīdzinājumiem (Holma metode)"),
    "p_bh": ("p-value adjusted for multiple comparisons (Benjamini-Hochberg)",
             "p-vērtība, koriģēta daudzkārtējiem salīdzinājumiem (Benjamini-Hohberga metode)"),
    "twins_ess": ("Effective sample size of the weighted twins",
                  "Svērto dvīņu efektīvais izlases lielums"),
    "suppressed": ("Always false here: confidential cells are left out",
                   "Šeit vienmēr false: konfidenciālās šūnas nav iekļautas"),
    "suppression_reason": ("Reason for suppression (empty here)",
                           "Konfidencialitātes iemesls (šeit tukšs)"),
}
_NO_DOC = ("(no description)", "(nav apraksta)")


def _open_data_files(tables: Mapping[str, pl.DataFrame], names: Sequence[str], rid: str,
                     meta: RunMeta) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    resources: list[dict[str, Any]] = []
    readme = [
        f"# Open data / Atvērtie dati: {rid}", "",
        f"Register data up to / Reģistru dati līdz: {meta.data_vintage}.", "",
        "Only cells released by disclosure control are included; confidential cells are left "
        "out. UTF-8, comma-separated, empty field = no value.", "",
        "Iekļautas tikai šūnas, kuras atļauts publiskot pēc konfidencialitātes kontroles; "
        "konfidenciālās šūnas nav iekļautas. UTF-8, atdalītājs - komats, tukšs lauks - nav "
        "vērtības.", "",
    ]
    for name in names:
        df = tables[name]
        if "suppressed" in df.columns:
            df = df.filter(~pl.col("suppressed"))
        data = _csv_bytes(df)
        path = f"{name}.csv"
        files[f"open_data/{path}"] = data
        fields = [{"name": c, "type": _frictionless_type(t),
                   "description": COLUMN_DOCS.get(c, _NO_DOC)[0]} for c, t in df.schema.items()]
        resources.append({
            "name": name, "path": path, "profile": "tabular-data-resource", "format": "csv",
            "mediatype": "text/csv", "encoding": "utf-8", "bytes": len(data),
            "hash": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "dialect": {"delimiter": ",", "lineTerminator": "\n", "quoteChar": '"',
                        "header": True},
            "schema": {"fields": fields, "missingValues": [""]},
        })
        readme += [f"## {path} ({df.height} rows / rindas)", "",
                   "| column / kolonna | type / tips | English | Latviski |", "|---|---|---|---|"]
        for f in fields:
            en, lv = COLUMN_DOCS.get(f["name"], _NO_DOC)
            readme.append(f"| {f['name']} | {f['type']} | {en} | {lv} |")
        readme.append("")
    files["open_data/README.md"] = ("\n".join(readme)).encode("utf-8")
    files["open_data/datapackage.json"] = _json_bytes({
        "name": f"impact-{rid}", "profile": "tabular-data-package",
        "title": f"Individual Learning Accounts impact evaluation, run {rid}",
        "resources": resources,
    })
    return files


def _render(indicators: pl.DataFrame, tables: Mapping[str, pl.DataFrame], report: Any,
            labels: Labels, meta: RunMeta, rid: str, open_names: Sequence[str],
            min_persons: int) -> dict[str, bytes]:
    """Every file of the publication (POSIX relative path -> bytes), manifest last."""
    if not (callable(getattr(report, "to_dict", None))
            and callable(getattr(report, "to_markdown", None))):
        raise PublicationError("report must have to_dict() and to_markdown()")
    chash = config_hash(meta.config)
    ids = indicators["indicator"].unique().sort().to_list()
    files: dict[str, bytes] = {
        "indicators.csv": _csv_bytes(indicators),
        "indicators.parquet": _parquet_bytes(indicators),
        "indicators.json": _json_bytes({
            "metadata": {
                "run_id": rid, "data_vintage": meta.data_vintage, "config_hash": chash,
                "code_version": meta.code_version, "estimator": meta.estimator,
                "control_group": meta.control_group,
                "indicators": {i: labels.definition(i) for i in ids},
            },
            "rows": indicators.to_dicts(),
        }),
    }
    for name, df in tables.items():
        files[f"tables/{name}.csv"] = _csv_bytes(df)
        files[f"tables/{name}.parquet"] = _parquet_bytes(df)
    markdown = report.to_markdown().replace("\r\n", "\n")
    files["disclosure_report.json"] = _json_bytes(report.to_dict())
    files["disclosure_report.md"] = (markdown if markdown.endswith("\n") else markdown + "\n"
                                     ).encode("utf-8")
    if open_names:
        all_tables = {INDICATORS: indicators, **tables}
        files.update(_open_data_files(all_tables, open_names, rid, meta))
    files[MANIFEST] = _json_bytes({
        "format_version": FORMAT_VERSION, "run_id": rid, "data_vintage": meta.data_vintage,
        "config": meta.config, "config_hash": chash, "seeds": meta.seeds,
        "input_files": [f._asdict() for f in meta.input_files],
        "code_version": meta.code_version, "library_versions": meta.libraries,
        "estimator": meta.estimator, "control_group": meta.control_group,
        "disclosure": {"min_persons": min_persons},
        "files": [{"path": p, "sha256": hashlib.sha256(b).hexdigest(), "bytes": len(b)}
                  for p, b in sorted(files.items())],
    })
    return files


# --------------------------------------------------------------------------- file system


def _fsync_dir(path: Path) -> None:
    """fsync a directory entry table (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (inside the temporary publication folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    checkpoint(path)


def _atomic_write(path: Path, data: bytes) -> None:
    """Temporary file beside ``path``, fsync, ``os.replace``, fsync of the folder.

    Like :mod:`impact.atomic` (which has no plain-text writer and does not fsync).
    """
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        checkpoint(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _publish_lock(root: Path) -> Iterator[bool]:
    """Exclusive ``flock`` on ``root/.publish.lock``; yields False where unavailable."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield False
        return
    with (root / _LOCK).open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _leftover_pid(name: str) -> int | None:
    try:
        return int(name.rsplit("-", 2)[-2])
    except (IndexError, ValueError):
        return None


def _remove_leftovers(root: Path, *, locked: bool) -> None:
    """Remove ``.tmp-*``/``.latest-*`` of dead runs; put a lost ``.old-*`` back in place."""
    import psutil

    for entry in sorted(root.iterdir()):
        name = entry.name
        if not name.startswith((_TMP, _OLD, _LINK_TMP)):
            continue
        pid = _leftover_pid(name)
        if not locked and pid is not None and (pid == os.getpid() or psutil.pid_exists(pid)):
            continue  # possibly a publish in progress (no lock to tell)
        if name.startswith(_OLD) and not entry.is_symlink():
            rid = name[len(_OLD):].rsplit("-", 2)[0]
            final = root / rid
            if _RUN_ID.match(rid) and not final.exists() and not final.is_symlink():
                os.rename(entry, final)  # crash between the two renames: restore
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    _fsync_dir(root)


def _install(tmp: Path, final: Path) -> None:
    """Rename the complete ``tmp`` to ``final`` (replacing an older publication)."""
    root = final.parent
    checkpoint(final)
    if final.exists() or final.is_symlink():
        old_manifest = final / MANIFEST
        if (old_manifest.is_file()
                and old_manifest.read_bytes() == (tmp / MANIFEST).read_bytes()
                and not verify_publication(final)):
            shutil.rmtree(tmp)  # the same publication is already in place
            return
        old = root / f"{_OLD}{final.name}-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(final, old)
        try:
            os.rename(tmp, final)
        except BaseException:
            os.rename(old, final)
            raise
        _fsync_dir(root)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)  # fails if a racing publisher created it: never clobbered
    _fsync_dir(root)


def _point_latest(root: Path, rid: str) -> None:
    """Replace ``root/latest`` (relative symlink) and ``root/LATEST`` atomically."""
    checkpoint(root / LATEST_LINK)
    link_tmp = root / f"{_LINK_TMP}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.symlink(rid, link_tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        pass  # no symlinks here (e.g. Windows without privilege): LATEST only
    else:
        try:
            os.replace(link_tmp, root / LATEST_LINK)
        finally:
            if link_tmp.is_symlink():
                link_tmp.unlink()
    _atomic_write(root / LATEST_FILE, f"{rid}\n".encode())


def _privacy_check(folder: Path, raw_codes: Any, key: PseudonymKey | None) -> None:
    from impact.privacy_scan import scan_for_codes, scan_for_key

    findings = []
    if raw_codes is not None:
        # embedded=False: printed floats have long digit runs that match codes by chance
        findings += scan_for_codes([folder], raw_codes, embedded=False)
    if key is not None:
        findings += scan_for_key([folder], key)
    if findings:
        shown = "; ".join(str(f) for f in findings[:5])
        raise PublicationError(f"privacy scan found {len(findings)} problem(s): {shown}")


# --------------------------------------------------------------------------- public API


def publish(
    indicators: pl.DataFrame,
    report: DisclosureReport | Any,
    labels: Labels,
    meta: RunMeta,
    root: Path,
    *,
    extra_tables: Mapping[str, pl.DataFrame] | None = None,
    open_data: Iterable[str] | None = None,
    min_persons: int = 10,
    raw_codes: Iterable[str | None] | np.ndarray | pl.Series | None = None,
    key: PseudonymKey | None = None,
) -> Path:
    """Write one run's publication to ``root/<run_id>/`` and point ``latest`` at it.

    Parameters
    ----------
    indicators
        Long indicator table that has passed disclosure control (one row per indicator x
        breakdown cell; columns ``indicator``, ``dimension``, ``group``, ``suppressed``,
        ``n_participants``, ``n_twins`` required; any others are published as they are).
    report
        Disclosure report with ``to_dict()`` (JSON-safe) and ``to_markdown()``.
    labels
        Labels and definitions; every indicator must have an entry.
    meta
        Run metadata; determines the run id.
    root
        Folder of all publications (created if missing).
    extra_tables
        ``{name: table}`` written to ``tables/<name>.csv|.parquet``; names are lowercase
        ``[a-z0-9_-]``, not ``"indicators"``. They must have passed disclosure control
        (the caller's duty); the checks below are applied where the columns exist.
    open_data
        Names of the tables (``"indicators"`` or extra-table names) to extract to
        ``open_data/`` with their unsuppressed rows only; default ``["indicators"]``,
        empty: no ``open_data/`` folder.
    min_persons
        Smallest ``n_participants`` / ``n_twins`` allowed in an unsuppressed row.
    raw_codes, key
        Raw personal codes of the input and the pseudonym key: if given, the finished
        temporary folder is scanned for them (:mod:`impact.privacy_scan`) before it is
        renamed into place.

    Returns
    -------
    Path
        ``root/<run_id>``.

    Raises
    ------
    PublicationError
        (a ValueError) a check failed; nothing was published and ``latest`` is unchanged.

    Notes
    -----
    Label columns ``<id>_label_en``/``_lv`` are inserted after ``indicator``,
    ``dimension`` and ``group``; rows are sorted by indicator, dimension, group, horizon,
    kind, then the other columns. An exception while writing leaves no folder at the
    final path and ``latest`` unchanged. Concurrent publishers to one ``root`` are
    serialised by a lock on POSIX only.
    """
    root = Path(root)
    tables_in = dict(extra_tables or {})
    for name in tables_in:
        if not _TABLE_NAME.match(name) or name == INDICATORS:
            raise PublicationError(f"extra table name {name!r}: lowercase [a-z0-9_-], "
                                   f"not {INDICATORS!r}")
    open_names = [INDICATORS] if open_data is None else list(dict.fromkeys(open_data))
    unknown = [n for n in open_names if n != INDICATORS and n not in tables_in]
    if unknown:
        raise PublicationError(f"open_data: unknown tables {unknown}")
    if min_persons < 1:
        raise PublicationError("min_persons must be >= 1")

    _check_table(INDICATORS, indicators, min_persons=min_persons, indicator_table=True)
    for name, df in tables_in.items():
        _check_table(name, df, min_persons=min_persons, indicator_table=False)
    ind = _prepare(indicators, labels, INDICATORS)
    tables = {name: _prepare(df, labels, name) for name, df in sorted(tables_in.items())}
    for name, df in {INDICATORS: ind, **tables}.items():
        _check_strings(name, df)
    rid = run_id(meta)
    files = _render(ind, tables, report, labels, meta, rid, open_names, min_persons)

    root.mkdir(parents=True, exist_ok=True)
    final = root / rid
    with _publish_lock(root) as locked:
        _remove_leftovers(root, locked=locked)
        tmp = root / f"{_TMP}{rid}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            for rel, data in files.items():  # manifest.json last
                _write_file(tmp / rel, data)
            for d in sorted({(tmp / rel).parent for rel in files}, reverse=True):
                _fsync_dir(d)
            _privacy_check(tmp, raw_codes, key)
            _install(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _point_latest(root, rid)
    return final


def latest_publication(root: Path) -> Path | None:
    """The publication ``root/latest`` (or, without symlinks, ``root/LATEST``) names.

    Only a run-id name with a ``manifest.json`` counts (never ``.tmp-*``); ``None`` if
    there is none. Returns ``root/<run_id>`` (not resolved).
    """
    root = Path(root)
    names: list[str] = []
    link = root / LATEST_LINK
    if link.is_symlink():
        names.append(os.readlink(link))
    if (root / LATEST_FILE).is_file():
        names.append((root / LATEST_FILE).read_text(encoding="utf-8").strip())
    for name in names:
        if _RUN_ID.match(name) and (root / name / MANIFEST).is_file():
            return root / name
    return None


def verify_publication(path: Path) -> list[str]:
    """Re-check every file of a publication against its ``manifest.json``.

    Returns
    -------
    list[str]
        Problems (missing, changed or unlisted files, a malformed manifest); empty = OK.
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        entries = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({type(exc).__name__})"]
    problems: list[str] = []
    if manifest.get("run_id") != path.resolve().name:
        problems.append(f"{MANIFEST}: run_id {manifest.get('run_id')!r} does not match the "
                        f"folder name")
    listed: set[str] = set()
    for e in entries:
        rel = str(e.get("path", ""))
        p = PurePosixPath(rel)
        if not rel or p.is_absolute() or ".." in p.parts:
            problems.append(f"{MANIFEST}: bad path {rel!r}")
            continue
        listed.add(rel)
        f = path / rel
        if not f.is_file():
            problems.append(f"{rel}: missing")
        elif f.stat().st_size != e.get("bytes"):
            problems.append(f"{rel}: size {f.stat().st_size} != {e.get('bytes')}")
        elif sha256_file(f) != e.get("sha256"):
            problems.append(f"{rel}: sha256 mismatch")
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path).as_posix()
        if (f.is_file() or f.is_symlink()) and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not listed in {MANIFEST}")
    return problems
