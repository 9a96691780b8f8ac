"""Dagster definitions for `impact`: the code location `pipelines.definitions`.

Assets are thin: read config/resources, call one `impact` function, return the result with
metadata. No numerics here (design.md, section 3). The library `impact` never imports dagster.

Modules:
    pipelines/resources.py         ImpactConfig: the evaluation config (configs/*.yaml)
    pipelines/assets/landing.py    landing: the deliveries (synthetic ones are generated)
    pipelines/assets/sources.py    sources/<table>: one asset + blocking contract check per
                                   schemas/<table>.yaml
    pipelines/assets/research.py   panel, episodes, treatment, near_participants
    pipelines/assets/evaluation.py twins_plan, twins_cohort and outcomes_cohort (partitioned
                                   by cohort month), twins (+ balance check), estimates
    pipelines/assets/publication.py indicators, publication (+ blocking disclosure check)
    pipelines/automation.py        delivery sensor, cohort sensor, monthly refresh and
                                   quarterly publication
    pipelines/run.py               in-process runs for `impact run` / `impact demo`

The config is ``$IMPACT_CONFIG`` if set, else ``configs/demo.yaml`` (relative to the working
directory, the repository root); it can also be changed per run in the launchpad.
"""

import dagster as dg

from pipelines.assets.evaluation import (
    COHORTS,
    ESTIMATES_KEY,
    EVALUATION_ASSETS,
    OUTCOMES_COHORT_KEY,
    TWINS_COHORT_KEY,
    TWINS_KEY,
    TWINS_PLAN_KEY,
)
from pipelines.assets.landing import LANDING_KEY, landing
from pipelines.assets.publication import GROUP as PUBLICATION_GROUP
from pipelines.assets.publication import PUBLICATION_ASSETS
from pipelines.assets.research import GROUP as RESEARCH_GROUP
from pipelines.assets.research import RESEARCH_ASSETS
from pipelines.assets.sources import GROUP as SOURCES_GROUP
from pipelines.assets.sources import SOURCE_ASSETS
from pipelines.automation import build_automation, build_cohort_sensor
from pipelines.resources import impact_config_from_env

LANDING = dg.AssetSelection.assets(LANDING_KEY)
SOURCES = dg.AssetSelection.groups(SOURCES_GROUP)
RESEARCH = dg.AssetSelection.groups(RESEARCH_GROUP)
PUBLICATION = dg.AssetSelection.groups(PUBLICATION_GROUP)

synth_job = dg.define_asset_job(
    name="synth_job",
    selection=LANDING,
    description="The landing asset: generate the synthetic delivery of a synthetic config "
    "(impact synth), or record the deliveries present for real data.",
)

# In-process executor: a failed table still stops only its dependents (verified for both
# executors), but the multiprocess executor starts one Python process per table (dagster +
# polars imports, seconds each) for 19 mostly small steps: with 800 persons on 2 cores it
# took 2.5 min against seconds in process. The big table (vid_monthly_reports) depends on
# three others anyway, so there is little parallelism to lose.
ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=LANDING | SOURCES,
    executor_def=dg.in_process_executor,
    description="Landing, then every source table (validate, pseudonymise, quarantine, "
    "reconcile). A table whose contract fails stops only the tables that depend "
    "on it.",
)

research_job = dg.define_asset_job(
    name="research_job",
    selection=RESEARCH,
    executor_def=dg.in_process_executor,
    description="The person-month panel and the ILA episode tables from the clean sources.",
)

twins_plan_job = dg.define_asset_job(
    name="twins_plan_job",
    selection=dg.AssetSelection.assets(TWINS_PLAN_KEY),
    executor_def=dg.in_process_executor,
    description="The twins plan (shared by every cohort); registers the cohort partitions.",
)

twins_cohort_job = dg.define_asset_job(
    name="twins_cohort_job",
    selection=dg.AssetSelection.assets(TWINS_COHORT_KEY, OUTCOMES_COHORT_KEY),
    tags={"impact/stage": "twins_cohort"},  # a concurrency limit of dagster.yaml
    description="Twins of a cohort month or a range of them, and their outcome "
    "trajectories (one run per range; ranges run in parallel). Launched by the cohort "
    "sensor or by a backfill in the UI.",
)

evaluation_job = dg.define_asset_job(
    name="evaluation_job",
    selection=dg.AssetSelection.assets(TWINS_KEY, ESTIMATES_KEY),
    executor_def=dg.in_process_executor,
    description="The twins of all cohorts combined (balance gate) and the effect estimates.",
)

publication_job = dg.define_asset_job(
    name="publication_job",
    selection=PUBLICATION,
    executor_def=dg.in_process_executor,
    description="Impact indicators, disclosure control and the release files "
    "(data.root/publish/<run_id>/, publish/latest).",
)

delivery_job = dg.define_asset_job(
    name="delivery_job",
    selection=SOURCES,
    executor_def=dg.in_process_executor,
    description="Every source table from the deliveries under data.root/landing/ (what the "
    "delivery sensor launches; the landing asset is not re-run).",
)

refresh_job = dg.define_asset_job(
    name="refresh_job",
    selection=RESEARCH | dg.AssetSelection.assets(TWINS_PLAN_KEY),
    executor_def=dg.in_process_executor,
    description="Monthly refresh: the research tables and the twins plan (the cohort "
    "sensor then matches the cohorts that need it and runs evaluation_job).",
)

delivery_sensor, schedules = build_automation(delivery_job, refresh_job, publication_job)
cohort_sensor = build_cohort_sensor(twins_cohort_job, evaluation_job, COHORTS.name)

defs = dg.Definitions(
    assets=[landing, *SOURCE_ASSETS, *RESEARCH_ASSETS, *EVALUATION_ASSETS, *PUBLICATION_ASSETS],
    jobs=[synth_job, ingest_job, research_job, twins_plan_job, twins_cohort_job, evaluation_job,
          publication_job, delivery_job, refresh_job],
    sensors=[delivery_sensor, cohort_sensor],
    schedules=schedules,
    resources={"impact_config": impact_config_from_env()},
)
