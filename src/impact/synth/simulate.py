"""The monthly simulation loop: labour market, STARS participation, shadow paths.

The loop runs over calendar months (about 114), each month vectorised over all
persons; there is no loop over persons. Register rows are emitted per month and
handed to a sink one calendar year at a time, so memory is bounded by a year of
employer reports rather than by the whole window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from impact import reference
from impact.synth import params as P
from impact.synth.calendar import days_in_month, month64
from impact.synth.config import STARS_FIRST_MONTH, STARS_LAST_START_MONTH, SynthConfig
from impact.synth.engine import (
    DRAWS,
    NORMALS,
    Context,
    Covariates,
    Effects,
    LabourState,
    Month,
    U,
    initial_state,
    step,
)
from impact.synth.jobs import FIELDS, Employers, Occupations, build_employers, build_occupations
from impact.synth.population import Population, draw_population, edu_group
from impact.synth.stars import (
    Catalogue,
    Treatment,
    build_catalogue,
    solve_intercept,
    solve_logit_intercept,
)

#: Sink receiving one calendar year of monthly employer-report rows (index form).
YearSink = Callable[[int, dict[str, np.ndarray]], None]
ReportSink = Callable[["Simulation", int, dict[str, np.ndarray]], None]


@dataclass
class Records:
    """Row buffers filled during the simulation (register extracts in index form)."""

    spells: dict[str, list[np.ndarray]] = field(default_factory=dict)
    benefits: dict[str, list[np.ndarray]] = field(default_factory=dict)
    accounts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    grants: dict[str, list[np.ndarray]] = field(default_factory=dict)
    applications: dict[str, list[np.ndarray]] = field(default_factory=dict)
    truth: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @staticmethod
    def add(buf: dict[str, list[np.ndarray]], **cols: np.ndarray) -> None:
        """Append aligned columns to a buffer."""
        for k, v in cols.items():
            buf.setdefault(k, []).append(np.asarray(v))

    @staticmethod
    def frame(buf: dict[str, list[np.ndarray]]) -> pl.DataFrame:
        """Concatenate a buffer into a DataFrame."""
        return pl.DataFrame({k: np.concatenate(v) for k, v in buf.items()})


@dataclass
class Simulation:
    """Everything the table builders need after the loop."""

    config: SynthConfig
    pop: Population
    occs: Occupations
    emps: Employers
    catalogue: Catalogue
    sections: pl.DataFrame
    municipalities: pl.DataFrame
    records: Records
    treatment: dict[str, np.ndarray]
    account_t: np.ndarray
    max_headcount: np.ndarray
    cpi: np.ndarray  # CPI per month of the window (base-year average = 100)
    working_days: np.ndarray
    _lookups: dict[str, pl.Series] = field(default_factory=dict)

    def lookups(self) -> dict[str, pl.Series]:
        """Code lists for index-to-code gathers (built once).

        ``occupation`` ends with a null, the target of index -1 (no code).
        """
        if not self._lookups:
            months = month64(self.config.start_date) + np.arange(self.config.n_months)
            self._lookups.update(
                person_code=pl.Series(self.pop.code.astype(str)),
                employer_id=pl.Series(self.emps.employer_id.astype(str)),
                hours_reported=pl.Series(self.emps.hours_reported),
                occupation=pl.Series([*self.occs.code.astype(str).tolist(), None],
                                     dtype=pl.Utf8),
                period=pl.Series(np.datetime_as_string(months, unit="M")),
            )
        return self._lookups


def _monthly_series(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log average wage, minimum wage, working days and CPI (base year = 100) per month."""
    n = cfg.n_months
    months = month64(cfg.start_date) + np.arange(n)
    years = months.astype("datetime64[Y]").astype(np.int64) + 1970
    w = reference.wages_annual()
    wy = w["year"].to_numpy()
    # annual averages are placed mid-year and interpolated log-linearly
    pos = years + (months.astype(np.int64) % 12 + 0.5) / 12
    log_avg = np.interp(pos, wy + 0.5, np.log(w["avg_gross_wage"].to_numpy().astype(float)))
    min_wage = w["minimum_wage"].to_numpy().astype(float)[np.searchsorted(wy, years)]
    wd = reference.working_days_monthly()
    wd_m = wd["month"].to_numpy().astype("datetime64[M]")
    working = wd["working_days"].to_numpy()[np.searchsorted(wd_m, months)]
    cpi = reference.cpi_monthly()
    c_m = cpi["month"].to_numpy().astype("datetime64[M]")
    c_v = cpi["cpi"].to_numpy().astype(float)
    base = c_v[(c_m.astype("datetime64[Y]").astype(np.int64) + 1970) == P.CPI_BASE_YEAR].mean()
    cpi_w = c_v[np.searchsorted(c_m, months)] / base * 100
    return log_avg, min_wage, working.astype(np.int64), cpi_w


