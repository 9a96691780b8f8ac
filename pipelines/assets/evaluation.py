"""Evaluation assets: statistical twins and the effect estimates.

Twins are matched one cohort month at a time (:mod:`impact.twins.plan`):

``twins_plan``
    the shared plan (settings, cohorts, pooled propensity model, KS grid); kept while it is
    current; registers the dynamic partitions ``cohort`` (``YYYY-MM``).
``twins_cohort``
    partitioned by cohort month; a run may cover a range of cohorts (single-run backfill
    policy: the panel months of the range, 36 before its first cohort to its last, are loaded
    once per run). Runs over disjoint ranges can go in parallel (separate processes; tested
    with two). With ``twins.person_chunk`` set, both ``twins_plan`` and ``twins_cohort``
    read the panel that many persons at a time (memory bounded by the setting, the same
    twins; :class:`impact.twins.riskset.Population`).
``twins``
    the combination: balance per cohort group and pooled, and the gate.

``estimates`` wraps :func:`impact.evaluate.run_estimates`. The balance gate of the twins is
the asset check ``balance``: it reports, per cohort group and pooled, the covariates whose
|SMD| after matching exceeds the threshold and the share of treated persons without twins.
It is not blocking here, because estimates are diagnostics too; the publication assets (a
later stage) require it to pass.
"""

import json
from typing import Any

import dagster as dg

from pipelines.assets.research import PANEL_KEY
from pipelines.resources import ImpactConfig

GROUP = "evaluation"
TWINS_KEY = dg.AssetKey(["twins"])
TWINS_PLAN_KEY = dg.AssetKey(["twins_plan"])
TWINS_COHORT_KEY = dg.AssetKey(["twins_cohort"])
#: Cohort months (``YYYY-MM``), registered by ``twins_plan``.
COHORTS = dg.DynamicPartitionsDefinition(name="cohort")
ESTIMATES_KEY = dg.AssetKey(["estimates"])
OUTCOMES_COHORT_KEY = dg.AssetKey(["outcomes_cohort"])


def _twins_population(cfg: Any, cohorts: list[Any] | None = None) -> Any:
    """The persons the twins are matched among (:class:`impact.twins.riskset.Population`):
    the panel months from 36 before the first cohort (of the treatment table, or of
    ``cohorts``) to the panel's last month (or the last of ``cohorts``), every person at once
    or ``twins.person_chunk`` at a time."""
    import polars as pl

    from impact.twins.plan import cohort_window, plan_window
    from impact.twins.riskset import Population

    if cohorts:
        first, last = cohort_window(cohorts)
    else:
        start = pl.read_parquet(cfg.data.research / "treatment.parquet")["cohort"].min()
        if start is None:
            raise dg.Failure(description="no treated persons: the treatment table is empty")
        first, last = plan_window(start.replace(day=1)), None
    return Population.read(cfg.data.panel, first, last, cfg.twins.person_chunk)


def _run_cohorts(context: dg.AssetExecutionContext,
                 impact_config: ImpactConfig) -> tuple[Any, Any, list[str], list[Any]]:
    """The config, the stored twins plan, and the run's cohort partition keys and months."""
    from impact.twins.plan import read_plan

    cfg = impact_config.load()
    plan = read_plan(cfg.data.twins)
    keys = sorted(context.partition_keys)
    return cfg, plan, keys, [plan.cohort(k) for k in keys]


class TwinsPlanConfig(dg.Config):
    """Run configuration of ``twins_plan``."""

    rematch: bool = False
    """Make a new plan even if the stored one is current (e.g. after a register correction
    of candidates' history): every cohort is matched again."""


@dg.asset(
    key=TWINS_PLAN_KEY,
    group_name=GROUP,
    kinds={"numpy", "pickle"},
    deps=[PANEL_KEY, dg.AssetKey(["treatment"])],
    description="What every cohort's matching shares: the settings, the cohort months, the "
    "pooled propensity model and the KS grid of the balance tables (impact.twins.plan). "
    "Kept while current (same settings, cohorts and treated histories), so a refresh "
    "re-matches only new cohorts. Registers the cohort partitions. "
    "data.root/twins/plan.json.",
)
def twins_plan(context: dg.AssetExecutionContext, impact_config: ImpactConfig,
               config: TwinsPlanConfig) -> dg.MaterializeResult:
    from impact.twins.plan import cohorts_to_match, update_plan

    cfg = impact_config.load()
    plan, made = update_plan(_twins_population(cfg), cfg.twins.settings(), cfg.data.twins,
                             force=config.rematch)
    known = set(context.instance.get_dynamic_partitions(COHORTS.name))
    new = [k for k in plan.keys if k not in known]
    if new:
        context.instance.add_dynamic_partitions(COHORTS.name, new)
    for k in sorted(known - set(plan.keys)):
        context.instance.delete_dynamic_partition(COHORTS.name, k)
    todo = cohorts_to_match(plan, cfg.data.twins)
    context.log.info("twins plan %s: %d cohorts, %d to match", "made" if made else "kept",
                     len(plan.cohorts), len(todo))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(plan.fingerprint[:16]),
        metadata={
            "made_anew": made,
            "fingerprint": plan.fingerprint[:16],
            "cohorts": len(plan.cohorts),
            "treated": sum(plan.n_treated),
            "to_match": dg.MetadataValue.json(todo),
            "path": dg.MetadataValue.path(str(cfg.data.twins / "plan.json")),
        })


