"""Cohort-partitioned twins under Dagster: incremental runs, the cohort sensor, and cohort
ranges run in parallel processes giving the same twins as one sequential call."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from impact import evaluate
from impact.twins.riskset import TwinSettings
from tests.twins_files import assert_same_twins

REPO = Path(__file__).resolve().parents[1]
TWINS = ("twins_plan", "twins_cohort", "twins")


def _root(research, base: Path) -> tuple[Path, Path]:
    root = base / "data"
    root.mkdir()
    for part in ("landing", "sources", "panel", "research"):
        (root / part).symlink_to(research.root / part, target_is_directory=True)
    cfg = base / "eval.yaml"
    cfg.write_text(
        f"data: {{root: {root}}}\nsynth: {{persons: 4000, seed: 41}}\n"
        "ingest: {key: {source: demo}}\ntwins: {gate_min_treated: 10}\n"
        "estimates: {reps: 99}\n", encoding="utf-8")
    return root, cfg


@pytest.fixture(scope="module")
def sequential(research, tmp_path_factory) -> Path:
    """The twins of every cohort in one call (impact.evaluate.run_twins)."""
    out = tmp_path_factory.mktemp("sequential")
    tr = pl.read_parquet(research.root / "research" / "treatment.parquet")
    arrays = evaluate.load_arrays(research.root / "panel", tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate.run_twins(arrays, TwinSettings(gate_min_treated=10), out)
    return out


def _home(tmp: Path) -> Path:
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return home


def test_incremental_runs_and_cohort_sensor(research, sequential, tmp_path, monkeypatch):
    from pipelines.definitions import defs
    from pipelines.resources import ImpactConfig
    from pipelines.run import run

    root, cfg = _root(research, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    first = run(cfg, TWINS)
    assert first.success, [(o.key, o.message) for o in first.failed]
    assert_same_twins(sequential, root / "twins")
    cohorts = sorted((root / "twins" / "cohorts").glob("*.pkl"))
    n = len(cohorts)
    assert n >= 3 and len(first.run_ids) == 3  # plan, one range of cohorts, combination
    meta = {o.key: o.metadata for o in first.outcomes}
    assert meta["twins_plan"]["made_anew"] is True
    stamp = {p: p.stat().st_mtime_ns for p in cohorts}

    # same data again: the plan is kept and no cohort is matched again
    again = run(cfg, TWINS)
    assert again.success and len(again.run_ids) == 2
    outcome = {o.key: o for o in again.outcomes}
    assert outcome["twins_plan"].metadata["made_anew"] is False
    assert "already matched" in (outcome["twins_cohort"].message or "")
    assert {p: p.stat().st_mtime_ns for p in cohorts} == stamp
    assert_same_twins(sequential, root / "twins")

    # a cohort whose twins are missing (as for a new cohort): only it is matched
    cohorts[1].unlink()
    third = run(cfg, TWINS)
    assert third.success
    matched = {o.key: o.metadata for o in third.outcomes}["twins_cohort"]["cohorts"]
    assert list(matched) == [cohorts[1].stem]
    assert all(p.stat().st_mtime_ns == stamp[p] for p in cohorts if p != cohorts[1])
    assert_same_twins(sequential, root / "twins")

    # the cohort sensor: nothing to do; then one range per missing block of cohorts
    sensor = defs.get_repository_def().get_sensor_def("cohort_sensor")
    resource = ImpactConfig(path=str(cfg))
    with dg.DagsterInstance.get() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"impact_config": resource})
        out = sensor.evaluate_tick(ctx)
        assert out.skip_message and "every cohort is matched" in out.skip_message
        for p in (cohorts[0], cohorts[1], cohorts[-1]):
            p.unlink()
        out = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, resources={"impact_config": resource}))
        ranges = sorted((r.tags["dagster/asset_partition_range_start"],
                         r.tags["dagster/asset_partition_range_end"]) for r in out.run_requests)
        # adjacent cohorts 0 and 1 form one range; the last is another
        assert ranges == [(cohorts[0].stem, cohorts[1].stem), (cohorts[-1].stem, cohorts[-1].stem)]
        assert {r.job_name for r in out.run_requests} == {"twins_cohort_job"}


def test_contiguous_ranges() -> None:
    from pipelines.automation import contiguous_ranges

    order = ["a", "b", "c", "d", "e", "f"]
    assert contiguous_ranges(order, ["a", "b", "c", "d"], 2) == [("a", "b"), ("c", "d")]
    assert contiguous_ranges(order, ["a", "b", "d", "e", "f"], 1) == [("a", "b"), ("d", "f")]
    assert contiguous_ranges(order, ["f", "a", "x"], 2) == [("a", "a"), ("f", "f")]
    assert contiguous_ranges(order, [], 2) == []


def _dagster(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "pipelines.definitions",
         *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(proc: subprocess.Popen, what: str) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, f"{what}:\n{out[-4000:]}"
    return out


def test_two_parallel_cohort_runs_equal_sequential(research, sequential, tmp_path,
                                                   monkeypatch):
    """Two `dagster asset materialize` processes over disjoint cohort ranges at the same
    time (Dagster's default multiprocess executor, one shared instance), then the
    combination: the same twins as the sequential call."""
    from impact.twins.plan import read_plan
    from pipelines.automation import contiguous_ranges

    root, cfg = _root(research, tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(_home(tmp_path)), "IMPACT_CONFIG": str(cfg),
           "PYTHONWARNINGS": "ignore"}
    _wait(_dagster(["--select", "twins_plan"], env), "plan")
    keys = read_plan(root / "twins").keys
    (a, b), (c, d) = contiguous_ranges(keys, keys, 2)
    t0 = time.perf_counter()
    procs = [_dagster(["--select", "twins_cohort", "--partition-range", f"{x}...{y}"], env)
             for x, y in ((a, b), (c, d))]
    outs = [_wait(p, f"cohorts {i}") for i, p in enumerate(procs)]
    wall = time.perf_counter() - t0
    assert all("RUN_SUCCESS" in o for o in outs)
    _wait(_dagster(["--select", "twins"], env), "combination")
    assert_same_twins(sequential, root / "twins")
    # both ranges' runs overlapped in time (they ran in parallel, not one after the other)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/asset_partition_range_start": a}))
        other = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/asset_partition_range_start": c}))
        (ra,), (rc,) = records, other
        assert ra.start_time < rc.end_time and rc.start_time < ra.end_time, wall


def test_outcomes_by_cohort_partition_are_incremental(research, tmp_path, monkeypatch):
    """Cohort runs store each cohort's outcome trajectories and the estimates read them; a
    cohort run again touches only that cohort, whose identical twins keep their stored
    trajectories (changed inputs are rebuilt: tests/test_outcome_store.py)."""
    from pipelines.run import run

    root, cfg = _root(research, tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path)))
    select = (*TWINS, "outcomes_cohort", "estimates")
    first = run(cfg, select)
    assert first.success, [(o.key, o.message) for o in first.failed]
    meta = {o.key: o.metadata for o in first.outcomes}
    stored = sorted((root / "outcomes").glob("cohort=*/trajectories.npz"))
    n = len(stored)
    assert n >= 3 and len(meta["outcomes_cohort"]["built"]) == n
    assert meta["estimates"]["cohort_trajectories_read"] == n
    assert meta["estimates"]["cohort_trajectories_built"] == 0
    stamp = {p: p.stat().st_mtime_ns for p in stored}
    # a cohort matched again (its twins file removed): only it runs, and since its twins
    # come out the same, its stored trajectories are current
    key = stored[1].parent.name.removeprefix("cohort=")
    (root / "twins" / "cohorts" / f"{key}.pkl").unlink()
    again = run(cfg, select)
    assert again.success, [(o.key, o.message) for o in again.failed]
    meta = {o.key: o.metadata for o in again.outcomes}
    assert meta["outcomes_cohort"]["built"] == [] and meta["outcomes_cohort"]["current"] == [key]
    assert meta["estimates"]["cohort_trajectories_read"] == n
    assert all(p.stat().st_mtime_ns == stamp[p] for p in stored)