def _shocks(cfg: SynthConfig, sections: list[str]) -> tuple[np.ndarray, np.ndarray]:
    n = cfg.n_months
    loss = np.ones((n, len(sections)))
    wage = np.zeros((n, len(sections)))
    m0 = month64(cfg.start_date)
    for sec, a, b, mult, shift in P.SECTOR_SHOCKS:
        ta = int((month64(a) - m0).astype(int))
        tb = int((month64(b) - m0).astype(int))
        s = sections.index(sec)
        lo, hi = max(ta, 0), min(tb, n - 1)
        if lo <= hi:
            loss[lo:hi + 1, s] = mult
            wage[lo:hi + 1, s] = shift
    return loss, wage


def _covariates(pop: Population, t: int, age0: np.ndarray, region_of_mun: np.ndarray,
                region_codes: np.ndarray, field_idx: np.ndarray,
                confounding: float) -> Covariates:
    """Covariates of every person at month ``t``.

    ``motivation`` here is what the labour-market engine sees: latent motivation
    times ``confounding`` (``SynthConfig.hidden_confounding``). Participation reads
    ``pop.motivation`` itself.
    """
    mun = pop.municipality_at(t)
    reg = region_of_mun[mun]
    return Covariates(
        present=pop.present_at(t), age=age0 + t / 12.0, female=pop.female,
        level=pop.isced_at(t), field_idx=field_idx, region=reg, region_code=region_codes[reg],
        motivation=pop.motivation * confounding, person_effect=pop.person_effect,
    )


def _subset(cov: Covariates, idx: np.ndarray) -> Covariates:
    return Covariates(**{k: v[idx] for k, v in cov.__dict__.items()})


def _effects(tr: dict[str, np.ndarray], t: int) -> Effects:
    """Treatment effects on participants (rows in order of ``tr``) in month ``t``."""
    in_training = (t > tr["start_t"]) & (t <= tr["end_t"])
    k = t - tr["end_t"]
    ramp = np.where(k >= 1, -np.expm1(-k / P.EFFECT_RAMP_MONTHS), 0.0)
    g = tr["gamma"]
    return Effects(
        log_wage=-tr["lock_in"] * in_training + tr["delta"] * ramp,
        loss=np.maximum(1 - P.EFFECT_JOB_LOSS_REDUCTION * np.minimum(g, 2.0) * ramp, 0.2),
        find=1 + P.EFFECT_JOB_FINDING_GAIN * g * ramp,
        exit_training=np.where(in_training, tr["exit_mult"], 1.0),
        upgrade=P.EFFECT_UPGRADE * g * ramp,
        ict_move=P.EFFECT_ICT_MOVE * g * ramp * tr["ict"],
    )


