"""Every kind of contract rule catches a planted violation, and only that row.

The injected-error catalogue of the generator (tests/test_ingest.py) covers the
register-shaped failures; these tests plant one violation of each remaining rule
kind into an otherwise valid table and check the rule that fires.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from impact import personal_code
from impact.contracts.model import Contract, load_contracts
from impact.ingest import IngestSettings, deliveries_in, ingest, validate_frame
from impact.manifest import DeliveryManifest
from impact.pseudonym import PseudonymKey, pseudonymise, pseudonymise_frame
from impact.synth import SynthConfig, generate

KEY = PseudonymKey.demo()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rules")
    generate(SynthConfig(persons=1_000, seed=21), root)
    return next((root / "landing").iterdir())


def _plant(base: Path, tmp: Path, file: str, change) -> Path:
    """Copy the delivery, apply ``change`` to one row of ``file``, fix the manifest."""
    dst = tmp / "landing" / base.name
    dst.mkdir(parents=True)
    for p in base.iterdir():
        (dst / p.name).symlink_to(p) if p.name not in (file, "manifest.json") else None
    df = pl.read_csv(base / file, infer_schema=False)
    df = change(df)
    df.write_csv(dst / file)
    DeliveryManifest.read(base).refreshed(dst, [file]).write(dst)
    return dst


def _set(row: int, **values: str):
    def change(df: pl.DataFrame) -> pl.DataFrame:
        idx = pl.int_range(0, pl.len())
        return df.with_columns(pl.when(idx == row).then(pl.lit(v)).otherwise(pl.col(c)).alias(c)
                               for c, v in values.items())
    return change


CASES = [
    ("pmlp_persons.csv", "pmlp_persons", _set(3, sex="X"), "allowed:sex"),
    ("pmlp_persons.csv", "pmlp_persons", _set(4, birth_date="1975-02-30"), "type:birth_date"),
    ("pmlp_persons.csv", "pmlp_persons", _set(5, birth_date="1850-01-01"), "range:birth_date"),
    ("employers.csv", "employers", _set(2, employer_id="4000A12"), "pattern:employer_id"),
    ("vsaa_benefits.csv", "vsaa_benefits", _set(7, benefit_days="ten"), "type:benefit_days"),
    ("stars_programmes.csv", "stars_programmes", _set(1, programme_type="MOOC"),
     "allowed:programme_type"),
    ("stars_accounts.csv", "stars_accounts", _set(2, profile_completed="maybe"),
     "type:profile_completed"),
]


@pytest.mark.parametrize(("file", "table", "change", "rule"), CASES,
                         ids=[c[3] for c in CASES])
def test_one_planted_violation_is_quarantined_by_its_rule(base, tmp_path, file, table, change,
                                                          rule) -> None:
    d = _plant(base, tmp_path, file, change)
    out = tmp_path / "out"
    res = ingest([d], IngestSettings(out=out, key=KEY, gx_sample=0), tables=[table])[table]
    assert res.ok, res.failure
    q = pl.read_parquet(out / "quarantine" / f"{table}.parquet")
    assert q.height == 1, q
    assert q["rules"][0] == rule
    assert all(f.balanced for f in res.files)


def test_duplicate_unique_value_and_key_conflict(base, tmp_path) -> None:
    def dup_account(df: pl.DataFrame) -> pl.DataFrame:
        # a second account for an existing person: unique person_code broken
        extra = df.head(1).with_columns(pl.lit("A99999999").alias("account_id"))
        return pl.concat([df, extra])

    d = _plant(base, tmp_path, "stars_accounts.csv", dup_account)
    out = tmp_path / "out"
    res = ingest([d], IngestSettings(out=out, key=KEY, gx_sample=0),
                 tables=["stars_accounts"])["stars_accounts"]
    q = pl.read_parquet(out / "quarantine" / "stars_accounts.parquet")
    assert res.ok and q["rules"].to_list() == ["unique:person_code"]
    assert all(f.balanced for f in res.files)

    def conflict(df: pl.DataFrame) -> pl.DataFrame:
        # same person and start date, another municipality: not a duplicate, a conflict
        extra = df.head(1).with_columns(pl.lit("0001000").alias("municipality_code"),
                                        pl.lit("").alias("valid_to"))
        first = df.head(1)["municipality_code"][0]
        if first == "0001000":
            extra = extra.with_columns(pl.lit("0050000").alias("municipality_code"))
        return pl.concat([df, extra])

    d2 = _plant(base, tmp_path / "b", "pmlp_residence.csv", conflict)
    out2 = tmp_path / "out2"
    res2 = ingest([d2], IngestSettings(out=out2, key=KEY, gx_sample=0),
                  tables=["pmlp_residence"])["pmlp_residence"]
    q2 = pl.read_parquet(out2 / "quarantine" / "pmlp_residence.parquet")
    assert res2.ok and q2["rules"].to_list() == ["key_conflict:person_code,valid_from"]


def test_already_pseudonymised_delivery_is_accepted(base, tmp_path) -> None:
    """A delivery whose identifiers are pseudonyms already ingests with the switch on."""
    contracts = load_contracts()
    dst = tmp_path / "landing" / base.name
    dst.mkdir(parents=True)
    m = DeliveryManifest.read(base)
    for f in m.files:
        df = pl.read_csv(base / f.path, infer_schema=False)
        cols = {c.name: c.pseudonymise for c in contracts[f.table].columns if c.pseudonymise}
        if cols:
            df = pseudonymise_frame(df, cols, KEY)
        df.write_csv(dst / f.path)
    m.refreshed(dst, [f.path for f in m.files]).write(dst)
    out = tmp_path / "out"
    res = ingest([dst], IngestSettings(out=out, key=KEY, already_pseudonymised=True,
                                       gx_sample=0))
    assert all(r.ok for r in res.values()), {n: r.failure for n, r in res.items() if not r.ok}
    assert sum(r.quarantined for r in res.values()) == 0
    # the same pseudonyms as a raw delivery ingested with the same key
    persons = pl.read_parquet(out / "sources" / "pmlp_persons" / "*.parquet")
    raw = pl.read_csv(base / "pmlp_persons.csv", infer_schema=False)
    assert set(persons["person_code"]) == set(pseudonymise(raw["person_code"], KEY, "person"))
    # a raw code in an "already pseudonymised" delivery is caught, not passed through
    bad = tmp_path / "bad" / "landing" / base.name
    bad.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(dst, bad)
    p = pl.read_csv(bad / "pmlp_persons.csv", infer_schema=False)
    p = p.with_columns(pl.when(pl.int_range(0, pl.len()) == 0).then(pl.lit(raw["person_code"][0]))
                       .otherwise(pl.col("person_code")).alias("person_code"))
    p.write_csv(bad / "pmlp_persons.csv")
    DeliveryManifest.read(bad).refreshed(bad, ["pmlp_persons.csv"]).write(bad)
    res_b = ingest(deliveries_in(bad.parent), IngestSettings(
        out=tmp_path / "outb", key=KEY, already_pseudonymised=True, gx_sample=0),
        tables=["pmlp_persons"])["pmlp_persons"]
    qb = pl.read_parquet(tmp_path / "outb" / "quarantine" / "pmlp_persons.parquet")
    assert res_b.ok and qb["rules"].to_list() == ["pseudonym:person_code"]
    # ... and its value never reaches the quarantine in raw form
    assert raw["person_code"][0] not in qb["values"][0]


# --------------------------------------------------------------------------- conditional


def _validate(table: str, rows: list[tuple], references: dict[str, pl.DataFrame]
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``rows`` (text, in contract order) validated as ingest validates a file."""
    contract = load_contracts()[table]
    df = pl.DataFrame(rows, schema={c: pl.Utf8 for c in contract.names}, orient="row")
    return validate_frame(df, contract, (date(2019, 1, 1), date(2028, 6, 1)), references,
                          IngestSettings(out=Path("unused"), key=KEY, gx_sample=0))


