"""The evaluation stages end to end on the small synthetic evaluation."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from impact import evaluate
from impact.twins.riskset import TwinSettings


@pytest.fixture(scope="module")
def stages(research, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    arrays = evaluate.load_arrays(research.root / "panel", tr)
    tw = evaluate.run_twins(arrays, TwinSettings(gate_min_treated=10),
                            out / "twins")
    est = evaluate.run_estimates(arrays, tw.pairs, tr, research.root / "sources",
                                 out / "estimates", reps=199, seed=3)
    return out, arrays, tw, est


def test_arrays_start_36_months_before_the_first_cohort(stages, research) -> None:
    _, arrays, _, _ = stages
    first = pl.read_parquet(research.root / "research" / "treatment.parquet")["cohort"].min()
    assert arrays.month_index(first) == 36


def test_stages_write_their_tables(stages) -> None:
    out, _, tw, est = stages
    assert (out / "twins" / "summary.parquet").is_file()
    assert (out / "twins" / "pre_trajectories.parquet").is_file()
    pairs = pl.read_parquet(out / "twins" / "pairs" / "**" / "*.parquet",
                            hive_partitioning=False)
    assert pairs.height == tw.pairs.height
    es = pl.read_parquet(out / "estimates" / "event_study.parquet")
    assert {"earnings_real", "employed", "daily_wage_real"} <= set(es["outcome"])
    assert set(es["clock"]) == {"start", "end"}
    head = json.loads((out / "estimates" / "headline.json").read_text())
    assert set(head["horizons"]) <= {"6", "12", "24"} and head["horizons"]
    for h in head["horizons"].values():
        assert h["ci_low"] <= h["att"] <= h["ci_high"]
    assert est.n_treated == tw.pairs["treated_pid"].n_unique()
    bench = pl.read_parquet(out / "estimates" / "sector_benchmark.parquet")
    assert set(bench["clock"]) == {"start", "end"}
    assert set(bench["series"]) == {"earnings_real", "employed"}


def test_staggered_cross_check_sits_beside_the_matched_estimate(stages) -> None:
    out, _, _, est = stages
    cmp = pl.read_parquet(out / "estimates" / "comparison.parquet")
    assert cmp.height > 20
    assert {"att_matched", "att_staggered", "z", "disagree"} <= set(cmp.columns)
    z = cmp["z"].to_numpy()
    assert np.isfinite(z).all()
    assert est.disagreements == int(cmp["disagree"].sum())


def test_refutation_and_sensitivity_stored_with_the_estimates(stages) -> None:
    out, _, _, _ = stages
    ref = json.loads((out / "estimates" / "refutation.json").read_text())
    placebo = ref.pop("placebo_in_time")
    assert placebo["baseline"] == [-24, -13] and placebo["se"] > 0
    assert any("skipped" not in h for h in ref.values()), "no headline horizon refuted"
    for h in ref.values():
        if "skipped" in h:
            continue
        names = {r["name"] for r in h["refutation"]["refutations"]}
        assert names == {"placebo_treatment", "random_common_cause", "data_subset"}
        assert h["e_value"]["e_value"] >= 1.0
        assert "critical_gamma" in h["rosenbaum"]


def test_subgroups_partition_the_treated_and_full_subset_reproduces_the_estimate(
        stages, research) -> None:
    out, arrays, tw, _ = stages
    sub = pl.read_parquet(out / "estimates" / "subgroups.parquet")
    n = tw.pairs["treated_pid"].n_unique()
    per_dim = sub.group_by("dimension", "value").agg(pl.col("n_treated").first()) \
        .group_by("dimension").agg(pl.col("n_treated").sum())
    assert (per_dim["n_treated"] == n).all()
    # the subset of everybody is the whole estimate
    from impact.estimate.matched_did import matched_event_study
    from impact.outcomes import build_trajectories

    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    traj = build_trajectories(arrays, tw.pairs, tr)
    a = matched_event_study(traj, "earnings_real", "end", event_times=[6], reps=99, seed=1)
    b = matched_event_study(traj.subset(np.ones(traj.n_treated, bool)), "earnings_real", "end",
                            event_times=[6], reps=99, seed=1)
    assert a.at(6)["att"] == b.at(6)["att"] and a.at(6)["se"] == b.at(6)["se"]


def test_no_pairs_gives_a_clear_error(stages, research, tmp_path) -> None:
    _, arrays, tw, _ = stages
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    with pytest.raises(ValueError, match="no matched pairs: no treated person has a twin"):
        evaluate.run_estimates(arrays, tw.pairs.clear(), tr, research.root / "sources",
                               tmp_path, reps=99)


def test_pretrend_tests_stored_and_gate(stages, tmp_path) -> None:
    out, _, _, _ = stages
    tests = json.loads((out / "estimates" / "pretrend.json").read_text())
    t = tests["earnings_real"]
    assert t["computed"] and t["df"] == len(t["event_times"]) == 24
    assert min(t["event_times"]) == -36 and max(t["event_times"]) == -13
    assert 0 <= t["pvalue"] <= 1
    assert evaluate.pretrend_failures(out / "estimates", ["earnings_real"], 1e-9) == []
    fails = evaluate.pretrend_failures(out / "estimates", ["earnings_real"], 0.999999)
    assert len(fails) == 1 and fails[0].startswith("earnings_real: joint pre-trend test")
    assert "materialise the estimates" in evaluate.pretrend_failures(tmp_path, ["employed"],
                                                                     0.05)[0]


def test_estimates_with_the_regression_bias_correction(stages, research, tmp_path) -> None:
    """``bias_correction`` reaches the event studies and subgroups and is recorded; the same
    twins and counts; the pre-trend tests and the placebo in time stay plain."""
    _, arrays, tw, _ = stages
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    # few enough covariates for this sample's twins (5 rows per coefficient)
    feats = ("sex", "earn_l1", "days_12", "region_code", "job_recency")
    est = evaluate.run_estimates(arrays, tw.pairs, tr, research.root / "sources",
                                 tmp_path / "bc", reps=199, seed=3, bias_correction=feats)
    head = json.loads((tmp_path / "bc" / "headline.json").read_text())
    assert head["bias_correction"] == list(feats)
    es = pl.read_parquet(tmp_path / "bc" / "event_study.parquet")
    assert es["bias_corrected"].any()
    plain = json.loads((stages[0] / "estimates" / "headline.json").read_text())
    assert plain["bias_correction"] is None
    for h, r in head["horizons"].items():
        p = plain["horizons"][h]
        assert r["n_treated"] == p["n_treated"] and r["n_twins"] == p["n_twins"]
        assert r["att"] != p["att"]
    sub = pl.read_parquet(tmp_path / "bc" / "subgroups.parquet")
    assert "bias_corrected" in sub.columns
    # the publication's pre-trend gate keeps its tests (on the plain placebos)
    tests = json.loads((tmp_path / "bc" / "pretrend.json").read_text())
    before = json.loads((stages[0] / "estimates" / "pretrend.json").read_text())
    assert tests["earnings_real"]["computed"]
    assert tests == before
    ref = json.loads((tmp_path / "bc" / "refutation.json").read_text())["placebo_in_time"]
    ref0 = json.loads((stages[0] / "estimates" / "refutation.json").read_text())
    assert ref == ref0["placebo_in_time"]
    assert est.n_treated == tw.pairs["treated_pid"].n_unique()
