"""Scheduled operation: a sensor for new deliveries, a monthly refresh, a quarterly publication.

``delivery_sensor``
    Every ``SENSOR_INTERVAL_S`` seconds it lists ``data.root/landing/``. A delivery counts
    once it is **complete**: a ``manifest.json`` that parses, and every file it lists present
    with the listed size (checksums are verified by the ingest itself). A complete delivery
    not seen before (or whose manifest changed: a corrected re-delivery) launches
    ``delivery_job`` (every source table; the landing asset is not re-run, so a synthetic
    config does not regenerate what just arrived). The cursor remembers each delivery's
    manifest checksum; the run key makes a re-evaluation idempotent. Incomplete deliveries
    are reported in the skip message, with the first missing file.
``monthly_refresh``
    2nd day of every month, 06:00 Riga time: the research panel, the episode tables and the
    twins plan on whatever has been ingested (``refresh_job``). The plan is kept while it is
    current, so an ordinary month leaves every matched cohort valid.
``cohort_sensor``
    Every ``COHORT_SENSOR_INTERVAL_S`` seconds it compares the twins plan with the matched
    cohorts. Cohorts not yet matched with the current plan (new cohorts, or all of them
    after a new plan) are launched as ``twins_cohort_job`` runs over contiguous partition
    ranges, split into ``COHORT_RUNS`` runs that the run coordinator can execute in
    parallel; when every cohort is matched and the twins were not combined from this plan
    yet, it launches ``evaluation_job`` (twins combination, balance gate, estimates). It
    waits while cohort runs are in flight.
``quarterly_publication``
    5th day of January, April, July and October, 07:00 Riga time: indicators, disclosure
    control and the release (``publication_job``). The publication asset itself refuses to
    publish when the twins failed their balance gate, and its blocking ``disclosure`` check
    stops anything after it; the failure and its reason show in the UI.

Sensor and schedules validate the evaluation config before they request a run: an invalid
config gives a skip with the config error instead of a run that would fail later.
"""

import hashlib
import json
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.resources import ImpactConfig

#: An asset job (``dg.define_asset_job``; its class is not exported by dagster).
AssetJob = Any

SENSOR_INTERVAL_S = 300
COHORT_SENSOR_INTERVAL_S = 120
#: Cohort runs requested at once (each loads the panel arrays once for its range).
COHORT_RUNS = 2
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED,
           dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
TIMEZONE = "Europe/Riga"


