"""The person-month panel against the generator's truth and the raw rows."""

from __future__ import annotations

import polars as pl
import pytest

from impact import panel
from impact.ingest import IngestSettings, deliveries_in, ingest
from impact.pseudonym import PseudonymKey, pseudonymise
from impact.synth import SynthConfig, generate

KEY = PseudonymKey.demo()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("panel")
    generate(SynthConfig(persons=4_000, seed=41), root)
    ingest(deliveries_in(root / "landing"), IngestSettings(out=root, key=KEY, gx_sample=0))
    res = panel.build(root / "sources", root / "panel")
    df = pl.read_parquet(root / "panel" / "**" / "*.parquet", hive_partitioning=False)
    return root, res, df


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
