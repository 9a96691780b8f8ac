"""Replications of the whole chain on the project's own generator: bias and CI coverage.

The Monte Carlo study (``monte_carlo.py``) checks the estimators on stylised data sets. This
study checks the pipeline as it runs on registers: each replication generates a synthetic
delivery with its own seed, ingests it, builds the panel and episode tables, matches
statistical twins with the default :class:`impact.twins.riskset.TwinSettings` and estimates
the matched DiD event study on real monthly earnings (leaving clock, multiplier bootstrap).
The estimate at 6, 12 and 24 months after leaving is compared with the generator's truth over
the same treated persons (``truth_sample``, as in ``truth_recovery.py``).

The scenario is the generator's ``hidden_confounding``:

* ``0``: latent motivation drives participation but not outcomes, so selection is on what
  the registers show and on time-invariant differences. The matched DiD should be unbiased
  and its 95 % intervals should cover the truth in about 95 % of replications.
* ``1`` (the generator's default): motivated people also do better without training, which
  the registers show only in part. The bias measured here is what matching on observables
  cannot remove.

Also reported per scenario and horizon: the naive comparison (same treated, all
not-yet-treated candidates, same baseline), the share of replications whose estimate is
within 2 SE and within 10 % of the truth, and the mean SE.

Command (2 cores, one thread per process)::

    OMP_NUM_THREADS=1 python benchmarks/chain_replications.py --persons 30000 --reps 100 \\
        --confounding 0 --confounding 1 --workers 2

Writes ``benchmarks/results/chain_replications.json``: one record per (persons,
hidden_confounding), replaced on re-run, with every replication's numbers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _results import error_summary, record_run

RESULTS = Path(__file__).resolve().parent / "results" / "chain_replications.json"
HORIZONS = (6, 12, 24)


def one_replication(persons: int, seed: int, confounding: float, boot_reps: int,
                    workdir: str, bias_correction: bool = False) -> dict[str, Any]:
    """Generate, ingest, build, match and estimate once; return estimates and truth.

    With ``bias_correction`` the regression-corrected estimate of the same twins is stored
    too, under ``"bias_corrected"`` (a paired comparison)."""
    import polars as pl
    from truth_recovery import sample_truth, truth_paths

    from impact import panel
    from impact.estimate.bias_correction import correction_features, with_covariates
    from impact.estimate.matched_did import matched_event_study
    from impact.ingest import IngestSettings, deliveries_in, ingest
    from impact.outcomes import build_trajectories
    from impact.pseudonym import PseudonymKey
    from impact.synth import SynthConfig, generate
    from impact.twins.features import PanelArrays
    from impact.twins.riskset import TwinSettings, match_cohorts

    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix=f"rep{seed}-", dir=workdir))
    try:
        generate(SynthConfig(persons=persons, seed=seed, fmt="parquet",
                             hidden_confounding=confounding), root)
        ingest(deliveries_in(root / "landing"),
               IngestSettings(out=root, key=PseudonymKey.demo(), gx_sample=0))
        panel.build(root / "sources", root / "panel")
        panel.build_episodes(root / "sources", root / "research")
        arrays = PanelArrays.load(root / "panel")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            settings = TwinSettings()
            tw = match_cohorts(arrays, settings)
        treatment = pl.read_parquet(root / "research" / "treatment.parquet")
        traj = build_trajectories(arrays, tw.pairs, treatment, outcomes=["earnings_real"])
        res = matched_event_study(traj, "earnings_real", "end", event_times=list(HORIZONS),
                                  reps=boot_reps, seed=seed, arrays=arrays)
        paths = truth_paths(root)
        out: dict[str, Any] = {"seed": seed, "n_treated": int(traj.n_treated)}

        def horizons(res: Any) -> dict[str, Any]:
            rows = {}
            for h in HORIZONS:
                r = res.at(h)
                truth = sample_truth(paths, res, traj, h, "earnings_real")["truth_sample"]
                rows[str(h)] = {
                    "att": float(r["att"]), "se": float(r["se"]),
                    "ci_low": float(r["ci_low"]), "ci_high": float(r["ci_high"]),
                    "truth": float(truth), "att_naive": float(r.get("att_naive", np.nan)),
                    "n_treated": int(r["n_treated"]),
                }
            return rows

        out.update(horizons(res))
        if bias_correction:
            traj = with_covariates(traj, arrays, correction_features(settings))
            bc = matched_event_study(traj, "earnings_real", "end",
                                     event_times=list(HORIZONS), reps=boot_reps, seed=seed,
                                     arrays=arrays, bias_correction=True)
            out["bias_corrected"] = horizons(bc)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def summarise(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per horizon: :func:`_results.error_summary` of the estimates against each replication's
    sample truth (with the project's own intervals), and the shares within 2 SE and within
    10 % of the truth, the bias relative to the mean truth and the naive comparison's bias."""
    out: dict[str, Any] = {}
    for h in HORIZONS:
        rows = [r[str(h)] for r in reps]
        att, se, truth, lo, hi, naive = (np.array([r[k] for r in rows], dtype=float) for k in
                                         ("att", "se", "truth", "ci_low", "ci_high",
                                          "att_naive"))
        s = error_summary(att, se, truth, lo, hi)
        ok = np.isfinite(att) & np.isfinite(se)
        err = att[ok] - truth[ok]
        naive_err = naive[ok] - truth[ok]
        s.update(
            relative_bias=s["bias"] / s["truth"],
            share_within_2se=float((np.abs(err) <= 2 * se[ok]).mean()),
            share_within_10pct=float((np.abs(err) <= 0.1 * np.abs(truth[ok])).mean()),
            naive_bias=float(naive_err.mean()),
            naive_bias_mcse=float(naive_err.std(ddof=1) / np.sqrt(err.size)),
        )
        out[str(h)] = s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=30_000)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1000, help="seed of replication 0")
    ap.add_argument("--confounding", type=float, action="append",
                    help="hidden_confounding values (repeat); default 0 and 1")
    ap.add_argument("--boot-reps", type=int, default=199)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--bias-correction", action="store_true",
                    help="also estimate with the regression bias correction on the same "
                    "twins (summarised as 'summary_bias_corrected')")
    args = ap.parse_args()
    scenarios = args.confounding or [0.0, 1.0]

    ctx = mp.get_context("spawn")
    for c in scenarios:
        t0 = time.perf_counter()
        seeds = [args.seed + r for r in range(args.reps)]
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
            futures = [pool.submit(one_replication, args.persons, s, c, args.boot_reps,
                                   str(args.workdir), args.bias_correction) for s in seeds]
            reps = []
            for i, f in enumerate(futures):
                reps.append(f.result())
                if (i + 1) % 10 == 0:
                    print(f"hidden_confounding {c:g}: {i + 1}/{len(seeds)} replications "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
        summary = summarise(reps)
        record = {
            "persons": args.persons,
            "hidden_confounding": c,
            "reps": args.reps,
            "first_seed": args.seed,
            "boot_reps": args.boot_reps,
            "estimator": "matched DiD event study, leaving clock, default TwinSettings "
                         "(not-yet-treated pool, pooled logit score, caliper 0.2, k = 5), "
                         "baseline months -12..-1 before the start, multiplier bootstrap"
                         + ("; also with the regression bias correction (Abadie-Imbens 2011) "
                            "on the matching features and exact strata"
                            if args.bias_correction else ""),
            "truth": "mean of Y1 - Y0 over the treated persons the estimate averages",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
            "mean_treated": float(np.mean([r["n_treated"] for r in reps])),
            "summary": summary,
            "replications": reps,
        }
        if args.bias_correction:
            record["summary_bias_corrected"] = summarise([r["bias_corrected"] for r in reps])
        record_run(args.out, record, ("persons", "hidden_confounding"))

        print(f"\n{args.persons} persons, hidden_confounding {c:g}, {args.reps} replications, "
              f"{record['mean_treated']:.0f} treated on average, {record['wall_seconds']:.0f} s")
        tables = {"matched DiD": summary}
        if args.bias_correction:
            tables["bias-corrected"] = record["summary_bias_corrected"]
        for name, table in tables.items():
            print(f"{name}\n{'h':>3} {'truth':>8} {'bias':>8} {'mcse':>6} {'rmse':>7} "
                  f"{'meanSE':>7} {'cover':>6} {'2SE':>5} {'10%':>5} {'naive bias':>11}")
            for h, s in table.items():
                print(f"{h:>3} {s['truth']:>8.1f} {s['bias']:>8.1f} {s['bias_mcse']:>6.1f} "
                      f"{s['rmse']:>7.1f} {s['mean_se']:>7.1f} {s['coverage']:>6.2f} "
                      f"{s['share_within_2se']:>5.2f} {s['share_within_10pct']:>5.2f} "
                      f"{s['naive_bias']:>11.1f}")


if __name__ == "__main__":
    main()
