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
    2nd day of every month, 06:00 Riga time: the research panel, episodes, twins and
    estimates on whatever has been ingested (``refresh_job``).
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


def _config_error(impact_config: ImpactConfig) -> str | None:
    try:
        impact_config.load()
    except dg.Failure as exc:
        return exc.description or "invalid evaluation config"
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
        error = _config_error(impact_config)
        if error:
            return dg.SkipReason(f"evaluation config invalid, nothing launched: {error}")
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
            error = _config_error(impact_config)
            if error:
                return dg.SkipReason(f"evaluation config invalid, nothing launched: {error}")
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
