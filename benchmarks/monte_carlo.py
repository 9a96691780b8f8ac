"""Monte Carlo study: bias, RMSE and 95 % CI coverage of two DiD estimators.

Command (2 cores, one thread per process)::

    OMP_NUM_THREADS=1 /work/venv/bin/python benchmarks/monte_carlo.py --reps 200 --workers 2

Writes ``benchmarks/results/monte_carlo.json`` (replaced on re-run) and prints a table.
Replication ``r`` of each study uses ``numpy.random.default_rng(seed + r)``; every estimator
configuration of a study runs on the same simulated data set of that replication.

Study 1: staggered ATT(g,t) (``impact.estimate.staggered.att_gt``)
-----------------------------------------------------------------
DGP: ``--st-units`` (2,000) units x 12 periods (t = 1..12). Covariate ``x ~ N(0, 1)``.
Cohort ``G`` (first treated period) in {0 (never), 5, 7, 9}, multinomial logit on ``x``
with scores ``0, 0.8 x, 0, -0.8 x`` (about a quarter each; x drives cohort membership).
Untreated outcome::

    Y_it(0) = alpha_i + 0.1 t + 0.15 t * x_i + eps_it,   eps_it ~ N(0, 1) i.i.d.,
    alpha_i = 0.5 x_i + 0.05 G_i + N(0, 1)                (unit effects, correlated with G),

so parallel trends hold conditional on ``x`` only (the ``0.15 t x`` trend differs by cohort
because ``E[x | G]`` does). Effect at event time ``e = t - g >= 0``::

    tau_it = c_g (1 + 0.5 e) + 0.5 x_i + v_i,  c_5 = 1.0, c_7 = 0.75, c_9 = 0.5,
    v_i ~ N(0, 0.5^2) (unit level),

heterogeneous by cohort, event time and ``x``; no anticipation. Estimands (population):
``ATT(g, g+e) = c_g (1 + 0.5 e) + 0.5 E[x | G = g]`` (``E[x | G = g]`` and ``P(G = g)`` by
numerical integration); ``ATT(e) = sum_g P(G=g) ATT(g, g+e) / sum_g P(G=g)`` for e = 0..3 (all
three cohorts observed); the simple aggregate
``sum_{g, t >= g} P(G=g) ATT(g,t) / sum_{g, t >= g} P(G=g)`` (R ``aggte(type="simple")``).
Estimators: ``att_gt(x=["x"], control_group="not_yet_treated", est_method="reg" | "dr",
bootstrap=False)`` (and ``never_treated`` unless ``--st-controls`` says otherwise), then
``.aggregate("simple" | "dynamic", bootstrap=False, cband=False)``; 95 % analytic
(influence-function) intervals ``att +- 1.96 se``.

Study 2: statistical-twin DiD (``impact.twins_did``)
----------------------------------------------------
DGP: cross-section of ``--tw-units`` (3,000) units. ``x1 ~ N(0, 1)``, ``x2 ~ Bernoulli(0.4)``,
``a = 0.5 x1 + 0.3 x2 + N(0, 1)``; two pre-period outcomes ``y_pre1 = a + e1``,
``y_pre2 = a + 0.2 + e2``; ``D ~ Bernoulli(logistic(-1.0 + 0.5 x1 + 0.4 x2 - 0.4 ybar_pre))``
(selection on covariates and on pre-period outcomes, an Ashenfelter-type dip; about 30 %
treated); ``Y_post(0) = a + 0.5 + 0.3 x1 + e3``; ``e1, e2, e3 ~ N(0, 0.8^2)``; effect
``tau_i = 1 + 0.5 x1 + N(0, 0.5^2)``; ``Y_post = Y_post(0) + D tau``. The untreated change
``Y_post(0) - ybar_pre`` is independent of ``D`` given (x1, x2, y_pre1, y_pre2), the matching
features, so the twins DiD is consistent. Estimand: the sample ATT of the estimate, the mean
of the true ``tau_i`` over the *matched* treated units (``res.matches.pairs.treated_id``);
also reported against the population ATT of the treated ``E[tau | D = 1]`` (from a 2 million
draw simulation). Estimator: ``twins_did(covariates=["x1", "x2"], pre_outcomes=["y_pre1",
"y_pre2"], k=1 | 5, caliper=0.2, replace=True)``, 95 % interval ``res.ci`` (Abadie-Imbens
variance).

How to read the figures
-----------------------
Per configuration and estimand: ``mean_estimate``, ``truth``, ``bias`` (mean of estimate -
truth, with its Monte Carlo SE ``bias_mcse``), ``rmse``, ``coverage`` (share of replications
whose 95 % CI contains the truth; Monte Carlo SE about 1.5 points at 200 replications, so
92-98 % is the acceptable band), ``mean_se`` (average reported SE) against ``sd_estimate`` (SD
of the estimates over replications; for the sample ATT of the twins, ``sd_error`` is the SD of
estimate - sample ATT, the quantity the SE should match). ``mean_se / sd`` near 1 means
honest standard errors; coverage well above 95 % with ``mean_se > sd`` means conservative
intervals. ``n_ok`` counts replications with a finite estimate and SE.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
import warnings
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from _results import error_summary

from impact import twins_did
from impact.estimate.staggered import att_gt

RESULTS = Path(__file__).resolve().parent / "results" / "monte_carlo.json"

# ---------------------------------------------------------------- staggered DGP
PERIODS = np.arange(1, 13)
COHORTS = (5, 7, 9)
COHORT_SLOPE = {5: 0.8, 7: 0.0, 9: -0.8}  # multinomial-logit slopes on x (never treated: 0)
C_G = {5: 1.0, 7: 0.75, 9: 0.5}
EVENT_TIMES = (0, 1, 2, 3)


def _cohort_probs(x: np.ndarray) -> np.ndarray:
    """P(G = 0, 5, 7, 9 | x), columns in that order."""
    scores = np.column_stack([np.zeros_like(x)] + [COHORT_SLOPE[g] * x for g in COHORTS])
    scores -= scores.max(axis=1, keepdims=True)
    p = np.exp(scores)
    return p / p.sum(axis=1, keepdims=True)


def staggered_truth() -> dict[str, float]:
    """Population ATT(e), e = 0..3, overall dynamic and simple aggregate (numerical integral)."""
    grid = np.linspace(-10.0, 10.0, 200_001)
    dens = np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi)
    probs = _cohort_probs(grid)
    p_g, m_g = {}, {}
    for j, g in enumerate(COHORTS, start=1):
        mass = np.trapezoid(dens * probs[:, j], grid)
        p_g[g] = float(mass)
        m_g[g] = float(np.trapezoid(grid * dens * probs[:, j], grid) / mass)

    def att(g: int, t: int) -> float:
        return C_G[g] * (1.0 + 0.5 * (t - g)) + 0.5 * m_g[g]

    t_max = int(PERIODS[-1])
    truth: dict[str, float] = {}
    dyn = []
    for e in range(0, t_max - min(COHORTS) + 1):
        gs = [g for g in COHORTS if g + e <= t_max]
        val = sum(p_g[g] * att(g, g + e) for g in gs) / sum(p_g[g] for g in gs)
        dyn.append(val)
        if e in EVENT_TIMES:
            truth[f"dynamic_e{e}"] = val
    truth["dynamic_overall"] = float(np.mean(dyn))
    num = sum(p_g[g] * att(g, t) for g in COHORTS for t in range(g, t_max + 1))
    den = sum(p_g[g] * (t_max - g + 1) for g in COHORTS)
    truth["simple"] = num / den
    truth["_p_g"] = p_g  # type: ignore[assignment]
    truth["_E_x_given_g"] = m_g  # type: ignore[assignment]
    return truth


def simulate_staggered(n: int, rng: np.random.Generator) -> pl.DataFrame:
    x = rng.normal(size=n)
    probs = _cohort_probs(x)
    u = rng.random(n)
    idx = (u[:, None] > probs.cumsum(axis=1)).sum(axis=1)
    idx = np.minimum(idx, len(COHORTS))
    g = np.array((0, *COHORTS))[idx]
    alpha = 0.5 * x + 0.05 * g + rng.normal(size=n)
    t = PERIODS
    y0 = (
        alpha[:, None]
        + 0.1 * t[None, :]
        + 0.15 * t[None, :] * x[:, None]
        + rng.normal(size=(n, t.size))
    )
    c = np.array([C_G.get(int(gi), 0.0) for gi in g])
    v = rng.normal(scale=0.5, size=n)
    e = t[None, :] - g[:, None]
    treated = (g[:, None] > 0) & (e >= 0)
    tau = c[:, None] * (1.0 + 0.5 * e) + 0.5 * x[:, None] + v[:, None]
    y = y0 + np.where(treated, tau, 0.0)
    return pl.DataFrame(
        {
            "id": np.repeat(np.arange(n, dtype=np.int64), t.size),
            "t": np.tile(t, n),
            "g": np.repeat(g, t.size),
            "x": np.repeat(x, t.size),
            "y": y.ravel(),
        }
    )


def staggered_rep(args: tuple[int, int, tuple[str, ...], tuple[str, ...]]) -> dict[str, Any]:
    seed, n, controls, methods = args
    rng = np.random.default_rng(seed)
    df = simulate_staggered(n, rng)
    out: dict[str, Any] = {}
    for cg in controls:
        for meth in methods:
            name = f"{meth}_{cg}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = att_gt(
                        df,
                        y="y",
                        t="t",
                        g="g",
                        id="id",
                        x=["x"],
                        control_group=cg,
                        est_method=meth,
                        bootstrap=False,
                        cband=False,
                    )
                    simple = res.aggregate("simple", bootstrap=False, cband=False)
                    dyn = res.aggregate("dynamic", bootstrap=False, cband=False)
                rec = {"simple": (simple.att, simple.se), "dynamic_overall": (dyn.att, dyn.se)}
                tab = dyn.table
                assert tab is not None
                for e in EVENT_TIMES:
                    row = tab.filter(pl.col("event_time") == e)
                    rec[f"dynamic_e{e}"] = (float(row["att"][0]), float(row["se"][0]))
            except Exception as exc:  # recorded, counted as a failed replication
                rec = {"error": repr(exc)}
            out[name] = rec
    return out


# ---------------------------------------------------------------- twins DGP
def _twins_draw(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    x1 = rng.normal(size=n)
    x2 = (rng.random(n) < 0.4).astype(np.int64)
    a = 0.5 * x1 + 0.3 * x2 + rng.normal(size=n)
    y_pre1 = a + rng.normal(scale=0.8, size=n)
    y_pre2 = a + 0.2 + rng.normal(scale=0.8, size=n)
    ybar = 0.5 * (y_pre1 + y_pre2)
    lin = -1.0 + 0.5 * x1 + 0.4 * x2 - 0.4 * ybar
    d = rng.random(n) < 1.0 / (1.0 + np.exp(-lin))
    y0 = a + 0.5 + 0.3 * x1 + rng.normal(scale=0.8, size=n)
    tau = 1.0 + 0.5 * x1 + rng.normal(scale=0.5, size=n)
    y = y0 + np.where(d, tau, 0.0)
    return {
        "id": np.arange(n, dtype=np.int64),
        "d": d,
        "x1": x1,
        "x2": x2,
        "y_pre1": y_pre1,
        "y_pre2": y_pre2,
        "y_post": y,
        "tau": tau,
    }


def twins_population_att(seed: int = 987_654, n: int = 2_000_000) -> tuple[float, float]:
    """E[tau | D = 1] and P(D = 1) by simulation (MC error about 0.001)."""
    dat = _twins_draw(n, np.random.default_rng(seed))
    return float(dat["tau"][dat["d"]].mean()), float(dat["d"].mean())


def twins_rep(args: tuple[int, int, tuple[int, ...]]) -> dict[str, Any]:
    seed, n, ks = args
    dat = _twins_draw(n, np.random.default_rng(seed))
    tau = dat.pop("tau")
    df = pl.DataFrame(dat)
    out: dict[str, Any] = {}
    for k in ks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = twins_did(
                    df,
                    treatment="d",
                    outcome="y_post",
                    pre_outcomes=["y_pre1", "y_pre2"],
                    covariates=["x1", "x2"],
                    k=k,
                    caliper=0.2,
                    replace=True,
                    seed=0,
                    id="id",
                )
            matched = np.unique(res.matches.pairs["treated_id"].to_numpy())
            if matched.size != res.n_treated:
                raise RuntimeError("matched set does not agree with n_treated")
            out[f"k{k}"] = {
                "att": res.att,
                "se": res.se,
                "ci": res.ci,
                "satt": float(tau[matched].mean()),
                "n_treated": res.n_treated,
                "n_unmatched": res.n_unmatched,
            }
        except Exception as exc:
            out[f"k{k}"] = {"error": repr(exc)}
    return out


def _run(fn: Any, tasks: list[Any], workers: int) -> list[Any]:
    if workers <= 1:
        return [fn(t) for t in tasks]
    with get_context("fork").Pool(workers) as pool:
        return pool.map(fn, tasks, chunksize=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--st-units", type=int, default=2000)
    ap.add_argument("--st-methods", default="reg,dr")
    ap.add_argument("--st-controls", default="not_yet_treated,never_treated")
    ap.add_argument("--tw-units", type=int, default=3000)
    ap.add_argument("--tw-k", default="1,5")
    ap.add_argument("--skip", choices=["staggered", "twins"], default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: OMP_NUM_THREADS is not 1; set it for the documented timing", file=sys.stderr)

    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "command": "OMP_NUM_THREADS=1 " + " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "config": {
            "reps": a.reps,
            "workers": a.workers,
            "seed": a.seed,
            "staggered": {
                "units": a.st_units,
                "periods": int(PERIODS.size),
                "cohorts": list(COHORTS),
                "methods": a.st_methods.split(","),
                "control_groups": a.st_controls.split(","),
                "x": ["x"],
                "inference": "analytic (bootstrap=False), 95% pointwise",
            },
            "twins": {
                "units": a.tw_units,
                "k": [int(k) for k in a.tw_k.split(",")],
                "caliper": 0.2,
                "replace": True,
                "variance": "abadie_imbens",
            },
        },
    }
    lines: list[str] = []
    hdr = (
        f"{'config':<22} {'estimand':<16} {'truth':>7} {'mean':>7} {'bias':>7} {'rmse':>6} "
        f"{'cover':>6} {'meanSE':>7} {'SD':>6}"
    )

    if a.skip != "staggered":
        ts = time.perf_counter()
        truth = staggered_truth()
        methods = tuple(a.st_methods.split(","))
        controls = tuple(a.st_controls.split(","))
        tasks = [(a.seed + r, a.st_units, controls, methods) for r in range(a.reps)]
        reps = _run(staggered_rep, tasks, a.workers)
        keys = ["simple", *(f"dynamic_e{e}" for e in EVENT_TIMES), "dynamic_overall"]
        res: dict[str, Any] = {}
        for cg in controls:
            for meth in methods:
                name = f"{meth}_{cg}"
                good = [rep[name] for rep in reps if "error" not in rep[name]]
                errors = [rep[name]["error"] for rep in reps if "error" in rep[name]]
                res[name] = {"n_failed": len(errors), "errors": errors[:3]}
                for key in keys:
                    est = np.array([g[key][0] for g in good], dtype=float)
                    se = np.array([g[key][1] for g in good], dtype=float)
                    s = error_summary(est, se, truth[key])
                    res[name][key] = s
                    lines.append(
                        f"{name:<22} {key:<16} {s['truth']:7.3f} {s['mean_estimate']:7.3f} "
                        f"{s['bias']:7.3f} {s['rmse']:6.3f} {100 * s['coverage']:5.1f}% "
                        f"{s['mean_se']:7.3f} {s['sd_estimate']:6.3f}"
                    )
        record["staggered"] = {
            "truth": {k: v for k, v in truth.items() if not k.startswith("_")},
            "cohort_share": truth["_p_g"],
            "E_x_given_cohort": truth["_E_x_given_g"],
            "results": res,
            "wall_time_s": round(time.perf_counter() - ts, 1),
        }

    if a.skip != "twins":
        ts = time.perf_counter()
        patt, p_treat = twins_population_att()
        ks = tuple(int(k) for k in a.tw_k.split(","))
        tasks = [(a.seed + 100_000 + r, a.tw_units, ks) for r in range(a.reps)]
        reps = _run(twins_rep, tasks, a.workers)
        res = {}
        for k in ks:
            name = f"k{k}"
            good = [rep[name] for rep in reps if "error" not in rep[name]]
            errors = [rep[name]["error"] for rep in reps if "error" in rep[name]]
            est = np.array([g["att"] for g in good], dtype=float)
            se = np.array([g["se"] for g in good], dtype=float)
            lo = np.array([g["ci"][0] for g in good], dtype=float)
            hi = np.array([g["ci"][1] for g in good], dtype=float)
            satt = np.array([g["satt"] for g in good], dtype=float)
            s_s = error_summary(est, se, satt, lo, hi)
            s_p = error_summary(est, se, patt, lo, hi)
            res[name] = {
                "n_failed": len(errors),
                "errors": errors[:3],
                "sample_att": s_s,
                "population_att_treated": s_p,
                "mean_n_treated_matched": float(np.mean([g["n_treated"] for g in good])),
                "mean_n_unmatched": float(np.mean([g["n_unmatched"] for g in good])),
            }
            for lab, s in (("SATT(matched)", s_s), ("PATT(treated)", s_p)):
                sd = s["sd_error"] if lab.startswith("S") else s["sd_estimate"]
                lines.append(
                    f"{'twins_' + name:<22} {lab:<16} {s['truth']:7.3f} "
                    f"{s['mean_estimate']:7.3f} {s['bias']:7.3f} {s['rmse']:6.3f} "
                    f"{100 * s['coverage']:5.1f}% {s['mean_se']:7.3f} {sd:6.3f}"
                )
        record["twins"] = {
            "population_att_treated": patt,
            "population_share_treated": p_treat,
            "results": res,
            "wall_time_s": round(time.perf_counter() - ts, 1),
        }

    record["wall_time_s"] = round(time.perf_counter() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{a.reps} replications, wall time {record['wall_time_s']} s -> {a.out}")
    print("(SD column: SD of estimates; for SATT rows SD of estimate - sample ATT)")
    print(hdr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
