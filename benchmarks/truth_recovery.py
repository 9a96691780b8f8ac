"""Truth recovery of the matched DiD event study on a synthetic evaluation.

Runs the whole matched chain on a data root built by ``impact synth`` + ingest + panel +
episodes (``ROOT/panel``, ``ROOT/research/treatment.parquet``, ``ROOT/sources``) and compares
the estimates with the generator's ground truth (``ROOT/truth/paths.parquet``: both
potential outcomes of every participant-month):

1. load the panel arrays (:class:`impact.twins.features.PanelArrays`);
2. statistical twins per cohort month (:func:`impact.twins.riskset.match_cohorts`, default
   :class:`TwinSettings`: not-yet-treated pool, pooled logit score, caliper 0.2, k = 5);
3. event-time trajectories (:func:`impact.outcomes.build_trajectories`);
4. matched event study (:func:`impact.estimate.matched_did.matched_event_study`) on both
   clocks, with the naive comparison (all not-yet-treated candidates, same baseline).

Truth at an event time is the mean of ``Y1 - Y0`` over **the treated persons the estimate
averages at that event time** (matched, observed, with at least one observed twin):
``truth_sample``. Also reported: ``truth_matched_all`` (all matched treated, with the
generator's zeros after death/emigration) and ``truth_population`` (all participants, from
``truth/att_horizons.parquet`` or ``att_event_time.parquet``). The checks of the
"Effect estimation" issue: the headline ATT on real monthly earnings 6, 12 and 24 months after
leaving within 2 SE and within 10 % of ``truth_sample``. The script reports, it does not
tune: a failed check is written as such.

Usage::

    python benchmarks/truth_recovery.py /tmp/d100
    python benchmarks/truth_recovery.py /tmp/d20 --reps 499

Results are written to ``benchmarks/results/truth_recovery.json`` (one record per data
root, replaced on re-run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import norm

from impact.estimate.bias_correction import correction_features, with_covariates
from impact.estimate.matched_did import EventStudyResults, matched_event_study
from impact.manifest import DeliveryManifest
from impact.outcomes import Trajectories, build_trajectories, load_sector_rel_wage
from impact.pseudonym import PseudonymKey, pseudonymise
from impact.twins.features import PanelArrays
from impact.twins.riskset import TwinSettings, match_cohorts

RESULTS = Path(__file__).resolve().parent / "results" / "truth_recovery.json"
HORIZONS = (6, 12, 24)
START_EVENTS = (6, 12, 24)
#: panel outcome -> truth column stem
TRUTH_NAME = {
    "earnings_real": "earnings_real",
    "daily_wage_real": "daily_wage_real",
    "employed": "employed",
    "days_worked": "days",
    "registered_unemployed": "registered",
    "ub_days": "ub_days",
    "sick_benefit_days": "sick_days",
    "skill_level": "skill",
    "sector_rel_wage": "sector_rel_wage",
}


def truth_paths(root: Path) -> pl.DataFrame:
    """Truth paths keyed by the panel's pseudonym."""
    p = pl.read_parquet(root / "truth" / "paths.parquet")
    return p.with_columns(
        pseudonymise(p["person_code"], PseudonymKey.demo(), "person").alias("pseudonym")
    )


def sample_truth(
    paths: pl.DataFrame, res: EventStudyResults, traj: Trajectories, e: int, outcome: str
) -> dict[str, Any]:
    """Truth at event time ``e`` over the estimate's treated persons and all matched ones."""
    stem = TRUTH_NAME[outcome]
    col = "event_start" if res.clock == "start" else "event_end"
    i = int(np.nonzero(res.event_time == e)[0][0])
    used = np.isfinite(res.unit_effect[:, i])
    codes = pl.DataFrame({"pseudonym": traj.treated_code, "used": used})
    t = paths.filter(pl.col(col) == e).join(codes, on="pseudonym", how="inner")
    d = pl.col(f"{stem}_1").fill_nan(None) - pl.col(f"{stem}_0").fill_nan(None)
    agg = t.select(
        d.filter(pl.col("used")).mean().alias("truth_sample"),
        d.filter(pl.col("used")).is_not_null().sum().alias("n_truth_sample"),
        d.mean().alias("truth_matched_all"),
        d.is_not_null().sum().alias("n_truth_matched_all"),
    ).row(0, named=True)
    agg["n_estimate_without_truth"] = int(used.sum()) - int(agg["n_truth_sample"])
    return agg