def run(cfg: SynthConfig, sink: ReportSink) -> Simulation:
    """Simulate the whole window.

    Parameters
    ----------
    cfg
        Generator settings.
    sink
        Called with ``(simulation, year, columns)`` once per calendar year with
        that year's employer-report rows in index form (person, employer,
        month, ...). The simulation's lookups (codes, employers, occupations)
        are complete when the sink is first called; its records are not.
    """
    seeds = np.random.SeedSequence(cfg.seed).spawn(6)
    rng_pop, rng_jobs, rng_init, rng_loop, rng_stars, rng_rec = (
        np.random.default_rng(s) for s in seeds
    )
    n, M = cfg.persons, cfg.n_months
    start = cfg.start_date
    m0 = month64(start)
    pop = draw_population(n, start, M, rng_pop, cfg.hidden_confounding)
    sections = reference.nace_sections()
    munis = reference.municipalities()
    occs = build_occupations(sections)
    emps = build_employers(n, sections, munis, rng_jobs)
    cat = build_catalogue(rng_stars)
    log_avg, min_wage, wdays, cpi = _monthly_series(cfg)
    shock_loss, shock_wage = _shocks(cfg, sections["section"].to_list())
    dim = days_in_month(start, M)

    regions = sorted(set(munis["region_code"].to_list()))
    region_codes = np.array(regions)
    region_of_mun = np.array([regions.index(r) for r in munis["region_code"].to_list()])
    field_idx = np.array([FIELDS.index(f) for f in pop.field])
    age0 = (np.datetime64(start, "D") - pop.birth).astype(np.int64) / 365.25

    cov0 = _covariates(pop, 0, age0, region_of_mun, region_codes, field_idx,
                      cfg.hidden_confounding)
    st = initial_state(cov0, occs, emps, rng_init)
    shadow = LabourState.empty()
    shadow_idx = np.zeros(0, dtype=np.int64)
    rec = Records()
    treat = Treatment()
    account_t = np.full(n, -1, dtype=np.int64)
    max_head = np.zeros(emps.employer_id.size, dtype=np.int64)
    sim = Simulation(
        config=cfg, pop=pop, occs=occs, emps=emps, catalogue=cat, sections=sections,
        municipalities=munis, records=rec, treatment={}, account_t=account_t,
        max_headcount=max_head, cpi=cpi, working_days=wdays,
    )
    emitter = Emitter(rec, lambda y, r: sink(sim, y, r), cfg, st.status, rng_rec)
    tr_arrays: dict[str, np.ndarray] = {}

    # --- STARS state -----------------------------------------------------------
    t_first = int((month64(STARS_FIRST_MONTH) - m0).astype(int))
    t_last_start = int((month64(STARS_LAST_START_MONTH) - m0).astype(int))
    intensity = {int((month64(k) - m0).astype(int)): v for k, v in P.ACCOUNT_INTENSITY.items()}
    wave_t = [int((month64(d) - m0).astype(int)) for d in P.GRANT_WAVES]
    scale = n / P.LATVIA_WORKING_AGE
    grant_expiry = np.full(n, -1, dtype=np.int64)
    grant_row = np.full(n, -1, dtype=np.int64)  # row in the grant buffer of the active grant
    grants_taken = np.zeros(n, dtype=np.int64)
    used_grant = np.zeros(n, dtype=bool)
    course_end = np.full(n, -1, dtype=np.int64)
    first_start = np.full(n, -1, dtype=np.int64)
    grant_status = np.zeros(0, dtype="<U16")
    grant_status_t = np.zeros(0, dtype=np.int64)
    grant_person: list[np.ndarray] = []
    grant_wave: list[np.ndarray] = []
    app_counter = 0

    cov_w = _covariates(pop, max(t_first, 0), age0, region_of_mun, region_codes, field_idx,
                      cfg.hidden_confounding)
    g_w = edu_group(pop.isced_at(max(t_first, 0)))
    a_w = cov_w.age
    A = P.ACCOUNT_INDEX
    acc_index = (
        A["motivation"] * pop.motivation + A["edu_high"] * (g_w == 2) + A["edu_medium"] * (g_w == 1)
        + A["age_18_29"] * ((a_w >= 18) & (a_w < 30)) + A["age_30_49"] * ((a_w >= 30) & (a_w < 50))
        + A["age_50_64"] * ((a_w >= 50) & (a_w < 65)) + A["age_65_plus"] * (a_w >= 65)
        + A["female"] * pop.female + A["riga"] * (cov_w.region_code == "LV006")
        + A["pieriga"] * (cov_w.region_code == "LV007") + A["employed"] * (st.status == 0)
        + A["field_ict_business"] * np.isin(pop.field, ["04", "06"])
        + A["prior_learning"] * pop.prior_learning
    )
    acc_index = np.where(a_w + 1 >= 16, acc_index, -np.inf)
    exposure = sum(intensity.values())
    acc_alpha = solve_intercept(acc_index, P.ACCOUNTS_TOTAL * scale, exposure)

    for t in range(M):
        u = {k: rng_loop.random(n) for k in DRAWS}
        z = {k: rng_loop.standard_normal(n) for k in NORMALS}
        cov = _covariates(pop, t, age0, region_of_mun, region_codes, field_idx,
                      cfg.hidden_confounding)
        new_treated = np.zeros(0, dtype=np.int64)

        if t_first <= t <= t_last_start + 1 and t in intensity:
            dip = (st.status == U) | ((t - st.left_t) <= 4)
            emigrant = (pop.emig_t <= t) & (pop.death_t > t)
            can_open = (account_t < 0) & (cov.age >= 16) & (cov.present | emigrant)
            lam = np.exp(acc_alpha + acc_index) * intensity[t] * np.where(dip, P.DIP_HAZARD, 1.0)
            lam = lam * np.where(emigrant, P.MESSINESS.stars_emigrant_accounts * 5, 1.0)
            opened = can_open & (rng_stars.random(n) < -np.expm1(-lam))
            account_t[opened] = t
            idx = np.nonzero(opened)[0]
            Records.add(rec.accounts, person=idx, t=np.full(idx.size, t),
                        u_day=rng_stars.random(idx.size))

            holder = (account_t >= 0) & (account_t <= t) & (cov.age >= 18) & (pop.death_t > t)
            free = holder & (course_end < t)
            # grant waves
            if t in wave_t:
                w = wave_t.index(t)
                expired_open = (grant_expiry >= 0) & (grant_expiry < t)
                no_grant = free & ((grant_expiry < 0) | expired_open)
                first_time = no_grant & (grants_taken == 0)
                G = P.GRANT_INDEX
                g_idx = (G["motivation"] * pop.motivation + G["edu_high"] * (edu_group(cov.level)
                                                                                == 2)
                         + G["prior_learning"] * pop.prior_learning)
                target = P.GRANT_PERSONS * scale * (0.22, 0.40, 0.38)[w]
                cand = np.nonzero(first_time)[0]
                alpha = solve_logit_intercept(g_idx[cand], min(target, 0.85 * cand.size))
                p_first = 1 / (1 + np.exp(-(alpha + g_idx)))
                p = np.where(first_time, p_first, 0.0)
                p = np.where(no_grant & (grants_taken > 0) & used_grant, P.GRANT_REPEAT, p)
                p = np.where(no_grant & (grants_taken > 0) & ~used_grant, 0.12, p)
                got = no_grant & (rng_stars.random(n) < p)
                gi = np.nonzero(got)[0]
                base_row = grant_status.size
                grant_row[gi] = base_row + np.arange(gi.size)
                grant_expiry[gi] = t + P.GRANT_MONTHS
                grants_taken[gi] += 1
                used_grant[gi] = False
                grant_person.append(gi)
                grant_wave.append(np.full(gi.size, w))
                declined = rng_stars.random(gi.size) < 0.0015
                grant_status = np.concatenate(
                    [grant_status, np.where(declined, "declined", "active")])
                grant_status_t = np.concatenate([grant_status_t, np.full(gi.size, t)])
                grant_expiry[gi[declined]] = -1
                grant_row[gi[declined]] = -1

            active = (grant_row >= 0) & (grant_expiry > t) & ~used_grant & free
            # grants that lapse this month
            lapse = (grant_row >= 0) & ~used_grant & (grant_expiry == t)
            grant_status[grant_row[lapse]] = "annulled"
            grant_status_t[grant_row[lapse]] = t
            lapse_idx = np.nonzero(lapse)[0]
            withdrawn = lapse_idx[rng_stars.random(lapse_idx.size) < 0.55]
            Records.add(rec.applications, person=withdrawn, t=np.full(withdrawn.size, t - 2),
                        prog=np.searchsorted(cat.cum_by_group[2], rng_stars.random(withdrawn.size)),
                        kind=np.full(withdrawn.size, 1), end_t=np.full(withdrawn.size, -1),
                        grant=grant_row[withdrawn], completed=np.zeros(withdrawn.size, bool))
            grant_row[lapse] = -1
            grant_expiry[lapse] = -1

            if t <= t_last_start:
                dip_now = (st.status == U) | ((t - st.left_t) <= 4)
                p_start = np.minimum(P.START_HAZARD * np.exp(P.START_MOTIVATION * pop.motivation)
                                     * np.where(dip_now, 1.5, 1.0), 0.9)
                via_grant = active & cov.present & (rng_stars.random(n) < p_start)
                p_ff = P.FULLY_FUNDED_HAZARD * np.exp(0.5 * pop.motivation) * np.where(
                    cov.level < 5, 2.0, 1.0)
                via_ff = free & cov.present & ~via_grant & (rng_stars.random(n) < p_ff)
                starters = np.nonzero(via_grant | via_ff)[0]
                if starters.size:
                    g = edu_group(cov.level[starters])
                    ug = rng_stars.random(starters.size)
                    prog = np.where(
                        via_grant[starters],
                        (cat.cum_by_group[g] <= ug[:, None]).sum(axis=1),
                        np.searchsorted(cat.cum_funded, ug, side="right"),
                    )
                    prog = np.minimum(prog, cat.hours.size - 1)
                    dur = cat.months[prog] + np.where(
                        cat.months[prog] < 11, rng_stars.integers(-1, 2, starters.size), 0)
                    dur = np.maximum(dur, 1)
                    long_prog = cat.hours[prog] >= 400
                    p_drop = P.DROPOUT_SHARE * np.where(long_prog, 2.0, 0.9) * np.where(g < 2, 1.5,
                                                                                         0.9)
                    dropped = rng_stars.random(starters.size) < p_drop
                    end = t + dur - 1
                    end = np.where(dropped, t + np.floor(rng_stars.random(starters.size) * dur),
                                   end).astype(np.int64)
                    course_end[starters] = end
                    used_rows = grant_row[starters]
                    gr = np.where(via_grant[starters], used_rows, -1)
                    used_now = gr >= 0
                    grant_status[gr[used_now]] = np.where(dropped[used_now],
                                                          "annulled_dropout", "used")
                    grant_status_t[gr[used_now]] = t
                    used_grant[starters[via_grant[starters]]] = True
                    grant_row[starters[via_grant[starters]]] = -1
                    grant_expiry[starters[via_grant[starters]]] = -1
                    Records.add(rec.applications, person=starters, t=np.full(starters.size, t),
                                prog=prog, kind=np.zeros(starters.size, dtype=np.int64),
                                end_t=end, grant=gr, completed=~dropped)
                    app_counter += starters.size
                    first = first_start[starters] < 0
                    nt = starters[first]
                    first_start[nt] = t
                    if nt.size:
                        new_treated = nt
                        pf = prog[first]
                        ptype = cat.type_idx[pf]
                        wage_eff = np.array([p.wage_effect for p in P.PROGRAMME_TYPES])[ptype]
                        lock = np.array([p.lock_in for p in P.PROGRAMME_TYPES])[ptype]
                        het = np.where(cov.level[nt] >= 5, 1.0, P.EFFECT_LOW_MEDIUM_EDUCATION)
                        het = het * np.where(cov.age[nt] >= 50, P.EFFECT_AGE_50_PLUS, 1.0)
                        noise = np.exp(rng_stars.normal(0, P.EFFECT_NOISE_SD, nt.size)
                                       - P.EFFECT_NOISE_SD**2 / 2)
                        het = het * noise * np.where(dropped[first], P.EFFECT_DROPOUT, 1.0)
                        is_cvet = ptype == [p.code for p in P.PROGRAMME_TYPES].index("CVET")
                        treat.person.append(nt)
                        treat.start_t.append(np.full(nt.size, t))
                        treat.end_t.append(end[first])
                        treat.prog.append(pf)
                        treat.completed.append(~dropped[first])
                        treat.delta.append(wage_eff * het)
                        treat.gamma.append(het * np.sqrt(wage_eff / 0.03))
                        treat.lock_in.append(lock)
                        treat.exit_mult.append(np.where(is_cvet, P.LOCK_IN_JOB_EXIT, 1.0))
                        treat.ict.append(cat.is_ict[pf].astype(float))

        # shadow copies start from the observed state at the end of the previous month
        if new_treated.size:
            shadow = shadow.append(st.take(new_treated))
            shadow_idx = np.concatenate([shadow_idx, new_treated])
            tr_arrays = treat.arrays()

        ctx = Context(
            t=t, t_mid=(M - 1) / 2, working_days=int(wdays[t]), days_in_month=int(dim[t]),
            log_avg_wage=float(log_avg[t]), min_wage=float(min_wage[t]),
            shock_loss=shock_loss[t], shock_wage=shock_wage[t],
        )
        eff = Effects.neutral(n)
        if shadow_idx.size:
            e_tr = _effects(tr_arrays, t)
            for k, v in e_tr.__dict__.items():
                getattr(eff, k)[shadow_idx] = v
        month = step(st, cov, eff, ctx, occs, emps, u, z)
        if shadow_idx.size:
            cov_s = _subset(cov, shadow_idx)
            m_s = step(shadow, cov_s, Effects.neutral(shadow_idx.size), ctx, occs, emps,
                       {k: v[shadow_idx] for k, v in u.items()},
                       {k: v[shadow_idx] for k, v in z.items()})
            _truth_rows(rec, t, shadow_idx, month, m_s, occs, emps, tr_arrays)

        emitter.month(t, month)
        emp_firms = month.firm[month.employed]
        np.maximum(max_head, np.bincount(emp_firms, minlength=max_head.size), out=max_head)

    emitter.close(st.status)
    # grants still active at the end lapse at the pilot's end
    grant_status[grant_row[grant_row >= 0]] = "annulled"
    gp = np.concatenate(grant_person) if grant_person else np.zeros(0, dtype=np.int64)
    gw = np.concatenate(grant_wave) if grant_wave else np.zeros(0, dtype=np.int64)
    rec.grants = {"person": [gp], "wave": [gw], "status": [grant_status.astype(object)],
                  "status_t": [grant_status_t]}
    sim.treatment = treat.arrays()
    return sim


