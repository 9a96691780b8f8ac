"""Peer check of the twin engine and balance table against DoWhy's propensity score matching.

DoWhy 0.14's ``backdoor.propensity_score_matching`` (ATT) matches each treated unit to its
single nearest control on the propensity score, with replacement and no caliper, and averages
the treated-minus-twin outcome differences. It reuses a ``propensity_score`` column if the
data have one, so both sides here get the *same* fitted probabilities and only the matching
and the arithmetic are compared.

Post-match SMDs are compared through DoWhy's effect estimate with a covariate as the
"outcome": its ATT is ``mean_t(x) - matched mean_c(x)``, the numerator of cobalt's post-match
SMD, so ``estimate / sd_denom`` must equal ``impact.balance.balance_table(...)['smd_after']``.
The same is done for a real outcome (the ATT itself).

Writes ``benchmarks/results/dowhy_compare.json``.

Usage::

    python benchmarks/dowhy_compare.py [--n 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import polars as pl

from impact.balance import balance_table
from impact.twins import MatchOptions, PropensityModel, match

RESULTS = Path(__file__).resolve().parent / "results" / "dowhy_compare.json"
COVS = ["age", "income", "tenure", "female"]


def make_data(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, n)
    income = rng.lognormal(6, 0.5, n)
    tenure = rng.gamma(2.0, 3.0, n)
    female = (rng.random(n) < 0.5).astype(int)
    lin = -1.2 - 0.05 * (age - 40) + 0.002 * (income - 450) + 0.08 * tenure + 0.4 * female
    d = (rng.random(n) < 1 / (1 + np.exp(-lin))).astype(int)
    y = 0.02 * age + 0.001 * income + 0.1 * tenure + 1.5 * d + rng.normal(size=n)
    return pl.DataFrame(
        {
            "pid": np.arange(n),
            "d": d,
            "age": age,
            "income": income,
            "tenure": tenure,
            "female": female,
            "y": y,
        }
    )


def dowhy_att(pdf, outcome: str) -> float:
    from dowhy import CausalModel

    model = CausalModel(data=pdf, treatment="d", outcome=outcome, common_causes=COVS)
    estimand = model.identify_effect(proceed_when_unidentifiable=True)
    est = model.estimate_effect(
        estimand, method_name="backdoor.propensity_score_matching", target_units="att"
    )
    return float(est.value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    df = make_data(args.n, args.seed)
    model = PropensityModel().fit(df, treatment="d", features=COVS)
    df = df.with_columns(pl.Series("propensity_score", model.probability(df)))

    t0 = time.perf_counter()
    res = match(
        df,
        treatment="d",
        id="pid",
        score="propensity_score",
        options=MatchOptions(ps_model="precomputed", ratio=1, caliper=None),
    )
    ours_wall = time.perf_counter() - t0
    tab = balance_table(
        res.attach_weights(df), treatment="d", covariates=[*COVS, "y"], weights="weight"
    )

    pdf = df.drop("pid", "y").to_pandas()
    pdf["_y"] = df["y"].to_numpy()
    rows = []
    t0 = time.perf_counter()
    for var in [*COVS, "y"]:
        row = tab.filter(pl.col("covariate") == var).row(0, named=True)
        ours_diff = row["mean_treated_after"] - row["mean_control_after"]
        # a covariate cannot be its own outcome in DoWhy's graph: use a copy of it
        pdf["_outcome"] = pdf[var] if var != "y" else pdf["_y"]
        theirs = dowhy_att(pdf, "_outcome")
        rows.append(
            {
                "variable": var,
                "smd_after_impact": row["smd_after"],
                "smd_after_dowhy": theirs / row["sd_denom"],
                "diff_impact": ours_diff,
                "diff_dowhy": theirs,
                "abs_gap": abs(ours_diff - theirs),
            }
        )
    dowhy_wall = time.perf_counter() - t0
    worst = max(r["abs_gap"] for r in rows)
    record = {
        "n": args.n,
        "seed": args.seed,
        "n_treated": res.n_treated,
        "rows": rows,
        "max_abs_gap": worst,
        "agree": worst < 1e-9,
        "wall_seconds": {
            "impact_match": round(ours_wall, 3),
            "dowhy_5_estimates": round(dowhy_wall, 3),
        },
        "measured": time.strftime("%Y-%m-%d"),
    }
    for r in rows:
        print(
            f"{r['variable']:8s} SMD after impact {r['smd_after_impact']: .6f}  "
            f"dowhy {r['smd_after_dowhy']: .6f}  |gap| {r['abs_gap']:.2e}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(f"max |gap| {worst:.2e}; written to {RESULTS}")


if __name__ == "__main__":
    main()