def latent_traits(root: Path) -> pl.DataFrame:
    """``truth/latent.parquet`` keyed by the panel's pseudonym instead of the personal code."""
    lat = pl.read_parquet(root / "truth" / "latent.parquet")
    return lat.with_columns(
        pseudonymise(lat["person_code"], PseudonymKey.demo(), "person").alias("pseudonym")
    ).drop("person_code")


def latent_balance(lat: pl.DataFrame, pairs: pl.DataFrame) -> dict[str, Any]:
    """The generator's latent traits of the matched treated, their twins and everyone else.

    ``truth/latent.parquet`` holds every person's latent motivation (standard normal before
    the shift for education) and permanent wage effect, which no register shows. Matching on
    observables balances them only as far as the registers reveal them; what is left is the
    selection on unobservables behind the estimate's bias. Twins are weighted as in the
    estimate (pair weights normalised within each treated person); ``gap_closed`` is the
    share of the treated-vs-non-participants gap that the twins close. ``lat``:
    :func:`latent_traits`.
    """
    w = pairs.select(
        "treated_code",
        pl.col("twin_code").alias("pseudonym"),
        (pl.col("weight") / pl.col("weight").sum().over("treated_code")).alias("w"),
    ).join(lat, on="pseudonym", how="left")
    t = pairs.select(pl.col("treated_code").unique().alias("pseudonym")).join(
        lat, on="pseudonym", how="left"
    )
    out: dict[str, Any] = {"n_treated": t.height}
    for trait in ("motivation", "person_effect"):
        treated = float(t[trait].mean())
        twins = float((w[trait] * w["w"]).sum() / w["w"].sum())
        others = float(lat.filter(~pl.col("participant"))[trait].mean())
        gap = treated - others
        out[trait] = {
            "treated": treated,
            "twins": twins,
            "non_participants": others,
            "gap_closed": 1.0 - (treated - twins) / gap if gap else None,
        }
    return out


def bias_anatomy(
    lat: pl.DataFrame, res: EventStudyResults, traj: Trajectories, paths: pl.DataFrame, e: int
) -> dict[str, Any]:
    """Where the bias of the earnings estimate at ``e`` months after leaving comes from.

    A treated person's own estimate is ``tau_i = (Y_i(e) - pre_i) - (twins' change)`` and the
    truth is ``Y1_i(e) - Y0_i(e)``, so ``tau_i - truth_i = (Y0_i(e) - pre_i) - (twins'
    change)``: how much more the person would have gained without training than its twins
    did. Its mean is the estimate's bias. Reported overall, by the treated person's latent
    motivation (thirds of the matched treated), by whether the person was employed in the
    month before the start, by the publication's status at entry (employed, registered
    unemployed, other; ``impact.indicators.breakdowns``), and as the slope of
    ``tau_i - truth_i`` on motivation (OLS, with a heteroskedasticity-robust SE). ``lat``:
    :func:`latent_traits`.
    """
    i = res._col(e)
    lat = lat.select("pseudonym", "motivation")
    start = traj.grids["start"]
    employed = start.treated["employed"][:, start.column(-1)].astype(np.float64)
    registered = start.treated["registered_unemployed"][:, start.column(-1)].astype(np.float64)
    units = pl.DataFrame({
        "pseudonym": traj.treated_code,
        "tau": res.unit_effect[:, i],
        "employed_before": employed,
        "registered_before": registered,
    })
    t = paths.filter(pl.col("event_end") == e).select(
        "pseudonym",
        (pl.col("earnings_real_1").fill_nan(None) - pl.col("earnings_real_0").fill_nan(None))
        .alias("truth"),
    )
    u = (units.join(t, on="pseudonym", how="left", maintain_order="left")
         .join(lat, on="pseudonym", how="left", maintain_order="left")
         .filter(pl.col("tau").is_finite() & pl.col("truth").is_not_null())
         .with_columns((pl.col("tau") - pl.col("truth")).alias("gap")))
    gap = u["gap"].to_numpy()
    mot = u["motivation"].to_numpy()
    cuts = np.quantile(mot, [1 / 3, 2 / 3])
    third = np.digitize(mot, cuts)

    def cell(mask: np.ndarray) -> dict[str, Any]:
        g = gap[mask]
        return {"n": int(mask.sum()), "bias": float(g.mean()) if g.size else None,
                "se": float(g.std(ddof=1) / np.sqrt(g.size)) if g.size > 1 else None,
                "motivation": float(mot[mask].mean()) if g.size else None}

    x = np.column_stack([np.ones_like(mot), mot - mot.mean()])
    beta = np.linalg.lstsq(x, gap, rcond=None)[0]
    resid = gap - x @ beta
    bread = np.linalg.inv(x.T @ x)
    hc1 = bread @ (x.T * resid**2) @ x @ bread * len(gap) / (len(gap) - 2)
    emp = u["employed_before"].to_numpy()
    reg = u["registered_before"].to_numpy()
    return {
        "event_time": e,
        "all": cell(np.ones(gap.size, dtype=bool)),
        "motivation_thirds": [cell(third == k) for k in range(3)],
        "employed_before_start": cell(emp == 1),
        "not_employed_before_start": cell(emp == 0),
        "status_at_entry": {
            "employed": cell(emp == 1),
            "registered unemployed": cell((emp == 0) & (reg == 1)),
            "other": cell((emp == 0) & (reg == 0)),
        },
        "slope_per_unit_motivation": float(beta[1]),
        "slope_se": float(np.sqrt(hc1[1, 1])),
    }