class Emitter:
    """Turns simulated months into register rows.

    Employer-report rows are buffered for one calendar year and then handed to
    the sink; NVA registration spells are assembled from their opening and
    closing months; benefit payments are one row per person, benefit and month.
    """

    def __init__(self, rec: Records, sink: YearSink, cfg: SynthConfig, status0: np.ndarray,
                 rng: np.random.Generator) -> None:
        self.rec, self.sink, self.rng = rec, sink, rng
        self.M = cfg.n_months
        self.m0 = month64(cfg.start_date)
        self.dim = days_in_month(cfg.start_date, self.M)
        self.year: int | None = None
        self.buf: dict[str, list[np.ndarray]] = {}
        n = status0.size
        # persons registered at the start have spells that began before the window
        reg0 = status0 == U
        self.open_t = np.where(reg0, -rng.integers(1, 13, n), 0)
        self.open_day = rng.integers(1, 29, n)

    def _flush(self) -> None:
        if self.year is not None and self.buf:
            self.sink(self.year, {k: np.concatenate(v) for k, v in self.buf.items()})
        self.buf = {}

    def month(self, t: int, m: Month) -> None:
        """Emit the rows of month ``t``."""
        year = int((self.m0 + t).astype("datetime64[Y]").astype(np.int64) + 1970)
        if self.year is not None and year != self.year:
            self._flush()
        self.year = year
        e = np.nonzero(m.employed)[0]
        s2 = np.nonzero(m.firm2 >= 0)[0]
        # compact dtypes: a year of national reports is ~10 M rows
        Records.add(
            self.buf,
            person=np.concatenate([e, s2]).astype(np.int32),
            firm=np.concatenate([m.firm[e], m.firm2[s2]]).astype(np.int32),
            t=np.full(e.size + s2.size, t, dtype=np.int16),
            income=np.concatenate([m.earnings[e], m.earnings2[s2]]),
            days=np.concatenate([m.days[e], m.days2[s2]]).astype(np.int16),
            hours=np.concatenate([m.hours[e], np.round(m.days2[s2] * 4)]).astype(np.int16),
            occ=np.concatenate([m.occ[e], m.occ[s2]]).astype(np.int16),
            fixed=np.concatenate([m.fixed[e], np.zeros(s2.size, bool)]),
            part_time=np.concatenate([m.part_time[e], np.ones(s2.size, bool)]),
        )
        if t == self.M - 1:
            self._flush()
        # NVA registration spells
        op = np.nonzero(m.reg_start)[0]
        self.open_t[op] = t
        self.open_day[op] = m.reg_day[op]
        cl = np.nonzero(m.reg_end)[0]
        Records.add(self.rec.spells, person=cl, t_start=self.open_t[cl],
                    day_start=self.open_day[cl], t_end=np.full(cl.size, t),
                    day_end=m.dereg_day[cl], to_job=m.dereg_to_job[cl])
        # benefit payments (kind 0 unemployment, 1 sickness)
        d = int(self.dim[t])
        ub = np.nonzero(m.ub_days > 0)[0]
        Records.add(self.rec.benefits, person=ub, t=np.full(ub.size, t),
                    kind=np.zeros(ub.size, np.int8), day_start=np.maximum(d - m.ub_days[ub] + 1, 1),
                    days=m.ub_days[ub], amount=m.ub_amount[ub])
        sk = np.nonzero(m.sick_benefit_days > 0)[0]
        room = np.maximum(d - m.sick_days[sk], 0)
        first_day = 1 + (self.rng.random(sk.size) * (room + 1)).astype(np.int64)
        Records.add(self.rec.benefits, person=sk, t=np.full(sk.size, t),
                    kind=np.ones(sk.size, np.int8), day_start=np.minimum(first_day + 10, d),
                    days=m.sick_benefit_days[sk], amount=m.sick_benefit[sk])

    def close(self, status: np.ndarray) -> None:
        """Emit registrations still open at the end of the window (no end date)."""
        still = np.nonzero(status == U)[0]
        Records.add(self.rec.spells, person=still, t_start=self.open_t[still],
                    day_start=self.open_day[still], t_end=np.full(still.size, -1),
                    day_end=np.zeros(still.size, dtype=np.int64),
                    to_job=np.zeros(still.size, bool))