@dg.asset(
    key=TWINS_COHORT_KEY,
    group_name=GROUP,
    kinds={"numpy", "parquet"},
    partitions_def=COHORTS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[TWINS_PLAN_KEY, PANEL_KEY],
    description="Statistical twins of one cohort month (risk-set matching: exact strata, "
    "nearest neighbours on the plan's logit propensity score within a caliper), with its "
    "balance inputs, overlap losses and pre-period trajectories. A run may cover a range "
    "of cohorts (the panel is loaded once). data.root/twins/pairs/cohort=YYYY-MM/.",
)
def twins_cohort(context: dg.AssetExecutionContext,
                 impact_config: ImpactConfig) -> dg.MaterializeResult:
    from impact.twins.plan import match_planned_cohorts, write_cohort

    cfg, plan, keys, dates = _run_cohorts(context, impact_config)
    # only the months these cohorts need (36 before the first .. the last), in person chunks
    # if twins.person_chunk is set
    cohorts = {}
    outputs = match_planned_cohorts(_twins_population(cfg, dates), plan, dates)
    for key, out in zip(keys, outputs, strict=True):
        write_cohort(out, plan, cfg.data.twins)
        context.log.info("twins %s: %d of %d treated matched", key, out.n_matched,
                         out.n_treated)
        cohorts[key] = {"treated": out.n_treated, "matched": out.n_matched,
                        "pairs": out.pairs.height,
                        "max_abs_smd_after": round(float(out.summary["max_abs_smd_after"]), 4)}
    # one result for every partition of the run (a single-run range shares its metadata)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(plan.fingerprint[:16]),
        metadata={
            "dagster/row_count": sum(c["pairs"] for c in cohorts.values()),
            "cohorts": dg.MetadataValue.json(cohorts),
            "plan": plan.fingerprint[:16],
        })


@dg.asset(
    key=OUTCOMES_COHORT_KEY,
    group_name=GROUP,
    kinds={"numpy"},
    partitions_def=COHORTS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[TWINS_COHORT_KEY, PANEL_KEY, dg.AssetKey(["treatment"]),
          dg.AssetKey(["sources", "ref_nace_sections"])],
    description="Event-time outcome trajectories (both clocks, every outcome) of one cohort "
    "month's treated persons and twins, loading only those persons "
    "(impact.outcome_store). Kept while their inputs are unchanged (pairs, leaving months, "
    "panel build), so a new cohort builds only its own; the estimates rebuild any missing or "
    "stale cohort. data.root/outcomes/cohort=YYYY-MM/.",
)
def outcomes_cohort(context: dg.AssetExecutionContext,
                    impact_config: ImpactConfig) -> dg.MaterializeResult:
    import polars as pl

    from impact.evaluate import store_cohort_outcomes
    from impact.indicators import read_pairs

    cfg, _, keys, dates = _run_cohorts(context, impact_config)
    stats = store_cohort_outcomes(
        cfg.data.panel, pl.read_parquet(cfg.data.research / "treatment.parquet"),
        read_pairs(cfg.data.twins), dates, cfg.data.sources, cfg.data.outcomes)
    context.log.info("outcome trajectories: %d cohorts built, %d current", len(stats.built),
                     len(stats.reused))
    return dg.MaterializeResult(metadata={
        "built": dg.MetadataValue.json(list(stats.built)),
        "current": dg.MetadataValue.json(list(stats.reused)),
        "without_pairs": dg.MetadataValue.json(
            sorted(set(keys) - set(stats.built) - set(stats.reused))),
        "path": dg.MetadataValue.path(str(cfg.data.outcomes)),
    })


