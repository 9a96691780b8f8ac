"""Register extracts built from a finished simulation.

Column names and codes follow what the registers deliver: raw personal codes
(``person_code``), company registration numbers, ISCO-08 4-digit occupation
codes, NACE Rev.2 ``NN.NN`` classes, ATVK municipality codes, ISO dates and
``YYYY-MM`` reporting periods. Register messiness that is *real data* (exact
duplicates, later corrections, missing occupation codes, employers that do not
report hours, zero-income reports, overlapping NVA registrations) is added
here at the rates of :data:`impact.synth.params.MESSINESS`; invalid rows are
added separately by :mod:`impact.synth.errors`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from impact import reference
from impact.synth import params as P
from impact.synth.calendar import month64
from impact.synth.simulate import Records, Simulation

_DATE = pl.Date


def _date(m0: np.datetime64, t: np.ndarray, day: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` of day ``day`` (1-based) in window month ``t``."""
    return (m0 + np.asarray(t, dtype=np.int64)).astype("datetime64[D]") + (
        np.asarray(day, dtype=np.int64) - 1
    )


def _nullable_str(values: np.ndarray, name: str | None = None) -> pl.Series:
    """A string Series from an object array holding str or None."""
    return pl.Series(name or "", np.asarray(values, dtype=object).tolist(), dtype=pl.Utf8)


def _codes(sim: Simulation, person: np.ndarray) -> pl.Series:
    return pl.Series("person_code", sim.pop.code[np.asarray(person, dtype=np.int64)], dtype=pl.Utf8)


def _month_day(m0: np.datetime64, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64)
    first = (m0 + t).astype("datetime64[D]")
    length = ((m0 + t + 1).astype("datetime64[D]") - first).astype(np.int64)
    return first + (rng.random(t.size) * length).astype(np.int64)


def population_table(sim: Simulation, rng: np.random.Generator) -> pl.DataFrame:
    """PMLP persons: code, birth date, sex, death and emigration dates."""
    pop = sim.pop
    m0 = month64(sim.config.start_date)
    M = sim.config.n_months
    died = pop.death_t < M
    emig = pop.emig_t < M
    death = np.where(died, _month_day(m0, np.where(died, pop.death_t, 0), rng),
                     np.datetime64("NaT"))
    emigr = np.where(emig, _month_day(m0, np.where(emig, pop.emig_t, 0), rng),
                     np.datetime64("NaT"))
    return pl.DataFrame({
        "person_code": pop.code.astype(str),
        "birth_date": pop.birth.astype("datetime64[D]"),
        "sex": np.where(pop.female, "F", "M"),
        "death_date": death.astype("datetime64[D]"),
        "emigration_date": emigr.astype("datetime64[D]"),
    })


def residence_table(sim: Simulation, rng: np.random.Generator) -> pl.DataFrame:
    """PMLP declared residence history: one row per municipality period."""
    pop = sim.pop
    m0 = month64(sim.config.start_date)
    codes = sim.municipalities["municipality_code"].to_numpy().astype(str)
    start = np.datetime64(sim.config.start_date, "D")
    since = np.maximum(pop.birth, start - rng.integers(30, 20 * 365, pop.n))
    mover = pop.move_t >= 0
    move_day = _month_day(m0, np.where(mover, pop.move_t, 0), rng)
    first = pl.DataFrame({
        "person_code": pop.code.astype(str),
        "municipality_code": codes[pop.mun0],
        "valid_from": since,
        "valid_to": np.where(mover, move_day - 1, np.datetime64("NaT")).astype("datetime64[D]"),
    })
    mv = np.nonzero(mover)[0]
    second = pl.DataFrame({
        "person_code": pop.code[mv].astype(str),
        "municipality_code": codes[pop.mun1[mv]],
        "valid_from": move_day[mv],
        "valid_to": np.full(mv.size, np.datetime64("NaT"), dtype="datetime64[D]"),
    })
    return pl.concat([first, second]).sort("person_code", "valid_from")


def children_table(sim: Simulation) -> pl.DataFrame:
    """PMLP parent-child links: one row per child with the child's birth date."""
    c = sim.pop.children
    return pl.DataFrame({"person_code": _codes(sim, c["person"].to_numpy()),
                         "child_birth_date": c["child_birth_date"]})


