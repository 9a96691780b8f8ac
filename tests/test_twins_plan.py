"""Twins one cohort at a time (impact.twins.plan) equal twins of all cohorts at once."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from polars.testing import assert_frame_equal

from impact.twins.features import PanelArrays
from impact.twins.plan import (
    PlanError,
    align_pairs,
    combine_planned,
    make_plan,
    match_planned,
    plan_is_current,
    read_cohorts,
    read_plan,
    update_plan,
    write_cohort,
    write_plan,
)
from impact.twins.riskset import TwinSettings, match_cohorts, pre_trajectories
from impact.twins.riskset import write as write_twins
from tests.twins_files import assert_same_twins

SETTINGS = TwinSettings(gate_min_treated=10)


@pytest.fixture(scope="module")
def arrays(research) -> PanelArrays:
    return PanelArrays.load(research.root / "panel", date(2021, 1, 1), date(2028, 6, 1))


@pytest.fixture(scope="module")
def whole(arrays: PanelArrays):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return match_cohorts(arrays, SETTINGS, pre=True)


def _planned(arrays: PanelArrays, out: Path, order: list[int] | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, made = update_plan(arrays, SETTINGS, out)
        assert made
        cohorts = list(plan.cohorts)
        for i in order or range(len(cohorts)):
            write_cohort(match_planned(arrays, plan, cohorts[i]), plan, out)
        return plan, combine_planned(plan, out)


def test_cohort_by_cohort_equals_all_at_once(arrays, whole, tmp_path: Path) -> None:
    """Plan, cohorts in reverse order, combination: the same files as one call."""
    write_twins(whole, tmp_path / "whole")
    n = len(whole.summary)
    assert n >= 3
    plan, res = _planned(arrays, tmp_path / "parts", order=list(range(n))[::-1])
    assert_same_twins(tmp_path / "whole", tmp_path / "parts")
    assert res.passed == whole.passed and res.failures() == whole.failures()
    assert_frame_equal(res.pre, pre_trajectories(arrays, whole), check_exact=False, rel_tol=1e-12)
    summary = (tmp_path / "parts" / "plan.json").read_text()
    assert plan.fingerprint in summary and "propensity_model" in summary


def test_plan_is_kept_while_current_and_stale_cohorts_refused(arrays, tmp_path: Path) -> None:
    out = tmp_path / "tw"
    plan, _ = _planned(arrays, out)
    again, made = update_plan(arrays, SETTINGS, out)
    assert not made and again.fingerprint == plan.fingerprint
    assert plan_is_current(read_plan(out), arrays, SETTINGS)
    # other settings: a new plan; the cohorts matched with the old one are refused by name
    other = TwinSettings(gate_min_treated=10, caliper=0.1)
    assert not plan_is_current(plan, arrays, other)
    new, made = update_plan(arrays, other, out)
    assert made and new.fingerprint != plan.fingerprint
    with pytest.raises(PlanError, match="matched with an earlier plan: " + plan.keys[0]):
        read_cohorts(new, out)


def test_missing_cohort_and_unknown_cohort_named(arrays, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = make_plan(arrays, SETTINGS)
    write_plan(plan, tmp_path)
    with pytest.raises(PlanError, match="not matched yet: " + plan.keys[0]):
        read_cohorts(plan, tmp_path)
    with pytest.raises(PlanError, match="2019-01 is not in the twins plan"):
        match_planned(arrays, plan, date(2019, 1, 1))
    with pytest.raises(PlanError, match="materialise twins_plan first"):
        read_plan(tmp_path / "nowhere")


def test_stale_pairs_folders_removed(arrays, whole, tmp_path: Path) -> None:
    write_twins(whole, tmp_path)
    stray = tmp_path / "pairs" / "cohort=2019-01"
    stray.mkdir(parents=True)
    (stray / "part-0.parquet").write_bytes(b"")
    write_twins(whole, tmp_path)
    assert not stray.exists()


def test_align_pairs_follows_codes_when_pids_shift(whole, arrays) -> None:
    pairs = whole.pairs
    codes = arrays.person_code.astype(str)
    # a new resident sorted first shifts every pid by one
    shifted = np.r_[np.array(["0" * 64]), codes]
    out = align_pairs(pairs, shifted)
    assert (out["treated_pid"] == pairs["treated_pid"] + 1).all()
    assert (out["twin_pid"] == pairs["twin_pid"] + 1).all()
    assert_frame_equal(out.drop("treated_pid", "twin_pid"), pairs.drop("treated_pid", "twin_pid"))
    with pytest.raises(ValueError, match="not in the panel"):
        align_pairs(pairs, np.delete(codes, int(pairs["twin_pid"][0])))
