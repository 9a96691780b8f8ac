"""Research assets: the person-month panel and the ILA episode tables.

Thin wrappers of :func:`impact.panel.build` and :func:`impact.panel.build_episodes`. The
column metadata is the data dictionary (``impact.panel.dictionary``), so every column's
meaning, unit, source and derivation shows in the UI next to the data.
"""

from typing import Any

import dagster as dg

from impact.panel.build import SOURCES as PANEL_SOURCES
from impact.panel.dictionary import TABLES, Column
from pipelines.assets.sources import source_key
from pipelines.resources import ImpactConfig

GROUP = "research"
PANEL_KEY = dg.AssetKey(["panel"])
EPISODE_TABLES = ("episodes", "treatment", "near_participants")
EPISODE_SOURCES = ("stars_accounts", "stars_grants", "stars_applications", "stars_programmes")


def _schema(columns: tuple[Column, ...]) -> dg.TableSchema:
    return dg.TableSchema(columns=[
        dg.TableColumn(name=c.name, type=c.dtype,
                       description=" ".join(x for x in (
                           c.meaning, f"Unit: {c.unit}." if c.unit != "-" else "",
                           f"Source: {c.source}." if c.source != "-" else "",
                           c.derivation) if x))
        for c in columns])


@dg.asset(
    key=PANEL_KEY,
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=[source_key(t) for t in PANEL_SOURCES],
    description="One row per person and calendar month alive and resident: employment, "
    "earnings (nominal, real, daily and hourly wage), main job, unemployment, benefits, "
    "demography, ILA status, prior learning, eligibility. Parquet partitioned by year under "
    "data.root/panel/. Columns: docs/data_dictionary.md.",
    metadata={"dagster/column_schema": _schema(TABLES["panel"])},
)
def panel(context: dg.AssetExecutionContext, impact_config: ImpactConfig) -> dg.MaterializeResult:
    from impact.panel import build

    cfg = impact_config.load()
    res = build(cfg.data.sources, cfg.data.panel, cpi_base_year=cfg.panel.cpi_base_year,
                block_persons=cfg.panel.block_persons)
    context.log.info("panel: %d person-months of %d persons", res.rows, res.persons)
    md: dict[str, Any] = {
        "dagster/row_count": res.rows,
        "persons": res.persons,
        "months": res.months,
        "rows_by_year": dg.MetadataValue.json({str(k): v for k, v in res.rows_by_year.items()}),
        "seconds_by_year": dg.MetadataValue.json(
            {str(k): v for k, v in res.seconds_by_year.items()}),
        "seconds": float(sum(res.seconds_by_year.values())),
        "cpi_base_year": cfg.panel.cpi_base_year,
        "path": dg.MetadataValue.path(str(cfg.data.panel)),
    }
    return dg.MaterializeResult(metadata=md)


@dg.multi_asset(
    group_name=GROUP,
    specs=[
        dg.AssetSpec(
            dg.AssetKey([name]), kinds={"polars", "parquet"},
            deps=[source_key(t) for t in EPISODE_SOURCES],
            description={
                "episodes": "One row per started ILA course (course_seq 1 = the treatment).",
                "treatment": "One row per treated person: the first started course defines "
                "the cohort (start month) and leaving (end month).",
                "near_participants": "Account or grant holders who never started a course.",
            }[name],
            metadata={"dagster/column_schema": _schema(TABLES[name])},
        )
        for name in EPISODE_TABLES
    ],
)
def episode_tables(context: dg.AssetExecutionContext, impact_config: ImpactConfig):
    from impact.panel import build_episodes

    cfg = impact_config.load()
    counts = build_episodes(cfg.data.sources, cfg.data.research)
    for name in EPISODE_TABLES:
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey([name]),
            metadata={"dagster/row_count": counts[name],
                      "path": dg.MetadataValue.path(str(cfg.data.research / f"{name}.parquet"))})


RESEARCH_ASSETS = [panel, episode_tables]
RESEARCH_KEYS = [PANEL_KEY, *(dg.AssetKey([n]) for n in EPISODE_TABLES)]