def education_table(sim: Simulation) -> pl.DataFrame:
    """VIIS attained education: ISCED 2011 level, ISCED-F field, award date."""
    e = sim.pop.education_records
    return pl.DataFrame({
        "person_code": _codes(sim, e["person"].to_numpy()),
        "isced_level": e["isced_level"].cast(pl.Int64),
        "isced_field": e["isced_field"],
        "award_date": e["award_date"],
    })


def prior_learning_table(sim: Simulation) -> pl.DataFrame:
    """STARS learning history from earlier adult-learning projects (2017-2023)."""
    p = sim.pop.prior_records
    return pl.DataFrame({
        "person_code": _codes(sim, p["person"].to_numpy()),
        "project_code": p["project_code"],
        "start_date": p["start_date"],
        "end_date": p["end_date"],
        "completed": p["completed"],
    })


def employers_table(sim: Simulation) -> pl.DataFrame:
    """Company register: employer id, NACE class, sector, size class, municipality."""
    e = sim.emps
    codes = sim.municipalities["municipality_code"].to_numpy().astype(str)
    return pl.DataFrame({
        "employer_id": e.employer_id.astype(str),
        "nace_code": e.nace_code.astype(str),
        "sector": np.where(e.public, "PUBLIC", "PRIVATE"),
        "size_class": e.size_class(sim.max_headcount),
        "municipality_code": codes[e.municipality],
        "registered_on": e.registered_on,
    })


def reports_table(sim: Simulation, year: int, rows: dict[str, np.ndarray],
                  rng: np.random.Generator) -> pl.DataFrame:
    """VID monthly employer reports for one calendar year, with register messiness.

    Corrections: for a share of rows the first submission carries wrong
    income and days; a correction with the true values follows 1-6 months
    later (same person, employer and period, later ``submitted_on``).
    """
    n = rows["person"].size
    m0 = month64(sim.config.start_date)
    look = sim.lookups()
    t = pl.Series("t", rows["t"].astype(np.int32))
    occ_idx = np.where(rows["occ"] >= 0, rows["occ"], look["occupation"].len() - 1)
    occ_idx = np.where(rng.random(n) < P.MESSINESS.missing_occupation,
                       look["occupation"].len() - 1, occ_idx)
    firm = pl.Series(rows["firm"].astype(np.int64))
    due = (m0 + rows["t"].astype(np.int64) + 1).astype("datetime64[D]") + rng.integers(0, 17, n)
    df = pl.DataFrame({
        "report_id": (str(year) + pl.int_range(0, n, eager=True).cast(pl.Utf8).str.zfill(9)),
        "person_code": look["person_code"].gather(rows["person"].astype(np.int64)),
        "employer_id": look["employer_id"].gather(firm),
        "period": look["period"].gather(t),
        "gross_income": np.round(rows["income"], 2),
        "days_worked": rows["days"].astype(np.int64),
        "hours_worked": rows["hours"].astype(np.int64),
        "occupation_code": look["occupation"].gather(occ_idx),
        "contract_type": pl.Series(rows["fixed"]).replace_strict(
            {True: "FIXED", False: "PERMANENT"}, return_dtype=pl.Utf8),
        "part_time": rows["part_time"].astype(bool),
        "submitted_on": due,
        "_t": t,
    })
    # a third of employers report days only
    df = df.with_columns(pl.when(look["hours_reported"].gather(firm)).then(pl.col("hours_worked"))
                         .otherwise(None).alias("hours_worked"))
    # corrections: the original submission is wrong, the later one is right
    corr = np.nonzero(rng.random(n) < P.MESSINESS.corrected_report)[0]
    if corr.size:
        fixed_rows = df[corr].with_columns(
            pl.col("submitted_on") + pl.Series(rng.integers(30, 180, corr.size))
            .cast(pl.Duration("ms")) * 86_400_000,
            (pl.col("report_id") + "C").alias("report_id"),
        )
        wrong = df["gross_income"].to_numpy().copy()
        wrong[corr] = np.round(wrong[corr] * rng.uniform(0.6, 1.4, corr.size), 2)
        df = pl.concat([df.with_columns(pl.Series("gross_income", wrong)), fixed_rows])
    # exact duplicate lines (a re-sent batch)
    dup = np.nonzero(rng.random(df.height) < P.MESSINESS.duplicate_report)[0]
    if dup.size:
        df = pl.concat([df, df[dup]])
    # one month after the other; corrections and re-sent lines follow their month
    return df.sort("_t", maintain_order=True).drop("_t")


