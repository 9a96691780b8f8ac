"""Invariants of the packaged reference tables (impact.reference).

The values themselves are approximations documented in src/impact/reference/SOURCES.md;
these tests pin down structure (counts, codes, dtypes, shares) and the few exact facts
(classification structure, holiday rules, Easter dates) that must never drift.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from impact import reference as ref
from impact.reference import macro, tables, workdays

STATE_CITIES = {
    "Rīga": "0001000",
    "Daugavpils": "0050000",
    "Jelgava": "0090000",
    "Jūrmala": "0130000",
    "Liepāja": "0170000",
    "Rēzekne": "0210000",
    "Ventspils": "0270000",
}
REGIONS = {
    "LV005": "Latgale",
    "LV006": "Rīga",
    "LV007": "Pierīga",
    "LV008": "Vidzeme",
    "LV009": "Kurzeme",
    "LV00A": "Zemgale",
}


@pytest.mark.parametrize(
    ("loader", "schema"),
    [
        (ref.regions, tables.REGIONS_SCHEMA),
        (ref.municipalities, tables.MUNICIPALITIES_SCHEMA),
        (ref.isco_major_groups, tables.ISCO_MAJOR_GROUPS_SCHEMA),
        (ref.isco_occupations, tables.ISCO_OCCUPATIONS_SCHEMA),
        (ref.nace_sections, tables.NACE_SECTIONS_SCHEMA),
        (ref.nace_classes, tables.NACE_CLASSES_SCHEMA),
        (ref.isced_levels, tables.ISCED_LEVELS_SCHEMA),
        (ref.isced_fields, tables.ISCED_FIELDS_SCHEMA),
        (ref.cpi_monthly, macro.CPI_SCHEMA),
        (ref.wages_annual, macro.WAGES_SCHEMA),
        (ref.working_days_monthly, workdays.WORKING_DAYS_SCHEMA),
    ],
)
def test_explicit_schema_and_no_nulls(loader, schema):
    df = loader()
    assert df.schema == schema
    assert df.height > 0
    assert df.null_count().sum_horizontal().item() == 0


def test_loaders_return_independent_copies():
    df = ref.municipalities()
    df.drop_in_place("name")
    assert "name" in ref.municipalities().columns


# --------------------------------------------------------------------------- geography
def test_regions():
    reg = ref.regions()
    assert dict(zip(reg["region_code"], reg["region_name"], strict=True)) == REGIONS


def test_municipalities_structure():
    mun = ref.municipalities()
    assert mun.height == 43
    assert mun["municipality_code"].n_unique() == 43
    assert mun["name"].n_unique() == 43
    assert mun["municipality_code"].str.contains(r"^[0-9]{7}$").all()
    cities = mun.filter(pl.col("kind") == "state_city")
    assert dict(zip(cities["name"], cities["municipality_code"], strict=True)) == STATE_CITIES
    novadi = mun.filter(pl.col("kind") == "municipality")
    assert novadi.height == 36
    assert novadi["name"].str.ends_with(" novads").all()
    assert "Varakļānu novads" in novadi["name"].to_list()
    assert set(mun["kind"]) == {"state_city", "municipality"}


def test_municipalities_regions_urbanisation_population():
    mun = ref.municipalities()
    counts = dict(mun.group_by("region_code").len().iter_rows())
    assert set(counts) == set(REGIONS)
    assert all(n > 0 for n in counts.values())
    assert counts["LV006"] == 1  # Rīga statistical region is the city alone
    # region_name comes from regions(), consistently
    assert all(REGIONS[c] == n for c, n in zip(mun["region_code"], mun["region_name"], strict=True))
    assert set(mun["urbanisation"].unique()) == {1, 2, 3}
    assert mun.filter(pl.col("name") == "Rīga")["urbanisation"].item() == 1
    assert (mun["population"] > 0).all()
    total = mun["population"].sum()
    assert 1_820_000 <= total <= 1_920_000
    riga = mun.filter(pl.col("name") == "Rīga")["population"].item()
    assert 0.30 < riga / total < 0.34


# --------------------------------------------------------------------------- ISCO
def test_isco_codes_major_groups_and_skill_levels():
    occ = ref.isco_occupations()
    assert 60 <= occ.height <= 100
    assert occ["isco_code"].str.contains(r"^[1-9][0-9]{3}$").all()
    assert occ["isco_code"].n_unique() == occ.height
    first_digit = occ["isco_code"].str.slice(0, 1).cast(pl.Int8)
    assert (first_digit == occ["major_group"]).all()
    assert set(occ["major_group"]) == set(range(1, 10))
    rule = {1: 4, 2: 4, 3: 3, 4: 2, 5: 2, 6: 2, 7: 2, 8: 2, 9: 1}
    assert all(rule[g] == s for g, s in zip(occ["major_group"], occ["skill_level"], strict=True))
    groups = ref.isco_major_groups()
    assert groups["major_group"].to_list() == list(range(1, 10))
    assert dict(zip(groups["major_group"], groups["skill_level"], strict=True)) == rule
    joined = occ.join(groups, on="major_group", suffix="_group")
    assert (joined["skill_level"] == joined["skill_level_group"]).all()


def test_isco_attributes():
    occ = ref.isco_occupations()
    for code in (
        "2512",
        "2511",
        "3512",
        "2411",
        "4110",
        "5223",
        "8322",
        "9112",
        "7115",
        "2341",
        "2221",
    ):
        assert code in occ["isco_code"].to_list()
    assert occ["min_isced"].is_between(0, 8).all()
    # higher skill level never needs less schooling on average
    by_skill = occ.group_by("skill_level").agg(pl.col("min_isced").mean()).sort("skill_level")
    assert by_skill["min_isced"].is_sorted()
    assert occ["rel_wage"].is_between(0.3, 3.5).all()
    assert (occ["weight"] > 0).all()
    assert occ["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    sections = set(ref.nace_sections()["section"])
    used = {s for row in occ["sections"] for s in row.split(";")}
    assert used <= sections
    # is_ict follows Eurostat's ISCO-08 based definition of ICT specialists
    ict_prefixes = ("133", "25", "35", "2152", "2153", "2166", "2356", "2434", "7422")
    expected = occ["isco_code"].map_elements(
        lambda c: c.startswith(ict_prefixes), return_dtype=pl.Boolean
    )
    assert (expected == occ["is_ict"]).all()
    assert occ["is_ict"].sum() >= 5
    # ICT professionals earn more than the average occupation
    assert occ.filter("is_ict")["rel_wage"].mean() > occ["rel_wage"].mean()


# --------------------------------------------------------------------------- NACE
def test_nace_sections():
    sec = ref.nace_sections()
    assert sec["section"].to_list() == [chr(c) for c in range(ord("A"), ord("U") + 1)]
    assert sec["employment_share"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (sec["employment_share"] > 0).all()
    assert sec["public_share"].is_between(0.0, 1.0).all()
    wage = dict(zip(sec["section"], sec["rel_wage"], strict=True))
    public = dict(zip(sec["section"], sec["public_share"], strict=True))
    assert wage["K"] > 1.5 and wage["J"] > 1.5 and wage["I"] < 0.7
    assert min(public["O"], public["P"], public["Q"]) > max(
        v for k, v in public.items() if k not in "OPQ"
    )
    # employment-weighted average of relative wages is close to 1 (consistency)
    avg = (sec["rel_wage"] * sec["employment_share"]).sum()
    assert 0.9 < avg < 1.1
    divisions = [d for row in sec["divisions"] for d in row.split(";")]
    assert len(divisions) == 88 == len(set(divisions))  # NACE Rev. 2 has 88 divisions
    assert all(len(d) == 2 and d.isdigit() for d in divisions)


def test_nace_classes():
    cls = ref.nace_classes()
    sec = ref.nace_sections()
    assert 80 <= cls.height <= 120
    assert cls["nace_code"].str.contains(r"^[0-9]{2}\.[0-9]{2}$").all()
    assert cls["nace_code"].n_unique() == cls.height
    assert (cls["nace_code"].str.slice(0, 2) == cls["division"]).all()
    div_of = {
        d: s
        for s, row in zip(sec["section"], sec["divisions"], strict=True)
        for d in row.split(";")
    }
    assert all(div_of[d] == s for d, s in zip(cls["division"], cls["section"], strict=True))
    assert set(cls["section"]) == set(sec["section"])  # every section, A to U
    for code in ("62.01", "47.11", "56.10", "85.20"):
        assert code in cls["nace_code"].to_list()
    sums = cls.group_by("section").agg(pl.col("weight").sum())["weight"]
    assert ((sums - 1.0).abs() < 1e-6).all()
    assert (cls["weight"] > 0).all()


# --------------------------------------------------------------------------- ISCED
def test_isced():
    lev = ref.isced_levels()
    assert lev["level"].to_list() == list(range(9))
    expected = ["low"] * 3 + ["medium"] * 2 + ["high"] * 4
    assert lev["group"].to_list() == expected
    fields = ref.isced_fields()
    assert fields["field_code"].to_list() == [f"{i:02d}" for i in range(11)]
    assert (
        fields.filter(pl.col("field_code") == "06")["title_en"]
        .item()
        .startswith("Information and Communication")
    )


# --------------------------------------------------------------------------- CPI
def test_cpi_monthly_path():
    cpi = ref.cpi_monthly()
    assert cpi.height == 16 * 12
    assert cpi["month"][0] == date(2015, 1, 1) and cpi["month"][-1] == date(2030, 12, 1)
    assert (cpi["month"].dt.day() == 1).all()
    assert cpi["month"].diff().drop_nulls().dt.total_days().is_between(28, 31).all()
    annual = (
        cpi.group_by(pl.col("month").dt.year().alias("year")).agg(pl.col("cpi").mean()).sort("year")
    )
    level = dict(zip(annual["year"], annual["cpi"], strict=True))
    assert level[2015] == pytest.approx(100.0, abs=1e-9)
    assert level[2022] / level[2021] - 1 == pytest.approx(0.172, abs=0.02)
    assert level[2023] / level[2022] - 1 == pytest.approx(0.091, abs=0.01)
    assert level[2024] / level[2023] - 1 == pytest.approx(0.013, abs=0.01)
    # monotone-ish: only small month-to-month dips, no jumps
    mom = cpi["cpi"].pct_change().drop_nulls()
    assert mom.min() > -0.005
    assert mom.max() < 0.03
    assert cpi["cpi"][-1] > 1.6 * cpi["cpi"][0]
    # projection: 2.5 % a year after the last observed year
    projected_years = set(cpi.filter("projected")["month"].dt.year())
    assert projected_years == set(range(2026, 2031))
    assert level[2030] / level[2029] - 1 == pytest.approx(macro.CPI_PROJECTED_INFLATION)


# --------------------------------------------------------------------------- wages
def test_wages_annual():
    w = ref.wages_annual()
    assert w["year"].to_list() == list(range(2015, 2031))
    by_year = {r["year"]: r for r in w.iter_rows(named=True)}
    assert by_year[2019]["avg_gross_wage"] == 1076
    assert by_year[2025]["avg_gross_wage"] == 1815
    assert by_year[2015]["minimum_wage"] == 360
    assert by_year[2018]["minimum_wage"] == 430
    assert by_year[2023]["minimum_wage"] == 620
    assert by_year[2026]["minimum_wage"] == 780
    assert w.filter("projected")["year"].to_list() == list(range(2026, 2031))
    assert w.filter("minimum_wage_projected")["year"].to_list() == list(range(2027, 2031))
    assert by_year[2027]["avg_gross_wage"] / by_year[2026]["avg_gross_wage"] == pytest.approx(
        1 + macro.WAGE_PROJECTED_GROWTH, abs=1e-4
    )
    assert w["avg_gross_wage"].is_sorted() and w["minimum_wage"].is_sorted()
    assert (w["minimum_wage"] < 0.6 * w["avg_gross_wage"]).all()


# --------------------------------------------------------------------------- calendar
def test_easter_sunday_known_dates():
    known = {
        2015: "2015-04-05",
        2016: "2016-03-27",
        2019: "2019-04-21",
        2024: "2024-03-31",
        2025: "2025-04-20",
        2030: "2030-04-21",
        2038: "2038-04-25",  # latest possible date
        2285: "2285-03-22",  # earliest possible date
    }
    got = ref.easter_sunday(list(known))
    np.testing.assert_array_equal(got, np.array(list(known.values()), dtype="datetime64[D]"))


def test_public_holidays():
    hol = ref.public_holidays(2024, 2024)
    assert hol.height == 12
    dates = set(hol["date"])
    for d in (
        "2024-01-01",
        "2024-03-29",
        "2024-04-01",
        "2024-05-01",
        "2024-05-04",
        "2024-06-23",
        "2024-06-24",
        "2024-11-18",
        "2024-12-24",
        "2024-12-31",
    ):
        assert date.fromisoformat(d) in dates


def test_working_days_monthly():
    wd = ref.working_days_monthly()
    assert wd.height == 192
    assert wd["month"][0] == date(2015, 1, 1) and wd["month"][-1] == date(2030, 12, 1)
    assert wd["working_days"].is_between(17, 23).all()
    got = dict(zip(wd["month"], wd["working_days"], strict=True))
    assert got[date(2024, 1, 1)] == 22  # 23 weekdays minus Monday 1 January
    assert got[date(2024, 6, 1)] == 19  # 20 weekdays minus Monday 24 June (23rd a Sunday)
    assert got[date(2024, 12, 1)] == 18  # 22 weekdays minus 24, 25, 26, 31 December
    assert got[date(2024, 7, 1)] == 23  # no holidays
    per_year = wd.group_by(pl.col("month").dt.year()).agg(pl.col("working_days").sum())
    assert per_year["working_days"].is_between(245, 256).all()
