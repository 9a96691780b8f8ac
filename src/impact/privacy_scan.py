"""Scan artifacts for raw personal codes and for pseudonym key material.

Used by tests and by the final check of a run: after ingest, no file written by the
pipeline (Parquet, CSV, JSON, logs, HTML, the Dagster SQLite storage, ...) may contain a
raw personal code of the input or the pseudonym key.

What is searched
----------------
Every regular file under the given paths (recursively, symlinked directories not
followed), each in up to three ways:

* **raw bytes**, streamed in 16 MiB chunks, for every file type;
* **decoded values** of Parquet and Arrow IPC (Feather v2) files, found by their magic
  bytes: compression and encoding hide byte patterns, so the distinct values of every
  string/binary column (nested lists, structs and maps included) are scanned too, and
  integer and float columns are checked for codes stored as numbers (a code column
  read by pandas with missing values becomes float, ``12078512347.0``);
* **decoded values** of SQLite databases (all tables, read-only and without locking),
  since adjacent text fields of a record touch each other in the raw bytes;
* the **content** of gzip, bz2 and xz files and of zip members (raw bytes only);
* the **file path** itself (a file named after a person is a leak too).

Codes are matched in the compact ``DDMMYYCNNNK`` and hyphenated ``DDMMYY-CNNNK`` forms.
The scan is a vectorised numpy pass over the bytes that finds digit runs; the
candidate windows (an isolated run of exactly 11 digits = *compact*; 6 digits, a hyphen,
5 digits = *hyphenated*; every 11-digit window inside a longer digit run = *embedded*)
are converted to integers and looked up in the sorted array of needles. This is one
pass per buffer whatever the number of needles, about 100-300 MB/s on one core.

False positives and negatives
-----------------------------
* A candidate inside a pseudonym (``P``/``E`` + 32 hex digits, see
  :mod:`impact.pseudonym`) is ignored: 128-bit hex strings contain 11-digit runs that
  would match one of ~10^6 codes by chance about once per 10^5 pseudonyms.
* *Embedded* matches (a code inside a longer digit run, e.g. values glued together in an
  uncompressed Arrow buffer) are reported with ``form="embedded"``. Long digit runs
  occur naturally (17-digit float fractions), and each 11-digit window of them matches one
  of ``N`` codes with probability ``N / 10**11``: a text file with a million printed
  floats gives about 80 chance matches for 1.2 M codes. Pass ``embedded=False`` to skip
  them, or judge ``embedded`` findings separately.
* Not found: codes held as text in other encodings (UTF-16/32, e.g. numpy ``<U`` arrays
  in ``.npy``/pickle files), integer codes that lost a leading zero in a text file,
  codes split by other separators, and values inside compressed formats that are not
  listed above (pickles are never unpickled).

Output never contains a raw code: :class:`Finding` holds a redacted form
(``12****-***47``), and paths and column names are redacted when printed.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import lzma
import os
import re
import sqlite3
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from impact.personal_code import normalise
from impact.pseudonym import DOMAINS, PSEUDONYM_REGEX, PseudonymKey

__all__ = ["Finding", "redact", "scan_for_codes", "scan_for_key"]

#: bytes read per chunk when streaming a file
CHUNK_BYTES = 16 << 20
_WINDOW_BATCH = 1 << 20  # 11-digit windows evaluated per numpy batch (~100 MB)
_SQLITE_BATCH = 50_000
_POW11 = 10 ** np.arange(10, -1, -1, dtype=np.int64)
_AR11, _AR6, _AR5 = np.arange(11), np.arange(6), np.arange(5)
_MAX_CODE = 10**11
_PSEUDO_BYTES = re.compile(PSEUDONYM_REGEX.strip("^$").encode())
_PSEUDO_PREFIXES = frozenset(ord(p) for p in DOMAINS.values())
_HEX_LOWER = frozenset(b"0123456789abcdef")
#: bytes a code or pseudonym token can contain; chunks are cut outside such tokens
_TOKEN_TABLE = np.zeros(256, dtype=bool)
_TOKEN_TABLE[list(b"0123456789abcdef-" + bytes(_PSEUDO_PREFIXES))] = True
_CODE_TEXT = re.compile(r"[0-9]{6}-?[0-9]{5}")


# --------------------------------------------------------------------------- findings
@dataclass(frozen=True, order=True)
class Finding:
    """One needle found in one place of one file.

    Attributes
    ----------
    path
        The file (for a zip member: the zip file). This is the real path, which itself
        holds the code when ``location == "file path"``; ``str`` and ``repr`` of a
        finding redact codes in paths and column names.
    location
        Where in the file: ``"raw bytes"``, ``"file path"``, ``"parquet column 'x'"``,
        ``"arrow column 'x'"``, ``"sqlite table 't' column 'c'"``, ``"gzip content"``,
        ``"zip member 'm'"``, ...
    form
        Codes: ``"compact"``, ``"hyphenated"``, ``"embedded"`` (inside a longer digit
        run) or ``"number"`` (an integer/float column value). Keys: ``"raw"``, ``"hex"``,
        ``"HEX"``, ``"base64"``, ``"base64url"``.
    needle
        Redacted description of what was found, never the needle itself: a code as
        ``12****-***47``, a key as ``key <fingerprint>`` or
        ``person sub-key of key <fingerprint>``.
    count
        Number of occurrences (for decoded columns: rows holding it).
    """

    path: Path
    location: str
    form: str
    needle: str
    count: int

    def __str__(self) -> str:
        return (
            f"{_redact_text(str(self.path))} [{_redact_text(self.location)}]: "
            f"{self.needle} ({self.form}) x{self.count}"
        )

    def __repr__(self) -> str:
        return (
            f"Finding(path={_redact_text(repr(str(self.path)))}, "
            f"location={_redact_text(repr(self.location))}, form={self.form!r}, "
            f"needle={self.needle!r}, count={self.count})"
        )


def redact(code: str) -> str:
    """Redacted form of a personal code: ``"120785-12347"`` -> ``"12****-***47"``."""
    c = re.sub(r"[\s-]", "", code)
    return f"{c[:2]}****-***{c[-2:]}" if len(c) == 11 else "*" * len(c)


def _redact_text(text: str) -> str:
    """Redact everything that looks like a personal code in free text (paths, names)."""
    return _CODE_TEXT.sub(lambda m: redact(m.group(0)), text)


# --------------------------------------------------------------------------- sources
# A scanned file is turned into blocks of three kinds:
#   _Stream(location, fileobj)          raw bytes, read in chunks
#   _Text(location, data, starts, rows) decoded values joined by b"\n"; ``starts`` are the
#                                       offsets of the values (None: one value per row),
#                                       ``rows(i)`` the number of rows holding value i
#   _Numbers(location, values, rows)    distinct integral numbers of a column


@dataclass
class _Stream:
    location: str
    fileobj: _SafeReader


@dataclass
class _Text:
    location: str
    data: np.ndarray  # uint8
    starts: np.ndarray | None
    rows: Callable[[int], int] | None


@dataclass
class _Numbers:
    location: str
    values: np.ndarray  # int64, distinct, 0 <= v < 10**11
    rows: Callable[[int], int]


_Block = _Stream | _Text | _Numbers


def _iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    seen: set[Path] = set()
    for root in paths:
        p = Path(root)
        if not p.exists():
            raise FileNotFoundError(f"scan path does not exist: {_redact_text(str(p))}")
        for f in _walk(p) if p.is_dir() else [p]:
            if not f.is_file():  # sockets, fifos, broken links
                continue
            real = f.resolve()
            if real not in seen:
                seen.add(real)
                yield f


def _walk(root: Path) -> Iterator[Path]:
    for d, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for f in sorted(files):
            yield Path(d) / f


def _warn(path: Path, what: str, exc: BaseException, raw_scanned: bool = True) -> None:
    """Warn about an unreadable part of a file (exception type only: messages may quote data)."""
    tail = "; its raw bytes were scanned" if raw_scanned else ""
    warnings.warn(
        f"privacy scan: could not {what} {_redact_text(str(path))} ({type(exc).__name__}){tail}",
        RuntimeWarning,
        stacklevel=4,
    )


class _SafeReader:
    """File wrapper whose read errors (truncated archives, I/O errors) end the stream with a
    warning instead of stopping the scan; what was read before the error is kept (reads go
    in pieces of 64 KiB, so a truncated archive is scanned up to about the damage)."""

    _PIECE = 1 << 16

    def __init__(self, f: IO[bytes], path: Path, what: str, raw_scanned: bool) -> None:
        self.f, self.path, self.what, self.raw_scanned = f, path, what, raw_scanned
        self.failed = False

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        remaining = n
        while remaining > 0 and not self.failed:
            try:
                piece = self.f.read(min(remaining, self._PIECE))
            except Exception as exc:  # noqa: BLE001 - zlib/lzma/zip/OS errors alike
                _warn(self.path, self.what, exc, self.raw_scanned)
                self.failed = True
                break
            if not piece:
                break
            parts.append(piece)
            remaining -= len(piece)
        return b"".join(parts)


def _blocks(path: Path) -> Iterator[_Block]:
    """Every block of a file (see the comment above :class:`_Stream`)."""
    name = str(path).encode("utf-8", "surrogateescape")
    yield _Text("file path", np.frombuffer(name, dtype=np.uint8), None, None)
    try:
        f = path.open("rb")
    except OSError as exc:
        _warn(path, "read", exc, raw_scanned=False)
        return
    with f:
        head = f.read(16)
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
        f.seek(0)
        yield _Stream("raw bytes", _SafeReader(f, path, "read", raw_scanned=False))
    if head.startswith(b"PAR1") and tail == b"PAR1":
        yield from _decoded(path, "parquet", _parquet_blocks)
    elif head.startswith(b"ARROW1"):
        yield from _decoded(path, "arrow", _arrow_file_blocks)
    elif head.startswith(b"SQLite format 3\x00"):
        yield from _decoded(path, "sqlite", _sqlite_blocks)
    elif head.startswith(b"\x1f\x8b"):
        yield from _decompressed(path, "gzip", gzip.open)
    elif head.startswith(b"BZh"):
        yield from _decompressed(path, "bz2", bz2.open)
    elif head.startswith(b"\xfd7zXZ\x00"):
        yield from _decompressed(path, "xz", lzma.open)
    elif head.startswith(b"PK\x03\x04"):
        yield from _decoded(path, "zip", _zip_blocks)


def _decoded(path: Path, kind: str, fn: Callable[[Path], Iterator[_Block]]) -> Iterator[_Block]:
    try:
        yield from fn(path)
    except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the scan
        _warn(path, f"decode ({kind})", exc)


def _decompressed(path: Path, kind: str, opener: Callable[..., Any]) -> Iterator[_Block]:
    def gen(p: Path) -> Iterator[_Block]:
        with opener(p, "rb") as f:
            yield _Stream(f"{kind} content", _SafeReader(f, path, f"decompress ({kind})", True))

    yield from _decoded(path, kind, gen)


def _zip_blocks(path: Path) -> Iterator[_Block]:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            member = info.filename.encode("utf-8", "surrogateescape")
            yield _Text(
                f"zip member name {info.filename!r}", np.frombuffer(member, np.uint8), None, None
            )
            with zf.open(info) as f:
                what = f"decompress (zip member {info.filename!r})"
                yield _Stream(f"zip member {info.filename!r}", _SafeReader(f, path, what, True))


def _parquet_blocks(path: Path) -> Iterator[_Block]:
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    for rg in range(pf.num_row_groups):
        for name in names:
            col = pf.read_row_group(rg, columns=[name]).column(0)
            yield from _arrow_blocks("parquet", name, col)


def _arrow_file_blocks(path: Path) -> Iterator[_Block]:
    with pa.memory_map(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            for name, col in zip(batch.schema.names, batch.columns, strict=True):
                yield from _arrow_blocks("arrow", name, pa.chunked_array([col]))


def _chunks_of(arrays: Iterable[pa.Array]) -> pa.ChunkedArray | None:
    chunks = list(arrays)
    return pa.chunked_array(chunks) if chunks else None


def _arrow_blocks(kind: str, name: str, col: pa.ChunkedArray) -> Iterator[_Block]:
    """Blocks of the values of one (possibly nested) Arrow column; ``name`` is its path."""
    location = f"{kind} column {name!r}"
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        yield from _binary_blocks(location, col.cast(pa.large_binary()))
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        yield from _number_blocks(location, col)
    elif (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
        or pa.types.is_map(t)
    ):
        if pa.types.is_map(t):
            keys = _chunks_of(c.keys for c in col.chunks)
            items = _chunks_of(c.items for c in col.chunks)
            if keys is not None and items is not None:
                yield from _arrow_blocks(kind, f"{name}.keys", keys)
                yield from _arrow_blocks(kind, f"{name}.values", items)
        else:
            flat = _chunks_of(c.flatten() for c in col.chunks)
            if flat is not None:
                yield from _arrow_blocks(kind, name, flat)
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            field = _chunks_of(c.field(i) for c in col.chunks)
            if field is not None:
                yield from _arrow_blocks(kind, f"{name}.{t.field(i).name}", field)


def _binary_blocks(location: str, col: pa.ChunkedArray) -> Iterator[_Block]:
    uniq = pc.drop_null(pc.unique(col))
    if len(uniq) == 0:
        return
    # pseudonyms cannot hold a raw code and make up most values of linked tables
    uniq = uniq.filter(pc.invert(pc.match_substring_regex(uniq, PSEUDONYM_REGEX)))
    if len(uniq) == 0:
        return
    sep = pa.scalar(b"\n", pa.large_binary())
    joined = pc.binary_join_element_wise(uniq, pa.scalar(b"", pa.large_binary()), sep)
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    offsets = offsets[joined.offset : joined.offset + len(joined) + 1]
    data = np.frombuffer(joined.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]

    def rows(i: int) -> int:
        return int(pc.sum(pc.equal(col, uniq[i])).as_py() or 0)

    yield _Text(location, data, offsets - offsets[0], rows)


def _number_blocks(location: str, col: pa.ChunkedArray) -> Iterator[_Block]:
    t = col.type
    if pa.types.is_integer(t) and t.bit_width < 32:
        return  # cannot hold an 11-digit code (nor a 10-digit one)
    uniq = pc.drop_null(pc.unique(col)).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):
        with np.errstate(invalid="ignore"):
            keep = np.isfinite(uniq) & (uniq == np.floor(uniq))
        uniq = uniq[keep]
    keep = (uniq >= 0) & (uniq < _MAX_CODE)
    values = uniq[keep].astype(np.int64)
    if values.size == 0:
        return
    scalar_type = t

    def rows(v: int) -> int:
        return int(pc.sum(pc.equal(col, pa.scalar(v).cast(scalar_type))).as_py() or 0)

    yield _Numbers(location, values, rows)


def _sqlite_blocks(path: Path) -> Iterator[_Block]:
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"
    con = sqlite3.connect(uri, uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            try:
                cur = con.execute(f"SELECT * FROM {quoted}")  # noqa: S608 - name from the db
                names = [d[0] for d in cur.description]
                while rows := cur.fetchmany(_SQLITE_BATCH):
                    yield from _sqlite_batch(table, names, rows)
            except sqlite3.Error as exc:  # e.g. a virtual table whose module is missing
                _warn(path, f"read table {table!r} of", exc)
    finally:
        con.close()


def _sqlite_batch(table: str, names: list[str], rows: list[tuple[Any, ...]]) -> Iterator[_Block]:
    for j, name in enumerate(names):
        location = f"sqlite table {table!r} column {name!r}"
        texts: list[bytes] = []
        numbers: list[int] = []
        for row in rows:
            v = row[j]
            if isinstance(v, str):
                texts.append(v.encode("utf-8", "surrogateescape"))
            elif isinstance(v, bytes):
                texts.append(v)
            elif isinstance(v, int | float) and v == v and 0 <= v < _MAX_CODE and v == int(v):
                numbers.append(int(v))
        if texts:
            yield _Text(location, np.frombuffer(b"\n".join(texts), np.uint8), None, None)
        if numbers:
            values, counts = np.unique(np.asarray(numbers, dtype=np.int64), return_counts=True)
            count_of = dict(zip(values.tolist(), counts.tolist(), strict=True))
            yield _Numbers(location, values, count_of.__getitem__)


# --------------------------------------------------------------------------- code matching
def _in_sorted(values: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``values`` are in the sorted array ``needles``."""
    if needles.size == 0 or values.size == 0:
        return np.zeros(values.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(needles, values), needles.size - 1)
    return needles[idx] == values