@dg.asset(
    key=TWINS_KEY,
    group_name=GROUP,
    kinds={"polars", "parquet"},
    deps=[TWINS_COHORT_KEY, TWINS_PLAN_KEY],
    description="The twins of all cohorts of the plan, with balance (SMD, variance ratio, "
    "KS) per cohort, per cohort group and pooled, overlap losses and pre-period "
    "trajectories; refuses cohorts matched with an earlier plan. data.root/twins/.",
    check_specs=[dg.AssetCheckSpec(
        "balance", asset=TWINS_KEY, blocking=False,
        description="Every |SMD| after matching below twins.max_abs_smd and at most "
        "twins.max_unmatched_share of the treated without twins, per cohort group and "
        "pooled. Gates publication.")],
)
def twins(context: dg.AssetExecutionContext, impact_config: ImpactConfig):
    from impact.twins.plan import PlanError, combine_planned, read_plan

    cfg = impact_config.load()
    try:
        result = combine_planned(read_plan(cfg.data.twins), cfg.data.twins)
    except PlanError as exc:
        raise dg.Failure(description=str(exc)) from None
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
    deps=[TWINS_KEY, OUTCOMES_COHORT_KEY, PANEL_KEY, dg.AssetKey(["treatment"]),
          dg.AssetKey(["sources", "ref_nace_sections"])],
    description="Matched DiD event studies of every outcome (from start and from leaving; "
    "naive comparison for earnings), the staggered ATT(g,t) cross-check on the same "
    "persons and their side-by-side comparison; headline effects 6/12/24 months after "
    "leaving; joint pre-trend tests. data.root/estimates/.",
    check_specs=[dg.AssetCheckSpec(
        "pre_trend", asset=ESTIMATES_KEY, blocking=False,
        description="The joint pre-trend test (start clock, placebo months before the "
        "baseline) does not reject for publish.pretrend_outcomes at publish.pretrend_alpha "
        "(Bonferroni). Gates publication (publish.require_parallel_trends).")],
)
def estimates(context: dg.AssetExecutionContext, impact_config: ImpactConfig):
    import polars as pl

    from impact.evaluate import load_estimation_arrays, pretrend_failures, run_estimates
    from impact.indicators import read_pairs
    from impact.outcome_store import prune

    cfg = impact_config.load()
    treatment = pl.read_parquet(cfg.data.research / "treatment.parquet")
    # only the matched persons and the naive comparison's sample (memory bounded by
    # estimates.naive_sample, not by the population)
    arrays, pairs = load_estimation_arrays(
        cfg.data.panel, treatment, read_pairs(cfg.data.twins),
        naive_sample=cfg.estimates.naive_sample, seed=cfg.estimates.seed)
    res = run_estimates(arrays, pairs, treatment, cfg.data.sources, cfg.data.estimates,
                        reps=cfg.estimates.reps, seed=cfg.estimates.seed,
                        outcome_store=cfg.data.outcomes,
                        bias_correction=cfg.bias_correction_features())
    gone = prune(cfg.data.outcomes, pairs["cohort"].unique().to_list())
    context.log.info("outcome trajectories: %d cohorts read, %d built, %d stale removed",
                     len(res.cohorts_reused), len(res.cohorts_built), len(gone))
    head = {h: {k: round(float(v), 2) for k, v in r.items()
                if k in ("att", "se", "ci_low", "ci_high", "att_naive")}
            for h, r in res.headline.items()}
    fails = pretrend_failures(cfg.data.estimates, cfg.publish.pretrend_outcomes,
                              cfg.publish.pretrend_alpha)
    yield dg.MaterializeResult(metadata={
        "treated": res.n_treated,
        "distinct_twins": res.n_twins,
        "headline_earnings_after_leaving": dg.MetadataValue.json(head),
        "staggered_disagreements": res.disagreements,
        "seconds": float(sum(res.seconds.values())),
        "persons_loaded": arrays.n_persons,
        "cohort_trajectories_read": len(res.cohorts_reused),
        "cohort_trajectories_built": len(res.cohorts_built),
        "path": dg.MetadataValue.path(str(cfg.data.estimates)),
    })
    tests = json.loads((cfg.data.estimates / "pretrend.json").read_text(encoding="utf-8"))
    yield dg.AssetCheckResult(
        check_name="pre_trend", passed=not fails,
        severity=dg.AssetCheckSeverity.ERROR if fails else dg.AssetCheckSeverity.WARN,
        description="parallel pre-trends not rejected" if not fails else " | ".join(fails),
        metadata={f"pvalue_{o}": float(tests[o]["pvalue"])
                  for o in cfg.publish.pretrend_outcomes
                  if tests.get(o, {}).get("computed")})


EVALUATION_ASSETS = [twins_plan, twins_cohort, outcomes_cohort, twins, estimates]
