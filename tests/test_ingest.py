"""Ingest: contracts, quarantine, reconciliation, pseudonymisation, corrections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from impact.contracts.model import load_contracts
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.manifest import DeliveryManifest
from impact.pseudonym import PseudonymKey, pseudonymise
from impact.synth import SynthConfig, generate

KEY = PseudonymKey.demo()

#: injected kind -> the rule that must catch it
EXPECTED_RULE = {
    "invalid_personal_code": "personal_code:person_code",
    "missing_person_code": "not_null:person_code",
    "unknown_person": "foreign_key:person_code->pmlp_persons",
    "unknown_employer": "foreign_key:employer_id->employers",
    "negative_income": "range:gross_income",
    "absurd_income": "range:gross_income",
    "period_outside_delivery": "within_delivery:period",
    "invalid_isco": "allowed_from:occupation_code",
    "days_out_of_range": "range:days_worked",
    "income_after_death": "not_after_event:no_income_after_death",
    "invalid_nace": "allowed_from:nace_code",
    "unknown_municipality": "allowed_from:municipality_code",
    "spell_end_before_start": "date_order:spell_end_after_start",
    "invalid_isced": "range:isced_level",
    "ended_before_started": "date_order:ended_after_started",
}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clean")
    generate(SynthConfig(persons=3_000, seed=11), root)
    out = root / "out"
    results = ingest(deliveries_in(root / "landing"), IngestSettings(out=out, key=KEY))
    return root, out, results


@pytest.fixture(scope="module")
def dirty_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("dirty")
    generate(SynthConfig(persons=3_000, seed=12, inject_errors=True), root)
    out = root / "out"
    results = ingest(deliveries_in(root / "landing"), IngestSettings(out=out, key=KEY))
    return root, out, results


def _quarantine(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((out / "quarantine").glob("*.parquet"))])


def test_every_table_ingests_and_every_file_reconciles(clean_run) -> None:
    root, out, results = clean_run
    assert set(results) == set(load_contracts())
    for name, r in results.items():
        assert r.ok, (name, r.failure)
        assert r.files, name
        for f in r.files:
            assert f.balanced, f
    manifest = DeliveryManifest.read(next((root / "landing").iterdir()))
    assert sum(r.rows_in for r in results.values()) == sum(f.rows for f in manifest.files)
    report = json.loads((out / "reconciliation.json").read_text())
    assert (
        report["vid_monthly_reports"]["rows_in"] == manifest.rows_by_table()["vid_monthly_reports"]
    )


def test_clean_delivery_has_no_quarantine_but_collapses_known_patterns(clean_run) -> None:
    _, out, results = clean_run
    assert sum(r.quarantined for r in results.values()) == 0, {
        n: r.rules_hit for n, r in results.items() if r.quarantined
    }
    vid = results["vid_monthly_reports"]
    assert sum(f.duplicates for f in vid.files) > 0
    assert sum(f.superseded for f in vid.files) > 0
    clean = pl.scan_parquet(out / "sources" / "vid_monthly_reports" / "**" / "*.parquet")
    keys = clean.select("person_code", "employer_id", "period").collect()
    assert keys.is_duplicated().sum() == 0
    # several jobs in one month are kept
    assert keys.select(pl.struct("person_code", "period").is_duplicated().sum()).item() > 0


def test_corrections_keep_the_latest_submission(clean_run) -> None:
    root, out, _ = clean_run
    landing = next((root / "landing").iterdir())
    raw = pl.concat(
        [
            pl.read_csv(p, infer_schema=False)
            for p in sorted(landing.glob("vid_monthly_reports_*.csv"))
        ]
    )
    corrected = raw.filter(pl.col("report_id").str.ends_with("C")).head(20)
    assert corrected.height > 0
    clean = (
        pl.scan_parquet(out / "sources" / "vid_monthly_reports" / "**" / "*.parquet")
        .filter(pl.col("source_file").is_not_null())
        .collect()
    )
    pseud = corrected.with_columns(
        pseudonymise(corrected["person_code"], KEY, "person").alias("person_code"),
        pseudonymise(corrected["employer_id"], KEY, "employer").alias("employer_id"),
        pl.col("period").str.to_date("%Y-%m").alias("period"),
        pl.col("gross_income").cast(pl.Float64),
    )
    got = pseud.join(clean, on=["person_code", "employer_id", "period"], suffix="_clean")
    assert got.height == corrected.height
    assert (got["gross_income"] == got["gross_income_clean"]).all()


def test_each_injected_error_is_caught_by_its_rule(dirty_run) -> None:
    root, out, results = dirty_run
    listed = pl.read_parquet(root / "truth" / "injected_errors.parquet")
    assert set(listed["kind"]) == set(EXPECTED_RULE)
    q = _quarantine(out)
    for r in results.values():
        assert r.ok, r.failure
        assert all(f.balanced for f in r.files)
    # nothing but the planted rows is quarantined
    assert q.height == listed.height, q.group_by("table", "rules").len()
    for kind, rule in EXPECTED_RULE.items():
        rows = listed.filter(pl.col("kind") == kind)
        table = rows["table"][0]
        hits = q.filter(pl.col("table") == table)
        found = 0
        for key in rows["key"]:
            needle = _pseudonymised_key(table, key)
            match = hits.filter(pl.col("values").str.contains(needle, literal=True))
            assert match.height >= 1, (kind, table)
            assert any(rule in r.split(";") for r in match["rules"]), (kind, match["rules"])
            found += 1
        assert found == rows.height


def _pseudonymised_key(table: str, key: str) -> str:
    """The text of a planted row's key as it appears in the pseudonymised quarantine."""
    if table == "pmlp_persons":
        return pseudonymise(pl.Series([key]), KEY, "person")[0]
    if table == "employers":
        return pseudonymise(pl.Series([key]), KEY, "employer")[0]
    if table in {"pmlp_residence", "viis_education"}:
        code, when = key.split("|")
        return pseudonymise(pl.Series([code]), KEY, "person")[0]
    return key


