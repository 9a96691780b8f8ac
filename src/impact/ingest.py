"""Ingest: landing deliveries -> validated, pseudonymised, typed source tables.

For each table of the contracts, in dependency order (reference tables first,
then the population register, employers, and the rest):

1. **read** every file of the table from every delivery (manifest order),
   checking row count and SHA-256 against the manifest;
2. **structure**: required columns present (missing: blocking failure; extra:
   dropped and reported);
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
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from impact import personal_code
from impact.atomic import write_parquet
from impact.contracts.model import Contract, dependency_order, load_contracts
from impact.contracts.rules import DELIVERY, FILE, META, ROW, TableFailure, check, flag
from impact.manifest import DeliveryManifest, FileEntry, sha256_file
from impact.pseudonym import PseudonymKey, looks_pseudonymised_expr, pseudonymise_frame

QUARANTINE_COLUMNS = ("table", "source_file", "row_number", "rules", "values")


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
    """

    out: Path
    key: PseudonymKey
    already_pseudonymised: bool = False
    verify_checksums: bool = True
    gx_sample: int = 100_000
    parallel_groups: int = 2


def _label(path: Path, entry: FileEntry) -> str:
    """``<delivery folder>/<file>``: unique across deliveries."""
    return f"{path.parent.name}/{entry.path}"


def _read(path: Path, entry: FileEntry, seq: int, contract: Contract) -> pl.DataFrame:
    try:
        if entry.format == "csv":
            df = pl.read_csv(path, infer_schema=False, encoding="utf8", raise_if_empty=False,
                             truncate_ragged_lines=False)
        else:
            df = pl.read_parquet(path)
    except Exception as exc:  # the reader's message names the problem; never the values
        raise TableFailure(contract.table, _label(path, entry), None, "readable",
                           f"cannot be read as {entry.format}: {type(exc).__name__}") from None
    return df.with_columns(
        pl.int_range(1, df.height + 1, dtype=pl.Int64).alias(ROW),
        pl.lit(_label(path, entry)).alias(FILE),
        pl.lit(seq, dtype=pl.Int32).alias(DELIVERY),
    )


def _structure(df: pl.DataFrame, contract: Contract, file: str) -> list[str]:
    cols = set(df.columns) - set(META)
    missing = [c for c in contract.names if c not in cols]
    if missing:
        close = sorted(cols - set(contract.names))
        hint = f"; columns not in the contract: {close}" if close else ""
        raise TableFailure(contract.table, file, missing[0], "columns",
                           f"required column(s) {missing} missing{hint}")
    return sorted(cols - set(contract.names))


def _identity(df: pl.DataFrame, contract: Contract, settings: IngestSettings
              ) -> tuple[pl.DataFrame, dict[str, pl.Series]]:
    """Validate personal codes on the raw values, then pseudonymise identifiers."""
    flags: dict[str, pl.Series] = {}
    for c in contract.columns:
        v = pl.col(c.name)
        if not (c.personal_code or c.pseudonymise):
            continue
        # identifiers repeat (80 M reports, 1.2 M persons): judge each distinct value once
        distinct = df.select(v.unique().drop_nulls())
        if settings.already_pseudonymised and c.pseudonymise:
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
        if c.personal_code:
            bad = distinct.filter(~personal_code.valid_expr(v))
            flags[f"personal_code:{c.name}"] = df.select(
                v.is_in(bad[c.name].implode())).to_series()
        if c.pattern and c.pseudonymise:
            # format rules on identifiers run on the raw value, before hashing
            bad = distinct.filter(~v.str.contains(c.pattern))
            flags[f"pattern:{c.name}"] = df.select(v.is_in(bad[c.name].implode())).to_series()
    domains = {c.name: c.pseudonymise for c in contract.columns if c.pseudonymise}
    if domains and not settings.already_pseudonymised:
        df = pseudonymise_frame(df, domains, settings.key)
    return df, flags


def _values_json(contract: Contract) -> pl.Expr:
    """The row's contract columns as a JSON object (identifiers already pseudonymised)."""
    return pl.struct([pl.col(c).cast(pl.Utf8) for c in contract.names]).struct.json_encode()


