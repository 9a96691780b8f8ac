"""Evaluation assets: statistical twins and the effect estimates.

Thin wrappers of :func:`impact.evaluate.run_twins` and :func:`impact.evaluate.run_estimates`.
The balance gate of the twins is the asset check ``balance``: it reports, per cohort group
and pooled, the covariates whose |SMD| after matching exceeds the threshold and the share of
treated persons without twins. It is not blocking here, because estimates are diagnostics
too; the publication assets (a later stage) require it to pass.
"""

from typing import Any

import dagster as dg

from pipelines.assets.research import PANEL_KEY
from pipelines.resources import ImpactConfig

GROUP = "evaluation"
TWINS_KEY = dg.AssetKey(["twins"])
ESTIMATES_KEY = dg.AssetKey(["estimates"])


def _load(impact_config: ImpactConfig) -> tuple[Any, Any, Any]:
    import polars as pl

    from impact.evaluate import load_arrays

    cfg = impact_config.load()
    treatment = pl.read_parquet(cfg.data.research / "treatment.parquet")
    return cfg, treatment, load_arrays(cfg.data.panel, treatment)


@dg.asset(
    key=TWINS_KEY,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    deps=[PANEL_KEY, dg.AssetKey(["treatment"])],
    description="Statistical twins per cohort month (risk-set matching: exact strata, "
    "nearest neighbours on the pooled logit propensity score within a caliper), with "
    "balance (SMD, variance ratio, KS), overlap losses and pre-period trajectories. "
    "data.root/twins/.",
    check_specs=[dg.AssetCheckSpec(
        "balance", asset=TWINS_KEY, blocking=False,
        description="Every |SMD| after matching below twins.max_abs_smd and at most "
        "twins.max_unmatched_share of the treated without twins, per cohort group and "
        "pooled. Gates publication.")],
)
def twins(context: dg.AssetExecutionContext, impact_config: ImpactConfig):
    from impact.evaluate import run_twins

    cfg, _, arrays = _load(impact_config)
    result = run_twins(arrays, cfg.twins.settings(), cfg.data.twins)
    s = result.summary
    context.log.info("twins: %d cohorts, %d pairs", s.height, result.pairs.height)
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": result.pairs.height,
        "cohorts": s.height,
        "treated": int(s["n_treated"].sum()),
        "matched": int(s["n_matched"].sum()),
        "unmatched": int(s["n_unmatched"].sum()),
        "distinct_twins": int(result.pairs["twin_pid"].n_unique()) if result.pairs.height
        else 0,
        "summary": dg.MetadataValue.md(
            s.select("cohort", "n_treated", "n_matched", "n_unmatched", "n_twins",
                     "max_abs_smd_before", "max_abs_smd_after", "cohort_group",
                     "gate_passed").to_pandas().to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(cfg.data.twins)),
    })
    failures = result.failures()
    yield dg.AssetCheckResult(
        check_name="balance", passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if failures else dg.AssetCheckSeverity.WARN,
        description="balanced" if result.passed else " | ".join(failures)[:4000],
        metadata={"pooled_max_abs_smd_after": float(result.pooled_gate.max_abs_smd)
                  if result.pooled_gate else float("nan"),
                  "failing_groups": len(failures)})


@dg.asset(
    key=ESTIMATES_KEY,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    deps=[TWINS_KEY, PANEL_KEY, dg.AssetKey(["treatment"]),
          dg.AssetKey(["sources", "ref_nace_sections"])],
    description="Matched DiD event studies of every outcome (from start and from leaving; "
    "naive comparison for earnings), the staggered ATT(g,t) cross-check on the same "
    "persons and their side-by-side comparison; headline effects 6/12/24 months after "
    "leaving. data.root/estimates/.",
)
def estimates(context: dg.AssetExecutionContext,
              impact_config: ImpactConfig) -> dg.MaterializeResult:
    import polars as pl

    from impact.evaluate import run_estimates

    cfg, treatment, arrays = _load(impact_config)
    pairs = pl.read_parquet(cfg.data.twins / "pairs" / "**" / "*.parquet",
                            hive_partitioning=False)
    res = run_estimates(arrays, pairs, treatment, cfg.data.sources, cfg.data.estimates,
                        reps=cfg.estimates.reps, seed=cfg.estimates.seed)
    head = {h: {k: round(float(v), 2) for k, v in r.items()
                if k in ("att", "se", "ci_low", "ci_high", "att_naive")}
            for h, r in res.headline.items()}
    return dg.MaterializeResult(metadata={
        "treated": res.n_treated,
        "distinct_twins": res.n_twins,
        "headline_earnings_after_leaving": dg.MetadataValue.json(head),
        "staggered_disagreements": res.disagreements,
        "seconds": float(sum(res.seconds.values())),
        "path": dg.MetadataValue.path(str(cfg.data.estimates)),
    })


EVALUATION_ASSETS = [twins, estimates]