def _application(i: int, decision: str, status: str, started: str | None,
                 ended: str | None) -> tuple:
    return (f"AP{i:08d}", "A00000001", "P0001", None, "2025-01-10", decision, "2025-01-15",
            status, started, ended, "100.0", "0.0", None)


def test_conditional_rules_tie_status_decision_and_dates() -> None:
    """Each impossible status/decision/date combination is quarantined by its rule; the
    possible ones (including a WITHDRAWN application, with or without a start) are not."""
    refs = {"stars_accounts": pl.DataFrame({"account_id": ["A00000001"]}),
            "stars_programmes": pl.DataFrame({"programme_id": ["P0001"]}),
            "stars_grants": pl.DataFrame({"grant_id": ["G00000001"]})}
    s, e = "2025-02-01", "2025-05-31"
    valid = [("APPROVED", "COMPLETED", s, e), ("APPROVED", "INTERRUPTED", s, e),
             ("APPROVED", "IN_PROGRESS", s, None), ("APPROVED", "WITHDRAWN", None, None),
             ("APPROVED", "WITHDRAWN", s, None), ("REJECTED", "REJECTED", None, None)]
    broken = {
        ("APPROVED", "COMPLETED", None, e): "conditional:started_has_start_date",
        ("APPROVED", "IN_PROGRESS", None, None): "conditional:started_has_start_date",
        ("APPROVED", "INTERRUPTED", s, None): "conditional:finished_has_end_date",
        ("APPROVED", "IN_PROGRESS", s, e): "conditional:in_progress_not_ended",
        ("REJECTED", "COMPLETED", s, e): "conditional:rejected_decision_has_rejected_status",
        ("APPROVED", "REJECTED", None, None): "conditional:rejected_status_has_rejected_decision",
        ("REJECTED", "REJECTED", s, None): "conditional:rejected_not_started",
    }
    rows = [_application(i, *r) for i, r in enumerate([*valid, *broken], start=1)]
    good, q = _validate("stars_applications", rows, refs)
    assert good.height == len(valid)
    assert q["rules"].to_list() == list(broken.values())
    assert q["row_number"].to_list() == list(range(len(valid) + 1, len(rows) + 1))


