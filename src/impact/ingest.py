"""Ingest: landing deliveries -> validated, pseudonymised, typed source tables.

For each table of the contracts, in dependency order (reference tables first,
then the population register, employers, and the rest):

1. **read** every file of the table from every delivery (manifest order),
   checking row count and SHA-256 against the manifest (a data file of the
   table in the delivery folder but not in its manifest is a blocking failure,
   as is a Parquet column whose type differs between files); a CSV file must be
   UTF-8 (a BOM is accepted), comma separated and end with a line break (else
   it is taken to be truncated); a CSV row with more or fewer fields than the
   header is quarantined (rule ``field_count``);
2. **structure**: required columns present (missing or named twice: blocking
   failure; extra: dropped and reported); a table without any data row is a
   blocking failure;
3. **personal codes** validated on the raw value, then every person and
   employer identifier is replaced by a keyed pseudonym (:mod:`impact.pseudonym`);
   raw codes exist only in memory during this step;
4. **rules** of the contract (:mod:`impact.contracts.rules`): rows that break
   any rule go to quarantine with the file, row number, rules and values;
5. **register patterns**: exact duplicate rows are collapsed; among rows with
   the same key, the one with the largest version (then the later delivery)
   supersedes the others (a correction); other key conflicts are quarantined;
6. **write** clean Parquet (zstd) to ``sources/``, quarantine to
   ``quarantine/`` and the per-file reconciliation
   ``rows_in = accepted + quarantined + duplicates + superseded``.

Incremental ingest
------------------
Steps 1-5 run independently per *group* of files (one per year for a year-split
table, else the whole table). Each validated group leaves a record in
``<out>/.ingest_cache/<table>/<group>/`` (:data:`CACHE_DIR`): its clean part (a hard
link of the file in ``sources/``), quarantine records, per-file tally, rules hit, extra
columns, and what its result depends on:

* a digest of the *static* inputs (:func:`_static_digest`): the group's files (each
  file's manifest entry with SHA-256, rows and format, its delivery folder and sequence),
  the contract, the key fingerprint (never the key), ``already_pseudonymised``,
  ``verify_checksums``, :data:`CACHE_VERSION` and the polars version; plus each file's
  ``stat`` (size, mtime, ctime, inode), so that a file changed behind its manifest is
  read (and its checksum verified) again;
* the *period*, which rules use only through ``within_delivery``: the record keeps the
  period, and per such column the smallest and largest value and the rows it flagged;
* the *references*: for every cross-table rule (foreign keys, ``allowed_from``,
  ``not_after_event``) the distinct values the group looks up (pseudonyms, never raw
  codes) and a digest of what the reference says about exactly those values
  (:func:`_lookup_digests`).

A later run reuses a group, without reading its files, iff the static digest and the file
stats are equal, the period cannot change any ``within_delivery`` flag (same period, or no
row flagged and every value inside the new period) and the lookups of the current
references give the same digests; anything else validates the group again, so the output
is identical to a full ingest. ``IngestSettings(incremental=False)`` validates every group
(and refreshes the records). The Great Expectations cross-check of a table is repeated
only when one of its inputs changed (:func:`_gx_digest`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from impact import personal_code
from impact.atomic import replace_folder, write_json, write_parquet
from impact.contracts.model import (
    Column,
    Contract,
    ForeignKey,
    dependency_order,
    load_contracts,
)
from impact.contracts.rules import (
    DELIVERY,
    FILE,
    META,
    ROW,
    TableFailure,
    TypeErrors,
    check,
    flag,
)
from impact.manifest import DeliveryManifest, FileEntry, ManifestError, sha256_file
from impact.pseudonym import (
    PseudonymKey,
    looks_pseudonymised_expr,
    pseudonymise_distinct,
    pseudonymise_frame,
)

QUARANTINE_COLUMNS = ("table", "source_file", "row_number", "rules", "values")
#: rule of a CSV row whose number of fields differs from the header's
FIELD_COUNT = "field_count"
#: column carrying the field-count violation from the reader to the rules
_FIELDS_BAD = "_fields_bad"
#: separators recognised in a header that should have been comma separated
_OTHER_SEPARATORS = (";", "\t", "|")
#: file types of register extracts (other files in a delivery folder are not data)
DATA_SUFFIXES = (".csv", ".parquet")


#: In every clean table's folder: the fingerprint of the key that pseudonymised it (never
#: the key). The release refuses tables of different keys and puts it in the run id.
KEY_RECORD = "_pseudonym_key.json"

#: Under ``IngestSettings.out``: one folder per table with a record per validated group
#: (see the module docstring). Hidden and outside ``sources/``: not a table.
CACHE_DIR = ".ingest_cache"
#: Version of the validation code. Bump it whenever a change to this module, to
#: :mod:`impact.contracts.rules` or to :mod:`impact.pseudonym` can change a group's clean
#: rows, quarantine, tally or rules hit for the same inputs: every cached group is then
#: validated again.
CACHE_VERSION = 2


@dataclass
class FileReconciliation:
    """Where every row of one file went."""

    table: str
    file: str
    rows_in: int
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    superseded: int = 0

    @property
    def balanced(self) -> bool:
        """``rows_in == accepted + quarantined + duplicates + superseded``."""
        return self.rows_in == self.accepted + self.quarantined + self.duplicates + self.superseded


@dataclass
class TableResult:
    """Outcome of ingesting one table."""

    table: str
    ok: bool
    files: list[FileReconciliation] = field(default_factory=list)
    failure: str | None = None
    rules_hit: dict[str, int] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)
    output: str | None = None
    seconds: float = 0.0
    gx_success: bool | None = None
    gx_failed_rules: list[str] = field(default_factory=list)
    #: groups (``year=YYYY`` or ``all``) taken from the incremental-ingest cache unread
    groups_reused: list[str] = field(default_factory=list)
    #: groups whose files were read and validated in this run
    groups_validated: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return sum(f.rows_in for f in self.files)

    @property
    def accepted(self) -> int:
        return sum(f.accepted for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)


@dataclass(frozen=True)
class IngestSettings:
    """How to ingest.

    Parameters
    ----------
    out
        Folder receiving ``sources/``, ``quarantine/`` and ``reconciliation.json``.
    key
        Pseudonymisation key (see :class:`impact.pseudonym.PseudonymKey`).
    already_pseudonymised
        The deliveries carry pseudonyms instead of raw codes (as a statistical
        office may hand them over): personal-code checks become pseudonym-form
        checks and nothing is re-hashed.
    verify_checksums
        Compare each file's SHA-256 with the manifest (blocking on mismatch).
    parallel_groups
        Year groups of a year-split table processed at the same time (threads);
        each costs the memory of one year of the table.
    gx_sample
        Rows of each clean table re-validated with Great Expectations as an
        independent cross-check (0 switches it off); the report is written to
        ``validation/<table>.gx.json``.
    incremental
        Reuse the cached result of a group whose inputs are unchanged (see the module
        docstring); ``False`` validates every group again (a full re-ingest) and
        refreshes the cache. The output is the same either way.
    bucket_rows
        Largest expected number of rows validated at a time. A group of files with more
        rows (one year of monthly employer reports: about 8 M rows at 1.2 M persons) is
        split into ``ceil(rows / bucket_rows)`` buckets of a hash of its person column
        (:func:`_bucket_column`) and validated bucket by bucket (see
        :func:`_validate_buckets`), so that memory follows this setting instead of the
        population. ``None``: every group at once (fastest). The accepted rows,
        quarantine and reconciliation are the same either way; only the clean table's
        files and row order differ.
    """

    out: Path
    key: PseudonymKey
    already_pseudonymised: bool = False
    verify_checksums: bool = True
    gx_sample: int = 100_000
    parallel_groups: int = 2
    incremental: bool = True
    bucket_rows: int | None = None


def _label(path: Path, entry: FileEntry) -> str:
    """``<delivery folder>/<file>``: unique across deliveries."""
    return f"{path.parent.name}/{entry.path}"


def _opened(path: Path, entry: FileEntry, contract: Contract, settings: IngestSettings
            ) -> Callable[..., TableFailure]:
    """Checks of a delivered file before it is read: present, its SHA-256 that of the
    manifest (with ``settings.verify_checksums``), not empty. Returns the file's failure
    maker (table, file label; then rule, message, column, examples)."""
    label = _label(path, entry)

    def fail(rule: str, message: str, column: str | None = None,
             examples: tuple[str, ...] = ()) -> TableFailure:
        return TableFailure(contract.table, label, column, rule, message, examples)

    if not path.exists():
        raise fail("present", "file listed in the manifest is missing")
    if settings.verify_checksums and sha256_file(path) != entry.sha256:
        raise fail("manifest", "SHA-256 differs from the manifest (changed or truncated)")
    if path.stat().st_size == 0:
        raise fail("empty", "the file is empty (0 bytes): not even a header line")
    return fail


def _read(path: Path, entry: FileEntry, seq: int, contract: Contract,
          fail: Callable[..., TableFailure]) -> pl.DataFrame:
    """The whole file (CSV: every column as text) with row number, file label, delivery
    sequence and the field-count flag; ``fail`` from :func:`_opened`."""
    label = _label(path, entry)
    if entry.format == "csv":
        df = _read_csv(path, contract, fail)
    else:
        try:
            df = pl.read_parquet(path)
        except Exception as exc:  # the reader's message may quote data; name the kind only
            raise _unreadable(exc, path, False, fail) from None
        df = df.with_columns(pl.lit(False).alias(_FIELDS_BAD))
    return df.with_columns(
        pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(ROW),
        pl.lit(label).alias(FILE),
        pl.lit(seq, dtype=pl.Int32).alias(DELIVERY),
    )


def _read_csv(path: Path, contract: Contract, fail: Callable[..., TableFailure]
              ) -> pl.DataFrame:
    """Every column as text, plus the row-level field-count violation.

    Blocking: not UTF-8 (with the line and byte), not comma separated, no line
    break at the end (a cut-off file), not parseable as CSV at all.
    """
    try:
        df = pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=False,
                         truncate_ragged_lines=True)
    except Exception as exc:  # the reader's message may quote data; never pass it on
        raise _unreadable(exc, path, True, fail) from None
    return df.with_columns(_csv_checks(path, df.columns, df.height, contract, fail))


def _unreadable(exc: Exception, path: Path, csv_file: bool,
                fail: Callable[..., TableFailure]) -> TableFailure:
    """The failure of a file its reader rejected, named by kind: the reader's own message
    may quote data and is never passed on. CSV: not UTF-8 (with the line and byte), or not
    parseable (with the first line opening a quote that may never close)."""
    if not csv_file:
        return fail("readable", "not a readable Parquet file (truncated or corrupt: "
                                f"{type(exc).__name__})")
    if "utf-8" in str(exc).lower():
        line, offset, byte = _first_invalid_utf8(path)
        return fail("encoding", f"not UTF-8: byte 0x{byte:02X} on line {line} of the file "
                                f"(byte offset {offset}); the contract requires UTF-8")
    odd = _odd_quote_line(path)
    hint = f"; line {odd} of the file opens a quote that may never close" if odd else ""
    return fail("readable", f"cannot be parsed as CSV ({type(exc).__name__}{hint})")


def _csv_checks(path: Path, columns: list[str], rows: int, contract: Contract,
                fail: Callable[..., TableFailure]) -> pl.Series:
    """Checks of a CSV file read as ``rows`` data rows under the header ``columns``.

    Blocking: no line break at the end (a cut-off file), not comma separated, records
    that cannot be aligned with the lines. Returns each data row's field-count violation.
    """
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
    if last != b"\n":
        raise fail("truncated", f"the last line (data row {rows}) does not end with a line "
                                "break: the file looks cut off (a complete CSV file ends with "
                                "a line break)")
    _separator_check(columns, contract, fail)
    bad = _field_count_violations(path, len(columns), rows)
    if bad is None:
        raise fail("readable", "its records could not be matched with its lines (row numbers "
                               "would be wrong)")
    return bad


def _separator_check(columns: list[str], contract: Contract,
                     fail: Callable[..., TableFailure]) -> None:
    """Blocking: a one-column header that another separator would split into fields."""
    if len(columns) == 1 and len(contract.columns) > 1:
        header = columns[0]
        for sep in _OTHER_SEPARATORS:
            if len(header.split(sep)) > 1:
                raise fail("delimiter", f"the header is separated by {sep!r}, not by commas "
                                        f"({len(header.split(sep))} fields): the contract "
                                        "requires comma-separated files", None, (header[:120],))


def _first_invalid_utf8(path: Path, chunk: int = 1 << 22) -> tuple[int, int, int]:
    """(line, byte offset, byte value) of the first byte that is not valid UTF-8."""
    offset, line, tail = 0, 1, b""
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            data = tail + block
            try:
                data.decode("utf-8")
                good, tail = len(data), b""
            except UnicodeDecodeError as err:
                if err.reason == "unexpected end of data" and err.end == len(data):
                    good, tail = err.start, data[err.start:]  # a character split by the chunk
                else:
                    pos = offset + err.start
                    return line + data[:err.start].count(b"\n"), pos, data[err.start]
            line += data[:good].count(b"\n")
            offset += good
    return line, offset, tail[0] if tail else 0


def _lines(path: Path) -> pl.LazyFrame:
    """The file's lines as one text column ``line`` (no quoting; a blank line is null)."""
    return pl.scan_csv(path, has_header=False, separator="\x1f", quote_char=None,
                       infer_schema=False, new_columns=["line"], encoding="utf8-lossy",
                       truncate_ragged_lines=True, raise_if_empty=False)