def population_truth(root: Path, clock: str, e: int, outcome: str) -> float | None:
    stem = TRUTH_NAME[outcome]
    if clock == "end" and e in HORIZONS:
        t = pl.read_parquet(root / "truth" / "att_horizons.parquet").filter(
            (pl.col("dimension") == "all") & (pl.col("horizon") == e)
        )
    else:
        t = pl.read_parquet(root / "truth" / "att_event_time.parquet").filter(
            (pl.col("clock") == clock) & (pl.col("event_time") == e)
        )
    return float(t[f"att_{stem}"][0]) if t.height else None


def record(
    res: EventStudyResults, e: int, truth: dict[str, Any], pop: float | None
) -> dict[str, Any]:
    r = res.at(e)
    ts = truth["truth_sample"]
    r.update(truth)
    r["truth_population"] = pop
    if ts is not None and np.isfinite(r["att"]):
        r["bias"] = r["att"] - ts
        r["z"] = (r["att"] - ts) / r["se"]
        r["within_2se"] = bool(abs(r["z"]) <= 2.0)
        r["within_10pct"] = bool(abs(r["att"] - ts) <= 0.10 * abs(ts))
        # chance that an unbiased, normal estimate with this SE lands within 10 % of the truth
        r["p_within_10pct_if_unbiased"] = float(2 * norm.cdf(0.10 * abs(ts) / r["se"]) - 1)
        if "att_naive" in r:
            r["naive_bias"] = r["att_naive"] - ts
    return r


#: event-time ranges pooled (averaged) for a less noisy look at the systematic bias
POOLED = {"end": range(6, 25), "start": range(13, 25)}


