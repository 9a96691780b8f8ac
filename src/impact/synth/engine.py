"""One month of labour-market dynamics for a group of persons, vectorised.

:func:`step` advances a :class:`LabourState` by one month and returns what the
registers would record. The same function advances the observed population
and, for participants, a *shadow* copy that never trains. Both are driven by
the same uniform draws (common random numbers), so the difference between a
participant's observed and shadow paths is exactly the effect of training:
that difference is the generator's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from impact.synth import params as P
from impact.synth.jobs import Employers, Occupations

E, U, INACTIVE, ABSENT = 0, 1, 2, 3
_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.int8)

#: Names of the uniform draws one step consumes, in order.
DRAWS = (
    "tr", "move", "occ", "keep", "sec", "local", "firm", "contract", "pt", "ptfrac", "days",
    "sick", "sickdays", "fixconv", "job2", "promo", "minwage", "reg", "ict", "zero",
)
NORMALS = ("ar", "tr_noise")


@dataclass
class LabourState:
    """Labour-market state of a group of persons (one row per person)."""

    status: np.ndarray  # int8: E/U/I/ABSENT
    occ: np.ndarray  # int64 occupation index, -1 none
    firm: np.ndarray  # int64 employer index, -1 none
    firm2: np.ndarray  # int64 second-job employer, -1 none
    fixed: np.ndarray  # bool fixed-term contract
    hours_frac: np.ndarray  # float64 share of full time
    min_wage_job: np.ndarray  # bool: job reported at the minimum wage
    eps: np.ndarray  # float64 persistent wage component
    emp_mask: np.ndarray  # uint16: employed in each of the last 16 months
    left_t: np.ndarray  # int64 month of the last job loss
    reg_day: np.ndarray  # int64 day of month of NVA registration
    ub_month: np.ndarray  # int64 month of unemployment benefit (0 = none)
    ub_base: np.ndarray  # float64 monthly benefit at 100 %
    earn_ewma: np.ndarray  # float64 smoothed full-time earnings

    def take(self, idx: np.ndarray) -> LabourState:
        """Copy of the rows ``idx``."""
        return LabourState(**{f.name: getattr(self, f.name)[idx].copy() for f in fields(self)})

    def append(self, other: LabourState) -> LabourState:
        """Rows of ``self`` followed by rows of ``other``."""
        return LabourState(**{
            f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)])
            for f in fields(self)
        })

    @staticmethod
    def empty() -> LabourState:
        """A state with no rows."""
        z = np.zeros(0)
        return LabourState(
            status=z.astype(np.int8), occ=z.astype(np.int64), firm=z.astype(np.int64),
            firm2=z.astype(np.int64), fixed=z.astype(bool), hours_frac=z.copy(),
            min_wage_job=z.astype(bool), eps=z.copy(), emp_mask=z.astype(np.uint16),
            left_t=z.astype(np.int64), reg_day=z.astype(np.int64), ub_month=z.astype(np.int64),
            ub_base=z.copy(), earn_ewma=z.copy(),
        )


@dataclass
class Covariates:
    """Person covariates for the month, aligned with the state rows."""

    present: np.ndarray
    age: np.ndarray  # float years
    female: np.ndarray
    level: np.ndarray  # ISCED level
    field_idx: np.ndarray
    region: np.ndarray  # region index
    region_code: np.ndarray  # str code
    motivation: np.ndarray
    person_effect: np.ndarray


@dataclass
class Effects:
    """Treatment effects acting on a state's rows this month (neutral = no training)."""

    log_wage: np.ndarray
    loss: np.ndarray  # multiplier of job-loss hazards
    find: np.ndarray  # multiplier of job-finding hazards
    exit_training: np.ndarray  # multiplier of E -> INACTIVE while in a long programme
    upgrade: np.ndarray  # extra monthly promotion probability
    ict_move: np.ndarray  # extra monthly probability of moving into an ICT job

    @staticmethod
    def neutral(n: int) -> Effects:
        """No effect on ``n`` rows."""
        return Effects(np.zeros(n), np.ones(n), np.ones(n), np.ones(n), np.zeros(n),
                       np.zeros(n))