def spells_table(sim: Simulation, rng: np.random.Generator) -> pl.DataFrame:
    """NVA registered-unemployment spells; a few overlapping duplicates (real messiness)."""
    s = Records.frame(sim.records.spells)
    m0 = month64(sim.config.start_date)
    start = _date(m0, s["t_start"].to_numpy(), s["day_start"].to_numpy())
    t_end = s["t_end"].to_numpy()
    end = np.where(t_end >= 0, _date(m0, np.maximum(t_end, 0), np.maximum(s["day_end"].to_numpy(),
                                                                           1)),
                   np.datetime64("NaT"))
    end = np.where((t_end >= 0) & (end < start), start, end).astype("datetime64[D]")
    reason = np.where(t_end < 0, None, np.where(s["to_job"].to_numpy(), "EMPLOYMENT", "OTHER"))
    df = pl.DataFrame({
        "person_code": _codes(sim, s["person"].to_numpy()),
        "registered_on": start,
        "deregistered_on": end,
        "deregistration_reason": _nullable_str(reason),
    })
    ov = np.nonzero(rng.random(df.height) < P.MESSINESS.overlapping_spell)[0]
    if ov.size:
        # a re-registration record that starts a week earlier and overlaps the spell
        shifted = df[ov].with_columns(pl.col("registered_on") - pl.duration(days=7))
        df = pl.concat([df, shifted])
    df = df.sort("person_code", "registered_on")
    return df.with_columns(
        pl.format("S{}", pl.int_range(1, df.height + 1).cast(pl.Utf8).str.zfill(9))
        .alias("spell_id")
    ).select("spell_id", "person_code", "registered_on", "deregistered_on",
             "deregistration_reason")


def benefits_table(sim: Simulation) -> pl.DataFrame:
    """VSAA benefit payments: unemployment and sickness benefit, one row per month."""
    b = Records.frame(sim.records.benefits)
    m0 = month64(sim.config.start_date)
    t = b["t"].to_numpy()
    start = _date(m0, t, b["day_start"].to_numpy())
    days = b["days"].to_numpy().astype(np.int64)
    end = start + np.maximum(days - 1, 0)
    month_end = (m0 + t + 1).astype("datetime64[D]") - 1
    end = np.minimum(end, month_end)
    df = pl.DataFrame({
        "person_code": _codes(sim, b["person"].to_numpy()),
        "benefit_type": np.where(b["kind"].to_numpy() == 0, "UNEMPLOYMENT", "SICKNESS"),
        "period_start": start,
        "period_end": end,
        "benefit_days": days,
        "amount": np.round(b["amount"].to_numpy(), 2),
    }).sort("period_start", "person_code", maintain_order=True)
    return df.with_columns(
        pl.format("B{}", pl.int_range(1, df.height + 1).cast(pl.Utf8).str.zfill(10))
        .alias("payment_id")
    ).select("payment_id", *[c for c in df.columns])


