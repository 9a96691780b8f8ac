"""Ground truth of the synthetic delivery: true effects of training.

For every participant the simulation records two paths from the month the
first course starts: the observed (treated) path and the shadow (untreated)
path driven by the same random shocks. Their difference is the individual
effect; averaging it gives the true average treatment effect on the treated
(ATT) in this sample, by event time, horizon, cohort and subgroup.

Outcome definitions (both paths)
--------------------------------
``earnings_real``
    Gross monthly earnings from all jobs, deflated to the average price level
    of :data:`impact.synth.params.CPI_BASE_YEAR` (EUR of that year).
``daily_wage_real``
    ``earnings_real / days worked`` where days > 0, else missing. Its ATT is
    averaged over participants employed in both paths (documented survivor
    contrast; the indicator layer states which contrast it estimates).
``employed``, ``registered``
    Share with a positive-income employer report; share registered at NVA.
``days``, ``ub_days``, ``sick_days``
    Days worked, unemployment-benefit days, sickness days in the month.
``skill``
    ISCO-08 skill level of the main job (0 when not employed).
``sector_rel_wage``
    Relative average wage of the main job's NACE section (missing when not
    employed).

Pre-start months are not recorded: there is no anticipation in the
generator, so the true effect before the start month is exactly zero.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from impact.synth import params as P
from impact.synth.calendar import month64
from impact.synth.population import edu_group
from impact.synth.simulate import Records, Simulation

OUTCOMES = ("earnings_real", "daily_wage_real", "employed", "days", "registered", "ub_days",
            "sick_days", "skill", "sector_rel_wage")
SUBGROUPS = ("all", "cohort", "sex", "age_band", "education", "region", "urbanisation",
             "programme_type", "completed", "employed_at_start")


def participants(sim: Simulation) -> pl.DataFrame:
    """One row per participant: treatment timing, programme and subgroup keys."""
    tr = sim.treatment
    person = tr["person"].astype(np.int64)
    start_t = tr["start_t"].astype(np.int64)
    m0 = month64(sim.config.start_date)
    age = (np.datetime64(sim.config.start_date, "D") - sim.pop.birth[person]).astype(
        np.int64) / 365.25 + start_t / 12
    level = sim.pop.isced_of(person, start_t).astype(np.int64)
    mun = sim.pop.municipality_of(person, start_t)
    munis = sim.municipalities
    cat = sim.catalogue
    prog = tr["prog"].astype(np.int64)
    return pl.DataFrame({
        "person_code": sim.pop.code[person].astype(str),
        "person": person,
        "start_month": np.datetime_as_string(m0 + start_t, unit="M"),
        "end_month": np.datetime_as_string(m0 + tr["end_t"].astype(np.int64), unit="M"),
        "start_t": start_t,
        "end_t": tr["end_t"].astype(np.int64),
        "programme_id": cat.frame["programme_id"].to_numpy()[prog].astype(str),
        "programme_type": np.array([P.PROGRAMME_TYPES[i].code for i in cat.type_idx])[prog],
        "completed": tr["completed"].astype(bool),
        "true_wage_effect": tr["delta"],
        "sex": np.where(sim.pop.female[person], "F", "M"),
        "age_band": np.select([age < 30, age < 50, age < 65], ["18-29", "30-49", "50-64"], "65+"),
        "education": np.array(["low", "medium", "high"])[edu_group(level)],
        "region": munis["region_code"].to_numpy()[mun].astype(str),
        "urbanisation": munis["urbanisation"].to_numpy()[mun].astype(np.int64),
        "motivation": sim.pop.motivation[person],
    })


def paths(sim: Simulation, parts: pl.DataFrame) -> pl.DataFrame:
    """Participant x month outcomes under treatment (``_1``) and without (``_0``)."""
    raw = Records.frame(sim.records.truth)
    m0 = month64(sim.config.start_date)
    cpi = sim.cpi
    t = raw["t"].to_numpy()
    defl = 100.0 / cpi[t]
    cols: dict[str, np.ndarray] = {"person": raw["person"].to_numpy(), "t": t}
    for s in ("1", "0"):
        earn = raw[f"earnings_{s}"].to_numpy() * defl
        days = raw[f"days_{s}"].to_numpy()
        cols[f"earnings_real_{s}"] = earn
        cols[f"daily_wage_real_{s}"] = np.where(days > 0, earn / np.maximum(days, 1), np.nan)
        for k in ("employed", "days", "registered", "ub_days", "sick_days", "skill",
                  "sector_rel_wage", "fixed", "part_time"):
            cols[f"{k}_{s}"] = raw[f"{k}_{s}"].to_numpy()
    df = pl.DataFrame(cols).with_columns(
        pl.col(c).cast(pl.Float64) for c in cols if c.startswith(("employed", "registered",
                                                                  "fixed", "part_time"))
    )
    df = df.join(parts.select("person", "person_code", "start_t", "end_t"), on="person")
    return df.with_columns(
        pl.Series("month", np.datetime_as_string(m0 + t, unit="M")).alias("month"),
        (pl.col("t") - pl.col("start_t")).alias("event_start"),
        (pl.col("t") - pl.col("end_t")).alias("event_end"),
    ).sort("person", "t")


def _att(df: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    aggs = []
    for o in OUTCOMES:
        # NaN marks an undefined outcome (e.g. a daily wage without work): such
        # person-months drop out of that outcome's mean, pairwise
        y1, y0 = pl.col(f"{o}_1").fill_nan(None), pl.col(f"{o}_0").fill_nan(None)
        diff = y1 - y0
        aggs += [diff.mean().alias(f"att_{o}"), y0.filter(diff.is_not_null()).mean()
                 .alias(f"mean0_{o}"), diff.is_not_null().sum().alias(f"n_{o}")]
    return df.group_by(by).agg(pl.len().alias("n"), *aggs).sort(by)


def att_event_time(p: pl.DataFrame) -> pl.DataFrame:
    """True ATT by event time, counted from the start and from the end of training."""
    out = []
    for clock in ("start", "end"):
        a = _att(p, [f"event_{clock}"]).rename({f"event_{clock}": "event_time"})
        out.append(a.with_columns(pl.lit(clock).alias("clock")))
    return pl.concat(out).select("clock", "event_time", pl.exclude("clock", "event_time"))


def att_horizons(p: pl.DataFrame, parts: pl.DataFrame) -> pl.DataFrame:
    """True ATT 6, 12 and 24 months after leaving, overall and by subgroup."""
    h = p.filter(pl.col("event_end").is_in(list(P.HORIZONS))).join(
        parts.drop("person_code", "start_t", "end_t"), on="person")
    h = h.with_columns(pl.col("start_month").alias("cohort"), pl.lit("all").alias("all"),
                       pl.col("completed").cast(pl.Utf8),
                       pl.col("urbanisation").cast(pl.Utf8))
    first = p.filter(pl.col("event_start") == 0).select(
        "person", (pl.col("employed_1") > 0).cast(pl.Utf8).alias("employed_at_start"))
    h = h.join(first, on="person", how="left")
    out = []
    for g in SUBGROUPS:
        a = _att(h, ["event_end", g]).rename({g: "group", "event_end": "horizon"})
        out.append(a.with_columns(pl.lit(g).alias("dimension"),
                                  pl.col("group").cast(pl.Utf8)))
    return pl.concat(out).select("dimension", "group", "horizon",
                                 pl.exclude("dimension", "group", "horizon"))


def eecr06(p: pl.DataFrame) -> pl.DataFrame:
    """True EECR06 rates under treatment and without, by criterion.

    Reference population: participants employed in the start month. A
    participant is in a better situation six months after leaving if, compared
    with the start month: (a) the ISCO skill level is higher, (b) the real daily
    wage is higher by more than :data:`~impact.synth.params.EECR06_PAY_THRESHOLD`,
    (c) a fixed-term contract became permanent, or (d) part-time became full
    time (each requires employment at the horizon).
    """
    entry = p.filter(pl.col("event_start") == 0)
    later = p.filter(pl.col("event_end") == P.EECR06_HORIZON)
    j = entry.join(later, on="person", suffix="_h")
    j = j.filter(pl.col("employed_1") > 0)
    rows = []
    for s in ("1", "0"):
        emp_h = pl.col(f"employed_{s}_h") > 0
        crit = {
            "occupation_up": emp_h & (pl.col(f"skill_{s}_h") > pl.col(f"skill_{s}")),
            "pay_up": emp_h & (pl.col(f"daily_wage_real_{s}_h") > pl.col(f"daily_wage_real_{s}")
                               * (1 + P.EECR06_PAY_THRESHOLD)),
            "fixed_to_permanent": emp_h & (pl.col(f"fixed_{s}") > 0) & (pl.col(f"fixed_{s}_h")
                                                                         == 0),
            "part_to_full_time": emp_h & (pl.col(f"part_time_{s}") > 0)
            & (pl.col(f"part_time_{s}_h") == 0),
        }
        any_ = crit["occupation_up"] | crit["pay_up"] | crit["fixed_to_permanent"] | crit[
            "part_to_full_time"]
        crit["any"] = any_
        r = j.select(**{k: v.fill_null(False).mean() for k, v in crit.items()})
        rows.append(r.with_columns(pl.lit("treated" if s == "1" else "untreated").alias("path")))
    wide = pl.concat(rows)
    long = wide.unpivot(index="path", variable_name="criterion", value_name="rate").pivot(
        on="path", index="criterion", values="rate")
    return long.with_columns(
        (pl.col("treated") - pl.col("untreated")).alias("true_net_effect"),
        pl.lit(j.height).alias("n_reference"),
        pl.lit(P.EECR06_HORIZON).alias("horizon_months"),
        pl.lit(P.EECR06_PAY_THRESHOLD).alias("pay_threshold"),
    )


def build(sim: Simulation) -> dict[str, pl.DataFrame]:
    """All truth tables, keyed by file stem."""
    parts = participants(sim)
    p = paths(sim, parts)
    latent = pl.DataFrame({
        "person_code": sim.pop.code.astype(str),
        "motivation": sim.pop.motivation,
        "person_effect": sim.pop.person_effect,
        "participant": np.isin(np.arange(sim.pop.n), parts["person"].to_numpy()),
        "account": sim.account_t >= 0,
    })
    return {
        "participants": parts,
        "paths": p.drop("person"),
        "att_event_time": att_event_time(p),
        "att_horizons": att_horizons(p, parts),
        "eecr06": eecr06(p),
        "latent": latent,
    }