def _odd_quotes() -> pl.Expr:
    return pl.col("line").fill_null("").str.count_matches('"', literal=True) % 2 == 1


def _odd_quote_line(path: Path) -> int | None:
    """Number (1-based) of the first line with an odd number of quote characters."""
    try:
        hit = _lines(path).with_row_index("i").filter(_odd_quotes()).select("i").head(1
                                                                                  ).collect()
    except Exception:  # only a hint for a message
        return None
    return int(hit.item()) + 1 if hit.height else None


def _field_count_violations(path: Path, fields: int, rows: int) -> pl.Series | None:
    """Per data row: the record has more or fewer fields than the header.

    Lines are counted with polars (streaming; commas inside quotes do not count);
    only a file whose quoted fields span lines falls back to :mod:`csv`. ``None`` if
    the records cannot be aligned with the ``rows`` rows polars read.
    """
    line = pl.col("line").fill_null("")
    lines = _lines(path)
    spans = lines.select(_odd_quotes().any()).collect(engine="streaming").item()
    if not spans:
        unquoted = pl.when(line.str.contains('"', literal=True)).then(
            line.str.replace_all(r'"[^"]*"', "")).otherwise(line)
        counts = lines.select((unquoted.str.count_matches(",", literal=True) + 1).alias("n")
                              ).collect(engine="streaming").to_series().slice(1)
    else:  # a quoted field spans lines: count records with the csv module (rare, slower)
        with path.open(newline="", encoding="utf-8-sig") as fh:
            counts = pl.Series("n", [len(r) for r in csv.reader(fh)][1:], dtype=pl.UInt32)
    if counts.len() != rows:
        return None
    return (counts != fields).alias(_FIELDS_BAD)


def _structure(df: pl.DataFrame, contract: Contract, file: str) -> list[str]:
    cols = set(df.columns) - {*META, _FIELDS_BAD}
    for c in sorted(cols):  # polars renames a repeated header name to <name>_duplicated_<k>
        m = re.fullmatch(r"(.+)_duplicated_\d+", c)
        if m and m.group(1) in cols:
            raise TableFailure(contract.table, file, m.group(1), "columns",
                               f"column {m.group(1)!r} appears more than once in the header")
    missing = [c for c in contract.names if c not in cols]
    if missing:
        close = sorted(cols - set(contract.names))
        hint = f"; columns not in the contract: {close}" if close else ""
        raise TableFailure(contract.table, file, missing[0], "columns",
                           f"required column(s) {missing} missing{hint}")
    return sorted(cols - set(contract.names))


#: per identifier column: a frame with one row per distinct raw value (derived columns:
#: see :func:`_derive`) and, per row of the data, the index of its value in that frame
Codes = tuple[pl.DataFrame, pl.Series]


def _encode(s: pl.Series) -> tuple[pl.Series, pl.Series] | None:
    """Distinct non-null values of a String column and each row's index into them.

    The index is UInt32 and null where the value is null. Distinct values are found on a
    64-bit hash of the strings (far cheaper than hashing and comparing the strings in a
    ``unique`` and again in a join) and every row is then compared with the value its
    index points to, so the encoding is exact; should two strings share a hash, the
    strings themselves are used. ``None`` for a column that is not String.
    """
    if s.dtype != pl.String or s.len() >= 2**32:
        return None
    h = s.hash(seed=0)
    first = h.arg_unique()
    values, keys = s.gather(first), h.gather(first)
    present = values.is_not_null()
    values, keys = values.filter(present), keys.filter(present)
    index = pl.DataFrame({"h": keys, "i": pl.int_range(values.len(), dtype=pl.UInt32,
                                                        eager=True)})
    ids = pl.DataFrame({"h": h}).join(index, on="h", how="left", maintain_order="left")["i"]
    if not values.gather(ids).eq_missing(s).all():  # a hash collision: use the strings
        values = s.unique().drop_nulls()
        index = pl.DataFrame({"v": values, "i": pl.int_range(values.len(), dtype=pl.UInt32,
                                                              eager=True)})
        ids = pl.DataFrame({"v": s}).join(index, on="v", how="left", maintain_order="left")["i"]
    return values, ids


def _fk_rule(fk: ForeignKey) -> str:
    return f"foreign_key:{fk.column}->{fk.table}"


def _derive(c: Column, values: pl.Series, settings: IngestSettings) -> pl.DataFrame:
    """What depends on an identifier's raw value alone, for distinct raw values of ``c``.

    Columns: ``__value`` (the raw value), ``__personal_code`` (not a valid personal
    code) for personal-code columns and ``__ps`` (the pseudonym) for pseudonymised ones.
    """
    out = values.alias("__value").to_frame()
    if c.personal_code:
        out = out.with_columns((~personal_code.valid_expr(pl.col("__value")))
                               .alias("__personal_code"))
    if c.pseudonymise:
        out = out.with_columns(pseudonymise_distinct(values, settings.key, c.pseudonymise)
                               .alias("__ps"))
    return out


class _Known:
    """What an ingest run learnt about identifier values (thread-safe).

    Per kind of identifier (personal-code check, pseudonym domain), :func:`_derive`'s
    frame for every distinct raw value seen so far. The same persons appear in every
    register and every yearly file (1.2 M persons, 80 M reports): each code is
    validated and hashed with HMAC (in Python) once per run instead of once per table
    and file. Raw codes stay in memory, for the duration of the run only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: dict[tuple[bool, str | None], pl.DataFrame] = {}

    def derived(self, c: Column, values: pl.Series, settings: IngestSettings) -> pl.DataFrame:
        """:func:`_derive`'s frame aligned with the distinct raw ``values`` of ``c``."""
        kind = (c.personal_code, c.pseudonymise)
        # values are matched on a 64-bit hash (cheaper than on the strings), checked
        # against the strings after the join; on a hash collision, by the strings
        h = values.hash(seed=0)
        with self._lock:  # one group derives, a second one waiting reuses its work
            known = self._frames.get(kind)
            if known is None:
                known = _derive(c, values, settings).with_columns(h.alias("__h"))
                self._frames[kind] = known
                return known  # in the order of ``values``
            new = ~h.is_in(known["__h"].implode())
            if new.any():
                known = pl.concat([known, _derive(c, values.filter(new), settings)
                                   .with_columns(h.filter(new).alias("__h"))])
                self._frames[kind] = known
        got = h.alias("__h").to_frame().join(known, on="__h", how="left", maintain_order="left")
        if got.height == values.len() and got["__value"].eq_missing(values).all():
            return got
        frame = values.alias("__value").to_frame()
        with self._lock:
            known = self._frames[kind]
            new = frame.join(known.select("__value"), on="__value", how="anti")
            if new.height:
                known = pl.concat([known, _derive(c, new["__value"], settings).with_columns(
                    new["__value"].hash(seed=0).alias("__h"))])
                self._frames[kind] = known
        return frame.join(known.drop("__h"), on="__value", how="left", maintain_order="left")


