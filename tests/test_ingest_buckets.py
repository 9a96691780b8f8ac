"""Ingest in buckets (``bucket_rows``): the same result as validating each group at once.

A group of files larger than ``bucket_rows`` is spilled by a hash of its person (or other
key) column and validated bucket by bucket, so that memory follows the setting rather than
the population. Every rule that compares rows compares rows of one bucket, so the accepted
rows, quarantine, reconciliation and rules hit must equal the unbucketed ingest; only the
clean table's files (one per bucket) and hence its row order differ.

Checked here:

* a delivery with every kind of injected error, ingested with and without buckets;
* the whole bad-input catalogue (row-level kinds, ragged rows, blocking failures, the
  Parquet kinds) re-run with buckets: the same quarantine and the same failure messages;
* incremental ingest with buckets (two deliveries; a rerun reuses every bucket's part);
* the spill, which holds raw personal codes, never outlives the group, even on failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

import tests.test_bad_input_catalogue as cat
import tests.test_ingest_incremental as inc
from impact.contracts.model import load_contracts
from impact.contracts.rules import TypeErrors, flag
from impact.ingest import (
    CACHE_DIR,
    IngestSettings,
    _bucket_column,
    _every_kth_row,
    deliveries_in,
    ingest,
)
from impact.manifest import DeliveryManifest
from impact.privacy_scan import scan_for_codes
from impact.synth import SynthConfig, generate
from tests.test_bad_input_catalogue import base, base_parquet  # noqa: F401  (fixtures)
from tests.test_ingest import KEY

VID = "vid_monthly_reports"
#: buckets wanted for the largest file of the table under test
BUCKETS = 4


def _no_spill(out: Path) -> None:
    assert not [p for p in out.rglob(".spill-*")], "a spill outlived its group"


# --------------------------------------------------------------------------- whole delivery


def _tables(out: Path, results: dict) -> dict[str, object]:
    """What an ingest produced, independent of file layout and row order."""
    got: dict[str, object] = {}
    for table, r in results.items():
        assert r.ok, (table, r.failure)
        clean = pl.read_parquet(out / "sources" / table / "**" / "*.parquet",
                                hive_partitioning=False)
        got[f"clean/{table}"] = clean.sort(clean.columns)
        got[f"files/{table}"] = r.files
        got[f"hits/{table}"] = r.rules_hit
        got[f"extra/{table}"] = r.extra_columns
    q = pl.concat([pl.read_parquet(p) for p in sorted((out / "quarantine").glob("*.parquet"))])
    got["quarantine"] = q.sort(q.columns)
    return got


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("buckets")
    generate(SynthConfig(persons=1_500, seed=12, inject_errors=True, start="2023-01",
                         end="2026-12"), root)
    landing = deliveries_in(root / "landing")
    whole = ingest(landing, IngestSettings(out=root / "whole", key=KEY, gx_sample=0))
    bucketed = ingest(landing, IngestSettings(out=root / "bucketed", key=KEY, gx_sample=0,
                                              bucket_rows=2_000))
    return root, whole, bucketed


def test_buckets_give_the_same_rows_quarantine_and_reconciliation(dirty) -> None:
    root, whole, bucketed = dirty
    a, b = _tables(root / "whole", whole), _tables(root / "bucketed", bucketed)
    assert sorted(a) == sorted(b)
    for name, x in a.items():
        if isinstance(x, pl.DataFrame):
            assert x.equals(b[name], null_equal=True), name
        else:
            assert x == b[name], name
    # the injected errors are there to be found, in every bucket
    assert sum(f.quarantined for f in bucketed[VID].files) > 20
    assert sum(f.superseded for f in bucketed[VID].files) > 0
    assert sum(f.duplicates for f in bucketed[VID].files) > 0
    _no_spill(root / "bucketed")


def test_a_year_is_written_as_one_part_per_bucket(dirty) -> None:
    root, _, bucketed = dirty
    manifest = DeliveryManifest.read(next((root / "landing").iterdir()))
    rows = {f.year: f.rows for f in manifest.files if f.table == VID}
    for year, n in rows.items():
        parts = sorted((root / "bucketed" / "sources" / VID / f"year={year}").glob("*.parquet"))
        assert len(parts) == -(-n // 2_000), year  # every bucket accepted rows
        assert all("-b" in p.name for p in parts)
    # a small table stays in one part
    assert len(list((root / "bucketed" / "sources" / "ref_cpi").glob("*.parquet"))) == 1


def test_gx_sample_streams_the_rows_a_scan_would_gather(dirty) -> None:
    """The cross-check's systematic sample, read in record batches, is the scan's
    ``gather_every`` (files in scan order, the step carried across files)."""
    root, _, _ = dirty
    folder = root / "bucketed" / "sources" / VID
    assert len(list(folder.glob("**/*.parquet"))) > 8
    scan = pl.scan_parquet(folder / "**" / "*.parquet", hive_partitioning=False)
    n = scan.select(pl.len()).collect().item()
    for target in (1, 7, 1_000, n, 10 * n):
        got, rows = _every_kth_row(folder, target)
        assert rows == n
        assert got.equals(scan.gather_every(max(1, n // target)).collect()), target


def test_spill_holds_raw_codes_only_while_the_group_runs(dirty) -> None:
    root, _, _ = dirty
    codes = pl.read_csv(next((root / "landing").iterdir()) / "pmlp_persons.csv",
                        infer_schema=False)["person_code"].head(300).to_list()
    assert scan_for_codes([root / "bucketed"], codes) == []
    assert not list((root / "bucketed" / CACHE_DIR).rglob(".spill-*"))


def test_bucket_column_keeps_every_cross_row_rule_inside_a_bucket() -> None:
    contracts = load_contracts()
    assert _bucket_column(contracts[VID]) == "person_code"
    assert _bucket_column(contracts["pmlp_residence"]) == "person_code"  # no_overlap key
    assert _bucket_column(contracts["pmlp_children"]) is None  # no key
    for c in contracts.values():
        col = _bucket_column(c)
        if col is not None:
            assert col in c.key and all(col in o.key for o in c.no_overlap)
            assert not any(x.unique and x.name not in c.key for x in c.columns)


def test_type_errors_are_judged_over_all_buckets() -> None:
    """A column whose unparseable share exceeds the limit over the group fails even when
    no single part (here: the first) is over the limit, and vice versa."""
    contract = load_contracts()["ref_cpi"]
    limit = contract.max_type_error_share
    good = pl.DataFrame({c: ["1"] * 100 for c in contract.names})
    bad_col = next(c.name for c in contract.columns if c.type in ("float", "integer"))
    flags = pl.DataFrame({flag(f"type:{c}"): [False] * 100 for c in contract.names})
    t = TypeErrors()
    t.add(good, flags, contract)
    n = int(limit * 300) + 5
    bad_flags = flags.with_columns(
        (pl.int_range(100) < n).alias(flag(f"type:{bad_col}")))
    t.add(good.with_columns(pl.lit("x").alias(bad_col)), bad_flags, contract)
    t.add(good, flags, contract)
    assert t.rows == 300 and t.counts == {bad_col: n}
    with pytest.raises(Exception, match="rule 'type'"):
        t.check(contract, "f")
    ok = TypeErrors()
    for _ in range(3):
        ok.add(good, flags, contract)
    ok.check(contract, "f")


# --------------------------------------------------------------------------- the catalogue


@pytest.fixture
def bucketed(monkeypatch: pytest.MonkeyPatch):
    """Every ingest of the catalogue's tests runs with ``BUCKETS`` buckets for the largest
    file of the table under test, and must leave no spill behind."""
    plain = cat._ingest
    seen: list[int] = []

    def _ingest(d: Path, tmp: Path, table: str, **settings):
        try:
            rows = max(f.rows for f in DeliveryManifest.read(d).files if f.table == table)
        except Exception:  # a broken manifest is the case under test: any size will do
            rows = 40
        if _bucket_column(load_contracts()[table]) is not None:
            seen.append(rows)
        res, out = plain(d, tmp, table, bucket_rows=max(1, -(-rows // BUCKETS)), **settings)
        _no_spill(out)
        return res, out

    monkeypatch.setattr(cat, "_ingest", _ingest)
    return seen


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in cat.ROWS])
def test_catalogue_rows_are_quarantined_alike_in_buckets(base, tmp_path, case,  # noqa: F811
                                                         bucketed) -> None:
    cat.test_planted_rows_are_quarantined_by_their_rule(base, tmp_path, case)
    assert bucketed


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in cat.RAGGED])
def test_catalogue_ragged_rows_alike_in_buckets(base, tmp_path, case,  # noqa: F811
                                                bucketed) -> None:
    cat.test_rows_with_the_wrong_number_of_fields_are_quarantined(base, tmp_path, case)
    assert bucketed


@pytest.mark.parametrize("case", [pytest.param(c, id=c.kind) for c in cat.FAILS])
def test_catalogue_failures_alike_in_buckets(base, tmp_path, case, bucketed  # noqa: F811
                                             ) -> None:
    cat.test_blocking_kinds_fail_the_table_with_a_clear_message(base, tmp_path, case)


@pytest.mark.parametrize("test", ["test_truncated_parquet",
                                  "test_parquet_column_of_the_wrong_type"])
def test_catalogue_parquet_failures_alike_in_buckets(base_parquet, tmp_path, test,  # noqa: F811
                                                     bucketed) -> None:
    getattr(cat, test)(base_parquet, tmp_path)
    assert bucketed


@pytest.mark.parametrize("test", ["test_exact_duplicate_lines_are_collapsed",
                                  "test_identical_file_resent_in_a_later_delivery"])
def test_catalogue_register_patterns_alike_in_buckets(base, tmp_path, test,  # noqa: F811
                                                      bucketed) -> None:
    orig = cat._ingest(base, tmp_path / "orig", VID)[0]
    (rec,) = [f for f in orig.files if f.file.endswith(cat.VID)]
    getattr(cat, test)(base, tmp_path, rec)


@pytest.mark.parametrize("test", [
    "test_crlf_line_endings_are_accepted",
    "test_quoted_newline_inside_a_field_is_parsed", "test_extra_column_is_dropped_and_reported",
    "test_columns_in_another_order_are_accepted",
    "test_personal_code_without_hyphen_links_to_the_register",
    "test_overlapping_spells_are_kept", "test_header_only_year_file_is_accepted",
    "test_conflicting_rows_of_one_key_and_version_in_one_delivery",
    "test_income_after_death_reaches_the_rule_through_the_register"])
def test_catalogue_accepted_kinds_alike_in_buckets(base, tmp_path, test,  # noqa: F811
                                                   bucketed) -> None:
    getattr(cat, test)(base, tmp_path)


def test_catalogue_bom_alike_in_buckets(base, tmp_path, bucketed) -> None:  # noqa: F811
    """The catalogue's BOM case, comparing the clean rows as a set (buckets reorder them)."""
    d = cat._copy(base, tmp_path)
    path = d / "ref_municipalities.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    cat._refresh(d, path.name)
    res, out = cat._ingest(d, tmp_path, "ref_municipalities")
    assert res.ok and res.quarantined == 0 and res.extra_columns == [], res.failure
    clean = pl.read_parquet(out / "sources" / "ref_municipalities" / "*.parquet")
    assert len(list((out / "sources" / "ref_municipalities").glob("*.parquet"))) > 1
    assert sorted(clean["municipality_code"].to_list()) == sorted(
        cat._read(base, path.name)["municipality_code"].to_list())