def _inside_pseudonym(a: np.ndarray, start: int, end: int) -> bool:
    """Is ``a[start:end]`` part of a pseudonym token ``[PE][0-9a-f]{32}``?"""
    for q in range(max(0, end - 33), start):
        if a[q] in _PSEUDO_PREFIXES and q + 33 <= a.size:
            token = a[q + 1 : q + 33].tobytes()
            after_ok = q + 33 == a.size or int(a[q + 33]) not in _HEX_LOWER
            if after_ok and _PSEUDO_BYTES.fullmatch(bytes([a[q]]) + token):
                return True
    return False


def _lookup(
    a: np.ndarray, pos: np.ndarray, idx: np.ndarray, needles: np.ndarray
) -> tuple[list[int], list[int]]:
    """Positions and values of the windows ``a[idx]`` (11 digits each) that are needles."""
    if pos.size == 0:
        return [], []
    values = (a[idx].astype(np.int64) - 48) @ _POW11
    hit = _in_sorted(values, needles)
    return pos[hit].tolist(), values[hit].tolist()


def _code_hits(a: np.ndarray, needles: np.ndarray, embedded: bool) -> list[tuple[int, int, str]]:
    """``(position, code, form)`` of the needles in a uint8 buffer with no token cut off."""
    if a.size < 11:
        return []
    isdigit = (a - np.uint8(48)) < 10
    edges = np.diff(isdigit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    del isdigit
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    del edges
    lengths = ends - starts
    hits: list[tuple[int, int, str]] = []

    # compact: an isolated run of exactly 11 digits
    pos = starts[lengths == 11]
    for p, v in zip(*_lookup(a, pos, pos[:, None] + _AR11, needles), strict=True):
        if not _inside_pseudonym(a, p, p + 11):
            hits.append((p, v, "compact"))

    # hyphenated: >= 6 digits, "-", >= 5 digits (the 6 + 5 digits next to the hyphen)
    if starts.size > 1:
        gap = (starts[1:] == ends[:-1] + 1) & (lengths[:-1] >= 6) & (lengths[1:] >= 5)
        cand = np.flatnonzero(gap)
        h = ends[cand[a[ends[cand]] == ord("-")]]
        idx = np.concatenate([(h - 6)[:, None] + _AR6, (h + 1)[:, None] + _AR5], axis=1)
        found = _lookup(a, h - 6, idx, needles)
        hits.extend((p, v, "hyphenated") for p, v in zip(*found, strict=True))

    # embedded: codes glued together (>= 2 non-overlapping needles in one digit run)
    if embedded:
        long = np.flatnonzero(lengths >= 22)
        if long.size:
            nwin = lengths[long] - 10
            cum = np.cumsum(nwin)
            window_start = np.arange(cum[-1]) + np.repeat(starts[long] - (cum - nwin), nwin)
            run_end = np.repeat(ends[long], nwin)
            by_run: dict[int, list[tuple[int, int]]] = {}
            for lo in range(0, window_start.size, _WINDOW_BATCH):
                ws = window_start[lo : lo + _WINDOW_BATCH]
                found = _lookup(a, np.arange(lo, lo + ws.size), ws[:, None] + _AR11, needles)
                for i, v in zip(*found, strict=True):
                    by_run.setdefault(int(run_end[i]), []).append((int(window_start[i]), v))
            for candidates in by_run.values():
                taken: list[tuple[int, int]] = []
                for p, v in sorted(candidates):
                    if (not taken or p >= taken[-1][0] + 11) and not _inside_pseudonym(
                        a, p, p + 11
                    ):
                        taken.append((p, v))
                if len(taken) >= 2:
                    hits.extend((p, v, "embedded") for p, v in taken)
    return hits


def _safe_cut(buf: bytes) -> int:
    """Length of the prefix of ``buf`` that ends outside any code or pseudonym token."""
    tail_start = max(0, len(buf) - 65536)
    tail = np.frombuffer(buf, dtype=np.uint8, offset=tail_start)
    outside = np.flatnonzero(~_TOKEN_TABLE[tail])
    if outside.size:
        return tail_start + int(outside[-1]) + 1
    return len(buf) if len(buf) > 4 * CHUNK_BYTES else 0  # pathological: give up cutting


class _CodeMatcher:
    def __init__(self, needles: np.ndarray, embedded: bool) -> None:
        self.needles = needles
        self.embedded = embedded

    def stream(self, f: _SafeReader) -> Counter[tuple[str, int]]:
        found: Counter[tuple[str, int]] = Counter()
        carry = b""
        while True:
            chunk = f.read(CHUNK_BYTES)
            buf = carry + chunk if carry else chunk
            cut = len(buf) if not chunk else _safe_cut(buf)
            if cut:
                a = np.frombuffer(buf, dtype=np.uint8, count=cut)
                for _, value, form in _code_hits(a, self.needles, self.embedded):
                    found[form, value] += 1
            carry = buf[cut:]
            if not chunk:
                return found

    def text(self, block: _Text) -> Counter[tuple[str, int]]:
        found: Counter[tuple[str, int]] = Counter()
        for pos, value, form in _code_hits(block.data, self.needles, self.embedded):
            if block.starts is None or block.rows is None:
                found[form, value] += 1
            else:
                i = int(np.searchsorted(block.starts, pos, side="right")) - 1
                found[form, value] += block.rows(i)
        return found

    def numbers(self, block: _Numbers) -> Counter[tuple[str, int]]:
        hit = block.values[_in_sorted(block.values, self.needles)]
        return Counter({("number", v): block.rows(v) for v in hit.tolist()})


def _needle_array(codes: Iterable[str | None] | np.ndarray | pl.Series) -> np.ndarray:
    if not isinstance(codes, np.ndarray | pl.Series):
        codes = list(codes)
    compact = pl.Series("c", normalise(codes), dtype=pl.String).drop_nulls()
    bad = int((~compact.str.contains(r"^[0-9]{11}$")).sum())
    if bad:
        raise ValueError(f"{bad} of the codes are not 11 digits after normalisation")
    values = np.sort(compact.cast(pl.Int64).to_numpy())
    return values[np.concatenate(([True], values[1:] != values[:-1]))] if values.size else values


def scan_for_codes(
    paths: Iterable[str | os.PathLike[str]],
    codes: Iterable[str | None] | np.ndarray | pl.Series,
    *,
    embedded: bool = True,
) -> list[Finding]:
    """Search every file under ``paths`` for any of the raw personal ``codes``.

    Parameters
    ----------
    paths
        Files and/or directories (searched recursively).
    codes
        Raw personal codes, hyphenated or compact (None ignored); typically every code
        of the input delivery.
    embedded
        Also report codes inside longer digit runs (``form="embedded"``); see the module
        docstring for their false-positive rate.

    Returns
    -------
    list[Finding]
        Sorted; empty when nothing was found. Findings never hold a raw code.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If a code is not 11 digits after normalisation (the message gives a count only).

    Notes
    -----
    Files that cannot be read or decoded give a :class:`RuntimeWarning` naming the
    (redacted) path; their raw bytes are scanned whenever they can be read.
    """
    needles = _needle_array(codes)
    matcher = _CodeMatcher(needles, embedded)
    findings: list[Finding] = []
    if needles.size == 0:
        return findings
    for path in _iter_files(paths):
        found: Counter[tuple[str, str, int]] = Counter()
        for block in _blocks(path):
            if isinstance(block, _Stream):
                counts = matcher.stream(block.fileobj)
            elif isinstance(block, _Text):
                counts = matcher.text(block)
            else:
                counts = matcher.numbers(block)
            for (form, value), n in counts.items():
                found[block.location, form, value] += n
        findings.extend(
            Finding(path, loc, form, redact(f"{value:011d}"), n)
            for (loc, form, value), n in found.items()
            if n
        )
    return sorted(findings)


# --------------------------------------------------------------------------- key matching
def _key_needles(key: PseudonymKey) -> list[tuple[str, str, bytes]]:
    """``(description, form, bytes)`` of every representation of the key and sub-keys."""
    secrets = [(f"key {key.fingerprint}", bytes.fromhex(key.to_hex()))]
    secrets += [
        (f"{domain} sub-key of key {key.fingerprint}", key.domain_key(domain)) for domain in DOMAINS
    ]
    out: list[tuple[str, str, bytes]] = []
    for what, secret in secrets:
        forms = {
            "raw": secret,
            "hex": secret.hex().encode(),
            "HEX": secret.hex().upper().encode(),
            "base64": base64.b64encode(secret).rstrip(b"="),
            "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
        }
        seen: set[bytes] = set()
        for form, needle in forms.items():
            if needle not in seen:
                seen.add(needle)
                out.append((what, form, needle))
    return out


def _find_all(data: bytes, needle: bytes, min_end: int = 0) -> list[int]:
    """Start positions of ``needle`` in ``data`` whose match ends after ``min_end``."""
    out = []
    i = data.find(needle, max(0, min_end - len(needle) + 1))
    while i >= 0:
        out.append(i)
        i = data.find(needle, i + 1)
    return out


class _KeyMatcher:
    def __init__(self, needles: list[tuple[str, str, bytes]]) -> None:
        self.needles = needles
        self.overlap = max(len(n) for _, _, n in needles) - 1

    def stream(self, f: _SafeReader) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        carry = b""
        while chunk := f.read(CHUNK_BYTES):
            buf = carry + chunk
            for what, form, needle in self.needles:
                # count matches that end in the new chunk; earlier ones were counted
                found[what, form] += len(_find_all(buf, needle, len(carry)))
            carry = buf[-self.overlap :] if self.overlap else b""
        return found

    def text(self, block: _Text) -> Counter[tuple[str, str]]:
        found: Counter[tuple[str, str]] = Counter()
        data = block.data.tobytes()
        for what, form, needle in self.needles:
            for pos in _find_all(data, needle):
                if block.starts is None or block.rows is None:
                    found[what, form] += 1
                else:
                    i = int(np.searchsorted(block.starts, pos, side="right")) - 1
                    found[what, form] += block.rows(i)
        return found


def scan_for_key(paths: Iterable[str | os.PathLike[str]], key: PseudonymKey) -> list[Finding]:
    """Search every file under ``paths`` for the key material of ``key``.

    Looks for the master key and every domain sub-key as raw bytes, lower- and
    upper-case hex and (unpadded) standard and URL-safe base64, in the raw bytes and in
    the decoded values of Parquet, Arrow and SQLite files (see :func:`scan_for_codes`).
    A key file under ``paths`` is of course reported.

    Returns
    -------
    list[Finding]
        Sorted; ``needle`` is ``"key <fingerprint>"`` or
        ``"<domain> sub-key of key <fingerprint>"``, ``form`` the representation.
    """
    if not isinstance(key, PseudonymKey):
        raise TypeError("key must be a PseudonymKey")
    matcher = _KeyMatcher(_key_needles(key))
    findings: list[Finding] = []
    for path in _iter_files(paths):
        found: Counter[tuple[str, str, str]] = Counter()
        for block in _blocks(path):
            if isinstance(block, _Stream):
                counts = matcher.stream(block.fileobj)
            elif isinstance(block, _Text):
                counts = matcher.text(block)
            else:
                continue
            for (what, form), n in counts.items():
                found[block.location, form, what] += n
        findings.extend(
            Finding(path, loc, form, what, n) for (loc, form, what), n in found.items() if n
        )
    return sorted(findings)