def delivery_state(landing: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Complete deliveries ``{name: manifest sha256}`` and incomplete ones ``{name: why}``."""
    complete: dict[str, str] = {}
    incomplete: dict[str, str] = {}
    if not landing.is_dir():
        return complete, incomplete
    for folder in sorted(p for p in landing.iterdir() if p.is_dir()):
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            incomplete[folder.name] = "no manifest.json yet"
            continue
        raw = manifest.read_bytes()
        try:
            files = json.loads(raw)["files"]
        except (ValueError, KeyError, TypeError) as exc:
            incomplete[folder.name] = f"manifest.json unreadable ({type(exc).__name__})"
            continue
        why = None
        for f in files:
            path = folder / str(f.get("path", ""))
            if not path.is_file():
                why = f"{f.get('path')} missing"
                break
            if "bytes" in f and path.stat().st_size != int(f["bytes"]):
                why = f"{f.get('path')} has {path.stat().st_size} of {f['bytes']} bytes"
                break
        if why:
            incomplete[folder.name] = why
        else:
            complete[folder.name] = hashlib.sha256(raw).hexdigest()
    return complete, incomplete


def contiguous_ranges(order: list[str], todo: list[str],
                      parts: int = 1) -> list[tuple[str, str]]:
    """``todo`` partition keys as (first, last) ranges of consecutive keys in ``order`` (the
    partitions' order), split into at least ``parts`` ranges of similar size when possible.
    Keys of ``todo`` missing from ``order`` are ignored."""
    want = set(todo)
    blocks: list[list[str]] = []
    prev = False
    for k in order:
        if k in want:
            if not prev:
                blocks.append([])
            blocks[-1].append(k)
        prev = k in want
    total = sum(len(b) for b in blocks)
    size = max(1, -(-total // max(1, parts)))  # ceil
    return [(b[i], b[min(i + size, len(b)) - 1]) for b in blocks for i in range(0, len(b), size)]


def _invalid_config(impact_config: ImpactConfig) -> dg.SkipReason | None:
    """The skip of a sensor or schedule tick whose evaluation config is invalid (with the
    config error), else None."""
    try:
        impact_config.load()
    except dg.Failure as exc:
        error = exc.description or "invalid evaluation config"
        return dg.SkipReason(f"evaluation config invalid, nothing launched: {error}")
    return None


def build_automation(delivery_job: AssetJob,
                     refresh_job: AssetJob,
                     publication_job: AssetJob
                     ) -> tuple[dg.SensorDefinition, list[dg.ScheduleDefinition]]:
    """The delivery sensor and the two schedules, targeting the given jobs."""

    @dg.sensor(job=delivery_job, minimum_interval_seconds=SENSOR_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Launches the ingest of every source table when a complete "
               "delivery (manifest and all its files) appears under data.root/landing/.")
    def delivery_sensor(context: dg.SensorEvaluationContext, impact_config: ImpactConfig):
        skip = _invalid_config(impact_config)
        if skip:
            return skip
        cfg = impact_config.load()
        complete, incomplete = delivery_state(cfg.data.landing)
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        new = {k: v for k, v in complete.items() if seen.get(k) != v}
        if not new:
            note = "; ".join(f"{k}: {v}" for k, v in incomplete.items())
            return dg.SkipReason("no new complete delivery" + (f" (incomplete: {note})"
                                                               if note else ""))
        context.update_cursor(json.dumps({**seen, **new}, sort_keys=True))
        key = "+".join(f"{k}@{v[:12]}" for k, v in sorted(new.items()))
        return dg.RunRequest(run_key=f"delivery:{key}",
                             tags={"impact/deliveries": ",".join(sorted(new))})

    def _scheduled(job: AssetJob, cron: str, name: str,
                   description: str) -> dg.ScheduleDefinition:
        @dg.schedule(job=job, cron_schedule=cron, execution_timezone=TIMEZONE, name=name,
                     default_status=dg.DefaultScheduleStatus.STOPPED, description=description)
        def _schedule(context: dg.ScheduleEvaluationContext, impact_config: ImpactConfig):
            skip = _invalid_config(impact_config)
            if skip:
                return skip
            when = context.scheduled_execution_time
            return dg.RunRequest(run_key=f"{name}:{when.isoformat() if when else 'now'}")

        return _schedule

    schedules = [
        _scheduled(refresh_job, "0 6 2 * *", "monthly_refresh",
                   "Monthly refresh: panel, episodes, twins and estimates."),
        _scheduled(publication_job, "0 7 5 1,4,7,10 *", "quarterly_publication",
                   "Quarterly publication: indicators, disclosure control, release files."),
    ]
    return delivery_sensor, schedules


def build_cohort_sensor(cohort_job: AssetJob, evaluation_job: AssetJob,
                        partitions: str) -> dg.SensorDefinition:
    """The sensor that matches cohorts of the twins plan and then combines them."""

    @dg.sensor(jobs=[cohort_job, evaluation_job], minimum_interval_seconds=COHORT_SENSOR_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.STOPPED,
               description="Launches twins_cohort runs for the cohorts not yet matched with "
               "the current twins plan, then evaluation_job once all are matched.")
    def cohort_sensor(context: dg.SensorEvaluationContext, impact_config: ImpactConfig):
        from impact.twins.plan import PlanError, cohorts_to_match, combined_plan, read_plan

        skip = _invalid_config(impact_config)
        if skip:
            return skip
        cfg = impact_config.load()
        try:
            plan = read_plan(cfg.data.twins)
        except PlanError as exc:
            return dg.SkipReason(str(exc))
        active = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=cohort_job.name, statuses=_ACTIVE), limit=1)
        if active:
            return dg.SkipReason("cohort runs in flight")
        fp = plan.fingerprint[:16]
        todo = cohorts_to_match(plan, cfg.data.twins)
        if todo:
            order = context.instance.get_dynamic_partitions(partitions)
            unknown = [k for k in todo if k not in order]
            if unknown:
                return dg.SkipReason(f"cohorts {', '.join(unknown)} are not registered "
                                     "partitions: materialise twins_plan")
            return [dg.RunRequest(run_key=f"cohorts:{fp}:{a}...{b}", job_name=cohort_job.name,
                                  tags={RANGE_START: a, RANGE_END: b})
                    for a, b in contiguous_ranges(order, todo, COHORT_RUNS)]
        if combined_plan(cfg.data.twins) != plan.fingerprint:
            return dg.RunRequest(run_key=f"combine:{fp}", job_name=evaluation_job.name)
        return dg.SkipReason("every cohort is matched and combined with the current plan")

    return cohort_sensor
