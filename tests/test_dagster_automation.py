"""The delivery sensor and the schedules: what they launch, when, and when they refuse."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pipelines.automation import delivery_state
from pipelines.definitions import defs
from pipelines.resources import ImpactConfig


def _delivery(landing: Path, name: str, files: dict[str, bytes], *, manifest: bool = True,
              drop: str | None = None) -> Path:
    folder = landing / name
    folder.mkdir(parents=True)
    for f, data in files.items():
        if f != drop:
            (folder / f).write_bytes(data)
    if manifest:
        entries = [{"path": f, "bytes": len(d), "sha256": "0" * 64} for f, d in files.items()]
        (folder / "manifest.json").write_text(json.dumps({"delivery_id": name,
                                                          "files": entries}))
    return folder


def _config(tmp_path: Path, *, valid: bool = True) -> ImpactConfig:
    path = tmp_path / "eval.yaml"
    text = (f"data: {{root: {tmp_path / 'data'}}}\n"
            "ingest: {key: {source: env, variable: IMPACT_TEST_KEY}}\n")
    if not valid:
        text += "twins: {ratio: 0}\n"
    path.write_text(text)
    return ImpactConfig(path=str(path))


def _sensor():
    return defs.get_repository_def().get_sensor_def("delivery_sensor")


def _evaluate(cfg: ImpactConfig, cursor: str | None = None):
    ctx = dg.build_sensor_context(cursor=cursor, resources={"impact_config": cfg})
    result = _sensor()(ctx)
    return result, ctx.cursor


def test_sensor_launches_the_ingest_once_per_complete_delivery(tmp_path) -> None:
    cfg = _config(tmp_path)
    landing = tmp_path / "data" / "landing"
    result, cursor = _evaluate(cfg)
    assert isinstance(result, dg.SkipReason) and "no new complete delivery" in \
        result.skip_message
    _delivery(landing, "2026-10", {"a.csv": b"x,y\n1,2\n", "b.csv": b"z\n3\n"})
    result, cursor = _evaluate(cfg)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key.startswith("delivery:2026-10@")
    assert result.tags["impact/deliveries"] == "2026-10"
    assert _sensor().job_name == "delivery_job"
    # evaluated again: nothing new
    again, cursor2 = _evaluate(cfg, cursor)
    assert isinstance(again, dg.SkipReason)
    assert cursor2 == cursor
    # a corrected re-delivery (manifest changed) launches again
    (landing / "2026-10" / "b.csv").write_bytes(b"z\n4\n5\n")
    m = json.loads((landing / "2026-10" / "manifest.json").read_text())
    m["files"][1]["bytes"] = 6
    (landing / "2026-10" / "manifest.json").write_text(json.dumps(m))
    redo, _ = _evaluate(cfg, cursor)
    assert isinstance(redo, dg.RunRequest) and redo.run_key != result.run_key


def test_incomplete_deliveries_wait_and_say_why(tmp_path) -> None:
    cfg = _config(tmp_path)
    landing = tmp_path / "data" / "landing"
    _delivery(landing, "2026-11", {"a.csv": b"1\n", "b.csv": b"2\n"}, drop="b.csv")
    _delivery(landing, "2026-12", {"a.csv": b"1\n"}, manifest=False)
    result, _ = _evaluate(cfg)
    assert isinstance(result, dg.SkipReason)
    assert "2026-11: b.csv missing" in result.skip_message
    assert "2026-12: no manifest.json yet" in result.skip_message
    (landing / "2026-11" / "b.csv").write_bytes(b"2")  # still short of the listed bytes
    _, incomplete = delivery_state(landing)
    assert "has 1 of 2 bytes" in incomplete["2026-11"]
    (landing / "2026-11" / "b.csv").write_bytes(b"2\n")
    result, _ = _evaluate(cfg)
    assert isinstance(result, dg.RunRequest) and "2026-11" in result.run_key


def test_an_invalid_config_launches_nothing(tmp_path) -> None:
    cfg = _config(tmp_path, valid=False)
    _delivery(tmp_path / "data" / "landing", "2026-10", {"a.csv": b"1\n"})
    result, cursor = _evaluate(cfg)
    assert isinstance(result, dg.SkipReason)
    assert "config invalid" in result.skip_message and "twins.ratio" in result.skip_message
    assert cursor is None
    sched = defs.get_repository_def().get_schedule_def("quarterly_publication")
    ctx = dg.build_schedule_context(resources={"impact_config": cfg})
    out = sched.evaluate_tick(ctx)
    assert out.skip_message and "config invalid" in out.skip_message


@pytest.mark.parametrize(("name", "job", "cron"), [
    ("monthly_refresh", "refresh_job", "0 6 2 * *"),
    ("quarterly_publication", "publication_job", "0 7 5 1,4,7,10 *"),
])
def test_schedules_target_their_jobs(tmp_path, name, job, cron) -> None:
    sched = defs.get_repository_def().get_schedule_def(name)
    assert sched.job_name == job and sched.cron_schedule == cron
    assert sched.execution_timezone == "Europe/Riga"
    when = datetime(2027, 1, 5, 7, 0, tzinfo=ZoneInfo("Europe/Riga"))
    ctx = dg.build_schedule_context(resources={"impact_config": _config(tmp_path)},
                                    scheduled_execution_time=when)
    out = sched.evaluate_tick(ctx)
    assert len(out.run_requests) == 1
    assert out.run_requests[0].run_key == f"{name}:{when.isoformat()}"


def test_jobs_select_the_right_assets() -> None:
    def keys(job):
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer
                .executable_asset_keys}

    assert "landing" not in keys("delivery_job")
    assert all(k.startswith("sources/") for k in keys("delivery_job"))
    assert keys("refresh_job") == {"panel", "episodes", "treatment", "near_participants",
                                   "twins_plan"}
    assert keys("evaluation_job") == {"twins", "estimates"}
    assert keys("publication_job") == {"indicators", "publication", "report"}