def test_no_raw_code_survives_ingest(clean_run) -> None:
    from impact.privacy_scan import scan_for_codes

    root, out, _ = clean_run
    landing = next((root / "landing").iterdir())
    codes = pl.read_csv(landing / "pmlp_persons.csv", infer_schema=False)["person_code"]
    assert scan_for_codes([landing], codes.head(200).to_list())  # the scanner sees raw codes
    assert scan_for_codes([out], codes.to_list()) == []


def _copy_delivery(root: Path, tmp: Path) -> Path:
    dst = tmp / "landing" / "2028-06"
    shutil.copytree(next((root / "landing").iterdir()), dst)
    return dst


def _rewrite(delivery: Path, name: str, df: pl.DataFrame) -> None:
    """Replace a file and update its manifest entry (rows, bytes, checksum)."""
    df.write_csv(delivery / name)
    DeliveryManifest.read(delivery).refreshed(delivery, [name], df.columns).write(delivery)


def test_missing_column_fails_the_table_and_spares_independent_ones(clean_run, tmp_path) -> None:
    root, _, _ = clean_run
    d = _copy_delivery(root, tmp_path)
    emp = pl.read_csv(d / "employers.csv", infer_schema=False).drop("nace_code")
    _rewrite(d, "employers.csv", emp)
    results = ingest([d], IngestSettings(out=tmp_path / "out", key=KEY))
    fail = results["employers"]
    assert not fail.ok
    assert "employers.csv" in fail.failure and "nace_code" in fail.failure
    assert "columns" in fail.failure
    assert not results["vid_monthly_reports"].ok  # needs employers for its foreign key
    assert "employers" in results["vid_monthly_reports"].failure
    for independent in ("pmlp_persons", "ref_cpi", "viis_education", "stars_accounts"):
        assert results[independent].ok, results[independent].failure


def test_wrong_type_is_a_table_failure_with_examples(clean_run, tmp_path) -> None:
    root, _, _ = clean_run
    d = _copy_delivery(root, tmp_path)
    spells = pl.read_csv(d / "vsaa_benefits.csv", infer_schema=False).with_columns(
        pl.lit("n/a").alias("amount")
    )
    _rewrite(d, "vsaa_benefits.csv", spells)
    r = ingest([d], IngestSettings(out=tmp_path / "out", key=KEY), tables=["vsaa_benefits"])
    msg = r["vsaa_benefits"].failure
    assert msg and "amount" in msg and "'type'" in msg and "n/a" in msg


def test_truncated_file_fails_on_the_manifest(clean_run, tmp_path) -> None:
    root, _, _ = clean_run
    d = _copy_delivery(root, tmp_path)
    path = d / "nva_unemployment_spells.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    r = ingest(
        [d], IngestSettings(out=tmp_path / "out", key=KEY), tables=["nva_unemployment_spells"]
    )
    msg = r["nva_unemployment_spells"].failure
    assert msg and "nva_unemployment_spells.csv" in msg and "manifest" in msg
    # without checksum verification the row count still catches it
    r2 = ingest(
        [d],
        IngestSettings(out=tmp_path / "out2", key=KEY, verify_checksums=False),
        tables=["nva_unemployment_spells"],
    )
    assert not r2["nva_unemployment_spells"].ok


