"""The Great Expectations engine (``impact.contracts.gx``): suites from the contracts.

One small synthetic delivery (600 persons, < 1 s) is read as text and cast per
contract, as the ingest does; ``vid_monthly_reports`` is additionally reduced to one
row per key, as cleaning does (corrections supersede). Every table then passes its
suite; each test plants one violation and checks that exactly the expected
expectation fails with the expected count.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from impact.contracts.gx import (
    PERSONAL_CODE_FORMAT,
    GXReport,
    build_suite,
    pseudonym_patterns,
    sample_frame,
    validate_sample,
)
from impact.contracts.model import Contract, load_contracts
from impact.pseudonym import PseudonymKey, pseudonymise_frame
from impact.synth import SynthConfig, generate

TABLES = ("pmlp_persons", "vid_monthly_reports", "nva_unemployment_spells", "ref_municipalities")
MONTHS = ("2019-01", "2028-06")  # the SynthConfig default window


def _cast(contract: Contract, df: pl.DataFrame) -> pl.DataFrame:
    """Text columns -> contract types (strict: the synthetic data is valid)."""
    out = []
    for c in contract.columns:
        v = pl.col(c.name)
        out.append(
            {
                "string": v,
                "month": v,
                "int": v.cast(pl.Int64),
                "float": v.cast(pl.Float64),
                "bool": v.replace_strict({"true": True, "false": False}, return_dtype=pl.Boolean),
                "date": v.str.to_date("%Y-%m-%d"),
            }[c.type].alias(c.name)
        )
    return df.select(out)


@pytest.fixture(scope="module")
def contracts() -> dict[str, Contract]:
    return load_contracts()


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, contracts) -> dict[str, pl.DataFrame]:
    """Typed (and, for the reports, key-deduplicated) tables of one small delivery."""
    res = generate(SynthConfig(persons=600, seed=1), tmp_path_factory.mktemp("synth"))
    land: Path = res.landing_dir
    out = {}
    for table in (*TABLES, "ref_isco"):
        files = sorted(land.glob(f"{table}.csv")) or sorted(land.glob(f"{table}_*.csv"))
        raw = pl.concat([pl.read_csv(f, infer_schema=False) for f in files])
        out[table] = _cast(contracts[table], raw)
    c = contracts["vid_monthly_reports"]
    out["vid_monthly_reports"] = (
        out["vid_monthly_reports"]
        .sort(c.version_column)
        .unique(subset=c.key, keep="last", maintain_order=True)
    )
    return out


@pytest.fixture(scope="module")
def references(frames) -> dict[str, set[str]]:
    return {"ref_isco.isco_code": set(frames["ref_isco"]["isco_code"].to_list())}


def _validate(contracts, table: str, df: pl.DataFrame, references, **kw) -> GXReport:
    # n above the table size: the whole table, so planted counts are exact
    return validate_sample(
        contracts[table], sample_frame(df, n=10**9), references, months=MONTHS, **kw
    )


def _set(df: pl.DataFrame, column: str, rows: list[int], value) -> pl.DataFrame:
    """``df`` with ``column`` set to ``value`` in the given row positions."""
    hit = pl.int_range(pl.len()).is_in(rows)
    lit = pl.lit(value, dtype=df.schema[column])
    return df.with_columns(pl.when(hit).then(lit).otherwise(pl.col(column)).alias(column))


# --------------------------------------------------------------------------- suites


def test_every_contract_builds_a_suite(contracts) -> None:
    for name, c in contracts.items():
        refs = {c2.allowed_from: {"X"} for c2 in c.columns if c2.allowed_from}
        suite = build_suite(c, refs, months=MONTHS)
        assert suite.name == f"contract.{name}"
        rules = [e.meta["rule"] for e in suite.expectations]
        assert rules[0] == "columns"
        # every column has a type check; every non-nullable one a null check
        for col in c.columns:
            assert f"type:{col.name}" in rules
            assert (f"not_null:{col.name}" in rules) == (not col.nullable)
        for d in c.date_order:
            assert f"date_order:{d.name}" in rules
        for r in c.conditional:
            assert f"conditional:{r.name}" in rules
        # cross-table and cross-row rules are listed as skipped, never silently dropped
        skipped = suite.meta["skipped"]
        assert len([s for s in skipped if s.startswith("foreign_key:")]) == len(c.foreign_keys)
        assert len([s for s in skipped if s.startswith("no_overlap:")]) == len(c.no_overlap)
        json.dumps(suite.to_json_dict())  # serialisable: can be archived with the results


def test_suite_needs_no_data_context_and_lists_what_it_skips(contracts) -> None:
    c = contracts["vid_monthly_reports"]
    suite = build_suite(c)  # no references, no period
    rules = [e.meta["rule"] for e in suite.expectations]
    assert "allowed_from:occupation_code" not in rules
    assert "within_delivery:period" not in rules
    assert any(s.startswith("allowed_from:occupation_code") for s in suite.meta["skipped"])
    assert any(s.startswith("within_delivery:period") for s in suite.meta["skipped"])
    assert any(s.startswith("not_after_event:") for s in suite.meta["skipped"])
    regexes = {
        e.column: e.regex
        for e in suite.expectations
        if type(e).__name__ == "ExpectColumnValuesToMatchRegex"
    }
    assert regexes["person_code"] == PERSONAL_CODE_FORMAT
    assert regexes["employer_id"] == r"^\d{11}$"


def test_date_order_ignores_open_spells(contracts) -> None:
    (e,) = [
        e
        for e in build_suite(contracts["nva_unemployment_spells"]).expectations
        if e.meta["rule"] == "date_order:spell_end_after_start"
    ]
    assert (e.column_A, e.column_B) == ("deregistered_on", "registered_on")
    assert e.or_equal is True and e.ignore_row_if == "either_value_is_missing"


def test_conditional_rules_use_a_row_condition(contracts) -> None:
    suite = build_suite(contracts["stars_applications"])
    by_rule = {e.meta["rule"]: e for e in suite.expectations}
    e = by_rule["conditional:started_has_start_date"]
    assert type(e).__name__ == "ExpectColumnValuesToNotBeNull" and e.column == "started_on"
    assert e.row_condition.column.name == "status"
    assert e.row_condition.parameter == ["COMPLETED", "INTERRUPTED", "IN_PROGRESS"]
    assert type(by_rule["conditional:rejected_not_started"]).__name__ == (
        "ExpectColumnValuesToBeNull")
    e = by_rule["conditional:rejected_decision_has_rejected_status"]
    assert type(e).__name__ == "ExpectColumnValuesToBeInSet" and e.value_set == ["REJECTED"]
    assert any(s.startswith("no_overlap:") for s in
               build_suite(contracts["pmlp_residence"]).meta["skipped"])


def _applications() -> pl.DataFrame:
    """Clean STARS applications, one per valid status/decision/date combination."""
    d = dt.date(2025, 2, 1)
    rows = [("APPROVED", "COMPLETED", d, d), ("APPROVED", "INTERRUPTED", d, d),
            ("APPROVED", "IN_PROGRESS", d, None), ("APPROVED", "WITHDRAWN", None, None),
            ("REJECTED", "REJECTED", None, None)] * 2
    n = len(rows)
    decision, status, started, ended = (list(x) for x in zip(*rows, strict=True))
    return pl.DataFrame({
        "application_id": [f"AP{i:08d}" for i in range(n)], "account_id": ["A00000001"] * n,
        "programme_id": ["P0001"] * n, "grant_id": pl.Series([None] * n, dtype=pl.String),
        "submitted_on": [dt.date(2025, 1, 10)] * n, "decision": decision,
        "decided_on": [dt.date(2025, 1, 15)] * n, "status": status,
        "started_on": pl.Series(started, dtype=pl.Date),
        "ended_on": pl.Series(ended, dtype=pl.Date),
        "public_cost_eur": [100.0] * n, "co_payment_eur": [0.0] * n,
        "co_payment_payer": pl.Series([None] * n, dtype=pl.String)})


@pytest.mark.parametrize(("column", "rows", "value", "expectation", "rule"), [
    ("started_on", [0, 5], None, "expect_column_values_to_not_be_null",
     "conditional:started_has_start_date"),
    ("ended_on", [1], None, "expect_column_values_to_not_be_null",
     "conditional:finished_has_end_date"),
    ("ended_on", [2, 7], dt.date(2025, 3, 1), "expect_column_values_to_be_null",
     "conditional:in_progress_not_ended"),
    ("decision", [0, 1, 6], "REJECTED", "expect_column_values_to_be_in_set",
     "conditional:rejected_decision_has_rejected_status"),
    ("started_on", [4], dt.date(2025, 2, 1), "expect_column_values_to_be_null",
     "conditional:rejected_not_started"),
])
def test_conditional_violation_fails_exactly_its_expectation(contracts, column, rows, value,
                                                             expectation, rule) -> None:
    c, df = contracts["stars_applications"], _applications()
    assert validate_sample(c, sample_frame(df)).success
    rep = validate_sample(c, sample_frame(_set(df, column, rows, value)))
    assert [(f.expectation, f.rule, f.unexpected_count) for f in rep.failed] == [
        (expectation, rule, len(rows))]


def test_date_bounds_are_datetimes(contracts) -> None:
    (e,) = [
        e
        for e in build_suite(contracts["pmlp_persons"]).expectations
        if e.meta["rule"] == "range:birth_date"
    ]
    assert e.min_value == dt.datetime(1900, 1, 1) and e.max_value == dt.datetime(2028, 12, 31)


# --------------------------------------------------------------------------- sample


def test_sample_frame_is_deterministic_ordered_and_typed(frames) -> None:
    df = frames["vid_monthly_reports"].with_row_index("i")
    a, b = sample_frame(df, n=1000, seed=7), sample_frame(df, n=1000, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 1000 and list(a.index) == list(range(1000))
    assert not a.equals(sample_frame(df, n=1000, seed=8))
    assert a["i"].is_monotonic_increasing and a["i"].is_unique  # original order kept
    assert str(a["submitted_on"].dtype) == "datetime64[ns]"
    assert str(a["days_worked"].dtype) == "int64"
    assert str(a["hours_worked"].dtype) == "Int64"  # has nulls
    assert a["part_time"].dtype == bool
    assert a["gross_income"].dtype == "float64"
    assert pd.api.types.is_string_dtype(a["period"])
    assert len(sample_frame(df.head(10), n=1000)) == 10


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("table", TABLES)
def test_valid_table_passes(contracts, frames, references, table) -> None:
    rep = _validate(contracts, table, frames[table], references)
    assert rep.success, rep.failed
    assert rep.failed == [] and rep.evaluated == rep.statistics["evaluated_expectations"] > 5
    assert rep.statistics["rows"] == frames[table].height
    if table == "nva_unemployment_spells":  # open spells exist and are accepted
        assert frames[table]["deregistered_on"].null_count() > 0


Plant = Callable[[pl.DataFrame], pl.DataFrame]


def _dup_first(column: str) -> Plant:
    def plant(df: pl.DataFrame) -> pl.DataFrame:
        return _set(df, column, [0], df[column][1])

    return plant


def _end_before_start(start: str, end: str) -> Plant:
    def plant(df: pl.DataFrame) -> pl.DataFrame:
        row = df.with_row_index("i").filter(pl.col(start).is_not_null())["i"][0]
        return _set(df, end, [row], df[start][row] - dt.timedelta(days=1))

    return plant


def _duplicate_row_new_id(df: pl.DataFrame) -> pl.DataFrame:
    extra = df.head(1).with_columns(pl.lit("X-1").alias("report_id"))
    return pl.concat([df, extra])


VIOLATIONS = [
    # (table, planted, expectation type, rule, unexpected_count)
    (
        "pmlp_persons",
        lambda df: _set(df, "sex", [3], None),
        "expect_column_values_to_not_be_null",
        "not_null:sex",
        1,
    ),
    (
        "pmlp_persons",
        lambda df: _set(df, "birth_date", [0, 5], dt.date(1899, 12, 31)),
        "expect_column_values_to_be_between",
        "range:birth_date",
        2,
    ),
    (
        "pmlp_persons",
        lambda df: _set(df, "sex", [1, 2, 4], "X"),
        "expect_column_values_to_be_in_set",
        "allowed:sex",
        3,
    ),
    (
        "pmlp_persons",
        _dup_first("person_code"),
        "expect_column_values_to_be_unique",
        "unique:person_code",
        2,
    ),
    (
        "pmlp_persons",
        lambda df: _set(df, "person_code", [7], "12345-6789"),
        "expect_column_values_to_match_regex",
        "personal_code:person_code",
        1,
    ),
    (
        "pmlp_persons",
        _end_before_start("birth_date", "death_date"),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "date_order:death_after_birth",
        1,
    ),
    (
        "nva_unemployment_spells",
        _end_before_start("registered_on", "deregistered_on"),
        "expect_column_pair_values_a_to_be_greater_than_b",
        "date_order:spell_end_after_start",
        1,
    ),
    (
        "nva_unemployment_spells",
        lambda df: _set(df, "deregistration_reason", [0], "FIRED"),
        "expect_column_values_to_be_in_set",
        "allowed:deregistration_reason",
        1,
    ),
    (
        "nva_unemployment_spells",
        lambda df: _set(df, "spell_id", [2], None),
        "expect_column_values_to_not_be_null",
        "not_null:spell_id",
        1,
    ),
    (
        "vid_monthly_reports",
        lambda df: _set(df, "gross_income", [10, 20], -5.0),
        "expect_column_values_to_be_between",
        "range:gross_income",
        2,
    ),
    (
        "vid_monthly_reports",
        lambda df: _set(df, "days_worked", [3], 32),
        "expect_column_values_to_be_between",
        "range:days_worked",
        1,
    ),
    (
        "vid_monthly_reports",
        lambda df: _set(df, "occupation_code", [0], "0000"),
        "expect_column_values_to_be_in_set",
        "allowed_from:occupation_code",
        1,
    ),
    (
        "vid_monthly_reports",
        lambda df: _set(df, "period", [5], "2030-01"),
        "expect_column_values_to_be_in_set",
        "within_delivery:period",
        1,
    ),
    (
        "vid_monthly_reports",
        lambda df: _set(df, "employer_id", [1], "4000100020"),
        "expect_column_values_to_match_regex",
        "pattern:employer_id",
        1,
    ),
    (
        "vid_monthly_reports",
        _duplicate_row_new_id,
        "expect_compound_columns_to_be_unique",
        "key_conflict:person_code,employer_id,period",
        2,
    ),
    (
        "ref_municipalities",
        lambda df: _set(df, "municipality_code", [0], "00010"),
        "expect_column_values_to_match_regex",
        "pattern:municipality_code",
        1,
    ),
    (
        "ref_municipalities",
        lambda df: _set(df, "urbanisation", [1], 4),
        "expect_column_values_to_be_between",
        "range:urbanisation",
        1,
    ),
    (
        "ref_municipalities",
        lambda df: _set(df, "region_code", [2], "LV001"),
        "expect_column_values_to_be_in_set",
        "allowed:region_code",
        1,
    ),
    (
        "ref_municipalities",
        _dup_first("municipality_code"),
        "expect_column_values_to_be_unique",
        "unique:municipality_code",
        2,
    ),
]


@pytest.mark.parametrize(
    ("table", "plant", "expectation", "rule", "count"), VIOLATIONS, ids=[v[3] for v in VIOLATIONS]
)
def test_planted_violation_fails_exactly_its_expectation(
    contracts, frames, references, table, plant, expectation, rule, count
) -> None:
    rep = _validate(contracts, table, plant(frames[table]), references)
    assert not rep.success
    assert [(f.expectation, f.rule) for f in rep.failed] == [(expectation, rule)]
    (f,) = rep.failed
    assert f.unexpected_count == count
    assert 0 < f.unexpected_percent <= 100
    assert 1 <= len(f.examples) <= min(count, 5)
    assert f.error is None
    json.dumps(rep.to_dict())  # examples are JSON-safe (dates, NA, numpy scalars, pairs)


def test_examples_are_plain_values(contracts, frames, references) -> None:
    df = _end_before_start("registered_on", "deregistered_on")(frames["nva_unemployment_spells"])
    (f,) = _validate(contracts, "nva_unemployment_spells", df, references).failed
    (pair,) = f.examples
    assert f.columns == ["deregistered_on", "registered_on"]
    end, start = (dt.date.fromisoformat(v) for v in pair)
    assert end == start - dt.timedelta(days=1)


def test_wrong_type_fails_the_type_check(contracts, frames, references) -> None:
    df = frames["ref_municipalities"].with_columns(pl.col("urbanisation").cast(pl.Float64))
    rep = _validate(contracts, "ref_municipalities", df, references)
    assert [(f.rule, f.observed) for f in rep.failed] == [("type:urbanisation", "float64")]


def test_text_column_fails_type_and_range_without_raising(contracts, frames, references) -> None:
    df = frames["ref_municipalities"].with_columns(pl.col("urbanisation").cast(pl.String))
    rep = _validate(contracts, "ref_municipalities", df, references)
    assert {f.rule for f in rep.failed} == {"type:urbanisation", "range:urbanisation"}
    (rng,) = [f for f in rep.failed if f.rule == "range:urbanisation"]
    assert rng.error  # GX raised inside the metric; reported, not propagated


def test_missing_and_extra_columns(contracts, frames, references) -> None:
    df = frames["ref_municipalities"]
    rep = _validate(contracts, "ref_municipalities", df.drop("region_name"), references)
    (cols,) = [f for f in rep.failed if f.rule == "columns"]
    assert cols.details == {"mismatched": {"missing": ["region_name"]}}
    # the expectations on the missing column fail with an error instead of raising
    assert {f.rule for f in rep.failed if f.error} == {"type:region_name", "not_null:region_name"}
    extra = df.with_columns(pl.lit("f.csv").alias("source_file"))
    (cols,) = _validate(contracts, "ref_municipalities", extra, references).failed
    assert cols.details == {"mismatched": {"unexpected": ["source_file"]}}
    assert _validate(
        contracts, "ref_municipalities", extra, references, extra_columns=["source_file"]
    ).success


def test_pseudonymised_identifiers(contracts, frames, references) -> None:
    key = PseudonymKey.demo()
    patterns = pseudonym_patterns()
    assert patterns["person"] == "^P[0-9a-f]{32}$"
    reports = frames["vid_monthly_reports"]
    df = pseudonymise_frame(reports, {"person_code": "person", "employer_id": "employer"}, key)
    # raw-format checks fail on pseudonyms; the pseudonym format passes
    assert set(_validate(contracts, "vid_monthly_reports", df, references).failed_rules()) == {
        "personal_code:person_code",
        "pattern:employer_id",
    }
    rep = _validate(contracts, "vid_monthly_reports", df, references, pseudonym_pattern=patterns)
    assert rep.success, rep.failed
    assert any("frame holds pseudonyms" in s for s in rep.skipped)
    # a raw code left behind, and a pseudonym of the wrong domain, are both caught
    bad = _set(df, "person_code", [0], reports["person_code"][0])
    bad = _set(bad, "employer_id", [1, 2], df["person_code"][3])
    rep = _validate(contracts, "vid_monthly_reports", bad, references, pseudonym_pattern=patterns)
    assert [(f.rule, f.unexpected_count) for f in rep.failed] == [
        ("pattern:employer_id", 2),
        ("personal_code:person_code", 1),
    ]


def test_months_stored_as_first_of_month_dates(contracts, frames, references) -> None:
    # the polars engine writes month columns as dates (first day of the month)
    df = frames["vid_monthly_reports"].with_columns(pl.col("period").str.to_date("%Y-%m"))
    assert _validate(contracts, "vid_monthly_reports", df, references).success
    bad = _set(df, "period", [4], dt.date(2020, 3, 15))
    rep = _validate(contracts, "vid_monthly_reports", bad, references)
    assert [(f.rule, f.unexpected_count, f.examples) for f in rep.failed] == [
        ("type:period", 1, ["2020-03-15"]),
        ("within_delivery:period", 1, ["2020-03-15"]),
    ]


def test_empty_table_fails_unless_allowed(contracts, frames, references) -> None:
    empty = frames["ref_municipalities"].head(0)
    assert _validate(contracts, "ref_municipalities", empty, references).failed_rules() == ["rows"]
    assert _validate(contracts, "ref_municipalities", empty, references, min_rows=0).success