@pytest.mark.parametrize("version", ["older_version", "same_version"])
def test_catalogue_corrections_alike_in_buckets(base, tmp_path, version,  # noqa: F811
                                                bucketed) -> None:
    orig = cat._ingest(base, tmp_path / "orig", VID)[0]
    (rec,) = [f for f in orig.files if f.file.endswith(cat.VID)]
    cat.test_conflicting_corrections_between_deliveries(base, tmp_path, rec, version)


# --------------------------------------------------------------------------- incremental


def test_incremental_ingest_with_buckets(tmp_path) -> None:
    """D1, then D1+D2 incrementally, in buckets: exactly a full bucketed ingest of D1+D2
    (files and row order too); a rerun reuses every group and all its bucket parts."""
    split = inc._split(tmp_path)
    settings = {"key": KEY, "bucket_rows": 1_500}
    out = split.root / "out_inc"
    ingest(deliveries_in(split.landing), IngestSettings(out=out, **settings))
    inc._deliver(split)
    second = ingest(deliveries_in(split.landing), IngestSettings(out=out, **settings))
    after, inodes = inc._outputs(out), inc._ino(out)
    full_out = split.root / "out_full"
    full = ingest(deliveries_in(split.landing),
                  IngestSettings(out=full_out, incremental=False, **settings))
    inc._same_results(second, full)
    inc._assert_same(after, inc._outputs(full_out))
    assert set(second[VID].groups_validated) == {
        f"year={inc.LAST_YEAR}", f"year={inc.CORRECTED_YEAR}", f"year={split.death_year}"}
    assert sum("-b" in name for name in inodes) > 12  # bucket parts, linked on reuse
    third = ingest(deliveries_in(split.landing), IngestSettings(out=out, **settings))
    assert all(r.groups_validated == [] for r in third.values())
    assert inc._ino(out) == inodes
    # the same delivery without buckets: the same rows, another layout
    plain = ingest(deliveries_in(split.landing),
                   IngestSettings(out=split.root / "out_plain", key=KEY, incremental=False))
    for table, r in plain.items():
        assert r.files == full[table].files and r.rules_hit == full[table].rules_hit, table
    report = json.loads((out / "reconciliation.json").read_text())
    assert report[VID]["groups_reused"]
    _no_spill(out)


