"""Outcome trajectories stored per cohort (:mod:`impact.outcome_store`).

Combining stored and freshly built cohorts must give exactly the trajectories of one joint
build, on the whole panel and on the estimates' subset arrays; a stored cohort is reused only
while every input it depends on is unchanged.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from impact import evaluate
from impact.indicators import read_pairs
from impact.outcome_store import panel_signature, stored_fingerprint, trajectories_for
from impact.outcomes import Trajectories, build_trajectories, load_sector_rel_wage
from impact.twins.riskset import TwinSettings


@pytest.fixture(scope="module")
def matched(research, tmp_path_factory):
    out = tmp_path_factory.mktemp("outcome_store")
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    arrays = evaluate.load_arrays(research.root / "panel", tr)
    evaluate.run_twins(arrays, TwinSettings(gate_min_treated=10), out / "twins")
    pairs = read_pairs(out / "twins")
    rel = load_sector_rel_wage(research.root / "sources")
    return out, tr, arrays, pairs, rel


def assert_same_trajectories(a: Trajectories, b: Trajectories) -> None:
    assert a.outcomes == b.outcomes and a.months == b.months
    for f in ("treated_pid", "treated_code", "cohort", "end", "pair_treated", "twin_pid",
              "twin_code", "weight", "twin_start"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert sorted(a.grids) == sorted(b.grids)
    for clock, g in a.grids.items():
        h = b.grids[clock]
        np.testing.assert_array_equal(g.event_time, h.event_time)
        np.testing.assert_array_equal(g.treated_status, h.treated_status)
        np.testing.assert_array_equal(g.twin_status, h.twin_status)
        for o in a.outcomes:
            for side in ("treated", "twins"):
                x, y = getattr(g, side)[o], getattr(h, side)[o]
                assert x.dtype == y.dtype, (clock, side, o)
                np.testing.assert_array_equal(x, y, err_msg=f"{clock} {side} {o}")


def test_store_equals_joint_build_and_is_reused(matched, tmp_path):
    _, tr, arrays, pairs, rel = matched
    cohorts = sorted(set(pairs["cohort"].to_list()))
    assert len(cohorts) >= 3
    joint = build_trajectories(arrays, pairs, tr, sector_rel_wage=rel)
    store = tmp_path / "outcomes"
    # two cohorts first (as a cohort run would), then the rest on demand
    some, stats = trajectories_for(arrays, pairs, tr, store, sector_rel_wage=rel,
                                   cohorts=cohorts[:2])
    assert stats.built == tuple(c.strftime("%Y-%m") for c in cohorts[:2]) and not stats.reused
    assert_same_trajectories(
        some, build_trajectories(arrays, pairs.filter(pl.col("cohort").is_in(cohorts[:2])), tr,
                                 sector_rel_wage=rel))
    combined, stats = trajectories_for(arrays, pairs, tr, store, sector_rel_wage=rel)
    assert len(stats.reused) == 2 and len(stats.built) == len(cohorts) - 2
    assert_same_trajectories(combined, joint)
    again, stats = trajectories_for(arrays, pairs, tr, store, sector_rel_wage=rel)
    assert not stats.built and len(stats.reused) == len(cohorts)
    assert_same_trajectories(again, joint)
    # the stored grids hold pseudonyms, never pids of this panel
    assert not list(store.glob("**/*pid*"))


def test_store_on_subset_arrays_equals_whole_panel(matched, research, tmp_path):
    _, tr, arrays, pairs, rel = matched
    joint = build_trajectories(arrays, pairs, tr, sector_rel_wage=rel)
    store = tmp_path / "outcomes"
    trajectories_for(arrays, pairs, tr, store, sector_rel_wage=rel)  # stored from the panel
    sub, sub_pairs = evaluate.load_estimation_arrays(research.root / "panel", tr, pairs,
                                                     naive_sample=500, seed=1)
    got, stats = trajectories_for(sub, sub_pairs, tr, store, sector_rel_wage=rel)
    assert not stats.built
    direct = build_trajectories(sub, sub_pairs, tr, sector_rel_wage=rel)
    assert_same_trajectories(got, direct)
    # the same persons and values as the whole-panel build (pids differ: subset rows)
    np.testing.assert_array_equal(got.treated_code, joint.treated_code)
    np.testing.assert_array_equal(got.twin_code, joint.twin_code)
    for clock, g in got.grids.items():
        np.testing.assert_array_equal(g.treated["earnings_real"],
                                      joint.grids[clock].treated["earnings_real"])


def test_changed_inputs_rebuild_only_what_they_affect(matched, research, tmp_path):
    _, tr, arrays, pairs, rel = matched
    cohorts = sorted(set(pairs["cohort"].to_list()))
    store = tmp_path / "outcomes"
    trajectories_for(arrays, pairs, tr, store, sector_rel_wage=rel)
    # a cohort re-matched (one of its treated persons lost their twins): only it is rebuilt
    per_cohort = pairs.group_by("cohort").agg(pl.col("treated_pid").n_unique().alias("n"))
    first = per_cohort.filter(pl.col("n") >= 2)["cohort"].min()  # keeps other treated
    gone = pairs.filter(pl.col("cohort") == first)["treated_pid"][0]
    dropped = pairs.filter(~((pl.col("cohort") == first) & (pl.col("treated_pid") == gone)))
    _, stats = trajectories_for(arrays, dropped, tr, store, sector_rel_wage=rel)
    assert stats.built == (first.strftime("%Y-%m"),)
    assert len(stats.reused) == len(cohorts) - 1
    # a leaving month corrected for one treated person of the last cohort
    last = cohorts[-1]
    code = dropped.filter(pl.col("cohort") == last)["treated_code"][0]
    tr2 = tr.with_columns(pl.when(pl.col("person_code") == code)
                          .then(pl.col("end_month").dt.offset_by("1mo"))
                          .otherwise(pl.col("end_month")).alias("end_month"))
    _, stats = trajectories_for(arrays, dropped, tr2, store, sector_rel_wage=rel)
    assert stats.built == (last.strftime("%Y-%m"),)
    # a rebuilt panel file invalidates every cohort
    sig = panel_signature(research.root / "panel")
    f = sorted((research.root / "panel").glob("**/*.parquet"))[0]
    st = f.stat()
    try:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        assert panel_signature(research.root / "panel") != sig
        _, stats = trajectories_for(arrays, dropped, tr2, store, sector_rel_wage=rel,
                                    write=False)
        assert not stats.reused
    finally:
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert stored_fingerprint(store, last) is not None


def test_cohort_runs_then_estimates_equal_direct_estimates(matched, research, tmp_path):
    from impact.evaluate import run_estimates, store_cohort_outcomes

    _, tr, arrays, pairs, _ = matched
    cohorts = sorted(set(pairs["cohort"].to_list()))
    sources = research.root / "sources"
    store = tmp_path / "outcomes"
    # two cohort partitions' runs, each loading only its own persons
    for part in (cohorts[:1], cohorts[1:2]):
        stats = store_cohort_outcomes(research.root / "panel", tr, pairs, part, sources, store)
        assert stats.built == tuple(c.strftime("%Y-%m") for c in part)
    direct = run_estimates(arrays, pairs, tr, sources, tmp_path / "a", reps=49, seed=2)
    stored = run_estimates(arrays, pairs, tr, sources, tmp_path / "b", reps=49, seed=2,
                           outcome_store=store)
    assert len(stored.cohorts_reused) == 2
    assert len(stored.cohorts_built) == len(cohorts) - 2
    assert not direct.cohorts_reused and not direct.cohorts_built
    for name in ("event_study", "staggered_dynamic", "subgroups"):
        a = pl.read_parquet(tmp_path / "a" / f"{name}.parquet")
        b = pl.read_parquet(tmp_path / "b" / f"{name}.parquet")
        assert a.equals(b), name
