"""Indicator rules: what is measured for one person over their participant's months.

Each rule is written once, as a function of an :class:`~impact.indicators.sample.Arm`,
and applied to participants and to twins alike. ``E`` is the entry month (first course
start), ``L`` the leaving month (end of that course); ``L + h`` is ``h`` months after
leaving. A rule returns NaN for a person outside its population or with an unobservable
month (see :mod:`impact.indicators.sample`).

Contrasts
---------
``did``
    The rule has a pre-period analogue (``pre``) measured before ``E``; the net effect is
    the matched difference in differences ``(post - pre)_participant - (post - pre)_twins``.
``level``
    The rule is itself a change relative to the entry month (EECR06, mobility, stays), so
    the net effect is the matched difference of the post values.
``gross``
    Participants only (the twins-relative pay variant of EECR06); no net effect.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from impact.indicators.sample import Arm, MatchedSample
from impact.indicators.settings import IndicatorSettings

__all__ = ["Context", "Spec", "Values", "compute_values"]

Kind = Literal["rate", "mean", "other"]
Contrast = Literal["did", "level", "gross"]


@dataclass(frozen=True)
class Spec:
    """Definition of one published indicator (labels in English and Latvian)."""

    id: str
    family: str
    kind: Kind
    unit: str
    contrast: Contrast
    horizon: int | None
    label_en: str
    label_lv: str
    definition_en: str
    population: str


@dataclass(frozen=True)
class Values:
    """Per-person values of one indicator: participants (``post_t``) and pair rows."""

    spec: Spec
    post_t: np.ndarray
    post_p: np.ndarray
    pre_t: np.ndarray | None = None
    pre_p: np.ndarray | None = None


@dataclass
class Context:
    """Lookups shared by the rules.

    Attributes
    ----------
    settings
        Indicator settings.
    occ_rank : ndarray
        Rank of every occupation code level of the sub-panel (NaN unknown).
    sector_rank : ndarray
        Rank of every NACE section level (NaN unknown).
    sector_wage : ndarray, shape (n_sections, n_months)
        Mean real daily wage of all persons working in the section in the month.
    field_match : dict
        Programme field -> bool array over occupation code levels (works in the field).
    earnings_scale : float
        Participants' mean real earnings over the 12 months before entry (composite index
        scale; one constant for every breakdown cell).
    """

    settings: IndicatorSettings
    occ_rank: np.ndarray
    sector_rank: np.ndarray
    sector_wage: np.ndarray
    field_match: Mapping[str, np.ndarray]
    earnings_scale: float = float("nan")
    days_in_month: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _take(table: np.ndarray, code: np.ndarray) -> np.ndarray:
    """``table[code]`` with NaN for missing codes (``< 0``)."""
    return np.where(code >= 0, table[np.clip(code, 0, max(table.size - 1, 0))], np.nan)


def _flag(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


# ------------------------------------------------------------------------------ EECR06


@dataclass(frozen=True)
class _Entry:
    """A person's situation in the entry month and at a later month."""

    ref: np.ndarray  # employed at entry (the reference population)
    emp_h: np.ndarray  # employed at the later month (NaN unobservable)
    ok: np.ndarray  # in the population and the later month observable
    w_e: np.ndarray
    w_h: np.ndarray
    daily: np.ndarray  # pay compared as daily wages (else monthly earnings)


def _entry_vs(arm: Arm, later: np.ndarray) -> _Entry:
    e = arm.entry
    emp_e = arm.num("employed", e)
    ref = emp_e == 1
    emp_h = arm.num("employed", later)
    ok = ref & np.isfinite(emp_h)
    d_e, d_h = arm.num("daily_wage_real", e), arm.num("daily_wage_real", later)
    daily = np.isfinite(d_e) & np.isfinite(d_h)
    w_e = np.where(daily, d_e, arm.num("earnings_real", e))
    w_h = np.where(daily, d_h, arm.num("earnings_real", later))
    return _Entry(ref, emp_h, ok, w_e, w_h, daily)