def _identity(df: pl.DataFrame, contract: Contract, settings: IngestSettings,
              known: _Known | None = None
              ) -> tuple[pl.DataFrame, dict[str, pl.Series], dict[str, Codes]]:
    """Validate personal codes on the raw values, then pseudonymise identifiers.

    Identifiers repeat (80 M reports, 1.2 M persons): each column is encoded once as
    its distinct values plus a row index (:func:`_encode`); the checks and the HMAC run
    on the distinct values (remembered across groups and tables by ``known``) and are
    gathered back by the index. Returns the frame, the violation flags of the checks
    and, per encoded pseudonymised column, its distinct values (``__ps``: pseudonyms)
    and row index (see :func:`_lookups`).
    """
    known = known or _Known()
    flags: dict[str, pl.Series] = {}
    codes: dict[str, Codes] = {}
    rest: dict[str, str] = {}  # pseudonymised the general way (a column that is not String)
    for c in contract.columns:
        v = pl.col(c.name)
        if not (c.personal_code or c.pseudonymise):
            continue
        if settings.already_pseudonymised and c.pseudonymise:
            distinct = df.select(v.unique().drop_nulls())
            bad = distinct.filter(~looks_pseudonymised_expr(v, c.pseudonymise))
            hit = df.select(v.is_in(bad[c.name].implode())).to_series()
            flags[f"pseudonym:{c.name}"] = hit
            if bad.height:
                # a value that is not a pseudonym may be a raw code: hash it before
                # it can reach the quarantine or any other output
                hashed = pseudonymise_frame(bad.with_columns(v.alias("__h")),
                                            {"__h": c.pseudonymise}, settings.key)
                df = df.join(hashed, on=c.name, how="left", maintain_order="left").with_columns(
                    pl.coalesce("__h", c.name).alias(c.name)).drop("__h")
            continue
        enc = _encode(df.get_column(c.name))
        if enc is None:  # judge each distinct value once, flag the rows holding a bad one
            distinct = df.select(v.unique().drop_nulls())
            if c.personal_code:
                bad = distinct.filter(~personal_code.valid_expr(v))
                flags[f"personal_code:{c.name}"] = df.select(
                    v.is_in(bad[c.name].implode())).to_series()
            if c.pattern and c.pseudonymise:
                # format rules on identifiers run on the raw value, before hashing
                bad = distinct.filter(~v.str.contains(c.pattern))
                flags[f"pattern:{c.name}"] = df.select(
                    v.is_in(bad[c.name].implode())).to_series()
            if c.pseudonymise:
                rest[c.name] = c.pseudonymise
            continue
        values, ids = enc
        derived = known.derived(c, values, settings)
        # gathered by the row index, a null value gives a null flag, as ``is_in`` does
        if c.personal_code:
            flags[f"personal_code:{c.name}"] = derived["__personal_code"].gather(ids)
        if c.pattern and c.pseudonymise:
            # format rules on identifiers run on the raw value, before hashing
            bad = values.to_frame("__value").select(~pl.col("__value").str.contains(c.pattern))
            flags[f"pattern:{c.name}"] = bad.to_series().gather(ids)
        if c.pseudonymise:
            df = df.with_columns(derived["__ps"].gather(ids).alias(c.name))
            codes[c.name] = (derived.select("__ps"), ids)
    if rest:
        df = pseudonymise_frame(df, rest, settings.key)
    return df, flags, codes


def _lookups(contract: Contract, codes: dict[str, Codes],
             references: dict[str, pl.DataFrame]
             ) -> tuple[dict[str, pl.Series], dict[str, pl.Series]]:
    """Cross-table rules on the distinct pseudonyms, gathered back to the rows.

    Returns the violation flags of the foreign keys on encoded columns (by rule name)
    and, for the ``not_after_event`` rules keyed by an encoded column, each row's
    event date (by rule name); :func:`impact.contracts.rules.check` uses them instead
    of matching every row against the reference table. Rules whose reference is
    missing, or whose event key repeats in the reference, are left to ``check``.
    """
    flags: dict[str, pl.Series] = {}
    events: dict[str, pl.Series] = {}
    for fk in contract.foreign_keys:
        ref = references.get(fk.table)
        if fk.column in codes and ref is not None and fk.ref_column in ref.columns:
            distinct, ids = codes[fk.column]
            missing = ~distinct["__ps"].is_in(ref[fk.ref_column].implode())
            flags[_fk_rule(fk)] = missing.gather(ids)
    for e in contract.not_after_event:
        ref = references.get(e.table)
        if e.key not in codes or ref is None:
            continue
        ref = ref.select(pl.col(e.ref_key).alias("__k"), pl.col(e.event_column).alias("__event")
                         ).filter(pl.col("__event").is_not_null())
        if ref["__k"].is_duplicated().any():  # the row-level join decides what happens
            continue
        distinct, ids = codes[e.key]
        got = distinct.select(pl.col("__ps").alias("__k")).join(
            ref, on="__k", how="left", maintain_order="left")
        events[e.name] = got["__event"].gather(ids)
    return flags, events


def _values_json(contract: Contract) -> pl.Expr:
    """The row's contract columns as a JSON object (identifiers already pseudonymised)."""
    return pl.struct([pl.col(c).cast(pl.Utf8) for c in contract.names]).struct.json_encode()


#: types whose equal values always hash equal (floats do not: -0.0 and 0.0, NaNs)
_HASH_EXACT = (pl.String, pl.Date, pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64,
               pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)


def _repeated_hashes(h: pl.Series) -> pl.Series:
    """Rows whose (non-null) hash occurs more than once (found by sorting the hashes)."""
    s = h.sort()
    again = s.filter(s == s.shift(1)).unique()
    return h.is_in(again.implode())


def _duplicated(df: pl.DataFrame, cols: list[str], hashes: pl.Series | None = None
                ) -> pl.Series:
    """``pl.struct(cols).is_duplicated()``, exactly, comparing only candidate rows.

    Candidates are the rows whose hash of ``cols`` repeats (equal values hash equal):
    ``hashes`` if given (one UInt64 per row, the same for equal values of ``cols``),
    else the row hash where every column's type hashes exactly.
    """
    if hashes is None and all(df.schema[c] in _HASH_EXACT for c in cols):
        hashes = df.select(cols).hash_rows()
    if hashes is None:
        return df.select(pl.struct(cols).is_duplicated()).to_series()
    cand = _repeated_hashes(hashes)
    if not cand.any():
        return cand
    sub = df.filter(cand).select(pl.struct(cols).is_duplicated()).to_series()
    return cand.scatter(cand.arg_true(), sub)


def _first_among(df: pl.DataFrame, among: pl.Series, cols: list[str]) -> pl.Series:
    """``pl.when(among).then(pl.struct(cols).is_first_distinct()).otherwise(True)``, exactly,
    when rows identical in ``cols`` are either all ``among`` or none: the first distinct
    rows are then found among those rows alone (in order)."""
    if not among.any():
        return ~among
    first = df.filter(among).select(pl.struct(cols).is_first_distinct()).to_series()
    return (~among).scatter(among.arg_true(), first)


def _key_hashes(frame: pl.DataFrame, key: list[str], codes: dict[str, Codes]
                ) -> pl.Series | None:
    """One UInt64 per row, equal for rows with equal (typed, pseudonymised) ``key`` values.

    Pseudonymised columns contribute the hash of their distinct pseudonyms gathered by
    the row index (hashing 80 M pseudonyms row by row is what this avoids); other key
    columns their own hash. ``None`` if a key column's type does not hash exactly.
    """
    out = None
    for i, c in enumerate(key):
        if c in codes:
            derived, ids = codes[c]
            h = derived["__ps"].hash(seed=i).gather(ids).fill_null(i)
        elif frame.schema[c] in _HASH_EXACT:
            h = frame[c].hash(seed=i)
        else:
            return None
        out = h if out is None else out ^ h
    return out