@pytest.mark.parametrize(("then", "error"), [
    ({"column": "status", "in": ["COMPLETE"]}, "['COMPLETE'] not allowed in status"),
    ({"column": "started_on", "in": ["2025-01-01"]}, "'in' on date column started_on"),
    ({"column": "started_on", "not_null": True, "is_null": True}, "exactly one of"),
    ({"column": "started_on"}, "exactly one of"),
    ({"column": "started", "not_null": True}, "unknown columns ['started']"),
])
def test_malformed_conditional_rule_is_rejected(then: dict, error: str) -> None:
    data = load_contracts()["stars_applications"].model_dump(by_alias=True)
    data["conditional"] = [{"name": "x", "when": {"column": "decision", "in": ["REJECTED"]},
                            "then": then}]
    with pytest.raises(ValueError, match=re.escape(error)):
        Contract.model_validate(data)


# --------------------------------------------------------------------------- no_overlap


def test_overlapping_residence_periods_quarantine_the_later_period() -> None:
    """Periods include both days; a period starting on or before the end of an earlier
    one of the same person is quarantined, the earlier kept. Rows of one key (duplicates,
    conflicts) are one period; rows broken otherwise do not count."""
    a, b, c, d = (str(x) for x in personal_code.generate_new(4, np.random.default_rng(3)))
    refs = {"pmlp_persons": pl.DataFrame({"person_code": pseudonymise(
                pl.Series([a, b, c, d]), KEY, "person")}),
            "ref_municipalities": pl.DataFrame({"municipality_code": ["0001000", "0050000"]})}
    m1, m2, bad = "0001000", "0050000", "0999999"
    rows = [
        (a, m1, "2020-01-01", "2020-06-30"), (a, m2, "2020-07-01", None),  # 1-2 adjacent
        (b, m1, "2020-01-01", "2020-06-30"), (b, m2, "2020-06-30", None),  # 4: same day
        (c, m1, "2020-01-01", None),                                       # 5: open
        (c, m2, "2020-03-01", "2020-04-30"),                               # 6: inside it
        (c, m2, "2021-01-01", None), (c, m2, "2021-01-01", None),          # 7-8: duplicate
        (d, m1, "2020-01-01", "2020-12-31"),
        (d, bad, "2020-06-01", None),               # 10: unknown municipality only
        (d, m1, "2020-01-01", "2022-12-31"),        # 11: key conflict only
        (d, m2, "2021-01-01", None),                # 12: after row 9 (row 11 not kept)
    ]
    good, q = _validate("pmlp_residence", rows, refs)
    overlap = "no_overlap:one_residence_at_a_time"
    assert dict(zip(q["row_number"], q["rules"], strict=True)) == {
        4: overlap, 6: overlap, 7: overlap, 8: overlap,
        10: "allowed_from:municipality_code", 11: "key_conflict:person_code,valid_from"}
    assert good.height == len(rows) - q.height
    # no two accepted periods of a person overlap
    pairs = good.join(good, on="person_code", suffix="_2").filter(
        (pl.col("valid_from") < pl.col("valid_from_2"))
        & (pl.col("valid_from_2") <= pl.col("valid_to").fill_null(date.max)))
    assert pairs.is_empty()


def test_no_overlap_needs_the_whole_table() -> None:
    """A table checked a year at a time cannot compare a person's periods across years."""
    data = load_contracts()["vid_monthly_reports"].model_dump(by_alias=True)
    data["no_overlap"] = [{"name": "x", "key": "person_code", "start": "period",
                           "end": "period"}]
    with pytest.raises(ValueError, match="a year at a time"):
        Contract.model_validate(data)
