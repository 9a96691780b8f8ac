"""Publication assets: impact indicators, then disclosure control and the release files.

Thin wrappers of :func:`impact.release.run_indicators`,
:func:`impact.release.run_publication` and :func:`impact.report.write_report`. The
``publication`` asset fails (and writes nothing new) when the twins failed their balance
gate, when the joint pre-trend test rejected for a gating outcome, or when the disclosure
audit could still recover a suppressed cell; its blocking check ``disclosure`` records the
audit.
"""


import dagster as dg

from pipelines.assets.evaluation import ESTIMATES_KEY, TWINS_KEY
from pipelines.assets.research import PANEL_KEY
from pipelines.resources import ImpactConfig

GROUP = "publication"
INDICATORS_KEY = dg.AssetKey(["indicators"])
PUBLICATION_KEY = dg.AssetKey(["publication"])


@dg.asset(
    key=INDICATORS_KEY,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    deps=[TWINS_KEY, PANEL_KEY, dg.AssetKey(["treatment"]), dg.AssetKey(["sources", "ref_isco"]),
          dg.AssetKey(["sources", "ref_nace_sections"])],
    description="Every impact indicator (EECR06 gross/net with its criteria, employment, "
    "quality, mobility, skills match, resilience, ROI, fiscal return, composite index) for "
    "participants, twins and net, overall and by breakdown; income curves and career-step "
    "Kaplan-Meier curves. Before disclosure control: data.root/indicators/ stays in the "
    "secure environment.",
)
def indicators(context: dg.AssetExecutionContext,
               impact_config: ImpactConfig) -> dg.MaterializeResult:
    from impact.release import run_indicators

    cfg = impact_config.load()
    s = run_indicators(cfg)
    head = {k: round(float(v), 4) for k, v in s["headline"].items() if v is not None}
    context.log.info("indicators: %d cells", s["cells"])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": s["cells"],
        "indicators": s["indicators"],
        "treated": s["n_treated"],
        "net_effects_all": dg.MetadataValue.json(head),
        "path": dg.MetadataValue.path(str(cfg.data.indicators)),
    })


@dg.asset(
    key=PUBLICATION_KEY,
    group_name=GROUP,
    kinds={"csv", "parquet", "json"},
    deps=[INDICATORS_KEY, TWINS_KEY, ESTIMATES_KEY],
    description="Disclosure control (threshold, dominance, p%, secondary suppression, "
    "intruder audit) and the release: data.root/publish/<run_id>/ with indicator tables "
    "(CSV with Latvian and English labels, Parquet, JSON with metadata), the disclosure "
    "report, the run manifest and open data; publish/latest points to the newest complete "
    "one. Refused when the twins' balance gate failed or the pre-trend test rejected.",
    check_specs=[dg.AssetCheckSpec(
        "disclosure", asset=PUBLICATION_KEY, blocking=True,
        description="The intruder audit recovers no suppressed cell and no published cell "
        "is below the threshold.")],
)
def publication(context: dg.AssetExecutionContext, impact_config: ImpactConfig):
    from impact.release import run_publication

    cfg = impact_config.load()
    r = run_publication(cfg)
    context.log.info("publication: %s", r.path)
    yield dg.MaterializeResult(metadata={
        "run_id": r.run_id,
        "cells": r.cells,
        "suppressed": r.suppressed,
        "path": dg.MetadataValue.path(str(r.path)),
    })
    yield dg.AssetCheckResult(
        check_name="disclosure", passed=r.recovered == 0,
        description=f"{r.suppressed} of {r.cells} cells suppressed; audit recovered "
        f"{r.recovered}", metadata={"recovered": r.recovered, "suppressed": r.suppressed})


REPORT_KEY = dg.AssetKey(["report"])


@dg.asset(
    key=REPORT_KEY,
    group_name=GROUP,
    kinds={"html"},
    deps=[PUBLICATION_KEY],
    description="The evaluator report of the latest publication: one self-contained HTML "
    "file (English and Latvian; figures, styles and script inline; only disclosure-safe "
    "numbers). data.root/reports/<run_id>/report.html.",
)
def report(context: dg.AssetExecutionContext, impact_config: ImpactConfig
           ) -> dg.MaterializeResult:
    from impact.publish import latest_publication
    from impact.report import write_report

    cfg = impact_config.load()
    pub = latest_publication(cfg.data.publish)
    if pub is None:
        raise dg.Failure(description=f"no publication under {cfg.data.publish}")
    out = write_report(pub, cfg.data.reports / pub.name / "report.html")
    context.log.info("report: %s", out)
    return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(out)),
                                          "bytes": out.stat().st_size,
                                          "publication": pub.name})


PUBLICATION_ASSETS = [indicators, publication, report]
