"""The person-month panel against the generator's truth and the raw rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from impact.panel import dictionary
from impact.pseudonym import PseudonymKey, pseudonymise

KEY = PseudonymKey.demo()


@pytest.fixture(scope="module")
def built(research):
    return research.root, research.result, research.panel


def test_one_row_per_person_month_alive_and_resident(built) -> None:
    root, res, df = built
    assert res.rows == df.height
    assert df.select(pl.struct("person_code", "month").is_duplicated().sum()).item() == 0
    persons = pl.read_csv(next((root / "landing").iterdir()) / "pmlp_persons.csv",
                          try_parse_dates=True, schema_overrides={"person_code": pl.Utf8})
    persons = persons.with_columns(pseudonymise(persons["person_code"], KEY, "person"))
    n_months = 114
    exit_ = pl.min_horizontal(pl.col("death_date"), pl.col("emigration_date"))
    expected = persons.select(
        "person_code",
        pl.when(exit_.is_null()).then(pl.lit(n_months)).otherwise(
            (exit_.dt.year() - 2019) * 12 + exit_.dt.month()).alias("n"))
    got = df.group_by("person_code").len()
    cmp = expected.join(got, on="person_code", how="left").with_columns(pl.col("len").fill_null(0))
    assert (cmp["n"] == cmp["len"]).all(), cmp.filter(pl.col("n") != pl.col("len")).head()
    dead = persons.filter(pl.col("death_date").is_not_null()).head(20)
    for code, death in zip(dead["person_code"], dead["death_date"], strict=True):
        months = df.filter(pl.col("person_code") == code)["month"]
        assert months.max() is None or months.max() == death.replace(day=1)


def test_panel_earnings_equal_the_truth_for_participants(built) -> None:
    """Observed (treated) paths of the truth are exactly what the panel must show."""
    root, _, df = built
    truth = pl.read_parquet(root / "truth" / "paths.parquet").with_columns(
        pseudonymise(pl.read_parquet(root / "truth" / "paths.parquet")["person_code"], KEY,
                     "person").alias("person_code"),
        pl.col("month").str.to_date("%Y-%m"))
    j = truth.join(df, on=["person_code", "month"], how="left")
    # truth keeps following participants who died or emigrated; the panel does not
    gone = j.filter(pl.col("earnings_real").is_null())
    assert (gone["earnings_real_1"] == 0).all() and (gone["employed_1"] == 0).all()
    assert gone.height < 0.1 * j.height
    j = j.filter(pl.col("earnings_real").is_not_null())
    assert (j["earnings_real"] - j["earnings_real_1"]).abs().max() < 0.05
    assert (j["days_worked"] == j["days_1"]).all()
    assert (j["employed"] == (j["employed_1"] > 0)).all()
    agree = (j["registered_unemployed"] == (j["registered_1"] > 0)).mean()
    assert agree > 0.99  # overlapping re-registrations may reach into the previous month
    both = j.filter(pl.col("daily_wage_real").is_not_null() & pl.col("daily_wage_real_1")
                    .is_not_nan())
    assert (both["daily_wage_real"] - both["daily_wage_real_1"]).abs().max() < 0.01


def test_main_job_is_the_highest_paid_and_totals_add_up(built) -> None:
    root, _, df = built
    reports = pl.read_parquet(root / "sources" / "vid_monthly_reports" / "**" / "*.parquet",
                              hive_partitioning=False)
    multi = reports.group_by("person_code", "period").agg(
        pl.len().alias("n"), pl.col("gross_income").sum().alias("total"),
        pl.col("employer_id").sort_by("gross_income", descending=True).first().alias("top"),
    ).filter(pl.col("n") > 1).head(200)
    assert multi.height > 0  # several jobs in one month exist
    j = multi.join(df, left_on=["person_code", "period"], right_on=["person_code", "month"])
    assert j.height == multi.height
    assert ((j["total"] - j["earnings"]).abs() < 1e-6).all()
    assert (j["n"] == j["n_employers"]).all()
    assert (j["top"] == j["employer_id"]).all()
    assert j["nace_section"].null_count() == 0


# ---------------------------------------------------------------- hand-computed from raw rows

def _raw(root, name: str) -> pl.DataFrame:
    """A raw landing table with its person codes pseudonymised like the ingest does."""
    landing = next((root / "landing").iterdir())
    paths = sorted(landing.glob(f"{name}*.csv"))
    df = pl.concat([pl.read_csv(p, infer_schema=False) for p in paths])
    return df.with_columns(pseudonymise(df["person_code"], KEY, "person").alias("person_code"))


def _months(a: date, b: date) -> list[date]:
    out, m = [], date(a.year, a.month, 1)
    while m <= b:
        out.append(m)
        m = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
    return out


def _d(text: str | None) -> date | None:
    return None if text in (None, "") else date.fromisoformat(text)


def test_planted_persons_match_values_computed_by_hand(built) -> None:
    """Several jobs, a correction, a spell crossing months and a death, from the raw CSV."""
    root, _, df = built
    vid = _raw(root, "vid_monthly_reports_")
    corrected = vid.filter(pl.col("report_id").str.ends_with("C"))["person_code"][0]
    multi = (vid.group_by("person_code", "period").agg(pl.col("employer_id").n_unique()
                                                          .alias("n"))
             .filter(pl.col("n") > 1)["person_code"][0])
    spells = _raw(root, "nva_unemployment_spells")
    crossing = spells.filter(pl.col("registered_on").str.slice(0, 7)
                             < pl.col("deregistered_on").str.slice(0, 7))["person_code"][0]
    persons = _raw(root, "pmlp_persons")
    dead = persons.filter((pl.col("death_date") > "2020-01-01")
                          & pl.col("emigration_date").is_null())["person_code"][0]
    chosen = [corrected, multi, crossing, dead]
    benefits = _raw(root, "vsaa_benefits")
    for code in chosen:
        # employer reports: per (employer, month) the latest submission wins
        reports: dict[tuple[str, str], dict] = {}
        for r in vid.filter(pl.col("person_code") == code).iter_rows(named=True):
            key = (r["employer_id"], r["period"])
            if key not in reports or r["submitted_on"] >= reports[key]["submitted_on"]:
                reports[key] = r
        registered: set[date] = set()
        for s in spells.filter(pl.col("person_code") == code).iter_rows(named=True):
            end = _d(s["deregistered_on"]) or date(2028, 6, 1)
            registered.update(_months(_d(s["registered_on"]), end))
        sick: dict[date, int] = {}
        for b in benefits.filter((pl.col("person_code") == code)
                                 & (pl.col("benefit_type") == "SICKNESS")).iter_rows(named=True):
            m = _d(b["period_start"]).replace(day=1)
            sick[m] = sick.get(m, 0) + int(b["benefit_days"])
        rows = df.filter(pl.col("person_code") == code).sort("month")
        assert rows.height > 0
        for row in rows.iter_rows(named=True):
            ym = row["month"].strftime("%Y-%m")
            jobs = [r for (e, p), r in reports.items() if p == ym]
            assert row["n_employers"] == len(jobs)
            assert abs(row["earnings"] - sum(float(r["gross_income"]) for r in jobs)) < 1e-6
            assert row["days_worked"] == sum(int(r["days_worked"]) for r in jobs)
            assert row["employed"] == any(float(r["gross_income"]) > 0 for r in jobs)
            if jobs:
                top = max(jobs, key=lambda r: (float(r["gross_income"]), -0))
                assert row["occupation_code"] == (top["occupation_code"] or None)
            assert row["registered_unemployed"] == (row["month"] in registered)
            assert row["sick_benefit_days"] == sick.get(row["month"], 0)
    death = persons.filter(pl.col("person_code") == dead)["death_date"][0]
    assert df.filter(pl.col("person_code") == dead)["month"].max() == _d(death).replace(day=1)
    assert df.filter(pl.col("person_code") == dead)["exit_month"].sum() == 1


def test_residence_education_dependants_at_the_month(built) -> None:
    root, _, df = built
    res = _raw(root, "pmlp_residence")
    movers = res.group_by("person_code").len().filter(pl.col("len") > 1)["person_code"]
    edu = _raw(root, "viis_education")
    kids = _raw(root, "pmlp_children")
    parents = kids.group_by("person_code").len().filter(pl.col("len") > 1)["person_code"]
    sample = list(dict.fromkeys([*movers.head(15), *parents.head(15),
                                 *edu["person_code"].head(10)]))
    checked = 0
    for code in sample:
        r_rows = res.filter(pl.col("person_code") == code).iter_rows(named=True)
        decls = sorted((_d(r["valid_from"]), r["municipality_code"]) for r in r_rows)
        awards = sorted((_d(r["award_date"]), int(r["isced_level"]), r["isced_field"])
                        for r in edu.filter(pl.col("person_code") == code).iter_rows(named=True))
        births = [_d(b) for b in kids.filter(pl.col("person_code") == code)["child_birth_date"]]
        for row in df.filter(pl.col("person_code") == code).iter_rows(named=True):
            m = row["month"]
            end = date(m.year + (m.month == 12), m.month % 12 + 1, 1)  # first day of next month
            valid = [mun for start, mun in decls if start < end]
            assert row["municipality_code"] == (valid[-1] if valid else None)
            done = [a for a in awards if a[0] < end]
            if done:
                best = max(level for _, level, _ in done)
                assert row["isced_level"] == best
                assert row["isced_field"] == [f for _, lv, f in done if lv == best][-1]
            else:
                assert row["isced_level"] is None
            under_18 = sum(1 for b in births if b < end and date(b.year + 18, b.month,
                                                                 min(b.day, 28)) > m)
            assert row["dependants"] == under_18
            checked += 1
    assert checked > 1000


def test_ila_status_and_treatment_agree_with_the_records_and_the_truth(built) -> None:
    root, _, df = built
    ep = pl.read_parquet(root / "research" / "episodes.parquet")
    tr = pl.read_parquet(root / "research" / "treatment.parquet")
    truth = pl.read_parquet(root / "truth" / "participants.parquet")
    truth = truth.with_columns(pseudonymise(truth["person_code"], KEY, "person")
                               .alias("person_code"))
    # the first started course is the generator's treatment: same people, months, outcome
    j = truth.join(tr, on="person_code", how="full", coalesce=True)
    assert j.height == truth.height == tr.height
    assert (j["cohort"].dt.strftime("%Y-%m") == j["start_month"]).all()
    assert (j["end_month_right"].dt.strftime("%Y-%m") == j["end_month"]).all()
    assert ((j["outcome"] == "completed") == j["completed"]).all()
    assert (tr["n_courses"] >= 1).all()
    assert ep.height == tr["n_courses"].sum()
    # panel ILA columns, month by month, from the episodes
    ila = df.filter(pl.col("ila_first_start").is_not_null())
    assert ila["person_code"].n_unique() == tr.height
    check = ila.join(tr.select("person_code", "cohort"), on="person_code")
    assert (check["ila_first_start"] == check["cohort"]).all()
    assert (check["not_yet_treated"] == (check["month"] < check["cohort"])).all()
    for code in tr["person_code"].head(40):
        courses = ep.filter(pl.col("person_code") == code)
        rows = df.filter(pl.col("person_code") == code)
        for row in rows.iter_rows(named=True):
            m = row["month"]
            started = courses.filter(pl.col("start_month") <= m)
            training = started.filter(pl.col("end_month").is_null()
                                      | (pl.col("end_month") >= m)).height > 0
            assert row["ila_in_training"] == training
            assert row["ila_courses_cum"] == started.height
            assert abs(row["ila_spend_cum"] - started["public_cost_eur"].sum()) < 1e-6
            assert row["ila_completed"] == courses.filter(
                (pl.col("end_month") == m) & (pl.col("outcome") == "completed")).height
            assert row["ila_dropped"] == courses.filter(
                (pl.col("end_month") == m) & (pl.col("outcome") == "dropped")).height
    assert (df["ila_grant_balance"] >= 0).all()
    # nobody outside the account holders has ILA status
    holders = _raw(root, "stars_accounts")["person_code"]
    assert df.filter(pl.col("ila_account"))["person_code"].is_in(holders.implode()).all()


def test_near_participants_never_started_and_hold_an_account(built) -> None:
    root, _, _ = built
    near = pl.read_parquet(root / "research" / "near_participants.parquet")
    tr = pl.read_parquet(root / "research" / "treatment.parquet")
    holders = _raw(root, "stars_accounts")["person_code"].unique()
    assert near.height > 0
    assert not near["person_code"].is_in(tr["person_code"].implode()).any()
    assert near.height + tr.height == holders.len()  # every holder is one or the other
    assert set(near["stage"]) <= {"account", "grant", "application"}
    assert (near.filter(pl.col("stage") == "application")["n_applications"] > 0).all()


def test_eligibility_flags(built) -> None:
    _, _, df = built
    expect = df["age"].is_between(18, 64) & ~df["exit_month"]
    assert (df["eligible"] == expect).all()
    assert df.group_by("person_code").agg(pl.col("exit_month").sum())["exit_month"].max() == 1


def test_columns_are_exactly_the_data_dictionary(built) -> None:
    root, _, df = built
    assert df.columns == dictionary.names("panel")
    for name in ("episodes", "treatment", "near_participants"):
        assert pl.read_parquet_schema(root / "research" / f"{name}.parquet").names() == \
            dictionary.names(name)
    doc = Path(__file__).resolve().parents[1] / "docs" / "data_dictionary.md"
    assert doc.read_text(encoding="utf-8") == dictionary.markdown(), \
        "regenerate: python -m impact.panel.dictionary > docs/data_dictionary.md"


@pytest.mark.parametrize(("block", "chunk"), [(1_111, 400), (1_000, 250), (37, 1_000)])
def test_blocks_of_persons_give_the_same_panel(built, tmp_path, block, chunk) -> None:
    """``block_persons`` holds a year of sources for a block of persons at a time (a range
    of pseudonyms): the same rows, in the same order, whatever the block and chunk sizes
    (blocks that split chunks, blocks smaller than a chunk)."""
    from impact import panel

    root, _, whole = built
    years = [2024] if block < 100 else None  # small blocks: one year is enough
    res = panel.build(root / "sources", tmp_path / "panel", years=years, chunk_persons=chunk,
                      block_persons=block)
    got = pl.read_parquet(tmp_path / "panel" / "**" / "*.parquet", hive_partitioning=False)
    want = whole if years is None else whole.filter(pl.col("month").dt.year() == 2024)
    assert got.equals(want, null_equal=True)
    assert res.rows == want.height
    parts = len(list((tmp_path / "panel" / "year=2024").glob("*.parquet")))
    n = whole["pid"].n_unique()
    assert parts >= -(-n // min(block, chunk)) - 1