def _eecr06(arm: Arm, ctx: Context) -> dict[str, np.ndarray]:
    s = ctx.settings.eecr06
    later = arm.leave + s.horizon
    x = _entry_vs(arm, later)
    emp = x.emp_h == 1
    occ_e = _take(ctx.occ_rank, arm.code("occupation_code", arm.entry))
    occ_h = _take(ctx.occ_rank, arm.code("occupation_code", later))
    con_e, con_h = arm.code("contract_type", arm.entry), arm.code("contract_type", later)
    fixed, perm = arm.sub.code_of("contract_type", "FIXED"), arm.sub.code_of(
        "contract_type", "PERMANENT")
    pt_e, pt_h = arm.num("part_time", arm.entry), arm.num("part_time", later)
    with np.errstate(invalid="ignore", divide="ignore"):
        crit = {
            "occupation_up": emp & (occ_h > occ_e),
            "pay_up": emp & (x.w_h > x.w_e * (1 + s.pay_threshold)),
            "fixed_to_permanent": emp & (con_e == fixed) & (con_h == perm),
            "part_to_full_time": emp & (pt_e == 1) & (pt_h == 0),
        }
        crit["any"] = (crit["occupation_up"] | crit["pay_up"] | crit["fixed_to_permanent"]
                       | crit["part_to_full_time"])
        # relative variant: the pay change beats the entry sector's average change
        sec = arm.code("nace_section", arm.entry)
        mc = np.clip(later, 0, ctx.sector_wage.shape[1] - 1)
        sw_e = np.where(sec >= 0, ctx.sector_wage[np.clip(sec, 0, None), arm.entry], np.nan)
        sw_h = np.where(sec >= 0, ctx.sector_wage[np.clip(sec, 0, None), mc], np.nan)
        change = x.w_h / x.w_e - 1
        crit["pay_up_vs_sector"] = emp & np.isfinite(change) & (change > sw_h / sw_e - 1)
    out = {k: np.where(x.ok, _flag(v), np.nan) for k, v in crit.items()}
    out["_pay_change"] = np.where(x.ok & emp, change, np.nan)
    return out


# ------------------------------------------------------------------------------ rules


def _employed_at(arm: Arm, h: int) -> tuple[np.ndarray, np.ndarray]:
    return arm.num("employed", arm.leave + h), arm.window_mean("employed", arm.entry - 12, 12)


def _at(col: str) -> Callable[[Arm, int], tuple[np.ndarray, np.ndarray]]:
    def f(arm: Arm, h: int) -> tuple[np.ndarray, np.ndarray]:
        return arm.num(col, arm.leave + h), arm.window_mean(col, arm.entry - 12, 12)
    return f


def _sum(col: str) -> Callable[[Arm, int], tuple[np.ndarray, np.ndarray]]:
    def f(arm: Arm, h: int) -> tuple[np.ndarray, np.ndarray]:
        return arm.window_sum(col, arm.leave + 1, h), arm.window_sum(col, arm.entry - h, h)
    return f


def _resilience(ctx: Context) -> Callable[[Arm, int], tuple[np.ndarray, np.ndarray]]:
    dim = ctx.days_in_month

    def share(arm: Arm, first: np.ndarray, h: int) -> np.ndarray:
        days = arm.window("days_worked", first, h)
        ok = np.stack([arm.observable(first + k) for k in range(h)], axis=1).all(axis=1)
        m = np.clip(first[:, None] + np.arange(h)[None, :], 0, dim.size - 1)
        cal = dim[m]
        worked = np.minimum(np.nan_to_num(days), cal).sum(axis=1)
        return np.where(ok, worked / cal.sum(axis=1), np.nan)

    def f(arm: Arm, h: int) -> tuple[np.ndarray, np.ndarray]:
        return share(arm, arm.leave + 1, h), share(arm, arm.entry - h, h)
    return f


def _stay(arm: Arm, h: int) -> np.ndarray:
    first = arm.leave + 1
    emp1 = arm.code("employer_id", first)
    seen = np.isfinite(arm.num("employed", first))
    same = emp1 >= 0
    ok = seen.copy()
    for k in range(1, h):
        c = arm.code("employer_id", first + k)
        ok &= arm.observable(first + k)
        same &= c == emp1
    pop = seen & (arm.num("employed", first) == 1)
    return np.where(ok & pop, _flag(same), np.nan)


def _income_increase(arm: Arm, h: int) -> np.ndarray:
    post = arm.window_sum("earnings_real", arm.leave + 1, h) / h
    pre = arm.window_sum("earnings_real", arm.entry - 12, 12) / 12
    return np.where(np.isfinite(post) & np.isfinite(pre), _flag(post > pre), np.nan)