@dataclass
class Month:
    """What the registers record for each row in one month."""

    employed: np.ndarray  # has a main-job employer report this month
    firm: np.ndarray
    occ: np.ndarray
    earnings: np.ndarray  # main job, EUR
    days: np.ndarray  # days worked in main job
    hours: np.ndarray  # hours worked in main job
    fixed: np.ndarray
    part_time: np.ndarray
    firm2: np.ndarray  # -1 if none
    earnings2: np.ndarray
    days2: np.ndarray
    sick_days: np.ndarray
    sick_benefit_days: np.ndarray
    sick_benefit: np.ndarray
    registered: np.ndarray  # NVA registered unemployed at some point this month
    reg_start: np.ndarray  # bool: registration starts this month
    reg_end: np.ndarray  # bool: registration ends this month
    reg_day: np.ndarray  # registration day (valid where reg_start)
    dereg_day: np.ndarray  # deregistration day (valid where reg_end)
    dereg_to_job: np.ndarray  # deregistered because of a job
    ub_days: np.ndarray
    ub_amount: np.ndarray
    zero_income: np.ndarray  # report of unpaid leave (income 0)


@dataclass
class Context:
    """Calendar quantities for the month being simulated."""

    t: int
    t_mid: float
    working_days: int
    days_in_month: int
    log_avg_wage: float
    min_wage: float
    shock_loss: np.ndarray  # per section, job-loss multiplier
    shock_wage: np.ndarray  # per section, log-wage shift


def initial_state(cov: Covariates, occs: Occupations, emps: Employers,
                  rng: np.random.Generator) -> LabourState:
    """Cross-sectional state at the first month, drawn from stylised rates."""
    n = cov.age.size
    age = cov.age
    level = cov.level
    p_emp = np.where((age >= 20) & (age < 60), 0.76, np.where(age >= 60, 0.45, 0.25))
    p_emp = np.where(age < 16, 0.0, p_emp)
    p_emp = p_emp * np.where(level >= 5, 1.12, np.where(level < 3, 0.7, 1.0))
    p_emp = np.minimum(p_emp, 0.95) * np.exp(0.15 * cov.motivation).clip(0.7, 1.3)
    p_emp = np.minimum(p_emp, 0.97)
    p_unemp = np.where((age >= 18) & (age < 64), 0.055 * np.where(level < 3, 2.0, 1.0), 0.0)
    u = rng.random(n)
    status = np.where(u < p_emp, E, np.where(u < p_emp + p_unemp, U, INACTIVE)).astype(np.int8)
    status = np.where(cov.present, status, ABSENT).astype(np.int8)
    st = LabourState(
        status=status,
        occ=np.full(n, -1, dtype=np.int64),
        firm=np.full(n, -1, dtype=np.int64),
        firm2=np.full(n, -1, dtype=np.int64),
        fixed=np.zeros(n, dtype=bool),
        hours_frac=np.ones(n),
        min_wage_job=np.zeros(n, dtype=bool),
        eps=rng.normal(0, P.AR_SD / np.sqrt(1 - P.AR_RHO**2), n),
        emp_mask=np.where(status == E, 0xFFFF, 0).astype(np.uint16),
        left_t=np.full(n, -999, dtype=np.int64),
        reg_day=np.ones(n, dtype=np.int64),
        ub_month=np.zeros(n, dtype=np.int64),
        ub_base=np.zeros(n),
        earn_ewma=np.zeros(n),
    )
    hires = np.nonzero(status == E)[0]
    _place(st, hires, cov, occs, emps, {k: rng.random(n) for k in DRAWS}, mode=0,
           min_skill=np.zeros(hires.size, dtype=np.int64))
    return st


def _place(st: LabourState, rows: np.ndarray, cov: Covariates, occs: Occupations,
           emps: Employers, u: dict[str, np.ndarray], mode: int | np.ndarray,
           min_skill: np.ndarray, keep_occ: np.ndarray | None = None) -> None:
    """Give ``rows`` a new job: occupation (unless kept), section, employer, contract."""
    if rows.size == 0:
        return
    level = cov.level[rows].astype(np.int64)
    fidx = cov.field_idx[rows]
    modes = np.broadcast_to(np.asarray(mode, dtype=np.int64), rows.shape)
    new_occ = occs.draw(level, fidx, modes, min_skill, u["occ"][rows])
    fallback = occs.draw(level, fidx, np.zeros_like(modes), np.zeros_like(min_skill),
                         u["occ"][rows])
    new_occ = np.where(new_occ >= 0, new_occ, fallback)
    if keep_occ is not None:
        new_occ = np.where(keep_occ & (st.occ[rows] >= 0), st.occ[rows], new_occ)
    sec = occs.draw_section(new_occ, u["sec"][rows])
    st.occ[rows] = new_occ
    st.firm[rows] = emps.draw(sec, cov.region[rows], u["local"][rows], u["firm"][rows])
    young = cov.age[rows] < 25
    st.fixed[rows] = u["contract"][rows] < np.where(young, 0.3, 0.12)
    pt = u["pt"][rows] < np.where(cov.female[rows], 0.11, 0.06)
    st.hours_frac[rows] = np.where(pt, 0.4 + 0.4 * u["ptfrac"][rows], 1.0)
    st.min_wage_job[rows] = (u["minwage"][rows] < P.MINIMUM_WAGE_REPORTING * 2) & (
        occs.skill[new_occ] <= 2
    )