def _truth_rows(rec: Records, t: int, idx: np.ndarray, obs: Month, shadow: Month,
                occs: Occupations, emps: Employers, tr: dict[str, np.ndarray]) -> None:
    """Record observed (treated) and shadow (untreated) outcomes of participants."""

    def outcomes(m: Month, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        emp = m.employed[rows]
        firm = np.maximum(m.firm[rows], 0)
        occ = np.maximum(m.occ[rows], 0)
        return {
            "earnings": m.earnings[rows] + m.earnings2[rows],
            "days": np.where(emp, m.days[rows], 0) + m.days2[rows],
            "employed": emp & (m.earnings[rows] > 0),
            "registered": m.registered[rows],
            "ub_days": m.ub_days[rows],
            "sick_days": m.sick_days[rows],
            "skill": np.where(emp, occs.skill[occ], 0),
            "sector_rel_wage": np.where(emp, np.exp(emps.log_rel_wage_section[emps.section[firm]]),
                                        np.nan),
            "fixed": m.fixed[rows],
            "part_time": emp & m.part_time[rows],
        }

    o1 = outcomes(obs, idx)
    o0 = outcomes(shadow, slice(None))
    Records.add(rec.truth, person=idx, t=np.full(idx.size, t),
                **{f"{k}_1": v for k, v in o1.items()}, **{f"{k}_0": v for k, v in o0.items()})