def _mobility(arm: Arm, h: int, ctx: Context, which: str) -> np.ndarray:
    later = arm.leave + h
    emp_e = arm.num("employed", arm.entry)
    emp_h = arm.num("employed", later)
    if which == "vertical":
        table, col = ctx.occ_rank, "occupation_code"
    else:
        table, col = ctx.sector_rank, "nace_section"
    r_e, r_h = _take(table, arm.code(col, arm.entry)), _take(table, arm.code(col, later))
    up = (emp_h == 1) & (r_h > r_e)
    return np.where((emp_e == 1) & np.isfinite(emp_h), _flag(up), np.nan)


def _career_step(arm: Arm, h: int, ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Within ``h`` months of leaving: first month with a higher occupation rank or a pay
    jump over entry. Returns (step within h: 0/1/NaN, months to the step or to censoring,
    event flag) folded as (indicator, duration * sign): see :func:`career_step_times`."""
    thr = ctx.settings.eecr06.pay_threshold
    step = np.zeros(arm.n, dtype=bool)
    ok = np.ones(arm.n, dtype=bool)
    occ_e = _take(ctx.occ_rank, arm.code("occupation_code", arm.entry))
    for k in range(1, h + 1):
        later = arm.leave + k
        x = _entry_vs(arm, later)
        occ = _take(ctx.occ_rank, arm.code("occupation_code", later))
        with np.errstate(invalid="ignore"):
            s = (x.emp_h == 1) & ((occ > occ_e) | (x.w_h > x.w_e * (1 + thr)))
        step |= s & ~np.isnan(x.emp_h)
        ok &= arm.observable(later)
    ref = arm.num("employed", arm.entry) == 1
    return np.where(ref & ok, _flag(step), np.nan), ref


def career_step_times(arm: Arm, ctx: Context, max_months: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Months from leaving to the first career step (occupation rank up or a pay jump over
    the entry month), for persons employed at entry.

    Returns
    -------
    duration : ndarray of float
        Months to the step, or to the last observable month (censoring) when none is seen;
        NaN outside the population (not employed at entry, no leaving month).
    event : ndarray of bool
        A step was seen.
    population : ndarray of bool
    """
    thr = ctx.settings.eecr06.pay_threshold
    occ_e = _take(ctx.occ_rank, arm.code("occupation_code", arm.entry))
    duration = np.full(arm.n, np.nan)
    event = np.zeros(arm.n, dtype=bool)
    alive = (arm.num("employed", arm.entry) == 1) & arm.observable(arm.leave)
    pop = alive.copy()
    duration[pop] = 0.0
    for k in range(1, max_months + 1):
        later = arm.leave + k
        seen = alive & arm.observable(later)
        x = _entry_vs(arm, later)
        occ = _take(ctx.occ_rank, arm.code("occupation_code", later))
        with np.errstate(invalid="ignore"):
            s = seen & (x.emp_h == 1) & ((occ > occ_e) | (x.w_h > x.w_e * (1 + thr)))
        duration[seen] = k
        event |= s
        alive &= seen & ~s
    return duration, event, pop


def _overeducated(arm: Arm, month: np.ndarray) -> np.ndarray:
    """Education above the job's ISCO-08 skill level (ISCED 0-1 -> 1, 2-4 -> 2, 5 -> 3,
    6-8 -> 4); NaN when not employed or either is unknown."""
    emp = arm.num("employed", month)
    isced = arm.num("isced_level", month)
    skill = arm.num("skill_level", month)
    need = np.select([isced <= 1, isced <= 4, isced == 5, isced >= 6], [1.0, 2.0, 3.0, 4.0],
                     np.nan)
    ok = (emp == 1) & np.isfinite(need) & np.isfinite(skill) & (skill > 0)
    return np.where(ok, _flag(need > skill), np.nan)


def _field_mismatch(arm: Arm, month: np.ndarray, fields: np.ndarray, ctx: Context
                    ) -> np.ndarray:
    """Employed outside the occupations of the participant's programme field."""
    emp = arm.num("employed", month)
    occ = arm.code("occupation_code", month)
    out = np.full(arm.n, np.nan)
    for f, match in ctx.field_match.items():
        sel = (fields == f) & (emp == 1) & (occ >= 0)
        out[sel] = _flag(~match[occ[sel]])
    return out


def _composite_parts(arm: Arm, ctx: Context) -> dict[str, np.ndarray]:
    h = 12
    earn = (arm.window_sum("earnings_real", arm.leave + 1, h)
            - arm.window_sum("earnings_real", arm.entry - h, h)) / (12 * ctx.earnings_scale)
    emp = (arm.window_sum("employed", arm.leave + 1, h)
           - arm.window_sum("employed", arm.entry - h, h)) / h
    later = arm.leave + h
    emp_h = arm.num("employed", later)
    emp_e = arm.num("employed", arm.entry)
    up = np.zeros(arm.n, dtype=bool)
    for table, col in ((ctx.occ_rank, "occupation_code"), (ctx.sector_rank, "nace_section")):
        r_e = np.where(emp_e == 1, _take(table, arm.code(col, arm.entry)), 0.0)
        r_h = _take(table, arm.code(col, later))
        with np.errstate(invalid="ignore"):
            up |= (emp_h == 1) & (r_h > r_e)
    mob = np.where(np.isfinite(emp_h) & np.isfinite(emp_e), _flag(up), np.nan)
    return {"earnings": earn, "employment": emp, "mobility": mob}


# ------------------------------------------------------------------------------ registry


def _spec(id_: str, family: str, kind: Kind, unit: str, contrast: Contrast, h: int | None,
          en: str, lv: str, definition: str, population: str) -> Spec:
    return Spec(id_, family, kind, unit, contrast, h, en, lv, definition, population)


_ALL = "participants with a leaving month whose months are observed"
_EMPLOYED_AT_ENTRY = "participants employed in the entry month"

_EECR06_LABELS = {
    "any": ("EECR06: better labour-market situation 6 months after leaving",
            "EECR06: labāka situācija darba tirgū 6 mēnešus pēc dalības beigām",
            "any of the four criteria"),
    "occupation_up": ("EECR06 (a): occupation upgrade", "EECR06 (a): augstāka profesija",
                      "higher occupation rank (default ISCO-08 skill level) than at entry"),
    "pay_up": ("EECR06 (b): pay rise", "EECR06 (b): atalgojuma pieaugums",
               "real daily wage (monthly earnings where days are missing) above entry by "
               "more than the threshold"),
    "fixed_to_permanent": ("EECR06 (c): fixed-term to permanent",
                           "EECR06 (c): no terminēta uz beztermiņa līgumu",
                           "fixed-term contract at entry, permanent at the horizon"),
    "part_to_full_time": ("EECR06 (d): part-time to full-time",
                          "EECR06 (d): no nepilna uz pilnu slodzi",
                          "part-time at entry, full-time at the horizon"),
    "pay_up_vs_sector": ("EECR06 relative: pay change above the sector's",
                         "EECR06 relatīvais: atalgojuma izmaiņa virs nozares vidējās",
                         "change of the real daily wage since entry above the average change "
                         "of the entry NACE section over the same months"),
    "pay_up_vs_twins": ("EECR06 relative: pay change above the twins'",
                        "EECR06 relatīvais: atalgojuma izmaiņa virs kontrolgrupas",
                        "change of the real daily wage since entry above the weighted "
                        "average change of the participant's own twins (gross only)"),
}


def compute_values(sample: MatchedSample, ctx: Context) -> list[Values]:
    """Every indicator's per-person values for participants and pair rows."""
    s = ctx.settings
    T, P = sample.treated, sample.twins
    out: list[Values] = []
    h6 = s.eecr06.horizon

    e_t, e_p = _eecr06(T, ctx), _eecr06(P, ctx)
    for k, (en, lv, d) in _EECR06_LABELS.items():
        spec = _spec(f"eecr06_{k}", "eecr06", "rate", "share", "gross" if k.endswith(
            "twins") else "level", h6, en, lv,
            f"Month {h6} after leaving vs the entry month: {d}; requires employment then.",
            _EMPLOYED_AT_ENTRY)
        if k == "pay_up_vs_twins":
            w = sample.weight
            ch = e_p["_pay_change"]
            ok = np.isfinite(ch) & (w > 0)
            num = np.bincount(sample.pair_treated, np.where(ok, w * ch, 0.0), T.n)
            den = np.bincount(sample.pair_treated, np.where(ok, w, 0.0), T.n)
            bench = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
            mine = e_t["_pay_change"]
            v = np.where(np.isfinite(e_t["any"]) & np.isfinite(bench),
                         _flag(np.nan_to_num(mine, nan=-np.inf) > bench), np.nan)
            out.append(Values(spec, v, np.full(P.n, np.nan)))
        else:
            out.append(Values(spec, e_t[k], e_p[k]))

    did_rules: list[tuple[str, str, Kind, str, Callable, tuple[int, ...], str, str, str]] = [
        ("employed", "labour", "rate", "share", _employed_at, s.horizons,
         "Employed {h} months after leaving", "Nodarbināti {h} mēnešus pēc dalības beigām",
         "employed in month L+{h}; pre-period: share of months employed in E-12..E-1"),
        ("registered_unemployed", "labour", "rate", "share", _at("registered_unemployed"),
         s.horizons, "Registered unemployed {h} months after leaving",
         "Reģistrēti bezdarbnieki {h} mēnešus pēc dalības beigām",
         "registered at the NVA in month L+{h}; pre-period: share of months E-12..E-1"),
        ("earnings_real", "income", "mean", "EUR/month (real)", _at("earnings_real"),
         s.horizons, "Real monthly earnings {h} months after leaving",
         "Reālie mēneša ienākumi {h} mēnešus pēc dalības beigām",
         "real gross earnings of month L+{h}; pre-period: mean of E-12..E-1"),
        ("months_employed", "labour", "mean", "months", _sum("employed"), (12, 24),
         "Months employed in the {h} months after leaving",
         "Nodarbinātības mēneši {h} mēnešos pēc dalības beigām",
         "months employed in L+1..L+{h}; pre-period: E-{h}..E-1"),
        ("days_employed", "labour", "mean", "days", _sum("days_worked"), (12, 24),
         "Days worked in the {h} months after leaving",
         "Nostrādātās dienas {h} mēnešos pēc dalības beigām",
         "days worked (employer reports) in L+1..L+{h}; pre-period: E-{h}..E-1"),
        ("ub_days", "labour", "mean", "days", _sum("ub_days"), (12, 24),
         "Unemployment-benefit days in the {h} months after leaving",
         "Bezdarbnieka pabalsta dienas {h} mēnešos pēc dalības beigām",
         "benefit days in L+1..L+{h}; pre-period: E-{h}..E-1"),
        ("sick_days", "labour", "mean", "days", _sum("sick_benefit_days"), (12, 24),
         "Sickness-benefit days in the {h} months after leaving",
         "Slimības pabalsta dienas {h} mēnešos pēc dalības beigām",
         "sickness days in L+1..L+{h}; pre-period: E-{h}..E-1"),
        ("earnings_real_sum", "income", "mean", "EUR (real)", _sum("earnings_real"), (12, 24),
         "Real earnings in the {h} months after leaving",
         "Reālie ienākumi {h} mēnešos pēc dalības beigām",
         "sum of real gross earnings in L+1..L+{h}; pre-period: E-{h}..E-1"),
        ("resilience", "resilience", "mean", "share of days", _resilience(ctx), (24,),
         "Career resilience: share of days worked in the {h} months after leaving",
         "Karjeras noturība: nostrādāto dienu daļa {h} mēnešos pēc dalības beigām",
         "days worked / calendar days in L+1..L+{h} (days worked are working days, so "
         "full-time work is about 0.7); pre-period: E-{h}..E-1"),
    ]
    for id_, fam, kind, unit, f, hs, en, lv, d in did_rules:
        for h in hs:
            pt, bt = f(T, h)
            pp, bp = f(P, h)
            spec = _spec(f"{id_}_h{h}", fam, kind, unit, "did", h, en.format(h=h),
                         lv.format(h=h), d.format(h=h), _ALL)
            out.append(Values(spec, pt, pp, bt, bp))

    # fiscal gain: taxes on extra earnings plus benefits saved, per person (EUR)
    rate = s.fiscal.revenue_rate
    for h in (12, 24):
        def fiscal(arm: Arm, h: int = h) -> tuple[np.ndarray, np.ndarray]:
            post = rate * arm.window_sum("earnings_real", arm.leave + 1, h) - arm.window_sum(
                "ub_amount", arm.leave + 1, h)
            pre = rate * arm.window_sum("earnings_real", arm.entry - h, h) - arm.window_sum(
                "ub_amount", arm.entry - h, h)
            return post, pre
        pt, bt = fiscal(T)
        pp, bp = fiscal(P)
        spec = _spec(f"fiscal_balance_h{h}", "roi", "mean", "EUR", "did", h,
                     f"Taxes and contributions less benefits, {h} months after leaving",
                     f"Nodokļi un iemaksas mīnus pabalsti {h} mēnešos pēc dalības beigām",
                     f"income tax and social contributions on earnings (rate {rate:.4f}) "
                     f"less unemployment benefit paid, L+1..L+{h}; pre-period: E-{h}..E-1",
                     _ALL)
        out.append(Values(spec, pt, pp, bt, bp))

    level_rules: list[tuple[str, str, Callable[[Arm, int], np.ndarray], tuple[int, ...],
                            str, str, str, str]] = [
        ("stay_employer", "quality", _stay, (6, 12),
         "Stayed with the same employer {h} months after leaving",
         "Paliek pie tā paša darba devēja {h} mēnešus pēc dalības beigām",
         "employed in L+1 and with the same main employer in every month L+1..L+{h}",
         "persons employed in the month after leaving"),
        ("income_increase", "quality", _income_increase, (12, 24),
         "Real income increase in the {h} months after leaving",
         "Reālo ienākumu pieaugums {h} mēnešos pēc dalības beigām",
         "mean real monthly earnings in L+1..L+{h} above the mean of E-12..E-1", _ALL),
        ("mobility_vertical", "mobility", lambda a, h: _mobility(a, h, ctx, "vertical"),
         (12, 24), "Vertical mobility: higher occupation {h} months after leaving",
         "Vertikālā mobilitāte: augstāka profesija {h} mēnešus pēc dalības beigām",
         "employed in L+{h} in an occupation ranked above the entry occupation",
         _EMPLOYED_AT_ENTRY),
        ("mobility_horizontal", "mobility", lambda a, h: _mobility(a, h, ctx, "horizontal"),
         (12, 24), "Horizontal mobility: higher-wage sector {h} months after leaving",
         "Horizontālā mobilitāte: nozare ar augstāku atalgojumu {h} mēnešus pēc dalības "
         "beigām",
         "employed in L+{h} in a NACE section ranked above the entry section",
         _EMPLOYED_AT_ENTRY),
        ("career_step", "quality", lambda a, h: _career_step(a, h, ctx)[0], (12, 24),
         "Career step within {h} months of leaving",
         "Karjeras solis {h} mēnešu laikā pēc dalības beigām",
         "an occupation upgrade or a pay jump over the entry month in some month L+1..L+{h}",
         _EMPLOYED_AT_ENTRY),
    ]
    for id_, fam, f, hs, en, lv, d, pop in level_rules:
        for h in hs:
            spec = _spec(f"{id_}_h{h}", fam, "rate", "share", "level", h, en.format(h=h),
                         lv.format(h=h), d.format(h=h), pop)
            out.append(Values(spec, f(T, h), f(P, h)))

    fields = sample.info["field"].cast(str).to_numpy() if "field" in sample.info.columns \
        else np.full(T.n, "", dtype=object)
    fields_p = fields[sample.pair_treated]
    h = 12
    for id_, en, lv, d, fn in (
        ("overeducated", "Vertical mismatch: over-educated for the job",
         "Vertikālā neatbilstība: pārāk augsta izglītība darbam",
         "education level above the ISCO-08 skill level of the job (ISCED 0-1:1, 2-4:2, "
         "5:3, 6-8:4), employed persons; month L+{h} vs the entry month",
         lambda a, m, fl: _overeducated(a, m)),
        ("field_mismatch", "Horizontal mismatch: job outside the programme's field",
         "Horizontālā neatbilstība: darbs ārpus apgūtās jomas",
         "employed in an occupation outside those mapped to the participant's programme "
         "field; month L+{h} vs the entry month",
         lambda a, m, fl: _field_mismatch(a, m, fl, ctx)),
    ):
        spec = _spec(f"{id_}_h{h}", "skills_match", "rate", "share", "did", h, en, lv,
                     d.format(h=h), "employed persons")
        out.append(Values(spec, fn(T, T.leave + h, fields), fn(P, P.leave + h, fields_p),
                          fn(T, T.entry, fields), fn(P, P.entry, fields_p)))

    ct, cp = _composite_parts(T, ctx), _composite_parts(P, ctx)
    w = s.composite_weights
    tot = sum(w.values())

    def combine(parts: dict[str, np.ndarray]) -> np.ndarray:
        return sum(w[k] / tot * parts[k] for k in w)  # NaN if any component is

    spec = _spec("composite_index_h12", "composite", "mean", "index", "level", 12,
                 "Composite impact index (earnings, employment, mobility)",
                 "Saliktais ietekmes indekss (ienākumi, nodarbinātība, mobilitāte)",
                 "weighted sum of: change in real earnings (L+1..L+12 vs E-12..E-1) relative "
                 "to the participants' mean pre-period earnings; change in the share of "
                 "months employed; moved up in occupation or sector rank by L+12 (entry rank "
                 "0 when not employed). Weights: "
                 + ", ".join(f"{k} {v / tot:.2f}" for k, v in w.items()), _ALL)
    out.append(Values(spec, combine(ct), combine(cp)))
    return out
