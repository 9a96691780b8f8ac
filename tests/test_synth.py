"""The synthetic registers: reproducibility, manifest, realism and ground truth.

One 60 k-person delivery (about 12 s) is shared by most tests; it has about
700 participants, enough to check the participation profile to a few points.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from impact import personal_code
from impact.manifest import DeliveryManifest, sha256_file
from impact.synth import SynthConfig, generate
from impact.synth import params as P
from impact.synth.errors import KINDS

_STR = {"person_code": pl.Utf8, "employer_id": pl.Utf8, "report_id": pl.Utf8,
        "occupation_code": pl.Utf8, "municipality_code": pl.Utf8, "isced_field": pl.Utf8,
        "spell_id": pl.Utf8, "account_id": pl.Utf8, "grant_id": pl.Utf8,
        "application_id": pl.Utf8, "programme_id": pl.Utf8, "period": pl.Utf8}


def _read(folder: Path, name: str) -> pl.DataFrame:
    path = folder / name
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    return pl.read_csv(path, schema_overrides=_STR, try_parse_dates=True)


def _table(landing: Path, table: str) -> pl.DataFrame:
    m = DeliveryManifest.read(landing)
    return pl.concat([_read(landing, f.path) for f in m.files if f.table == table],
                     how="vertical_relaxed")


@pytest.fixture(scope="module")
def delivery(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth60k")
    res = generate(SynthConfig(persons=60_000, seed=3), out)
    return res


def test_manifest_counts_checksums_and_columns_match_files(delivery) -> None:
    m = DeliveryManifest.read(delivery.landing_dir)
    on_disk = {p.name for p in delivery.landing_dir.iterdir()} - {"manifest.json"}
    assert on_disk == {f.path for f in m.files}
    for f in m.files:
        path = delivery.landing_dir / f.path
        assert sha256_file(path) == f.sha256, f.path
        assert path.stat().st_size == f.bytes
        df = _read(delivery.landing_dir, f.path)
        assert df.height == f.rows, f.path
        assert df.columns == f.columns, f.path
    expected = {
        "pmlp_persons", "pmlp_residence", "pmlp_children", "viis_education", "employers",
        "vid_monthly_reports", "nva_unemployment_spells", "vsaa_benefits", "stars_accounts",
        "stars_grants", "stars_programmes", "stars_applications", "stars_prior_learning",
        "ref_isco", "ref_nace_sections", "ref_nace_classes", "ref_municipalities", "ref_cpi",
    }
    assert set(m.rows_by_table()) == expected
    years = sorted(f.year for f in m.files if f.table == "vid_monthly_reports")
    assert years == list(range(2019, 2029))


def _small(tmp: Path, name: str, **kw) -> Path:
    cfg = SynthConfig(persons=kw.pop("persons", 3_000), **kw)
    return generate(cfg, tmp / name).landing_dir.parent.parent


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = _digests(_small(tmp_path, "a", seed=5))
    b = _digests(_small(tmp_path, "b", seed=5))
    c = _digests(_small(tmp_path, "c", seed=6))
    assert a == b
    assert a.keys() == c.keys()
    assert a["landing/2028-06/pmlp_persons.csv"] != c["landing/2028-06/pmlp_persons.csv"]


def test_parquet_flag_writes_the_same_tables(tmp_path: Path) -> None:
    csv = DeliveryManifest.read(_small(tmp_path, "csv", seed=4) / "landing" / "2028-06")
    pq_root = _small(tmp_path, "pq", seed=4, fmt="parquet")
    pq = DeliveryManifest.read(pq_root / "landing" / "2028-06")
    assert csv.rows_by_table() == pq.rows_by_table()
    assert {f.path.removesuffix(".csv") for f in csv.files} == {
        f.path.removesuffix(".parquet") for f in pq.files}
    persons_csv = _read(pq_root.parent / "csv" / "landing" / "2028-06", "pmlp_persons.csv")
    persons_pq = _read(pq_root / "landing" / "2028-06", "pmlp_persons.parquet")
    assert persons_csv["person_code"].to_list() == persons_pq["person_code"].to_list()


def test_personal_codes_are_valid_unique_and_in_both_formats(delivery) -> None:
    codes = _table(delivery.landing_dir, "pmlp_persons")["person_code"]
    assert codes.n_unique() == codes.len() == 60_000
    assert personal_code.is_valid(codes).all()
    new = codes.str.starts_with("32")
    assert 0.02 < new.mean() < 0.06
    legacy = codes.filter(~new)
    births = _table(delivery.landing_dir, "pmlp_persons").filter(~new)["birth_date"]
    assert (personal_code.birth_date(legacy) == births.to_numpy()).all()


def test_participation_profile_matches_the_report(delivery) -> None:
    parts = pl.read_parquet(delivery.truth_dir / "participants.parquet")
    n = parts.height
    # report: 14,110 trained of ~1.2 M working-age persons (1.18 %)
    assert 0.009 < n / 60_000 < 0.015
    got = {
        "higher_education": (parts["education"] == "high").mean(),
        "age_30_49": (parts["age_band"] == "30-49").mean(),
        "female": (parts["sex"] == "F").mean(),
    }
    for k, target in P.PROFILE_TARGETS.items():
        assert abs(got[k] - target) < 0.05, (k, got[k], target)
    # dropouts: report 924 of 16,377 starts (5.6 %)
    assert 0.02 < 1 - parts["completed"].mean() < 0.10
    # Riga-heavy: far above Riga's population share (~32 %)
    assert (parts["region"] == "LV006").mean() > 0.36


def test_accounts_and_applications_are_on_the_report_scale(delivery) -> None:
    scale = 60_000 / P.LATVIA_WORKING_AGE
    accounts = _table(delivery.landing_dir, "stars_accounts").height
    apps = _table(delivery.landing_dir, "stars_applications")
    assert abs(accounts / (P.ACCOUNTS_TOTAL * scale) - 1) < 0.15
    assert abs(apps.height / (20_251 * scale) - 1) < 0.25
    started = apps.filter(pl.col("started_on").is_not_null())
    assert (started["ended_on"] >= started["started_on"]).all()
    assert set(apps["status"].unique()) <= {"COMPLETED", "INTERRUPTED", "WITHDRAWN", "REJECTED"}


def test_truth_has_the_horizons_and_eecr06(delivery) -> None:
    h = pl.read_parquet(delivery.truth_dir / "att_horizons.parquet")
    overall = h.filter(pl.col("dimension") == "all")
    assert sorted(overall["horizon"].to_list()) == [6, 12, 24]
    assert (overall["n"] > 0).all()
    for dim in ("cohort", "sex", "age_band", "education", "region", "urbanisation",
                "programme_type", "completed"):
        assert h.filter(pl.col("dimension") == dim).height > 0, dim
    e = pl.read_parquet(delivery.truth_dir / "eecr06.parquet")
    assert set(e["criterion"]) == {"occupation_up", "pay_up", "fixed_to_permanent",
                                   "part_to_full_time", "any"}
    anyrow = e.filter(pl.col("criterion") == "any").row(0, named=True)
    assert anyrow["treated"] >= anyrow["untreated"]
    assert anyrow["n_reference"] > 0


def test_shadow_path_equals_observed_path_in_the_start_month(delivery) -> None:
    """Common random numbers: the two paths only diverge after the start month."""
    p = pl.read_parquet(delivery.truth_dir / "paths.parquet").filter(pl.col("event_start") == 0)
    assert p.height == pl.read_parquet(delivery.truth_dir / "participants.parquet").height
    for o in ("earnings_real", "employed", "days", "registered", "skill"):
        assert (p[f"{o}_1"] == p[f"{o}_0"]).all(), o


def test_effects_have_lock_in_then_build_up(delivery) -> None:
    a = pl.read_parquet(delivery.truth_dir / "att_event_time.parquet")

    def att(clock: str, e: int) -> float:
        return a.filter((pl.col("clock") == clock) & (pl.col("event_time") == e))[
            "att_earnings_real"].item()

    assert att("start", 1) < 0  # lock-in while in training
    assert 0 < att("end", 6) < att("end", 12) < att("end", 24)
    h = pl.read_parquet(delivery.truth_dir / "att_horizons.parquet")
    by_edu = h.filter((pl.col("dimension") == "completed") & (pl.col("horizon") == 24))
    done = by_edu.filter(pl.col("group") == "true")["att_earnings_real"].item()
    drop = by_edu.filter(pl.col("group") == "false")["att_earnings_real"].item()
    assert done > drop


def _observed_earnings(landing: Path) -> pl.DataFrame:
    """Person x month observed earnings (latest correction, duplicates collapsed)."""
    r = _table(landing, "vid_monthly_reports").unique()
    latest = r.sort("submitted_on").group_by("person_code", "employer_id", "period").last()
    return latest.group_by("person_code", "period").agg(pl.col("gross_income").sum())


def test_naive_comparison_is_badly_biased(delivery) -> None:
    """Participants vs everyone else is off by at least 3x the true effect."""
    parts = pl.read_parquet(delivery.truth_dir / "participants.parquet")
    earn = _observed_earnings(delivery.landing_dir)
    persons = _table(delivery.landing_dir, "pmlp_persons")
    window = [f"2027-{m:02d}" for m in range(7, 13)] + [f"2028-{m:02d}" for m in range(1, 7)]
    adults = persons.filter(
        (pl.col("birth_date") <= pl.date(2009, 1, 1)) & (pl.col("birth_date") > pl.date(1962, 1, 1))
        & pl.col("death_date").is_null() & pl.col("emigration_date").is_null())
    grid = adults.select("person_code").join(pl.DataFrame({"period": window}), how="cross")
    y = grid.join(earn, on=["person_code", "period"], how="left").with_columns(
        pl.col("gross_income").fill_null(0.0),
        pl.col("person_code").is_in(parts["person_code"].implode()).alias("participant"))
    means = y.group_by("participant").agg(pl.col("gross_income").mean())
    naive = (means.filter(pl.col("participant"))["gross_income"].item()
             - means.filter(~pl.col("participant"))["gross_income"].item())
    truth = pl.read_parquet(delivery.truth_dir / "paths.parquet").filter(
        pl.col("month").is_in(window))
    cpi = _table(delivery.landing_dir, "ref_cpi")
    # truth is in base-year prices; compare in nominal terms via the paths' own months
    att_nominal = truth.join(cpi.rename({"month": "m"}), left_on="month", right_on="m").select(
        ((pl.col("earnings_real_1") - pl.col("earnings_real_0")) * pl.col("cpi")).mean()
    ).item() / cpi.filter(pl.col("month").str.starts_with(str(P.CPI_BASE_YEAR)))["cpi"].mean()
    assert att_nominal > 0
    assert abs(naive - att_nominal) >= 3 * abs(att_nominal), (naive, att_nominal)


def test_selection_on_motivation_and_a_pre_training_dip(delivery) -> None:
    lat = pl.read_parquet(delivery.truth_dir / "latent.parquet")
    mot = lat.group_by("participant").agg(pl.col("motivation").mean())
    gap = (mot.filter(pl.col("participant"))["motivation"].item()
           - mot.filter(~pl.col("participant"))["motivation"].item())
    assert gap > 1.0
    # Ashenfelter dip: participants are more often registered unemployed just before
    # starting than a year earlier
    parts = pl.read_parquet(delivery.truth_dir / "participants.parquet")
    spells = _table(delivery.landing_dir, "nva_unemployment_spells").join(
        parts.select("person_code", "start_month"), on="person_code")
    start = pl.col("start_month").str.to_date("%Y-%m")

    def share_registered(months_before: int) -> float:
        day = start.dt.offset_by(f"-{months_before}mo").dt.offset_by("14d")
        hit = spells.filter((pl.col("registered_on") <= day)
                            & (pl.col("deregistered_on").is_null()
                               | (pl.col("deregistered_on") >= day)))
        return hit["person_code"].n_unique() / parts.height

    assert share_registered(1) > share_registered(13)


def test_inject_errors_are_counted_and_listed(tmp_path: Path) -> None:
    res = generate(SynthConfig(persons=4_000, seed=9, inject_errors=True), tmp_path)
    m = DeliveryManifest.read(res.landing_dir)
    listed = pl.read_parquet(res.truth_dir / "injected_errors.parquet")
    assert set(m.injected_errors) == set(KINDS)
    assert listed.group_by("kind").len().sort("kind").to_dict(as_series=False) == {
        "kind": sorted(m.injected_errors), "len": [m.injected_errors[k]
                                                   for k in sorted(m.injected_errors)]}
    reports = _table(res.landing_dir, "vid_monthly_reports")
    planted = listed.filter(pl.col("table") == "vid_monthly_reports")
    assert planted["key"].is_in(reports["report_id"].implode()).all()
    persons = _table(res.landing_dir, "pmlp_persons")
    bad = listed.filter(pl.col("kind") == "invalid_personal_code")["key"]
    assert bad.is_in(persons["person_code"].implode()).all()
    assert not personal_code.is_valid(bad).any()
    summary = json.loads((res.truth_dir / "summary.json").read_text())
    assert summary["rows"] == m.rows_by_table()


def test_config_rejects_windows_without_the_pilot() -> None:
    with pytest.raises(ValueError, match="end must be"):
        SynthConfig(end="2025-12")
    with pytest.raises(ValueError, match="start must be"):
        SynthConfig(start="2024-06")
    with pytest.raises(ValueError):
        SynthConfig(start="2019-13")
    assert np.isclose(SynthConfig().n_months, 114)


def test_trajectory_matching_removes_most_of_the_naive_bias(delivery) -> None:
    """Naive DiD is biased upwards; matching on the pre-period removes most, not all."""
    from impact.synth.checks import selection_bias

    r = selection_bias(delivery.landing_dir.parent.parent)
    assert r.true_att > 0
    assert r.naive_bias > 0.5 * r.true_att, r
    assert abs(r.residual_bias) < 0.75 * r.naive_bias, r


def _motivation_slope(root: Path) -> tuple[float, float]:
    """Slope (and its SE) of non-participants' log-earnings growth from the window's first
    12 months to its last 12 on latent motivation, with education groups as controls, among
    persons with earnings in all 24 of those months."""
    from impact.synth.checks import _earnings_matrix

    landing = next((root / "landing").iterdir())
    latent = pl.read_parquet(root / "truth" / "latent.parquet").filter(~pl.col("participant"))
    edu = (_table(landing, "viis_education").sort("award_date")
           .group_by("person_code").agg(pl.col("isced_level").last()))
    latent = latent.join(edu, on="person_code", how="left").with_columns(
        pl.col("isced_level").fill_null(2))
    mat, months = _earnings_matrix(landing, latent["person_code"])
    first, last = mat[:, :12], mat[:, -12:]  # the window's first and last 12 months
    keep = (first > 300).all(axis=1) & (last > 300).all(axis=1)
    y = np.log(last[keep]).mean(axis=1) - np.log(first[keep]).mean(axis=1)
    level = latent["isced_level"].to_numpy()[keep]
    x = np.column_stack([latent["motivation"].to_numpy()[keep], np.ones(keep.sum()),
                         level >= 5, level < 3]).astype(float)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    cov = np.linalg.inv(x.T @ x) * resid.var() * len(y) / (len(y) - x.shape[1])
    return float(beta[0]), float(np.sqrt(cov[0, 0]))


def test_hidden_confounding_scales_what_motivation_does_to_outcomes(tmp_path: Path) -> None:
    """``hidden_confounding=0``: same persons and motivation, but motivation no longer moves
    wages (no drift, no permanent-wage loading, no job-flow effect); the default keeps the
    drift of ``MOTIVATION_WAGE_DRIFT`` per month and SD."""
    runs = {}
    for c in (1.0, 0.0):
        out = tmp_path / f"c{c:g}"
        generate(SynthConfig(persons=30_000, seed=5, fmt="parquet", hidden_confounding=c), out)
        runs[c] = out
        m = DeliveryManifest.read(next((out / "landing").iterdir()))
        assert m.generator["hidden_confounding"] == c
    lat = {c: pl.read_parquet(r / "truth" / "latent.parquet") for c, r in runs.items()}
    assert lat[1.0]["person_code"].equals(lat[0.0]["person_code"])
    mot = lat[1.0]["motivation"].to_numpy()
    np.testing.assert_array_equal(mot, lat[0.0]["motivation"].to_numpy())
    np.testing.assert_allclose(
        lat[1.0]["person_effect"].to_numpy() - lat[0.0]["person_effect"].to_numpy(),
        0.03 * mot, atol=1e-12)
    slope1, se1 = _motivation_slope(runs[1.0])
    slope0, se0 = _motivation_slope(runs[0.0])
    drift = P.MOTIVATION_WAGE_DRIFT * 102  # 102 months between the two 12-month windows
    assert slope1 > 0.5 * drift and slope1 > 3 * se1, (slope1, se1, drift)
    assert abs(slope0) < 3 * se0, (slope0, se0)


def test_hidden_confounding_is_in_the_config_and_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from impact.cli import impact
    from impact.config import SynthSection

    assert SynthSection(hidden_confounding=0.5).synth_config().hidden_confounding == 0.5
    with pytest.raises(ValueError, match="hidden_confounding"):
        SynthSection(hidden_confounding=-1)
    r = CliRunner().invoke(impact, ["synth", "--persons", "600", "--out", str(tmp_path),
                                    "--hidden-confounding", "0", "--format", "parquet"])
    assert r.exit_code == 0, r.output
    m = DeliveryManifest.read(next((tmp_path / "landing").iterdir()))
    assert m.generator["hidden_confounding"] == 0.0