def test_a_failure_in_a_bucketed_group_removes_its_spill(base, tmp_path) -> None:  # noqa: F811
    """A type failure found after every bucket was spilled and validated."""
    d = cat._copy(base, tmp_path)
    df = cat._read(d, cat.VID).with_columns(pl.lit("n/a").alias("gross_income"))
    cat._rewrite(d, cat.VID, df)
    res = ingest(deliveries_in(d.parent),
                 IngestSettings(out=tmp_path / "out", key=KEY, gx_sample=0, bucket_rows=500),
                 tables=[VID])[VID]
    assert not res.ok and "rule 'type'" in res.failure and "gross_income" in res.failure
    assert "n/a" in res.failure
    _no_spill(tmp_path / "out")


def test_config_sets_buckets_and_parallel_groups(tmp_path) -> None:
    from impact.config import EvaluationConfig

    cfg = EvaluationConfig.model_validate({
        "data": {"root": str(tmp_path)}, "synth": {"persons": 1000},
        "ingest": {"key": {"source": "demo"}, "bucket_rows": 1_000_000, "parallel_groups": 1},
        "panel": {"block_persons": 300_000}})
    s = cfg.ingest_settings()
    assert (s.bucket_rows, s.parallel_groups) == (1_000_000, 1)
    assert cfg.panel.block_persons == 300_000
    default = EvaluationConfig.model_validate({
        "data": {"root": str(tmp_path)}, "synth": {"persons": 1000},
        "ingest": {"key": {"source": "demo"}}})
    assert default.ingest_settings().bucket_rows is None
    assert default.panel.block_persons is None
    with pytest.raises(Exception, match="bucket_rows"):
        EvaluationConfig.model_validate({
            "data": {"root": str(tmp_path)}, "synth": {"persons": 1000},
            "ingest": {"key": {"source": "demo"}, "bucket_rows": 0}})