def _resolve(checked: pl.DataFrame, rules: list[str], contract: Contract,
             key_hashes: pl.Series | None = None
             ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split into accepted rows, quarantine records and a per-file tally.

    ``key_hashes`` (see :func:`_key_hashes`), aligned with ``checked``, speed up finding
    the rows whose key repeats; the result is the same without them.
    """
    any_bad = pl.any_horizontal([pl.col(flag(r)) for r in rules]) if rules else pl.lit(False)
    names = pl.concat_str(
        [pl.when(pl.col(flag(r))).then(pl.lit(r)) for r in rules], separator=";",
        ignore_nulls=True)
    df = checked.with_columns(any_bad.alias("__bad"))
    bad = df.filter(pl.col("__bad"))
    if key_hashes is not None and contract.key:
        key_hashes = key_hashes.filter(~df["__bad"])
    else:
        key_hashes = None
    good = df.filter(~pl.col("__bad")).select(*META, *contract.names)
    del df
    # exact duplicates: identical in every contract column. Only rows whose key (or,
    # without a key, whose every column) repeats can be duplicates: compare those in full.
    probe = contract.key or contract.names
    repeats = _duplicated(good, probe, key_hashes)
    first = _first_among(good, repeats, contract.names)
    dups = good.filter(~first).group_by(FILE).len("duplicates")
    superseded = pl.DataFrame(schema={FILE: pl.Utf8, "superseded": pl.UInt32})
    conflict = pl.DataFrame()
    if contract.key and contract.version_column:
        # a correction: same key, later version (or later delivery) wins; only the
        # few rows whose key repeats need ordering
        # rows of one key tied at the largest version in the same (latest) delivery
        # with different values are a conflict, not a correction: the first is kept
        # and the others quarantined, as for tables without a version
        key, version = contract.key, pl.col(contract.version_column)
        # among the rows kept above, a key can repeat only on rows of `repeats`
        kept = first & repeats
        again = good.filter(kept).select(pl.struct(key).is_duplicated()).to_series()
        rep = (kept & False).scatter(kept.arg_true(), again) if kept.any() else kept
        multi = good.filter(rep).sort([*key, contract.version_column, DELIVERY, ROW])
        top = (version.eq_missing(version.last().over(key))
               & (pl.col(DELIVERY) == pl.col(DELIVERY).last().over(key)))
        multi = multi.with_columns(top.alias("__top")).with_columns(
            (pl.col("__top") & (pl.int_range(pl.len()).over(key)
                                == pl.len().over(key) - pl.col("__top").sum().over(key)))
            .alias("__keep"))
        superseded = multi.filter(~pl.col("__top")).group_by(FILE).len("superseded")
        conflict = multi.filter(pl.col("__top") & ~pl.col("__keep")).with_columns(
            pl.lit(f"key_conflict:{','.join(key)}").alias("__rules"))
        good = pl.concat([good.filter(first & ~rep),
                          multi.filter(pl.col("__keep")).drop("__top", "__keep")])
    else:
        good = good.filter(first)
        if contract.key:
            dupkey = good.with_columns(pl.struct(contract.key).is_first_distinct().alias("__f"))
            conflict = dupkey.filter(~pl.col("__f")).drop("__f").with_columns(
                pl.lit(f"key_conflict:{','.join(contract.key)}").alias("__rules"))
            good = dupkey.filter(pl.col("__f")).drop("__f")
    for c in contract.columns:
        if c.unique and c.name not in contract.key:
            first = good.with_columns(pl.col(c.name).is_first_distinct().alias("__f"))
            extra = first.filter(~pl.col("__f") & pl.col(c.name).is_not_null()).drop("__f")
            if extra.height:
                extra = extra.with_columns(pl.lit(f"unique:{c.name}").alias("__rules"))
                conflict = pl.concat([conflict, extra], how="diagonal") if conflict.height \
                    else extra
            good = first.filter(pl.col("__f") | pl.col(c.name).is_null()).drop("__f")
    q = bad.with_columns(names.alias("__rules")).select(*META, *contract.names, "__rules")
    if conflict.height:
        q = pl.concat([q, conflict.select(q.columns)], how="vertical_relaxed")
    quarantine = q.select(
        pl.lit(contract.table).alias("table"),
        pl.col(FILE).alias("source_file"),
        pl.col(ROW).alias("row_number"),
        pl.col("__rules").alias("rules"),
        _values_json(contract).alias("values"),
    )
    accepted = good[FILE].value_counts(name="accepted")  # cheaper than a group_by
    tally = (
        # every file with a row anywhere: one whose rows were all superseded or collapsed
        # as duplicates (a re-sent file) must reconcile too
        pl.DataFrame({FILE: pl.concat([accepted[FILE], quarantine["source_file"], dups[FILE],
                                       superseded[FILE]]).unique()})
        .join(accepted, on=FILE, how="left")
        .join(quarantine.group_by("source_file").len("quarantined").rename(
            {"source_file": FILE}), on=FILE, how="left")
        .join(dups, on=FILE, how="left")
        .join(superseded, on=FILE, how="left")
        .fill_null(0)
    )
    return good, quarantine, tally


def _groups(contract: Contract, files: list[tuple[Path, FileEntry, int]]
            ) -> list[list[tuple[Path, FileEntry, int]]]:
    """Files processed together: one group per year for year-split tables, else all.

    A year-split table's key contains its month column, so corrections and
    duplicates never cross years; processing a year at a time bounds memory.
    """
    if contract.partition_by_year and all(f.year is not None for _, f, _ in files):
        years = sorted({f.year for _, f, _ in files})
        return [[x for x in files if x[1].year == y] for y in years]
    return [files]


def _load(contract: Contract, group: list[tuple[Path, FileEntry, int]],
          settings: IngestSettings, extra: set[str]) -> pl.DataFrame:
    frames = []
    for path, entry, seq in group:
        label = _label(path, entry)
        df = _read(path, entry, seq, contract, _opened(path, entry, contract, settings))
        if df.height != entry.rows:
            raise TableFailure(contract.table, label, None, "manifest",
                               f"{df.height} rows read, manifest says {entry.rows}")
        extra |= set(_structure(df, contract, label))
        frames.append(df)
    return _stacked(frames, contract)


def _stacked(frames: list[pl.DataFrame], contract: Contract) -> pl.DataFrame:
    """The files' rows one after another: contract columns (an all-null column as text),
    ``META`` and the field-count flag."""
    frames = [df.select(*contract.names, *META, _FIELDS_BAD) for df in frames]
    frames = [df.with_columns(pl.col(c).cast(pl.Utf8) for c in contract.names
                              if df.schema[c] == pl.Null) for df in frames]
    return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]


# --------------------------------------------------------------------------- buckets


#: column holding a row's bucket while a file is spilled (see :func:`_spill`)
_BUCKET = "__bucket"


def _bucket_column(contract: Contract) -> str | None:
    """The column by whose hash a table's rows can be validated in buckets, or ``None``.

    Every rule that compares rows must compare only rows of one bucket. That holds for a
    column of the key that is also in the key of every ``no_overlap`` rule, when no
    column outside the key must be unique: exact duplicates and rows of one key
    (corrections, conflicts) then share the column's value and hence its bucket. The
    first personal identifier of the key that qualifies (the person), else the first
    key column that does; ``None`` for a table without a key.
    """
    if not contract.key or any(c.unique and c.name not in contract.key
                               for c in contract.columns):
        return None
    fit = [k for k in contract.key if all(k in o.key for o in contract.no_overlap)]
    personal = [k for k in fit if contract.column(k).personal_code
                or contract.column(k).pseudonymise]
    return (personal or fit or [None])[0]


def _buckets(contract: Contract, group: list[tuple[Path, FileEntry, int]],
             settings: IngestSettings) -> int:
    """Number of buckets a group is validated in: ``ceil(rows / settings.bucket_rows)``
    by the manifest's row counts, 1 without ``bucket_rows`` or a bucket column."""
    if not settings.bucket_rows or _bucket_column(contract) is None:
        return 1
    rows = sum(entry.rows for _, entry, _ in group)
    return max(1, -(-rows // settings.bucket_rows))


@dataclass(frozen=True)
class _Spill:
    """One file of a group written out bucket by bucket (see :func:`_spill`)."""

    folder: Path
    schema: pl.Schema  # of the spilled columns, for a bucket without rows
    label: str
    seq: int
    fields_bad: pl.Series | None  # row numbers with a wrong number of fields (CSV)


def _spill(path: Path, entry: FileEntry, seq: int, contract: Contract, column: str,
           buckets: int, folder: Path, settings: IngestSettings, extra: set[str]) -> _Spill:
    """Read one file once, streaming, into ``folder/__bucket=<b>/`` by a hash of ``column``.

    Runs every check :func:`_load` runs on a file (presence, checksum, readability,
    encoding, truncation, separator, columns, field counts, row count against the
    manifest), with the same failures. The spilled rows keep their row number in the
    file; they hold raw identifiers and are removed by :func:`_validate_buckets` (and,
    after a killed run, by :func:`_remove_leftovers`).
    """
    label = _label(path, entry)
    fail = _opened(path, entry, contract, settings)
    csv_file = entry.format == "csv"
    try:
        if csv_file:
            lf = pl.scan_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=False,
                             truncate_ragged_lines=True)
        else:
            lf = pl.scan_parquet(path)
        header = lf.collect_schema().names()
        present = [c for c in contract.names if c in header]
        if len(present) < len(contract.names):  # fails as _load does, before reading rows
            if csv_file:
                _separator_check(header, contract, fail)
            _structure(pl.DataFrame(schema={c: pl.String for c in header}), contract, label)
        lf = lf.select(present).with_row_index(ROW, offset=1)
        schema = lf.collect_schema()
        lf.with_columns((pl.col(column).hash(seed=0) % buckets).alias(_BUCKET)).sink_parquet(
            pl.PartitionBy(folder, key=_BUCKET, include_key=False), compression="lz4",
            mkdir=True)
    except TableFailure:
        raise
    except Exception as exc:  # the reader's message may quote data; never pass it on
        raise _unreadable(exc, path, csv_file, fail) from None
    spilled = sorted(folder.glob("*/*.parquet"))
    rows = pl.scan_parquet(spilled).select(pl.len()).collect().item() if spilled else 0
    fields_bad = None
    if csv_file:
        bad = _csv_checks(path, header, rows, contract, fail)
        fields_bad = (bad.arg_true() + 1).cast(pl.Int64)
    if rows != entry.rows:
        raise fail("manifest", f"{rows} rows read, manifest says {entry.rows}")
    extra |= set(_structure(pl.DataFrame(schema={c: pl.String for c in header}), contract,
                            label))
    return _Spill(folder, schema, label, seq, fields_bad)


def _load_bucket(spills: list[_Spill], bucket: int, contract: Contract) -> pl.DataFrame:
    """The rows of one bucket, file by file in group order, as :func:`_load` gives them."""
    frames = []
    for sp in spills:
        files = sorted((sp.folder / f"{_BUCKET}={bucket}").glob("*.parquet"))
        df = pl.read_parquet(files) if files else pl.DataFrame(schema=sp.schema)
        if not df[ROW].is_sorted():
            df = df.sort(ROW)
        bad = (pl.col(ROW).is_in(sp.fields_bad.implode()) if sp.fields_bad is not None
               else pl.lit(False))
        frames.append(df.with_columns(pl.col(ROW).cast(pl.Int64), pl.lit(sp.label).alias(FILE),
                                      pl.lit(sp.seq, dtype=pl.Int32).alias(DELIVERY),
                                      bad.alias(_FIELDS_BAD)))
    return _stacked(frames, contract)


def _merge_facts(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Fold one bucket's :func:`_group_facts` into the group's (lookups sorted)."""
    if not into:
        into.update(part)
        into["lookups"] = {c: v.unique().sort() for c, v in part["lookups"].items()}
        return
    for col, values in part["lookups"].items():
        have = into["lookups"][col]
        if values.len():
            into["lookups"][col] = (pl.concat([have, values]).unique().sort() if have.len()
                                    else values.unique().sort())
    for col, w in part["within"].items():
        have = into["within"][col]
        if w is None or have is None:
            continue
        for k, pick in (("min", min), ("max", max)):
            vals = [v for v in (have[k], w[k]) if v is not None]
            have[k] = pick(vals) if vals else None
        have["hits"] += w["hits"]


def _validate_buckets(contract: Contract, group: list[tuple[Path, FileEntry, int]],
                      label: str, period: tuple[date, date],
                      references: dict[str, pl.DataFrame], settings: IngestSettings,
                      known: _Known, facts: dict[str, Any], extra: set[str], buckets: int,
                      spill: Path, staging: Path, part: int
                      ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int], list[list[str]]]:
    """Validate a group bucket by bucket (``settings.bucket_rows``); write its clean parts.

    Every file is read once and spilled by a hash of :func:`_bucket_column` to ``spill``
    (:func:`_spill`); then each bucket is loaded and validated like a whole group
    (:func:`_validate`) and its accepted rows are written as ``part-<part>-b<bucket>``.
    As every rule comparing rows compares rows of one bucket, the accepted rows,
    quarantine records, tally and rules hit are those of the group at once; the share of
    unparseable values that makes a column's type wrong is judged over the whole group.
    Memory: one bucket (about ``bucket_rows`` rows) plus the spill's streaming buffers.
    The spill, which holds raw identifiers, is removed before returning.

    Returns the quarantine, the per-file tally, the rules hit and the written parts
    (``[sub-folder, suffix]``, see :class:`_GroupOutcome`).
    """
    column = _bucket_column(contract)
    assert column is not None
    type_errors = TypeErrors()
    quarantines: list[pl.DataFrame] = []
    tallies: list[pl.DataFrame] = []
    hit: dict[str, int] = {}
    parts: list[list[str]] = []
    empty: pl.DataFrame | None = None
    try:
        shutil.rmtree(spill, ignore_errors=True)
        spills = [_spill(path, entry, seq, contract, column, buckets, spill / f"file-{k}",
                         settings, extra) for k, (path, entry, seq) in enumerate(group)]
        for b in range(buckets):
            got: dict[str, Any] = {}
            good, quarantine, tally, hits = _validate(
                lambda b=b: _load_bucket(spills, b, contract), contract, label, period,
                references, settings, known, got, type_errors)
            _merge_facts(facts, got)
            quarantines.append(quarantine)
            tallies.append(tally)
            for r, n in hits.items():
                hit[r] = hit.get(r, 0) + n
            if good.height:
                suffix = f"-b{b:03d}"
                parts += [[d, suffix] for d in _write_clean(
                    contract, _clean_rows(good), staging, part=f"{part}{suffix}")]
            else:
                empty = good
            del good
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    type_errors.check(contract, label)
    if not parts and empty is not None:  # no accepted row: an empty part, as unbucketed
        parts = [[d, ""] for d in _write_clean(contract, _clean_rows(empty), staging,
                                               part=str(part))]
    tally = pl.concat(tallies, how="vertical_relaxed").group_by(FILE, maintain_order=True).sum()
    return pl.concat(quarantines, how="vertical_relaxed"), tally, hit, parts


def _validate(load: Callable[[], pl.DataFrame], contract: Contract, label: str,
              period: tuple[date, date], references: dict[str, pl.DataFrame],
              settings: IngestSettings, known: _Known | None = None,
              facts: dict[str, Any] | None = None, type_errors: TypeErrors | None = None
              ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Identifiers, rules and register patterns of one loaded group of rows.

    ``load`` returns the raw rows (contract columns as read, ``META`` and optionally the
    field-count flag); it is called here so that the raw frame is freed after the
    rules ran. ``known`` keeps what earlier groups and tables learnt about identifier
    values. ``facts``, if given, receives what the result depends on besides the rows
    (see :func:`_group_facts`), for the incremental-ingest cache. ``type_errors``: a
    tally of unparseable values shared by the buckets of a group, checked by the caller
    (see :func:`impact.contracts.rules.parse_columns`).
    Returns accepted rows, quarantine records, the per-file tally and the number of
    rows hit per rule.
    """
    raw = load()
    if _FIELDS_BAD in raw.columns:
        fields_bad = raw.get_column(_FIELDS_BAD)
        raw = raw.drop(_FIELDS_BAD)
    else:
        fields_bad = pl.Series(_FIELDS_BAD, [False] * raw.height, dtype=pl.Boolean)
    raw, pc_flags, codes = _identity(raw, contract, settings, known)
    precomputed, events = _lookups(contract, codes, references)
    checked = check(raw, contract, label, period, references,
                    {FIELD_COUNT: fields_bad, **pc_flags}, precomputed=precomputed,
                    events=events, type_errors=type_errors)
    del raw, precomputed, events
    # a row with the wrong number of fields has misaligned values: that is its only reason
    checked.frame = checked.frame.with_columns(
        pl.col(flag(r)) & ~pl.col(flag(FIELD_COUNT)) for r in checked.rules
        if r != FIELD_COUNT)
    key_hashes = _key_hashes(checked.frame, contract.key, codes) if contract.key else None
    if facts is not None:
        facts.update(_group_facts(contract, checked.frame, codes))
    del codes
    good, quarantine, tally = _resolve(checked.frame, checked.rules, contract, key_hashes)
    sums = checked.frame.select(pl.col(flag(r)).sum() for r in checked.rules).row(0)
    hit = {r: int(n) for r, n in zip(checked.rules, sums, strict=True) if n}
    if facts is not None:
        for name, within in facts["within"].items():
            if within is not None:
                within["hits"] = hit.get(f"within_delivery:{name}", 0)
    return good, quarantine, tally, hit


def validate_frame(df: pl.DataFrame, contract: Contract, period: tuple[date, date],
                   references: dict[str, pl.DataFrame], settings: IngestSettings,
                   file: str = "frame") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate an in-memory table exactly as :func:`ingest` validates a delivered file.

    ``df`` holds the contract's columns as delivered (text, as read from a CSV, or
    typed, as from Parquet); ``references`` the accepted (pseudonymised) tables its
    rules use. Returns the accepted rows (typed, pseudonymised, in the clean
    output's form without lineage) and the quarantine records (``row_number`` counts
    from 1). Nothing is written.

    Raises
    ------
    TableFailure
        For a blocking problem (a required column missing, a column of the wrong type).
    """
    _structure(df, contract, file)
    raw = df.select(contract.names).with_columns(
        pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(ROW), pl.lit(file).alias(FILE),
        pl.lit(0, dtype=pl.Int32).alias(DELIVERY))
    raw = raw.with_columns(pl.col(c).cast(pl.Utf8) for c in contract.names
                           if raw.schema[c] == pl.Null)
    good, quarantine, _, _ = _validate(lambda: raw, contract, file, period, references,
                                       settings)
    return good.drop(*META), quarantine


def _schema_drift(contract: Contract, files: list[tuple[Path, FileEntry, int]]) -> None:
    """Every Parquet file of a table stores each contract column with the same type.

    A type change between files or deliveries (``float`` income becoming ``int`` cents)
    may still parse and so pass every row rule; it must come with a new contract
    instead. An all-null column (type ``Null``) is compatible with any type.
    """
    seen: dict[str, tuple[pl.DataType, str]] = {}
    for path, entry, _ in files:
        if entry.format != "parquet" or not path.exists():
            continue
        try:
            schema = pl.read_parquet_schema(path)
        except Exception:  # reported with its reason when the file is read
            continue
        for name in contract.names:
            dtype = schema.get(name)
            if dtype is None or dtype == pl.Null:
                continue
            first = seen.setdefault(name, (dtype, _label(path, entry)))
            if first[0] != dtype:
                raise TableFailure(contract.table, _label(path, entry), name, "schema_drift",
                                   f"stored as {dtype} here but as {first[0]} in {first[1]}: "
                                   "a type change between files needs a new contract")


def ingest_table(contract: Contract, files: list[tuple[Path, FileEntry, int]],
                 period: tuple[date, date], references: dict[str, pl.DataFrame],
                 settings: IngestSettings, unlisted: list[str] | None = None,
                 known: _Known | None = None) -> tuple[TableResult, pl.LazyFrame | None]:
    """Ingest all files of one table.

    ``unlisted`` names data files of this table found in a delivery folder but not
    in its manifest (a blocking failure: their rows would silently be missing).
    ``known`` carries what the run learnt about identifier values from earlier tables.
    With ``settings.incremental``, a group whose cached record is still valid (see the
    module docstring) is taken from ``<out>/.ingest_cache/<table>/`` without reading
    its files; the output is the same as if it had been validated.

    Returns the result and a lazy scan of the clean output (``None`` when the
    table failed; a failed table's previous output is removed so that nothing
    downstream can use stale rows).
    """
    t0 = time.perf_counter()
    res = TableResult(table=contract.table, ok=False)
    folder = settings.out / "sources" / contract.table
    staging = settings.out / "sources" / f".{contract.table}.staging"
    cache = settings.out / CACHE_DIR / contract.table
    try:
        if unlisted:
            raise TableFailure(contract.table, unlisted[0], None, "manifest",
                               "file is in the delivery folder but not in its manifest (its "
                               "rows would be missed); list it or remove it")
        if not files:
            raise TableFailure(contract.table, "-", None, "present",
                               "no file of this table in the delivery manifest")
        _schema_drift(contract, files)
        if staging.exists():
            shutil.rmtree(staging)
        _remove_leftovers(cache)
        groups = _groups(contract, files)
        gids = [_group_id(contract, g) for g in groups]
        # year groups share what they learn about identifiers: each person once per run
        known = known or _Known()

        def one(i: int) -> _GroupOutcome:
            group, gid = groups[i], gids[i]
            static = _static_digest(contract, group, settings)
            if settings.incremental:
                reused = _reuse(cache / gid, static, group, contract, period, references,
                                staging, i)
                if reused is not None:
                    return reused
            stats = _stats(group)  # before reading: a file changed meanwhile is read again
            label = _label(*group[0][:2]) if len(group) == 1 else f"{len(group)} files"
            extra: set[str] = set()
            facts: dict[str, Any] = {}
            buckets = _buckets(contract, group, settings)
            if buckets == 1:
                good, quarantine, tally, hit = _validate(
                    lambda: _load(contract, group, settings, extra), contract, label, period,
                    references, settings, known, facts)
                parts = [[d, ""] for d in _write_clean(contract, _clean_rows(good), staging,
                                                       part=str(i))]
            else:
                quarantine, tally, hit, parts = _validate_buckets(
                    contract, group, label, period, references, settings, known, facts, extra,
                    buckets, cache / f".spill-{gid}", staging, i)
            recs = _reconcile(contract, group, tally)
            outcome = _GroupOutcome(gid, recs, quarantine, hit, sorted(extra), parts)
            try:
                lookups = _lookup_digests(contract, facts["lookups"], references)
            except Exception:  # a lookup the cache cannot repeat: never reuse this group
                lookups = None
            if stats is not None and lookups is not None:
                outcome.lookups = facts["lookups"]
                outcome.record = {
                    "version": CACHE_VERSION, "table": contract.table, "group": gid,
                    "static": static, "stats": stats,
                    "period": [period[0].isoformat(), period[1].isoformat()],
                    "within": facts["within"], "lookups": lookups,
                    "lookup_columns": sorted(facts["lookups"]),
                    "files": [asdict(r) for r in recs], "rules_hit": hit,
                    "extra_columns": sorted(extra), "clean": parts}
            return outcome

        workers = max(1, min(settings.parallel_groups, len(groups)))
        if workers == 1:
            outcomes = [one(i) for i in range(len(groups))]
        else:
            # polars releases the GIL: year groups overlap their I/O and single-threaded parts
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = list(pool.map(one, range(len(groups))))
        quarantines, hits, extra = [], {}, set()
        for o in outcomes:
            res.files.extend(o.files)
            quarantines.append(o.quarantine)
            for r, n in o.hits.items():
                hits[r] = hits.get(r, 0) + n
            extra |= set(o.extra)
            (res.groups_reused if o.reused else res.groups_validated).append(o.gid)
        res.extra_columns = sorted(extra)
        res.rules_hit = hits
        if res.rows_in == 0:
            raise TableFailure(contract.table, res.files[0].file if len(res.files) == 1 else
                               f"{len(res.files)} files", None, "empty",
                               "no data row in any file of the table (header only)")
        unbalanced = [f.file for f in res.files if not f.balanced]
        if unbalanced:
            raise TableFailure(contract.table, unbalanced[0], None, "reconciliation",
                               "rows in != accepted + quarantined + duplicates + superseded")
        write_json({"fingerprint": settings.key.fingerprint,
                    "already_pseudonymised": settings.already_pseudonymised},
                   staging / KEY_RECORD)
        # never half deleted (readers wait while staging exists)
        replace_folder(staging, folder, settings.out / "sources" / f".{contract.table}.old")
        write_parquet(pl.concat(quarantines, how="vertical_relaxed"),
                        settings.out / "quarantine" / f"{contract.table}.parquet")
        for i, o in enumerate(outcomes):
            if o.record is not None and not o.reused:
                _store(cache, o, folder, part=i)
        _prune(cache, {*gids, GX_RECORD})
        res.ok = True
        res.output = str(folder)
        clean = pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)
        if settings.gx_sample:
            gx_key = _gx_digest(contract, outcomes, period, references, settings)
            if not (settings.incremental and _gx_reuse(cache, gx_key, settings, res)):
                _cross_check(contract, folder, period, references, settings, res)
                _gx_store(cache, gx_key, settings, res)
        return res, clean
    except TableFailure as failure:
        res.failure = str(failure)
        for stale in (folder, staging):  # staging last: it marks the table as changing
            if stale.exists():
                shutil.rmtree(stale)
        return res, None
    finally:
        res.seconds = round(time.perf_counter() - t0, 2)


def _reconcile(contract: Contract, group: list[tuple[Path, FileEntry, int]],
               tally: pl.DataFrame) -> list[FileReconciliation]:
    """One reconciliation per file of ``group`` from :func:`_resolve`'s per-file tally."""
    recs = []
    for path, entry, _ in group:
        row = tally.filter(pl.col(FILE) == _label(path, entry))
        counts = row.row(0, named=True) if row.height else {}
        recs.append(FileReconciliation(
            table=contract.table, file=_label(path, entry), rows_in=entry.rows,
            accepted=int(counts.get("accepted", 0)),
            quarantined=int(counts.get("quarantined", 0)),
            duplicates=int(counts.get("duplicates", 0)),
            superseded=int(counts.get("superseded", 0))))
    return recs


# --------------------------------------------------------------------------- incremental


@dataclass
class _GroupOutcome:
    """The result of one group of files, validated in this run or reused from the cache.

    ``parts``: the group's clean files, as ``[sub-folder, suffix]`` pairs: the file
    ``<sub-folder>/part-<group index><suffix>.parquet`` of the clean table (see
    :func:`_write_clean`; the suffix is empty, or ``-b<bucket>`` for a group validated
    in buckets). ``record``: the group's cache record (``None`` for a validated
    group that cannot be cached); ``lookups``: for a validated group, the distinct values
    it looked up in reference tables.
    """

    gid: str
    files: list[FileReconciliation]
    quarantine: pl.DataFrame
    hits: dict[str, int]
    extra: list[str]
    parts: list[list[str]]
    reused: bool = False
    record: dict[str, Any] | None = None
    lookups: dict[str, pl.Series] | None = None


def _group_id(contract: Contract, group: list[tuple[Path, FileEntry, int]]) -> str:
    """Name of a group of :func:`_groups`: ``year=YYYY`` for a year group, else ``all``."""
    years = {entry.year for _, entry, _ in group}
    if contract.partition_by_year and len(years) == 1 and None not in years:
        return f"year={years.pop()}"
    return "all"


def _static_digest(contract: Contract, group: list[tuple[Path, FileEntry, int]],
                   settings: IngestSettings) -> str:
    """SHA-256 of every input of a group's result except the period and the references.

    The files (manifest entry: SHA-256, rows, format, columns, year; delivery folder and
    sequence, which order corrections), the contract, the key's fingerprint (never the
    key), the settings that change the output (the number of buckets changes the clean
    table's files), :data:`CACHE_VERSION` and the polars
    version. Assumes the manifest's SHA-256 describes the file, which the run that
    made the record verified (with ``verify_checksums``) and :func:`_stats` keeps true.
    """
    doc = {
        "version": CACHE_VERSION, "polars": pl.__version__,
        "contract": contract.model_dump(mode="json"),
        "key": settings.key.fingerprint,
        "already_pseudonymised": settings.already_pseudonymised,
        "verify_checksums": settings.verify_checksums,
        "buckets": _buckets(contract, group, settings),
        "files": [{"delivery": path.parent.name, "sequence": seq,
                   "entry": entry.model_dump(mode="json")} for path, entry, seq in group],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _stats(group: list[tuple[Path, FileEntry, int]]) -> list[list[int]] | None:
    """Size, mtime, ctime and inode of each file (``None`` if one is missing).

    A file rewritten after its record was made (even to the same size, or without
    updating its manifest) has another ctime or inode: its group is read again and its
    checksum verified, as a full ingest would.
    """
    out = []
    for path, _, _ in group:
        try:
            st = path.stat()
        except OSError:
            return None
        out.append([st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    return out


def _lookup_rules(contract: Contract) -> list[tuple[str, str, str, str, str | None]]:
    """Rules that look values up in other tables' clean output.

    ``(rule, column looked up, reference table, reference column, event column)``; the
    event column only for ``not_after_event`` (the reference column is then its key).
    """
    out: list[tuple[str, str, str, str, str | None]] = [
        (_fk_rule(fk), fk.column, fk.table, fk.ref_column, None) for fk in contract.foreign_keys]
    for c in contract.columns:
        if c.allowed_from:
            table, col = c.allowed_from.split(".")
            out.append((f"allowed_from:{c.name}", c.name, table, col, None))
    for e in contract.not_after_event:
        out.append((f"not_after_event:{e.name}", e.key, e.table, e.ref_key, e.event_column))
    return out


def _group_facts(contract: Contract, frame: pl.DataFrame, codes: dict[str, Codes]
                 ) -> dict[str, Any]:
    """What a validated group's result depends on besides its rows.

    ``lookups``: per column looked up by a cross-table rule, its distinct non-null values
    as the rules saw them (typed; pseudonyms for pseudonymised columns, taken from the
    encoding of :func:`_identity` where there is one: a string column's typed values are
    its pseudonyms). Every row's flag of such a rule is a function of its value's entry
    in the reference, so the rule flags the same rows as long as the reference says the
    same about these values. ``within``: per ``within_delivery`` column (the only rules
    using the period), the smallest and largest value (ISO dates; ``None`` for a column
    that is not a date) and, filled in by :func:`_validate`, the rows flagged.
    """
    lookups: dict[str, pl.Series] = {}
    for _, col, _, _, _ in _lookup_rules(contract):
        if col in lookups:
            continue
        if col in codes and contract.column(col).type == "string":
            values = codes[col][0]["__ps"].drop_nulls().unique(maintain_order=True)
        else:
            values = frame[col].drop_nulls().unique().sort()
        lookups[col] = values.alias("v")
    within: dict[str, dict[str, Any] | None] = {}
    for c in contract.columns:
        if c.within_delivery:
            s = frame[c.name]
            if s.dtype == pl.Date:
                lo, hi = s.min(), s.max()
                within[c.name] = {"min": lo.isoformat() if lo is not None else None,
                                  "max": hi.isoformat() if hi is not None else None, "hits": 0}
            else:
                within[c.name] = None
    return {"lookups": lookups, "within": within}


def _lookup_digests(contract: Contract, values: dict[str, pl.Series],
                    references: dict[str, pl.DataFrame]) -> dict[str, str] | None:
    """Per cross-table rule, a digest of what the references say about ``values``.

    Foreign keys and ``allowed_from``: which of the values the reference column holds
    (the rule's own ``is_in``, in the order of ``values``). ``not_after_event``: the
    reference's (key, event date) rows with a non-null event for these keys, sorted (a
    key without event, or absent, flags nothing). ``None`` if a reference is missing
    (the rule then fails the table: nothing can be reused).
    """
    out: dict[str, str] = {}
    for rule, col, table, ref_col, event in _lookup_rules(contract):
        ref = references.get(table)
        if ref is None or ref_col not in ref.columns or (event and event not in ref.columns):
            return None
        v = values[col]
        h = hashlib.sha256(f"{rule}|{v.len()}|{v.dtype}|".encode())
        if event is None:
            hit = v.to_frame("v").select(pl.col("v").is_in(ref[ref_col].implode())).to_series()
            h.update(hit.to_numpy().tobytes())
        else:
            ev = ref.select(pl.col(ref_col).alias("k"), pl.col(event).alias("e")).filter(
                pl.col("e").is_not_null() & pl.col("k").is_in(v.implode())).sort("k", "e")
            h.update(ev.write_csv().encode())
        out[rule] = h.hexdigest()
    return out


def _period_allows(record: dict[str, Any], period: tuple[date, date]) -> bool:
    """The ``within_delivery`` flags of a cached group are the same under ``period``.

    True for the period the record was made with; for another one, iff no row was
    flagged and every value of each such column lies inside the new period (then none
    is flagged now either). A column that is not a date: the same period only.
    """
    start, end = period[0].isoformat(), period[1].isoformat()
    if record["period"] == [start, end]:
        return True
    for facts in record["within"].values():
        if facts is None or facts["hits"]:
            return False
        if facts["min"] is not None and not (start <= facts["min"] and facts["max"] <= end):
            return False
    return True


def _reuse(entry: Path, static: str, group: list[tuple[Path, FileEntry, int]],
           contract: Contract, period: tuple[date, date],
           references: dict[str, pl.DataFrame], staging: Path, part: int
           ) -> _GroupOutcome | None:
    """The cached result of a group if it is still valid, its clean parts linked into
    ``staging`` as ``part-<part><suffix>.parquet``; ``None`` if it must be validated again.

    Valid: same :func:`_static_digest`, same :func:`_stats`, :func:`_period_allows` and the
    same :func:`_lookup_digests` with today's references. A record that cannot be read is
    not valid.
    """
    try:
        record = json.loads((entry / "record.json").read_text(encoding="utf-8"))
        if (record.get("version") != CACHE_VERSION or record.get("static") != static
                or record.get("stats") != _stats(group) or not _period_allows(record, period)):
            return None
        values = {c: pl.read_parquet(entry / f"lookup-{c}.parquet").to_series()
                  for c in record["lookup_columns"]}
        if _lookup_digests(contract, values, references) != record["lookups"]:
            return None
        quarantine = pl.read_parquet(entry / "quarantine.parquet")
        files = [FileReconciliation(**f) for f in record["files"]]
    except Exception:  # missing, partial or unreadable: validate instead
        return None
    linked: list[Path] = []
    try:
        for d, suffix in record["clean"]:
            target = staging / d / f"part-{part}{suffix}.parquet"
            _link(entry / "clean" / d / f"part{suffix}.parquet", target)
            linked.append(target)
    except OSError:
        for target in linked:
            target.unlink(missing_ok=True)
        return None
    return _GroupOutcome(record["group"], files, quarantine, dict(record["rules_hit"]),
                         list(record["extra_columns"]), list(record["clean"]), reused=True,
                         record=record)


def _link(src: Path, dst: Path) -> None:
    """Hard link ``src`` as ``dst`` (a copy where the file system has no hard links)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        if not src.is_file():
            raise
        shutil.copy2(src, dst)


def _store(cache: Path, outcome: _GroupOutcome, folder: Path, part: int) -> None:
    """Write a validated group's record to ``cache/<group>/``, atomically.

    The record is assembled in a hidden folder (its clean parts hard links of the
    published ``part-<part><suffix>.parquet``), ``record.json`` last, then swapped in. A failure
    to write (e.g. a full disk) leaves no partial record: the group is validated next time.
    """
    assert outcome.record is not None and outcome.lookups is not None
    tmp = cache / f".{outcome.gid}.new"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        for d, suffix in outcome.parts:
            _link(folder / d / f"part-{part}{suffix}.parquet",
                  tmp / "clean" / d / f"part{suffix}.parquet")
        write_parquet(outcome.quarantine, tmp / "quarantine.parquet")
        for col, values in outcome.lookups.items():
            write_parquet(values.to_frame("v"), tmp / f"lookup-{col}.parquet")
        write_json(outcome.record, tmp / "record.json", sort_keys=True)
        replace_folder(tmp, cache / outcome.gid, cache / f".{outcome.gid}.old")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


#: In a table's cache folder: the digest of the inputs of the last Great Expectations
#: cross-check and its outcome (see :func:`_gx_digest`)
GX_RECORD = "gx.json"


def _gx_digest(contract: Contract, outcomes: list[_GroupOutcome], period: tuple[date, date],
               references: dict[str, pl.DataFrame], settings: IngestSettings) -> str | None:
    """SHA-256 of every input of :func:`_cross_check`, or ``None`` if one is unknown.

    The clean table's content is identified by its groups in order (the order of the part
    files, which the sample follows) and each group's cache record, which determines the
    group's clean rows (a group without a record: unknown); then the period (months: used
    only by ``within_delivery`` columns), the ``allowed_from`` reference values, the sample
    size, the contract and the versions of the code, polars and Great Expectations. The
    cross-check is deterministic (a seeded sample), so equal digests give the same report.
    """
    from importlib.metadata import PackageNotFoundError, version

    if any(o.record is None for o in outcomes):
        return None
    try:
        gx_version = version("great_expectations")
    except PackageNotFoundError:
        gx_version = "unknown"
    refs = {}
    for c in contract.columns:
        if c.allowed_from:
            table, col = c.allowed_from.split(".")
            if table in references:
                values = sorted(map(str, set(references[table][col].drop_nulls().to_list())))
                refs[c.allowed_from] = hashlib.sha256("\n".join(values).encode()).hexdigest()
    doc = {
        "version": CACHE_VERSION, "polars": pl.__version__, "gx": gx_version,
        "contract": contract.model_dump(mode="json"), "sample": settings.gx_sample,
        "period": [period[0].isoformat(), period[1].isoformat()]
        if any(c.within_delivery for c in contract.columns) else None, "refs": refs,
        "groups": [[o.gid, json.dumps(o.record, sort_keys=True, default=str)]
                   for o in outcomes],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _gx_report(settings: IngestSettings, table: str) -> Path:
    return settings.out / "validation" / f"{table}.gx.json"


def _gx_reuse(cache: Path, digest: str | None, settings: IngestSettings,
              res: TableResult) -> bool:
    """Take the cross-check's outcome from the last run if its inputs are the same and
    its report is still the one it wrote; ``False`` if it must run."""
    if digest is None:
        return False
    try:
        rec = json.loads((cache / GX_RECORD).read_text(encoding="utf-8"))
        if (rec["digest"] != digest
                or sha256_file(_gx_report(settings, res.table)) != rec["report_sha256"]):
            return False
        res.gx_success, res.gx_failed_rules = rec["success"], list(rec["failed_rules"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _gx_store(cache: Path, digest: str | None, settings: IngestSettings,
              res: TableResult) -> None:
    """Remember the cross-check's inputs and outcome (nothing if an input is unknown)."""
    target = cache / GX_RECORD
    try:
        if digest is None:
            target.unlink(missing_ok=True)
            return
        write_json({"digest": digest,
                    "report_sha256": sha256_file(_gx_report(settings, res.table)),
                    "success": res.gx_success, "failed_rules": res.gx_failed_rules},
                   target, sort_keys=True)
    except OSError:
        target.unlink(missing_ok=True)


def _remove_leftovers(cache: Path) -> None:
    """Remove half-written records of a run that was killed (hidden entries)."""
    if cache.is_dir():
        for p in cache.iterdir():
            if p.name.startswith("."):
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def _prune(cache: Path, keep: set[str]) -> None:
    """Remove the records of groups the table no longer has."""
    if cache.is_dir():
        for p in cache.iterdir():
            if p.name not in keep:
                shutil.rmtree(p) if p.is_dir() else p.unlink()


def _every_kth_row(folder: Path, target: int) -> tuple[pl.DataFrame, int]:
    """Every ``k``-th row (from the first) of the Parquet files under ``folder``, in the
    order a scan of ``folder/**/*.parquet`` reads them, with ``k = max(1, rows // target)``;
    and the number of rows.

    Read in record batches (pyarrow), so memory is one batch and the sample, not the table
    (a polars scan decodes each file whole before sampling: 5 GiB for 79 M reports).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(str(p) for p in folder.glob("**/*.parquet"))
    n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    k = max(1, n // max(1, target))
    frames, start = [], 0
    for f in files:
        taken = []
        for b in pq.ParquetFile(f).iter_batches(batch_size=1 << 17):
            first = (-start) % k
            if first < b.num_rows:
                taken.append(b.take(pa.array(np.arange(first, b.num_rows, k))))
            start += b.num_rows
        if taken:
            frames.append(pl.from_arrow(pa.Table.from_batches(taken)))
    if not frames:
        return (pl.DataFrame(schema=pl.read_parquet_schema(files[0])) if files
                else pl.DataFrame()), n
    out = pl.concat(frames, how="vertical_relaxed")
    assert isinstance(out, pl.DataFrame)
    return out, n


def _cross_check(contract: Contract, folder: Path, period: tuple[date, date],
                 references: dict[str, pl.DataFrame], settings: IngestSettings,
                 res: TableResult) -> None:
    """Great Expectations on a sample of the clean table in ``folder``; report kept as
    JSON."""
    from impact.contracts import gx as gxc

    # a systematic sample over the whole table (every year), then a random one
    df, _ = _every_kth_row(folder, settings.gx_sample * 2)
    refs = {}
    for c in contract.columns:
        if c.allowed_from:
            table, col = c.allowed_from.split(".")
            if table in references:
                refs[c.allowed_from] = set(references[table][col].drop_nulls().to_list())
    patterns = gxc.pseudonym_patterns()  # clean identifiers are always pseudonyms
    report = gxc.validate_sample(
        contract, gxc.sample_frame(df, n=settings.gx_sample), refs,
        months=(period[0].strftime("%Y-%m"), period[1].strftime("%Y-%m")),
        pseudonym_pattern=patterns, extra_columns=("source_file",))
    res.gx_success = report.success
    res.gx_failed_rules = report.failed_rules()
    path = settings.out / "validation" / f"{contract.table}.gx.json"
    write_json(report.to_dict(), path, sort_keys=True)


#: clean tables are written once and read a few times: zstd at its cheapest level
#: compresses 79 M reports about as well as the default level in far less time
_CLEAN_PARQUET = {"compression": "zstd", "compression_level": 1}


def _clean_rows(good: pl.DataFrame) -> pl.DataFrame:
    """Accepted rows as written: lineage column ``source_file``, no row number."""
    return good.drop(ROW, DELIVERY).rename({FILE: "source_file"})


def _write_clean(contract: Contract, clean: pl.DataFrame, folder: Path, part: str
                 ) -> list[str]:
    """Write one group of clean rows (by year for year-split tables).

    Returns the sub-folders of ``folder`` written to (``year=YYYY``, or ``""`` for
    ``folder`` itself); each holds the group's file ``part-<part>.parquet``.
    """
    if contract.partition_by_year and clean.height:
        year = pl.col(contract.partition_by_year).dt.year()
        years = clean.select(year.unique()).to_series()
        if years.len() == 1 and years[0] is not None:  # a yearly file: no need to split it
            write_parquet(clean, folder / f"year={years[0]}" / f"part-{part}.parquet",
                          **_CLEAN_PARQUET)
            return [f"year={years[0]}"]
        dirs = []
        for (y,), chunk in clean.with_columns(year.alias("__y")).group_by(
                "__y", maintain_order=True):
            write_parquet(chunk.drop("__y"), folder / f"year={y}" / f"part-{part}.parquet",
                          **_CLEAN_PARQUET)
            dirs.append(f"year={y}")
        return dirs
    write_parquet(clean, folder / f"part-{part}.parquet", **_CLEAN_PARQUET)
    return [""]


@dataclass(frozen=True)
class _Deliveries:
    """The manifests of the deliveries being ingested, oldest first."""

    folders: list[Path]
    manifests: list[DeliveryManifest]

    @classmethod
    def read(cls, folders: list[Path]) -> _Deliveries:
        return cls(list(folders), [DeliveryManifest.read(d) for d in folders])

    @property
    def period(self) -> tuple[date, date]:
        """First and last month (first days) covered by any delivery."""
        return (date.fromisoformat(min(m.period_start for m in self.manifests) + "-01"),
                date.fromisoformat(max(m.period_end for m in self.manifests) + "-01"))

    def files(self, table: str) -> list[tuple[Path, FileEntry, int]]:
        """(path, manifest entry, delivery sequence) of every file of ``table``."""
        return [(d / f.path, f, seq)
                for seq, (d, m) in enumerate(zip(self.folders, self.manifests, strict=True))
                for f in m.files if f.table == table]

    def unlisted(self, table: str) -> list[str]:
        """Data files named after ``table`` (``<table>.<ext>`` or ``<table>_<year>.<ext>``)
        in a delivery folder but not in its manifest, as ``<delivery>/<file>``."""
        out = []
        for d, m in zip(self.folders, self.manifests, strict=True):
            listed = {f.path for f in m.files}
            for p in sorted(d.iterdir()):
                if (p.suffix in DATA_SUFFIXES and p.name not in listed
                        and re.fullmatch(re.escape(table) + r"(_\d+)?", p.stem)):
                    out.append(f"{d.name}/{p.name}")
        return out


def ingest(deliveries: list[Path], settings: IngestSettings,
           tables: list[str] | None = None, contracts: dict[str, Contract] | None = None
           ) -> dict[str, TableResult]:
    """Ingest deliveries (oldest first) into ``settings.out``.

    Returns one :class:`TableResult` per table; a failed table does not stop the
    others, except tables whose rules need it (they fail with that reason).
    """
    contracts = contracts or load_contracts()
    needed = set(tables or contracts)
    frontier = list(needed)
    while frontier:  # every table a wanted table's rules rely on, transitively
        for dep in contracts[frontier.pop()].depends_on:
            if dep in contracts and dep not in needed:
                needed.add(dep)
                frontier.append(dep)
    order = [t for t in dependency_order(contracts) if t in needed]
    references: dict[str, pl.DataFrame] = {}
    results: dict[str, TableResult] = {}
    known = _Known()  # identifiers validated and hashed once for all tables
    try:
        batch = _Deliveries.read(deliveries)
    except ManifestError as exc:  # no table can be reconciled with its delivery
        batch = None
        results = {name: _manifest_failure(name, exc) for name in order}
    for name in order if batch is not None else []:
        contract = contracts[name]
        res, clean = ingest_table(contract, batch.files(name), batch.period, references,
                                  settings, batch.unlisted(name), known)
        results[name] = res
        keep = _reference_columns(name, contracts)
        if clean is not None and keep:
            references[name] = clean.select(keep).collect()
    report = {n: {**asdict(r), "rows_in": r.rows_in, "accepted": r.accepted,
                  "quarantined": r.quarantined} for n, r in results.items()}
    path = settings.out / "reconciliation.json"
    write_json(report, path, sort_keys=True)
    return results


def _manifest_failure(table: str, exc: ManifestError) -> TableResult:
    """The result of a table whose delivery manifest is unusable."""
    failure = TableFailure(table, f"{exc.path.parent.name}/{exc.path.name}", None, "manifest",
                           exc.reason)
    return TableResult(table=table, ok=False, failure=str(failure))


def _reference_columns(table: str, contracts: dict[str, Contract]) -> list[str]:
    """Columns of ``table`` that other contracts' rules look up."""
    cols: set[str] = set()
    for c in contracts.values():
        cols |= {fk.ref_column for fk in c.foreign_keys if fk.table == table}
        cols |= {e.ref_key for e in c.not_after_event if e.table == table}
        cols |= {e.event_column for e in c.not_after_event if e.table == table}
        cols |= {col.allowed_from.split(".")[1] for col in c.columns
                 if col.allowed_from and col.allowed_from.split(".")[0] == table}
    return sorted(cols)


def load_references(contract: Contract, out: Path,
                    contracts: dict[str, Contract] | None = None) -> dict[str, pl.DataFrame]:
    """Columns of already ingested upstream tables that ``contract``'s rules use.

    Reads ``out/sources/<table>/``; a table that is missing there (not ingested
    or failed) is simply absent, and the rules that need it fail with that reason.
    """
    contracts = contracts or load_contracts()
    refs: dict[str, pl.DataFrame] = {}
    for table in contract.depends_on:
        folder = out / "sources" / table
        cols = _reference_columns(table, contracts)
        if folder.exists() and cols:
            refs[table] = pl.scan_parquet(folder / "**" / "*.parquet").select(cols).collect()
    return refs


def ingest_source(table: str, deliveries: list[Path], settings: IngestSettings,
                  contracts: dict[str, Contract] | None = None) -> TableResult:
    """Ingest one table, reading its upstream references from ``settings.out``.

    This is the unit a Dagster asset materialises: upstream tables must have
    been ingested first (the asset graph follows :func:`dependency_order`).
    """
    contracts = contracts or load_contracts()
    contract = contracts[table]
    try:
        batch = _Deliveries.read(deliveries)
    except ManifestError as exc:
        return _manifest_failure(table, exc)
    res, _ = ingest_table(contract, batch.files(table), batch.period,
                          load_references(contract, settings.out, contracts), settings,
                          batch.unlisted(table))
    return res


def deliveries_in(landing: Path) -> list[Path]:
    """Complete deliveries under ``landing`` (folders with a manifest), oldest first.

    Delivery folders are named by their last month (``YYYY-MM``) or any name
    that sorts in delivery order.
    """
    return sorted(p.parent for p in landing.glob("*/manifest.json"))