def stars_tables(sim: Simulation, rng: np.random.Generator) -> dict[str, pl.DataFrame]:
    """STARS accounts, grants, catalogue and applications."""
    rec = sim.records
    m0 = month64(sim.config.start_date)
    acc = Records.frame(rec.accounts)
    acc_person = acc["person"].to_numpy()
    order = np.argsort(acc["t"].to_numpy() * 1.0 + acc["u_day"].to_numpy(), kind="stable")
    acc_person = acc_person[order]
    acc_t = acc["t"].to_numpy()[order]
    created = _date(m0, acc_t, 1 + (acc["u_day"].to_numpy()[order] * 28).astype(np.int64))
    account_id = np.array([f"A{i + 1:08d}" for i in range(acc_person.size)], dtype=object)
    acc_of = np.full(sim.pop.n, None, dtype=object)
    acc_of[acc_person] = account_id
    accounts = pl.DataFrame({
        "account_id": account_id.astype(str),
        "person_code": _codes(sim, acc_person),
        "created_on": created,
        "profile_completed": rng.random(acc_person.size) < 0.93,
    })
    # grants
    g = rec.grants
    gp = np.concatenate(g["person"]).astype(np.int64)
    gw = np.concatenate(g["wave"]).astype(np.int64)
    gs = np.concatenate(g["status"])
    gst = np.concatenate(g["status_t"]).astype(np.int64)
    waves = np.array(P.GRANT_WAVES, dtype="datetime64[D]")
    grant_id = np.array([f"G{i + 1:08d}" for i in range(gp.size)], dtype=object)
    allocated = waves[gw] if gp.size else np.zeros(0, dtype="datetime64[D]")
    status_date = np.where(
        gs == "active", allocated,
        np.maximum(_date(m0, gst, np.full(gp.size, 9)), allocated),
    ).astype("datetime64[D]")
    status = np.where(gs == "active", "annulled", gs)
    grants = pl.DataFrame({
        "grant_id": grant_id.astype(str),
        "account_id": _nullable_str(acc_of[gp]),
        "allocated_on": allocated,
        "amount_eur": np.full(gp.size, P.GRANT_AMOUNT),
        "status": status.astype(str),
        "status_date": status_date,
    })
    # applications
    a = Records.frame(rec.applications)
    cat = sim.catalogue
    ap = a["person"].to_numpy().astype(np.int64)
    at = a["t"].to_numpy().astype(np.int64)
    prog = np.minimum(a["prog"].to_numpy().astype(np.int64), cat.hours.size - 1)
    kind = a["kind"].to_numpy()
    end_t = a["end_t"].to_numpy().astype(np.int64)
    grow = a["grant"].to_numpy().astype(np.int64)
    completed = a["completed"].to_numpy().astype(bool)
    n = ap.size
    started = kind == 0
    start_day = _month_day(m0, at, rng)
    submitted = start_day - rng.integers(3, 35, n)
    decided = submitted + rng.integers(1, 8, n)
    ended = np.where(started, _month_day(m0, np.maximum(end_t, at), rng),
                     np.datetime64("NaT"))
    ended = np.where(started & (ended < start_day), start_day, ended).astype("datetime64[D]")
    cost = cat.cost[prog]
    funded = np.array([P.PROGRAMME_TYPES[i].fully_funded for i in cat.type_idx])[prog]
    public = np.where(funded, cost, np.minimum(cost, P.GRANT_AMOUNT))
    copay = np.round(cost - public, 2)
    # a few participants add voluntary co-payment (report: 11 % of used grants)
    extra = (~funded) & (copay == 0) & (rng.random(n) < 0.05)
    copay = np.where(extra, np.round(rng.exponential(P.COPAY_MEAN, n), 2), copay)
    payer = np.where(copay > 0, rng.choice(["PERSON", "EMPLOYER", "OTHER"], n, p=[0.85, 0.07,
                                                                                     0.08]), None)
    rejected = (~started) & (rng.random(n) < P.REJECTED_SHARE * 6)
    status = np.where(started, np.where(completed, "COMPLETED", "INTERRUPTED"),
                      np.where(rejected, "REJECTED", "WITHDRAWN"))
    order = np.argsort(submitted, kind="stable")
    apps = pl.DataFrame({
        "account_id": _nullable_str(acc_of[ap]),
        "programme_id": cat.frame["programme_id"].to_numpy()[prog].astype(str),
        "grant_id": _nullable_str(np.where(grow >= 0, grant_id[np.maximum(grow, 0)] if gp.size else
                                       None, None)),
        "submitted_on": submitted,
        "decision": np.where(rejected, "REJECTED", "APPROVED"),
        "decided_on": decided,
        "status": status,
        "started_on": np.where(started, start_day, np.datetime64("NaT")).astype("datetime64[D]"),
        "ended_on": ended,
        "public_cost_eur": np.where(started, public, 0.0),
        "co_payment_eur": np.where(started, copay, 0.0),
        "co_payment_payer": _nullable_str(np.where(started, payer, None)),
    })[order]
    apps = apps.with_columns(
        pl.format("AP{}", pl.int_range(1, apps.height + 1).cast(pl.Utf8).str.zfill(8))
        .alias("application_id")
    ).select("application_id", *apps.columns)
    return {
        "stars_accounts": accounts,
        "stars_grants": grants,
        "stars_programmes": cat.frame,
        "stars_applications": apps,
    }


def reference_tables(sim: Simulation) -> dict[str, pl.DataFrame]:
    """Reference tables delivered with the extracts."""
    cpi = reference.cpi_monthly()
    return {
        "ref_isco": reference.isco_occupations().select(
            "isco_code", "title_en", "major_group", "skill_level", "rel_wage"),
        "ref_nace_sections": reference.nace_sections().select(
            "section", "title_en", "rel_wage", "employment_share"),
        "ref_nace_classes": reference.nace_classes().select(
            "nace_code", "division", "section", "title_en"),
        "ref_municipalities": reference.municipalities().select(
            "municipality_code", "name", "kind", "region_code", "region_name", "urbanisation"),
        "ref_cpi": cpi.with_columns(pl.col("month").dt.strftime("%Y-%m").alias("month")),
    }