def _resolve(checked: pl.DataFrame, rules: list[str], contract: Contract
             ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Split into accepted rows, quarantine records and a per-file tally."""
    any_bad = pl.any_horizontal([pl.col(flag(r)) for r in rules]) if rules else pl.lit(False)
    names = pl.concat_str(
        [pl.when(pl.col(flag(r))).then(pl.lit(r)) for r in rules], separator=";",
        ignore_nulls=True)
    df = checked.with_columns(any_bad.alias("__bad"))
    bad = df.filter(pl.col("__bad"))
    good = df.filter(~pl.col("__bad")).select(*META, *contract.names)
    # exact duplicates: identical in every contract column. Only rows whose key (or,
    # without a key, whose every column) repeats can be duplicates: compare those in full.
    probe = contract.key or contract.names
    maybe = pl.struct(probe).is_duplicated()
    good = good.with_columns(
        pl.when(maybe).then(pl.struct(contract.names).is_first_distinct()).otherwise(True)
        .alias("__first"))
    dups = good.filter(~pl.col("__first")).group_by(FILE).len("duplicates")
    good = good.filter(pl.col("__first")).drop("__first")
    superseded = pl.DataFrame(schema={FILE: pl.Utf8, "superseded": pl.UInt32})
    conflict = pl.DataFrame()
    if contract.key:
        if contract.version_column:
            # a correction: same key, later version (or later delivery) wins; only the
            # few rows whose key repeats need ordering
            repeated = pl.struct(contract.key).is_duplicated()
            good = good.with_columns(repeated.alias("__rep"))
            multi = good.filter(pl.col("__rep")).sort(
                [*contract.key, contract.version_column, DELIVERY, ROW])
            multi = multi.with_columns(pl.struct(contract.key).is_last_distinct().alias("__keep"))
            superseded = multi.filter(~pl.col("__keep")).group_by(FILE).len("superseded")
            good = pl.concat([good.filter(~pl.col("__rep")),
                              multi.filter(pl.col("__keep")).drop("__keep")]).drop("__rep")
        else:
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
    tally = (
        pl.DataFrame({FILE: pl.concat([good[FILE], quarantine["source_file"]]).unique()})
        .join(good.group_by(FILE).len("accepted"), on=FILE, how="left")
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
        if not path.exists():
            raise TableFailure(contract.table, label, None, "present",
                               "file listed in the manifest is missing")
        if settings.verify_checksums and sha256_file(path) != entry.sha256:
            raise TableFailure(contract.table, label, None, "manifest",
                               "SHA-256 differs from the manifest (changed or truncated)")
        df = _read(path, entry, seq, contract)
        if df.height != entry.rows:
            raise TableFailure(contract.table, label, None, "manifest",
                               f"{df.height} rows read, manifest says {entry.rows}")
        extra |= set(_structure(df, contract, label))
        df = df.select(*contract.names, *META)
        frames.append(df.with_columns(pl.col(c).cast(pl.Utf8) for c in contract.names
                                      if df.schema[c] == pl.Null))
    return pl.concat(frames, how="vertical_relaxed") if len(frames) > 1 else frames[0]


def ingest_table(contract: Contract, files: list[tuple[Path, FileEntry, int]],
                 period: tuple[date, date], references: dict[str, pl.DataFrame],
                 settings: IngestSettings) -> tuple[TableResult, pl.LazyFrame | None]:
    """Ingest all files of one table.

    Returns the result and a lazy scan of the clean output (``None`` when the
    table failed; a failed table's previous output is removed so that nothing
    downstream can use stale rows).
    """
    t0 = time.perf_counter()
    res = TableResult(table=contract.table, ok=False)
    folder = settings.out / "sources" / contract.table
    staging = settings.out / "sources" / f".{contract.table}.staging"
    try:
        if not files:
            raise TableFailure(contract.table, "-", None, "present",
                               "no file of this table in the delivery manifest")
        if staging.exists():
            shutil.rmtree(staging)
        extra: set[str] = set()
        groups = _groups(contract, files)

        def one(i: int) -> tuple[list[FileReconciliation], pl.DataFrame, dict[str, int]]:
            group = groups[i]
            raw = _load(contract, group, settings, extra)
            label = _label(*group[0][:2]) if len(group) == 1 else f"{len(group)} files"
            raw, pc_flags = _identity(raw, contract, settings)
            checked = check(raw, contract, label, period, references, pc_flags)
            del raw
            good, quarantine, tally = _resolve(checked.frame, checked.rules, contract)
            sums = checked.frame.select(pl.col(flag(r)).sum() for r in checked.rules).row(0)
            hit = {r: int(n) for r, n in zip(checked.rules, sums, strict=True) if n}
            del checked
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
            _write_clean(contract, good.drop(ROW, DELIVERY).rename({FILE: "source_file"}),
                         staging, part=i)
            return recs, quarantine, hit

        workers = max(1, min(settings.parallel_groups, len(groups)))
        if workers == 1:
            outcomes = [one(i) for i in range(len(groups))]
        else:
            # polars releases the GIL: year groups overlap their I/O and single-threaded parts
            with ThreadPoolExecutor(max_workers=workers) as pool:
                outcomes = list(pool.map(one, range(len(groups))))
        quarantines, hits = [], {}
        for recs, quarantine, hit in outcomes:
            res.files.extend(recs)
            quarantines.append(quarantine)
            for r, n in hit.items():
                hits[r] = hits.get(r, 0) + n
        res.extra_columns = sorted(extra)
        res.rules_hit = hits
        unbalanced = [f.file for f in res.files if not f.balanced]
        if unbalanced:
            raise TableFailure(contract.table, unbalanced[0], None, "reconciliation",
                               "rows in != accepted + quarantined + duplicates + superseded")
        if folder.exists():
            shutil.rmtree(folder)
        staging.replace(folder)
        write_parquet(pl.concat(quarantines, how="vertical_relaxed"),
                        settings.out / "quarantine" / f"{contract.table}.parquet")
        res.ok = True
        res.output = str(folder)
        clean = pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)
        if settings.gx_sample:
            _cross_check(contract, clean, period, references, settings, res)
        return res, clean
    except TableFailure as failure:
        res.failure = str(failure)
        for stale in (staging, folder):
            if stale.exists():
                shutil.rmtree(stale)
        return res, None
    finally:
        res.seconds = round(time.perf_counter() - t0, 2)


def _cross_check(contract: Contract, clean: pl.LazyFrame, period: tuple[date, date],
                 references: dict[str, pl.DataFrame], settings: IngestSettings,
                 res: TableResult) -> None:
    """Great Expectations on a sample of the clean table; report kept as JSON."""
    from impact.contracts import gx as gxc

    n = clean.select(pl.len()).collect().item()
    # a systematic sample over the whole table (every year), then a random one
    df = clean.gather_every(max(1, n // (settings.gx_sample * 2))).collect()
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str) + "\n",
                    encoding="utf-8")


def _write_clean(contract: Contract, clean: pl.DataFrame, folder: Path, part: int) -> None:
    """Write one group of clean rows (by year for year-split tables)."""
    if contract.partition_by_year and clean.height:
        year = pl.col(contract.partition_by_year).dt.year().alias("__y")
        for (y,), chunk in clean.with_columns(year).group_by("__y", maintain_order=True):
            write_parquet(chunk.drop("__y"), folder / f"year={y}" / f"part-{part}.parquet")
    else:
        write_parquet(clean, folder / f"part-{part}.parquet")


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


def ingest(deliveries: list[Path], settings: IngestSettings,
           tables: list[str] | None = None, contracts: dict[str, Contract] | None = None
           ) -> dict[str, TableResult]:
    """Ingest deliveries (oldest first) into ``settings.out``.

    Returns one :class:`TableResult` per table; a failed table does not stop the
    others, except tables whose rules need it (they fail with that reason).
    """
    contracts = contracts or load_contracts()
    batch = _Deliveries.read(deliveries)
    period = batch.period
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
    for name in order:
        contract = contracts[name]
        res, clean = ingest_table(contract, batch.files(name), period, references, settings)
        results[name] = res
        keep = _reference_columns(name, contracts)
        if clean is not None and keep:
            references[name] = clean.select(keep).collect()
    report = {n: {**asdict(r), "rows_in": r.rows_in, "accepted": r.accepted,
                  "quarantined": r.quarantined} for n, r in results.items()}
    path = settings.out / "reconciliation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return results


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
    batch = _Deliveries.read(deliveries)
    res, _ = ingest_table(contract, batch.files(table), batch.period,
                          load_references(contract, settings.out, contracts), settings)
    return res


def deliveries_in(landing: Path) -> list[Path]:
    """Complete deliveries under ``landing`` (folders with a manifest), oldest first.

    Delivery folders are named by their last month (``YYYY-MM``) or any name
    that sorts in delivery order.
    """
    return sorted(p.parent for p in landing.glob("*/manifest.json"))