def step(st: LabourState, cov: Covariates, eff: Effects, ctx: Context, occs: Occupations,
         emps: Employers, u: dict[str, np.ndarray], z: dict[str, np.ndarray]) -> Month:
    """Advance ``st`` by one month in place and return the month's records.

    Parameters
    ----------
    st
        State at the end of the previous month; updated in place.
    cov
        Covariates of the rows for this month.
    eff
        Treatment effects on the rows (``Effects.neutral`` for the untreated).
    ctx
        Calendar quantities.
    occs, emps
        Job samplers.
    u, z
        Uniform and standard normal draws, one array per name in ``DRAWS`` /
        ``NORMALS``, aligned with the rows. Observed and shadow states of the
        same person receive the same draws.
    """
    n = st.status.size
    prev = st.status.copy()
    age = cov.age
    F = P.FLOWS
    mot = np.exp(P.MOTIVATION_FLOW_ELASTICITY * cov.motivation)
    low = cov.level < 3
    high = cov.level >= 5
    edu_loss = np.where(low, P.LOW_EDUCATION_JOB_LOSS, np.where(high, P.HIGH_EDUCATION_JOB_LOSS,
                                                                1.0))
    reg_loss = np.ones(n)
    reg_find = np.ones(n)
    for code, m in P.REGION_JOB_LOSS.items():
        reg_loss = np.where(cov.region_code == code, m, reg_loss)
    for code, m in P.REGION_JOB_FINDING.items():
        reg_find = np.where(cov.region_code == code, m, reg_find)
    has_firm = st.firm >= 0
    sec_now = np.where(has_firm, emps.section[np.maximum(st.firm, 0)], 0)
    shock = np.where(has_firm, ctx.shock_loss[sec_now], 1.0)
    retire = np.where(age >= 64, 0.03, np.where(age >= 62, 0.008, 0.0))
    p_eu = F.e_to_u * edu_loss * reg_loss * shock / mot * eff.loss
    p_ei = (F.e_to_i * np.where(age < 25, 2.0, 1.0) + retire) * eff.loss * eff.exit_training
    working_age = (age >= 16) & (age < 75)
    p_ue = np.where(working_age, F.u_to_e * reg_find * mot * np.where(low, 0.7, 1.0)
                    * np.where(age >= 55, 0.6, 1.0) * eff.find, 0.0)
    p_ui = F.u_to_i + np.where(age >= 63, 0.05, 0.0)
    p_ie = np.where((age >= 18) & (age < 62), F.i_to_e * reg_find * mot * eff.find,
                    np.where(working_age, F.i_to_e * 0.25, 0.0))
    p_ie = np.where((age >= 16) & (age < 19), 0.012, p_ie)
    p_iu = np.where((age >= 18) & (age < 62), F.i_to_u, 0.0)
    ut = u["tr"]
    new = prev.copy()
    is_e, is_u, is_i = prev == E, prev == U, prev == INACTIVE
    new = np.where(is_e & (ut < p_eu), U, new)
    new = np.where(is_e & (ut >= p_eu) & (ut < p_eu + p_ei), INACTIVE, new)
    new = np.where(is_u & (ut < p_ue), E, new)
    new = np.where(is_u & (ut >= p_ue) & (ut < p_ue + p_ui), INACTIVE, new)
    new = np.where(is_i & (ut < p_ie), E, new)
    new = np.where(is_i & (ut >= p_ie) & (ut < p_ie + p_iu), U, new)
    new = np.where(cov.present, np.where(prev == ABSENT, INACTIVE, new), ABSENT)
    new = np.where(cov.present & (age < 16), INACTIVE, new)
    new = new.astype(np.int8)

    leavers = (prev == E) & (new != E)
    hires = (prev != E) & (new == E)
    stay = (prev == E) & (new == E)
    # keep the leaver's last employer for this month's final report
    last_firm, last_occ = st.firm.copy(), st.occ.copy()
    st.left_t = np.where(leavers, ctx.t, st.left_t)

    # --- moves within employment -------------------------------------------
    p_move = F.job_to_job * np.where(age < 30, 1.6, 1.0) * mot
    ict_move = stay & (u["ict"] < eff.ict_move)
    mover = stay & ((u["move"] < p_move) | ict_move)
    promo = stay & ~mover & (u["promo"] < F.promotion * mot + eff.upgrade)
    hire_rows = np.nonzero(hires)[0]
    _place(st, hire_rows, cov, occs, emps, u, mode=0,
           min_skill=np.zeros(hire_rows.size, dtype=np.int64))
    move_rows = np.nonzero(mover)[0]
    cur_skill = np.where(st.occ[move_rows] >= 0, occs.skill[np.maximum(st.occ[move_rows], 0)], 0)
    _place(st, move_rows, cov, occs, emps, u,
           mode=ict_move[move_rows].astype(np.int64),
           min_skill=np.zeros(move_rows.size, dtype=np.int64),
           keep_occ=(u["keep"][move_rows] < 0.6) & ~ict_move[move_rows])
    del cur_skill
    promo_rows = np.nonzero(promo)[0]
    if promo_rows.size:
        cur = occs.skill[np.maximum(st.occ[promo_rows], 0)]
        up = occs.draw(cov.level[promo_rows].astype(np.int64), cov.field_idx[promo_rows],
                       np.zeros(promo_rows.size, dtype=np.int64), np.minimum(cur + 1, 4),
                       u["occ"][promo_rows])
        st.occ[promo_rows] = np.where(up >= 0, up, st.occ[promo_rows])
    st.fixed = np.where(stay & st.fixed & (u["fixconv"] < F.fixed_to_permanent), False, st.fixed)
    not_e = new != E
    st.firm = np.where(not_e, -1, st.firm)
    st.occ = np.where(not_e, -1, st.occ)

    # --- second jobs ---------------------------------------------------------
    start2 = (new == E) & (st.firm2 < 0) & (u["job2"] < F.second_job_start)
    end2 = (st.firm2 >= 0) & ((new != E) | (u["job2"] > 1 - F.second_job_end))
    st.firm2 = np.where(end2, -1, st.firm2)
    s2 = np.nonzero(start2)[0]
    if s2.size:
        # u["job2"] / p is uniform on [0, 1) given a start: reuse it for the employer
        st.firm2[s2] = emps.draw(emps.section[np.maximum(st.firm[s2], 0)], cov.region[s2],
                                 np.zeros(s2.size), u["job2"][s2] / F.second_job_start)

    # an employer files one report per employee and month: a second job is never at
    # the main employer (it ends if the main job moves there)
    st.firm2 = np.where(st.firm2 == st.firm, -1, st.firm2)

    # --- earnings ---------------------------------------------------------------
    st.eps = P.AR_RHO * st.eps + P.AR_SD * z["ar"]
    reported = (new == E) | leavers
    firm_r = np.where(new == E, st.firm, last_firm)
    occ_r = np.where(new == E, st.occ, last_occ)
    fr = np.maximum(firm_r, 0)
    oc = np.maximum(occ_r, 0)
    exper = np.clip(age - 20, 0, None)
    logw = (
        ctx.log_avg_wage + P.LEVEL_OFFSET + cov.person_effect
        + P.OCCUPATION_WAGE_WEIGHT * occs.log_rel_wage[oc]
        + P.SECTOR_WAGE_WEIGHT * emps.log_rel_wage_section[emps.section[fr]]
        + emps.wage_effect[fr]
        + P.EXPERIENCE_LINEAR * exper + P.EXPERIENCE_QUADRATIC * exper**2
        + P.MOTIVATION_WAGE_DRIFT * cov.motivation * (ctx.t - ctx.t_mid)
        + st.eps + ctx.shock_wage[emps.section[fr]] + eff.log_wage
    )
    full = np.maximum(np.exp(logw + P.TRANSITORY_SD * z["tr_noise"]), ctx.min_wage)
    full = np.where(st.min_wage_job & (new == E), ctx.min_wage, full)
    wd = ctx.working_days
    partial = hires | leavers
    days = np.where(partial, np.maximum(1, np.round(wd * u["days"])), wd).astype(np.int64)
    days = np.where(reported, days, 0)
    # sickness
    sick = reported & (u["sick"] < F.sickness * np.where(cov.female, 1.3, 1.0)
                       * np.where(age >= 50, 1.4, 1.0))
    sick_days = np.where(sick, 1 + np.floor(np.log1p(-u["sickdays"]) / np.log(1 - 1 / 8.0)), 0)
    sick_days = np.minimum(sick_days, days).astype(np.int64)
    days_worked = days - sick_days
    paid_share = (days_worked + 0.8 * np.minimum(sick_days, 10)) / wd
    earnings = np.where(reported, full * st.hours_frac * paid_share, 0.0)
    hours_frac_r = np.where(new == E, st.hours_frac, 1.0)
    hours = np.round(days_worked * 8 * hours_frac_r).astype(np.int64)
    sick_ben_days = np.maximum(sick_days - 10, 0)
    sick_ben = np.round(0.8 * full / wd * sick_ben_days, 2)
    zero = reported & (u["zero"] < P.MESSINESS.zero_income_report)
    earnings = np.where(zero, 0.0, np.round(earnings, 2))
    days_worked = np.where(zero, 0, days_worked)
    hours = np.where(zero, 0, hours)
    # second job: a small share of a full-time wage
    earnings2 = np.where(st.firm2 >= 0, np.round(0.18 * full * (0.5 + u["ptfrac"]), 2), 0.0)
    days2 = np.where(st.firm2 >= 0, np.maximum(1, np.round(wd * 0.4 * u["days"])), 0)

    full_month = stay & ~zero
    st.earn_ewma = np.where(full_month, 0.85 * st.earn_ewma + 0.15 * full * st.hours_frac,
                            st.earn_ewma)
    st.emp_mask = ((st.emp_mask.astype(np.uint32) << 1) | (new == E)).astype(np.uint32) & 0xFFFF
    st.emp_mask = st.emp_mask.astype(np.uint16)

    # --- registered unemployment and benefits -----------------------------------
    dim = ctx.days_in_month
    reg_start = (new == U) & (prev != U)
    reg_end = (prev == U) & (new != U)
    reg_day = np.where(reg_start, 1 + np.minimum((u["reg"] * dim).astype(np.int64), dim - 1),
                       st.reg_day)
    dereg_day = np.where(reg_end, 1 + np.minimum((u["days"] * dim).astype(np.int64), dim - 1), 0)
    eligible = _POPCOUNT16[st.emp_mask] >= 12
    st.ub_month = np.where(reg_start & eligible & (st.earn_ewma > 0), 1,
                           np.where((new == U) & (st.ub_month > 0), st.ub_month + 1, 0))
    st.ub_month = np.where(st.ub_month > 8, 0, st.ub_month)
    st.ub_base = np.where(reg_start, np.minimum(0.55 * st.earn_ewma, 1400.0), st.ub_base)
    ub_days = np.where(st.ub_month > 0, np.where(reg_start, dim - reg_day + 1, dim), 0)
    factor = np.select([st.ub_month <= 2, st.ub_month <= 4], [1.0, 0.75], 0.5)
    ub_amount = np.round(np.where(ub_days > 0, st.ub_base * factor * ub_days / dim, 0.0), 2)
    registered = (new == U) | reg_end
    st.reg_day = reg_day
    st.status = new

    return Month(
        employed=reported,
        firm=firm_r,
        occ=occ_r,
        earnings=earnings,
        days=days_worked,
        hours=hours,
        fixed=np.where(new == E, st.fixed, False),
        part_time=hours_frac_r < 1.0,
        firm2=st.firm2.copy(),
        earnings2=earnings2,
        days2=days2.astype(np.int64),
        sick_days=sick_days,
        sick_benefit_days=sick_ben_days,
        sick_benefit=np.where(sick_ben_days > 0, sick_ben, 0.0),
        registered=registered,
        reg_start=reg_start,
        reg_end=reg_end,
        reg_day=reg_day,
        dereg_day=dereg_day,
        dereg_to_job=reg_end & (new == E),
        ub_days=ub_days,
        ub_amount=ub_amount,
        zero_income=zero,
    )