def pooled_bias(
    res: EventStudyResults, traj: Trajectories, paths: pl.DataFrame, events: range
) -> dict[str, Any]:
    """Mean over ``events`` of the estimate, the sample truth and the naive comparison.

    The SE of the mean uses the influence rows averaged over the event times (their
    correlation across event times included)."""
    have = [e for e in events if e in set(res.event_time.tolist())]
    idx = [res._col(e) for e in have]
    truth = [sample_truth(paths, res, traj, e, "earnings_real")["truth_sample"] for e in have]
    inf = res.influence[:, idx].mean(axis=1)
    att = float(res.params[idx].mean())
    tr = float(np.mean(truth))
    out = {
        "event_times": [have[0], have[-1]],
        "att": att,
        "se": float(np.sqrt((inf**2).sum()) / inf.size),
        "truth_sample": tr,
        "bias": att - tr,
    }
    if res.naive_params is not None:
        out["att_naive"] = float(res.naive_params[idx].mean())
        out["naive_bias"] = out["att_naive"] - tr
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--reps", type=int, default=999)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--naive-max-candidates", type=int, default=None)
    ap.add_argument(
        "--pairs",
        type=Path,
        default=None,
        help="reuse a twins table (Parquet) instead of matching (timing skipped)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--pool", default="not_yet_treated",
                    choices=["not_yet_treated", "never_treated", "account_holders", "coworkers"])
    ap.add_argument("--exact", default=None, metavar="F1,F2,...",
                    help="replace the default exact strata (e.g. the defaults before "
                    "registered_l1: sex,age_band,region_code,edu_band,employed_l1)")
    ap.add_argument("--exact-add", action="append", default=[], metavar="FEATURE",
                    help="add a feature to the exact strata (e.g. ila_account_l1)")
    ap.add_argument("--feature-add", action="append", default=[], metavar="FEATURE",
                    help="add a feature to the score model and balance (e.g. registered_l1)")
    ap.add_argument("--coarsen", action="append", default=None, metavar="F1,F2,...",
                    help="exact columns dropped for a further pass for treated persons "
                    "without twins, one option per pass (cumulative; default: region_code, "
                    "then job_recency)")
    ap.add_argument("--no-coarsen", action="store_true",
                    help="one pass: treated persons without twins in the exact strata stay "
                    "unmatched")
    ap.add_argument("--bias-correction", action="store_true",
                    help="regression bias correction of the twins' changes (Abadie-Imbens "
                    "2011) on the matching features and exact strata")
    args = ap.parse_args()
    root = args.root.resolve()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    arrays = PanelArrays.load(root / "panel")
    timings["load_arrays"] = time.perf_counter() - t0

    coarsen = TwinSettings.coarsen
    if args.no_coarsen:
        coarsen = ()
    elif args.coarsen is not None:
        coarsen = tuple(tuple(g.split(",")) for g in args.coarsen)
    exact = TwinSettings.exact if args.exact is None else tuple(args.exact.split(","))
    settings = TwinSettings(pool=args.pool, exact=(*exact, *args.exact_add),
                            features=(*TwinSettings.features, *args.feature_add),
                            coarsen=coarsen)
    twins_info: dict[str, Any] = {}
    t0 = time.perf_counter()
    if args.pairs is not None:
        pairs = pl.read_parquet(args.pairs)
        twins_info["pairs_from"] = str(args.pairs)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tw = match_cohorts(arrays, settings)
        pairs = tw.pairs
        sm = tw.summary
        twins_info = {
            "n_treated": int(sm["n_treated"].sum()),
            "n_treated_ineligible": int(sm["n_treated_ineligible"].sum()),
            "n_matched": int(sm["n_matched"].sum()),
            "n_unmatched": int(sm["n_unmatched"].sum()),
            "n_matched_fallback": int(sm["n_matched_fallback"].sum()),
            "gate_passed": tw.passed,
            "pooled_gate_passed": bool(tw.pooled_gate) if tw.pooled_gate else None,
            "pooled_max_abs_smd_after": tw.pooled_gate.max_abs_smd if tw.pooled_gate else None,
            "failures": tw.failures(),
        }
        timings["match_cohorts"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    treatment = pl.read_parquet(root / "research" / "treatment.parquet")
    traj = build_trajectories(
        arrays, pairs, treatment, sector_rel_wage=load_sector_rel_wage(root / "sources")
    )
    timings["trajectories"] = time.perf_counter() - t0
    bc = args.bias_correction
    if bc:
        t0 = time.perf_counter()
        traj = with_covariates(traj, arrays, correction_features(settings))
        timings["covariates"] = time.perf_counter() - t0
    twins_info.update(
        n_pairs=traj.n_pairs,
        n_treated_in_pairs=traj.n_treated,
        n_distinct_twins=int(np.unique(traj.twin_pid).size),
        n_twins_starting_later=int((traj.twin_start >= 0).sum()),
    )

    paths = truth_paths(root)
    traits = latent_traits(root)
    latent = latent_balance(traits, pairs)
    generator = DeliveryManifest.read(next((root / "landing").iterdir())).generator
    out: dict[str, Any] = {
        "root": str(root),
        "persons": arrays.n_persons,
        "hidden_confounding": generator.get("hidden_confounding", 1.0),
        "months": [str(arrays.months[0]), str(arrays.months[-1])],
        "settings": {
            "twins": {k: str(v) for k, v in settings.__dict__.items()},
            "baseline": [-12, -1],
            "reps": args.reps,
            "seed": args.seed,
            "variance": "abadie_imbens",
            "bias_correction": bc,
        },
        "twins": twins_info,
        "latent_after_matching": latent,
    }
    headline: dict[str, Any] = {}
    for clock, events in (("end", HORIZONS), ("start", START_EVENTS)):
        t0 = time.perf_counter()
        res = matched_event_study(
            traj,
            "earnings_real",
            clock,
            reps=args.reps,
            seed=args.seed,
            arrays=arrays,
            naive_max_candidates=args.naive_max_candidates,
            bias_correction=bc,
        )
        timings[f"estimate_earnings_{clock}_with_naive"] = time.perf_counter() - t0
        tc = matched_event_study(
            traj,
            "earnings_real",
            clock,
            reps=args.reps,
            seed=args.seed,
            variance="treated_clusters",
            bias_correction=bc,
        )
        rows = {}
        for e in events:
            if e not in set(res.event_time.tolist()):
                continue
            r = record(
                res,
                e,
                sample_truth(paths, res, traj, e, "earnings_real"),
                population_truth(root, clock, e, "earnings_real"),
            )
            r["se_treated_clusters"] = float(tc.bse_analytic[res._col(e)])
            rows[str(e)] = r
        if clock == "end":
            out["bias_anatomy"] = {str(e): bias_anatomy(traits, res, traj, paths, e)
                                   for e in events if str(e) in rows}
        pre = res.table().filter(pl.col("period") == "pre")
        pooled = POOLED[clock]
        headline[clock] = {
            "pooled": pooled_bias(res, traj, paths, pooled),
            "horizons" if clock == "end" else "event_times": rows,
            "pretest": res.pretest._asdict() if res.pretest else None,
            "placebo_max_abs_t": float((pre["att"] / pre["se"]).abs().max())
            if pre.height
            else None,
            "crit_uniform": res.crit_uniform,
        }
    out["earnings_real"] = headline

    others: dict[str, Any] = {}
    t0 = time.perf_counter()
    for outcome in traj.outcomes:
        if outcome == "earnings_real" or outcome not in TRUTH_NAME:
            continue
        res = matched_event_study(
            traj, outcome, "end", event_times=list(HORIZONS), reps=args.reps, seed=args.seed,
            bias_correction=bc,
        )
        others[outcome] = {
            str(h): record(
                res,
                h,
                sample_truth(paths, res, traj, h, outcome),
                population_truth(root, "end", h, outcome),
            )
            for h in HORIZONS
        }
    timings["estimate_other_outcomes_end"] = time.perf_counter() - t0
    out["other_outcomes_end_clock"] = others
    checks = headline["end"]["horizons"]
    out["checks"] = {
        h: {k: checks[h].get(k) for k in ("within_2se", "within_10pct")} for h in checks
    }
    out["passed"] = all(v["within_2se"] and v["within_10pct"] for v in out["checks"].values())
    out["timings_seconds"] = {k: round(v, 3) for k, v in timings.items()}
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}

    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    key = str(root) if args.pool == "not_yet_treated" else f"{root}|pool={args.pool}"
    if args.exact is not None:
        key += "|exact=" + args.exact
    if args.exact_add:
        key += "|exact+=" + ",".join(args.exact_add)
    if args.feature_add:
        key += "|features+=" + ",".join(args.feature_add)
    if settings.coarsen != TwinSettings.coarsen:
        key += "|coarsen=" + (";".join(",".join(g) for g in settings.coarsen) or "none")
    if bc:
        key += "|bias_correction"
    out["pool"] = args.pool
    data.setdefault("runs", {})[key] = out
    args.out.write_text(json.dumps(data, indent=2, default=float) + "\n")

    print(f"truth recovery on {root} ({arrays.n_persons} persons)")
    print(f"{'h':>3} {'ATT':>9} {'SE':>8} {'truth':>9} {'naive':>9} {'z':>6} 2SE 10%")
    for h, r in checks.items():
        print(
            f"{h:>3} {r['att']:>9.2f} {r['se']:>8.2f} {r['truth_sample']:>9.2f} "
            f"{r.get('att_naive', float('nan')):>9.2f} {r['z']:>6.2f} "
            f"{'y' if r['within_2se'] else 'n':>3} {'y' if r['within_10pct'] else 'n':>3}"
        )
    m = latent["motivation"]
    print(f"latent motivation: treated {m['treated']:.2f}, twins {m['twins']:.2f}, "
          f"non-participants {m['non_participants']:.2f} ({m['gap_closed']:.0%} of the gap closed)")
    print(f"bias anatomy (estimate minus truth per treated person, hidden_confounding "
          f"{out['hidden_confounding']}):")

    def num(x: float | None, fmt: str = ".1f") -> str:
        return "-" if x is None else format(x, fmt)

    for h, a in out.get("bias_anatomy", {}).items():
        thirds = ", ".join(f"{num(c['bias'])} (mot {num(c['motivation'], '.2f')})"
                           for c in a["motivation_thirds"])
        emp, not_emp = a["employed_before_start"], a["not_employed_before_start"]
        print(f"{h:>3} all {num(a['all']['bias'])} +- {num(a['all']['se'])}; motivation "
              f"thirds {thirds}; slope {num(a['slope_per_unit_motivation'])} +- "
              f"{num(a['slope_se'])}; employed before {num(emp['bias'])} (n {emp['n']}), "
              f"not {num(not_emp['bias'])} (n {not_emp['n']})")
        print("    status at entry: " + "; ".join(
            f"{k} {num(c['bias'])} +- {num(c['se'])} (n {c['n']})"
            for k, c in a["status_at_entry"].items()))
    print("timings", out["timings_seconds"])


if __name__ == "__main__":
    main()