def test_a_later_delivery_supersedes_an_earlier_one(clean_run, tmp_path) -> None:
    root, _, _ = clean_run
    first = _copy_delivery(root, tmp_path)
    src = pl.read_csv(first / "vid_monthly_reports_2024.csv", infer_schema=False)
    fix = src.head(5).with_columns(
        pl.lit("12345.67").alias("gross_income"), (pl.col("report_id") + "X").alias("report_id")
    )
    second = tmp_path / "landing" / "2028-07"
    second.mkdir()
    fix.write_csv(second / "vid_monthly_reports_2024.csv")
    m = DeliveryManifest.read(first)
    entry = next(f for f in m.files if f.path == "vid_monthly_reports_2024.csv")
    m.model_copy(update={"delivery_id": "2028-07", "files": [entry]}).refreshed(
        second, [entry.path]
    ).write(second)
    out = tmp_path / "out"
    results = ingest(
        deliveries_in(tmp_path / "landing"),
        IngestSettings(out=out, key=KEY),
        tables=["vid_monthly_reports"],
    )
    vid = results["vid_monthly_reports"]
    assert vid.ok, vid.failure
    assert all(f.balanced for f in vid.files)
    clean = pl.read_parquet(out / "sources" / "vid_monthly_reports" / "year=2024" / "*.parquet")
    keys = fix.select(
        pseudonymise(fix["person_code"], KEY, "person").alias("person_code"),
        pseudonymise(fix["employer_id"], KEY, "employer").alias("employer_id"),
        pl.col("period").str.to_date("%Y-%m"),
    )
    got = keys.join(clean, on=["person_code", "employer_id", "period"])
    assert got.height == 5 and (got["gross_income"] == 12345.67).all()
    assert (got["source_file"] == "2028-07/vid_monthly_reports_2024.csv").all()


def test_typed_parquet_columns_parse_like_their_text() -> None:
    """Parquet keeps numbers, booleans and dates typed: they skip the round trip through
    text, but must give the same values and type findings as the same values as text."""
    from datetime import date

    from polars.testing import assert_frame_equal

    from impact.contracts.rules import DELIVERY, FILE, ROW, parse_columns

    contract = load_contracts()["vid_monthly_reports"].model_copy(
        update={"max_type_error_share": 1.0})
    n = 8
    typed = pl.DataFrame({
        "report_id": ["r"] * n, "person_code": ["p"] * n, "employer_id": ["e"] * n,
        "period": ["2024-01"] * n,
        "gross_income": [1.5, float("nan"), float("inf"), -0.0, 1e300, 5e-324, None, 0.1],
        "days_worked": pl.Series([0, 31, None, -5, 2**53 + 1, 2**62, -(2**63), 1],
                                 dtype=pl.Int64),
        # a float column for an int contract column: whole numbers parse, others do not
        "hours_worked": [0.0, 2.5, float("nan"), None, 1e19, -3.0, float("-inf"), 40.0],
        "occupation_code": ["1111"] * n, "contract_type": ["FIXED"] * n,
        "part_time": [True, False, None, True, False, True, False, True],
        "submitted_on": [date(1, 1, 1), date(9999, 12, 31), None, date(2024, 2, 29)] * 2,
    }).with_columns(pl.int_range(1, n + 1, dtype=pl.Int64).alias(ROW), pl.lit("f").alias(FILE),
                    pl.lit(0, dtype=pl.Int32).alias(DELIVERY))
    text = typed.with_columns(pl.col(c).cast(pl.String) for c in contract.names)
    got, flags = parse_columns(typed, contract, "f")
    want, text_flags = parse_columns(text, contract, "f")
    assert flags == text_flags
    assert_frame_equal(got, want, check_exact=True)
    # 2.5, NaN, 1e19 (beyond Int64) and -inf are not whole numbers of the int type
    assert got["__v__type:hours_worked"].to_list() == [False, True, True, False, True, False,
                                                      True, False]


def test_shortcuts_on_hashes_are_exact_when_hashes_collide(dirty_run, tmp_path,
                                                          monkeypatch) -> None:
    """Distinct identifiers, known codes and repeated keys are found on 64-bit hashes and
    checked against the values: with hashes that collide all the time, the clean rows,
    the quarantine and the reconciliation must not change."""
    root, out, results = dirty_run
    hash_ = pl.Series.hash
    monkeypatch.setattr(pl.Series, "hash",
                        lambda self, seed=0, *a, **k: hash_(self, seed, *a, **k) % 3)
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *a, **k: pl.Series(
        "hash", [7] * self.height, dtype=pl.UInt64))
    again = tmp_path / "out"
    table = "vid_monthly_reports"
    redo = ingest(deliveries_in(root / "landing"), IngestSettings(out=again, key=KEY),
                  tables=[table])
    assert redo[table].ok and redo[table].quarantined > 0
    assert redo[table].files == results[table].files
    assert redo[table].rules_hit == results[table].rules_hit
    for name in ("pmlp_persons", table):
        files = sorted(p.relative_to(out) for p in (out / "sources" / name).rglob("*.parquet"))
        assert files == sorted(p.relative_to(again)
                               for p in (again / "sources" / name).rglob("*.parquet"))
        for f in files:
            assert pl.read_parquet(out / f).equals(pl.read_parquet(again / f)), f
    q = f"quarantine/{table}.parquet"
    assert pl.read_parquet(out / q).equals(pl.read_parquet(again / q))
