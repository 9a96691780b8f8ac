"""The simulated resident population: demography, education, residence.

Everything here is fixed before the labour-market simulation starts, because
none of it responds to training in the generator: birth, sex, declared
residence history, education history, children, death and emigration, the
latent motivation and the permanent wage effect, prior adult learning, and the
raw personal codes.

Assumptions (stylised unless stated)
------------------------------------
* Ages 8-70 at the first month; younger persons enter the labour market as they
  turn 16. There is no immigration.
* Among 25-64 year olds about 38 % hold tertiary education (women 48 %, men
  28 %), 52 % upper or post-secondary and 10 % at most lower secondary,
  close to Latvian Labour Force Survey shares.
* Riga and Pieriga hold a larger share of the highly educated.
* Latent motivation is standard normal, shifted up for the highly educated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from impact import personal_code, reference
from impact.synth import params as P
from impact.synth.calendar import age_years, month64

#: ISCED-F broad fields (codes of ``reference.isced_fields``) with weights by
#: (education group, sex). Generic programmes ("00") dominate below tertiary.
_FIELDS = ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]
_FIELD_WEIGHTS = {
    ("low", 0): [0.9, 0, 0, 0, 0, 0, 0, 0.06, 0.02, 0, 0.02],
    ("low", 1): [0.9, 0, 0, 0, 0.02, 0, 0, 0.02, 0.01, 0, 0.05],
    ("medium", 0): [0.45, 0, 0.01, 0, 0.06, 0, 0.06, 0.30, 0.04, 0.01, 0.07],
    ("medium", 1): [0.50, 0.01, 0.03, 0.01, 0.15, 0, 0.02, 0.05, 0.02, 0.06, 0.15],
    ("high", 0): [0.01, 0.03, 0.05, 0.07, 0.24, 0.06, 0.14, 0.26, 0.04, 0.04, 0.06],
    ("high", 1): [0.01, 0.13, 0.08, 0.10, 0.33, 0.04, 0.04, 0.07, 0.03, 0.13, 0.04],
}


@dataclass
class Population:
    """Arrays describing every simulated person (index = person id)."""

    n: int
    code: np.ndarray  # raw personal code (str)
    birth: np.ndarray  # datetime64[D]
    female: np.ndarray  # bool
    motivation: np.ndarray  # float64, latent
    person_effect: np.ndarray  # float64, permanent log-wage effect
    # education: initial level and up to two upgrades (month index, level); -1 = none
    isced0: np.ndarray
    isced_t1: np.ndarray
    isced1: np.ndarray
    isced_t2: np.ndarray
    isced2: np.ndarray
    field: np.ndarray  # ISCED-F broad field of the highest level (str)
    # residence: municipality index before and after an optional move
    mun0: np.ndarray
    move_t: np.ndarray
    mun1: np.ndarray
    death_t: np.ndarray  # month index of death, large if none
    emig_t: np.ndarray  # month index of emigration, large if none
    prior_learning: np.ndarray  # bool: took part in adult learning 2017-2023
    education_records: pl.DataFrame  # person, isced_level, isced_field, award_date
    children: pl.DataFrame  # person, child_birth_date
    prior_records: pl.DataFrame  # person, project_code, start_date, end_date, completed

    def isced_at(self, t: int) -> np.ndarray:
        """Highest attained ISCED level in month ``t``."""
        lvl = np.where((self.isced_t1 >= 0) & (self.isced_t1 <= t), self.isced1, self.isced0)
        return np.where((self.isced_t2 >= 0) & (self.isced_t2 <= t), self.isced2, lvl)

    def isced_of(self, person: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Highest attained ISCED level of ``person[i]`` in month ``t[i]``."""
        t1, t2 = self.isced_t1[person], self.isced_t2[person]
        lvl = np.where((t1 >= 0) & (t1 <= t), self.isced1[person], self.isced0[person])
        return np.where((t2 >= 0) & (t2 <= t), self.isced2[person], lvl)

    def municipality_of(self, person: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Municipality index of ``person[i]`` in month ``t[i]``."""
        mt = self.move_t[person]
        return np.where((mt >= 0) & (mt <= t), self.mun1[person], self.mun0[person])

    def municipality_at(self, t: int) -> np.ndarray:
        """Index of the declared municipality in month ``t``."""
        return np.where((self.move_t >= 0) & (self.move_t <= t), self.mun1, self.mun0)

    def present_at(self, t: int) -> np.ndarray:
        """Alive and resident in month ``t`` (the month of death/emigration excluded)."""
        return (self.death_t > t) & (self.emig_t > t)


def edu_group(level: np.ndarray) -> np.ndarray:
    """0 low (ISCED 0-2), 1 medium (3-4), 2 high (5-8)."""
    return np.where(level >= 5, 2, np.where(level >= 3, 1, 0))


def _birth_dates(n: int, start: date, rng: np.random.Generator) -> np.ndarray:
    ages = np.arange(P.MIN_AGE_AT_START, P.MAX_AGE_AT_START + 1)
    w = np.where(ages < 18, 1.0, np.where(ages < 30, 0.85, np.where(ages < 60, 1.1, 0.95)))
    age = rng.choice(ages, size=n, p=w / w.sum())
    days = (age * 365.25 + rng.uniform(0, 365, n)).astype(np.int64)
    return np.datetime64(start, "D") - days


def _draw_field(group: np.ndarray, female: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(group.size, dtype=object)
    u = rng.random(group.size)
    for gi, gname in enumerate(("low", "medium", "high")):
        for sex in (0, 1):
            m = (group == gi) & (female.astype(int) == sex)
            w = np.asarray(_FIELD_WEIGHTS[(gname, sex)], dtype=float)
            cum = np.cumsum(w / w.sum())
            idx = np.minimum(np.searchsorted(cum, u[m], side="right"), len(_FIELDS) - 1)
            out[m] = np.asarray(_FIELDS, dtype=object)[idx]
    return out


def draw_population(n: int, start: date, n_months: int, rng: np.random.Generator,
                    confounding: float = 1.0) -> Population:
    """Draw the population and its fixed histories.

    Parameters
    ----------
    n
        Number of persons.
    start
        First month of the window.
    n_months
        Length of the window in months.
    rng
        Source of randomness (the caller spawns one per component).
    confounding
        Weight of latent motivation in the permanent wage effect
        (:attr:`impact.synth.config.SynthConfig.hidden_confounding`). It does
        not change which numbers are drawn.
    """
    start64 = np.datetime64(start, "D")
    birth = _birth_dates(n, start, rng)
    age0 = age_years(birth, start64)
    female = rng.random(n) < np.where(age0 >= 50, 0.56, 0.50)

    # --- education -------------------------------------------------------
    u = rng.random(n)
    p_high = np.where(female, 0.48, 0.28)
    p_low = np.where(female, 0.07, 0.13)
    adult_level = np.where(
        u < p_high,
        np.where(rng.random(n) < 0.55, 6, np.where(rng.random(n) < 0.85, 7, 8)),
        np.where(u < p_high + p_low, 2, np.where(rng.random(n) < 0.8, 3, 4)),
    )
    adult_level = np.where((adult_level >= 6) & (rng.random(n) < 0.12), 5, adult_level)
    # persons still in education at the start reach their adult level during the window
    isced0 = adult_level.copy()
    isced_t1 = np.full(n, -1, dtype=np.int64)
    isced1 = adult_level.copy()
    isced_t2 = np.full(n, -1, dtype=np.int64)
    isced2 = adult_level.copy()
    by = birth.astype("datetime64[Y]").astype(np.int64) + 1970
    month0 = month64(start)

    def june_of(year: np.ndarray) -> np.ndarray:
        return ((year - 1970) * 12 + 5 - month0.astype(np.int64)).astype(np.int64)

    t_sec = june_of(by + 19)  # secondary completed in June of the year turning 19
    t_ter = june_of(by + 23)  # first tertiary degree at 23
    young_sec = t_sec >= 0
    isced0 = np.where(young_sec, np.minimum(adult_level, 2), isced0)
    isced_t1 = np.where(young_sec & (adult_level >= 3), t_sec, isced_t1)
    isced1 = np.where(young_sec, np.minimum(adult_level, 3), isced1)
    young_ter = (t_ter >= 0) & (adult_level >= 5)
    isced0 = np.where(young_ter & ~young_sec, 3, isced0)
    isced_t2 = np.where(young_ter, t_ter, -1)
    isced2 = adult_level
    # adults who complete a degree while working (a small, real flow)
    late = (~young_sec) & (~young_ter) & (adult_level < 6) & (age0 < 45) & (rng.random(n) < 0.04)
    isced_t2 = np.where(late, rng.integers(0, n_months, n), isced_t2)
    isced2 = np.where(late, np.maximum(adult_level, 6), isced2)
    final_level = np.where(isced_t2 >= 0, isced2, isced1)
    # an upgrade at or beyond the window end never happens inside the data
    isced_t1 = np.where(isced_t1 >= n_months, -1, isced_t1)
    isced_t2 = np.where(isced_t2 >= n_months, -1, isced_t2)
    field = _draw_field(edu_group(final_level), female, rng)

    # --- latent motivation and permanent wage effect ---------------------
    g = edu_group(final_level)
    motivation = rng.standard_normal(n) + np.select([g == 2, g == 0], [0.35, -0.25], 0.0)
    edu_premium = np.select([final_level >= 7, g == 2, g == 0], [0.32, 0.22, -0.14], 0.0)
    person_effect = (
        rng.normal(0.0, P.PERSON_EFFECT_SD, n) + edu_premium - 0.12 * female
        + 0.03 * confounding * motivation
    )

    # --- residence ----------------------------------------------------------
    mun = reference.municipalities()
    pop = mun["population"].to_numpy().astype(float)
    region = mun["region_code"].to_numpy()
    capital = np.isin(region, ["LV006", "LV007"])
    mun0 = np.empty(n, dtype=np.int64)
    for gi, boost in ((0, 0.8), (1, 1.0), (2, 1.6)):
        w = pop * np.where(capital, boost, 1.0)
        cum = np.cumsum(w / w.sum())
        m = g == gi
        mun0[m] = np.minimum(np.searchsorted(cum, rng.random(m.sum()), side="right"), pop.size - 1)
    years = n_months / 12
    mover = rng.random(n) < 1 - (1 - P.RESIDENCE_MOVE) ** years
    move_t = np.where(mover, rng.integers(1, n_months, n), -1)
    w_dest = pop * np.where(capital, 1.5, 1.0)
    mun1 = np.minimum(
        np.searchsorted(np.cumsum(w_dest / w_dest.sum()), rng.random(n), side="right"),
        pop.size - 1,
    )
    mun1 = np.where(mover & (mun1 == mun0), (mun1 + 1) % pop.size, mun1)
    mun1 = np.where(mover, mun1, mun0)

    # --- death and emigration (monthly hazards, vectorised over persons) -
    never = np.iinfo(np.int64).max // 4
    death_t = np.full(n, never, dtype=np.int64)
    emig_t = np.full(n, never, dtype=np.int64)
    for t in range(n_months):
        age = age0 + t / 12
        q_d = np.exp(P.MORTALITY_A + P.MORTALITY_B * age) * np.where(female, 1.0, P.MALE_MORTALITY)
        q_e = np.where((age >= 18) & (age < 35), P.EMIGRATION_YOUNG, P.EMIGRATION_OTHER)
        alive = (death_t == never) & (emig_t == never)
        ud = rng.random(n)
        died = alive & (ud < q_d / 12)
        death_t[died] = t
        emigrated = alive & ~died & (ud > 1 - q_e / 12)
        emig_t[emigrated] = t

    # --- children -----------------------------------------------------------
    age_mid = age0 + n_months / 24
    fertile = np.clip((np.minimum(age0 + n_months / 12, 42) - np.maximum(age0, 21)), 0, None)
    rate = np.where(female, 0.075, 0.06)
    k_new = rng.poisson(rate * fertile)
    k_old = rng.poisson(np.clip(age0 - 21, 0, 18) * np.where(female, 0.075, 0.06) * 0.9)
    k_old = np.minimum(k_old, 4)
    k_new = np.minimum(k_new, 3)
    parent_old = np.repeat(np.arange(n), k_old)
    span_old = np.clip(age0[parent_old] - 21, 0.5, 25)
    born_old = start64 - (rng.uniform(0, 1, parent_old.size) * span_old * 365.25).astype(np.int64)
    parent_new = np.repeat(np.arange(n), k_new)
    lo = np.maximum(21 - age0[parent_new], 0) * 365.25
    hi = np.maximum(np.minimum(42 - age0[parent_new], n_months / 12) * 365.25, lo + 1)
    born_new = start64 + rng.uniform(lo, hi).astype(np.int64)
    # a child born after the parent died or emigrated is not registered
    pday_death = (month64(start) + np.minimum(death_t, emig_t)[parent_new].clip(max=10_000)).astype(
        "datetime64[D]"
    )
    keep_new = born_new < pday_death
    children = pl.DataFrame(
        {
            "person": np.concatenate([parent_old, parent_new[keep_new]]).astype(np.int32),
            "child_birth_date": np.concatenate([born_old, born_new[keep_new]]),
        }
    ).sort("person", "child_birth_date")
    del age_mid

    # --- education register rows ------------------------------------------
    def award_date(level: np.ndarray) -> np.ndarray:
        typical = np.select([level >= 7, level >= 5, level >= 3], [25, 23, 19], 16)
        return (birth + (typical * 365.25).astype(np.int64)).astype("datetime64[D]")

    first_is_initial = isced0
    rows_person = [np.arange(n)]
    rows_level = [first_is_initial]
    rows_date = [np.minimum(award_date(first_is_initial), start64 - 1)]
    for t_up, lvl in ((isced_t1, isced1), (isced_t2, isced2)):
        m = t_up >= 0
        rows_person.append(np.nonzero(m)[0])
        rows_level.append(lvl[m])
        day = (month64(start) + t_up[m]).astype("datetime64[D]") + rng.integers(0, 28, m.sum())
        rows_date.append(day)
    ed_person = np.concatenate(rows_person)
    ed_level = np.concatenate(rows_level)
    ed_field = np.where(ed_level >= 5, field[ed_person], np.where(ed_level >= 3, field[ed_person],
                                                                 "00"))
    ed_field = np.where((ed_level < 3), "00", ed_field)
    education_records = pl.DataFrame(
        {
            "person": ed_person.astype(np.int32),
            "isced_level": ed_level.astype(np.int8),
            "isced_field": ed_field.astype(str),
            "award_date": np.concatenate(rows_date),
        }
    ).sort("person", "award_date")
    # persons below ISCED 1 at start have nothing to report; keep everybody with >= 1
    education_records = education_records.filter(pl.col("isced_level") >= 1)

    # --- prior adult learning 2017-2023 ------------------------------------
    lin = -3.4 + 0.9 * motivation + 0.8 * (g == 2) + 0.3 * ((age0 >= 25) & (age0 < 55))
    prior = (rng.random(n) < 1 / (1 + np.exp(-lin))) & (age0 >= 20)
    pp = np.nonzero(prior)[0]
    p_start = np.datetime64("2017-03-01") + rng.integers(0, 6 * 365, pp.size)
    p_end = p_start + rng.integers(20, 180, pp.size)
    prior_records = pl.DataFrame(
        {
            "person": pp.astype(np.int32),
            "project_code": np.where(rng.random(pp.size) < 0.85, "8.4.1", "8.5.1"),
            "start_date": p_start,
            "end_date": p_end,
            "completed": rng.random(pp.size) < 0.9,
        }
    )

    # --- personal codes -----------------------------------------------------
    new_fmt = rng.random(n) < P.MESSINESS.new_format_codes
    code = np.empty(n, dtype=object)
    code[~new_fmt] = personal_code.generate_legacy(birth[~new_fmt], rng)
    code[new_fmt] = personal_code.generate_new(int(new_fmt.sum()), rng, exclude=code[~new_fmt])

    return Population(
        n=n,
        code=code,
        birth=birth,
        female=female,
        motivation=motivation,
        person_effect=person_effect,
        isced0=isced0.astype(np.int8),
        isced_t1=isced_t1,
        isced1=isced1.astype(np.int8),
        isced_t2=isced_t2,
        isced2=isced2.astype(np.int8),
        field=field,
        mun0=mun0,
        move_t=move_t,
        mun1=mun1,
        death_t=death_t,
        emig_t=emig_t,
        prior_learning=prior,
        education_records=education_records,
        children=children,
        prior_records=prior_records,
    )
