"""Calibration constants of the synthetic registers, with their sources.

Every number that shapes the simulated population is here, named and explained,
so a reviewer can see what the generator assumes. Figures quoted from the ILA
approach report are marked "report"; the rest are stylised values chosen to give
plausible Latvian labour-market dynamics (monthly flows consistent with an
employment rate near 70-75 % for ages 20-64 and registered unemployment near
5-7 %), marked "stylised".
"""

from __future__ import annotations

from dataclasses import dataclass

# --------------------------------------------------------------------------
# Labour-market flows (stylised, monthly probabilities before covariate shifts)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Flows:
    """Monthly transition probabilities between employment states.

    States: E employed, U registered unemployed (NVA), I not employed and not
    registered (inactive, students, carers, unregistered job seekers).
    """

    e_to_u: float = 0.0055
    e_to_i: float = 0.0045
    u_to_e: float = 0.085
    u_to_i: float = 0.020
    i_to_e: float = 0.020
    i_to_u: float = 0.005
    job_to_job: float = 0.012
    promotion: float = 0.0025
    fixed_to_permanent: float = 0.04
    second_job_start: float = 0.004
    second_job_end: float = 0.08
    sickness: float = 0.022


FLOWS = Flows()

#: Log-odds-like multipliers of flows by covariate (stylised).
LOW_EDUCATION_JOB_LOSS = 1.9
HIGH_EDUCATION_JOB_LOSS = 0.7
REGION_JOB_LOSS = {"LV005": 1.4, "LV006": 0.85, "LV007": 0.9}  # Latgale high, Riga low
REGION_JOB_FINDING = {"LV005": 0.65, "LV006": 1.25, "LV007": 1.15}
MOTIVATION_FLOW_ELASTICITY = 0.05  # exp(+-0.05 * motivation) on finding / losing jobs

#: Sector shocks: (NACE section, first month, last month, job-loss multiplier, log-wage shift).
#: Hospitality collapsed with the 2020 lockdowns; construction slowed in 2023.
SECTOR_SHOCKS: tuple[tuple[str, str, str, float, float], ...] = (
    ("I", "2020-04", "2020-06", 6.0, -0.25),
    ("I", "2020-07", "2020-10", 1.5, -0.08),
    ("I", "2020-11", "2021-05", 3.5, -0.20),
    ("R", "2020-04", "2021-05", 2.0, -0.10),
    ("F", "2023-03", "2023-12", 1.8, -0.05),
)

# --------------------------------------------------------------------------
# Earnings (stylised; level anchored to CSP annual average gross wages)
# --------------------------------------------------------------------------

#: Weight of the occupation's relative wage (log) in the person's wage.
OCCUPATION_WAGE_WEIGHT = 0.75
#: Weight of the sector's relative wage (log).
SECTOR_WAGE_WEIGHT = 0.35
#: Standard deviation of the permanent person effect (log points).
PERSON_EFFECT_SD = 0.28
#: Standard deviation of the firm effect (log points).
FIRM_EFFECT_SD = 0.12
#: Persistent AR(1) wage component: autocorrelation and innovation SD per month.
AR_RHO = 0.95
AR_SD = 0.02
#: Transitory monthly noise SD (bonuses, overtime).
TRANSITORY_SD = 0.06
#: Experience profile: a * e + b * e^2 with e = years since age 20.
EXPERIENCE_LINEAR = 0.022
EXPERIENCE_QUADRATIC = -0.0005
#: Monthly log-wage drift per unit of latent motivation, centred on the middle
#: of the window. This is the selection channel that fools naive comparisons:
#: motivated people grow faster whether or not they train.
MOTIVATION_WAGE_DRIFT = 0.0004
#: Share of jobs (low-skill) reported at exactly the minimum wage.
MINIMUM_WAGE_REPORTING = 0.06
#: Calibration offset so that mean full-month earnings of employees are close
#: to the CSP average gross wage (measured on 200 k persons, seed 1).
LEVEL_OFFSET = -0.12

# --------------------------------------------------------------------------
# Demography (stylised)
# --------------------------------------------------------------------------

#: Annual mortality q(age) = exp(a + b * age), men x 1.8 (Gompertz; ~0.3 % at 40).
MORTALITY_A = -9.3
MORTALITY_B = 0.085
MALE_MORTALITY = 1.8
#: Annual emigration probability by age band.
EMIGRATION_YOUNG = 0.009  # ages 18-34
EMIGRATION_OTHER = 0.0025
#: Annual probability of a change of declared municipality.
RESIDENCE_MOVE = 0.02
#: Age range simulated at the start month (persons younger than 16 enter the
#: labour market during the window).
MIN_AGE_AT_START = 8
MAX_AGE_AT_START = 70

# --------------------------------------------------------------------------
# STARS participation (report figures scaled by population; see domain.md)
# --------------------------------------------------------------------------

#: Report: 62,748 accounts, 14,110 trained persons, for a working-age
#: population of about 1.2 M.
LATVIA_WORKING_AGE = 1_200_000
ACCOUNTS_TOTAL = 62_748
TRAINED_TOTAL = 14_110
#: Report: EUR 500 grants allocated to 17,367 persons (10,818 once, 6,549 twice).
GRANT_PERSONS = 17_367
GRANT_TWICE_SHARE = 6_549 / 17_367
#: Report: 924 of 16,377 started applications were interrupted.
DROPOUT_SHARE = 924 / 16_377
#: Report: 16 of 20,251 applications rejected.
REJECTED_SHARE = 16 / 20_251
#: Report: co-payment in 11 % of used grants, mean EUR 92.23; payer person 85 %,
#: employer 7 %, other 8 %.
COPAY_SHARE = 0.11
COPAY_MEAN = 92.23

#: Participant profile targets (report, Ex post evaluation): about 80 % higher
#: education; dominant age 30-49; women over-represented (no share given; the
#: sister measure 2.3.1.3.i had 55 % women among completers, we assume 64 %).
PROFILE_TARGETS = {"higher_education": 0.80, "age_30_49": 0.58, "female": 0.64}

#: Account-creation propensity (log-linear index; intercept calibrated in code).
ACCOUNT_INDEX = {
    "motivation": 1.05,
    "edu_high": 1.6,
    "edu_medium": 0.55,
    "age_18_29": 0.15,
    "age_30_49": 0.6,
    "age_50_64": -0.2,
    "age_65_plus": -2.0,
    "female": 0.15,
    "riga": 0.45,
    "pieriga": 0.25,
    "employed": 0.3,
    "field_ict_business": 0.35,
    "prior_learning": 0.6,
}
#: Multiplier of the account and course-start hazard after a recent job loss
#: (registered unemployed, or left a job in the last 4 months): the
#: Ashenfelter-dip channel.
DIP_HAZARD = 3.0
#: Relative monthly intensity of account creation (campaign months higher;
#: report: campaigns 09.10-17.11.2025, 02.02-15.03.2026, 20.04-25.05.2026).
ACCOUNT_INTENSITY = {
    "2024-09": 0.15, "2024-10": 0.2, "2024-11": 0.25, "2024-12": 1.6,
    "2025-01": 1.0, "2025-02": 0.9, "2025-03": 0.8, "2025-04": 0.7, "2025-05": 0.7,
    "2025-06": 1.0, "2025-07": 0.5, "2025-08": 0.5, "2025-09": 0.7, "2025-10": 1.5,
    "2025-11": 1.4, "2025-12": 1.2, "2026-01": 0.9, "2026-02": 1.5, "2026-03": 1.5,
    "2026-04": 1.0, "2026-05": 1.2, "2026-06": 0.4,
}
#: Grant waves (report: 09.12.2024, 09.06.2025, 09.12.2025), grants last six months.
GRANT_WAVES = ("2024-12-09", "2025-06-09", "2025-12-09")
GRANT_AMOUNT = 500.0
GRANT_MONTHS = 6
#: Grant propensity among adult account holders at a wave (logistic).
GRANT_INDEX = {"intercept": -1.75, "motivation": 0.9, "edu_high": 0.3, "prior_learning": 0.4}
#: Probability that a previous grant user takes a further grant at the next wave.
GRANT_REPEAT = 0.34
#: Monthly probability of starting a course while holding an unused grant.
START_HAZARD = 0.13
START_MOTIVATION = 0.35
#: Monthly hazard of starting a fully funded CVET / professional development
#: programme without a grant (report: 457 of 16,377 starts).
FULLY_FUNDED_HAZARD = 0.0009


@dataclass(frozen=True)
class ProgrammeType:
    """A STARS programme type with the report's counts and ranges (Table 12, fn 47)."""

    code: str
    label: str
    programmes: int
    participants: int
    hours: tuple[int, int]
    cost: tuple[float, float, float]  # (low, mean, high) EUR
    wage_effect: float  # maximum log-wage gain after completion (generator truth)
    lock_in: float  # log-wage loss while in training
    fully_funded: bool = False


#: Report, Table 12 and footnote 47. Effects are generator assumptions following
#: the report's reading of OECD evidence: longer and specialised programmes
#: have larger effects; long programmes have a lock-in dip.
PROGRAMME_TYPES: tuple[ProgrammeType, ...] = (
    ProgrammeType("STUDY_COURSE", "Study course", 26, 12_613, (50, 160), (257.5, 395.19, 412.13),
                  0.030, 0.010),
    ProgrammeType("STUDY_MODULE", "Study module", 10, 1_870, (100, 240), (412.0, 555.21, 824.0),
                  0.050, 0.020),
    ProgrammeType("MODULE_SET", "Modular VET module set", 27, 795, (48, 404),
                  (138.84, 476.70, 1784.02), 0.050, 0.030),
    ProgrammeType("MODULE", "Modular VET module", 44, 37, (14, 130), (106.8, 338.46, 427.43),
                  0.020, 0.005),
    ProgrammeType("NON_FORMAL", "Non-formal programme", 13, 605, (20, 60), (249.0, 321.0, 399.0),
                  0.012, 0.0),
    ProgrammeType("PROF_DEV", "Professional development programme", 7, 181, (100, 160),
                  (200.0, 260.0, 320.0), 0.045, 0.020, fully_funded=True),
    ProgrammeType("CVET", "Continuing vocational education programme", 12, 276, (960, 960),
                  (2127.19, 2127.19, 2127.19), 0.100, 0.120, fully_funded=True),
)

#: Effect heterogeneity (generator truth): multipliers of the programme effect.
EFFECT_LOW_MEDIUM_EDUCATION = 1.6
EFFECT_AGE_50_PLUS = 0.5
EFFECT_DROPOUT = 0.25
EFFECT_NOISE_SD = 0.35  # lognormal individual heterogeneity
#: Months over which the post-training gain builds up: gain(k) = 1 - exp(-k / tau).
EFFECT_RAMP_MONTHS = 8.0
#: Employment effects at full ramp: job loss hazard x (1 - a), finding x (1 + b).
EFFECT_JOB_LOSS_REDUCTION = 0.15
EFFECT_JOB_FINDING_GAIN = 0.25
#: Extra monthly probability of an occupational upgrade after training, and of
#: a move into an ICT occupation when an ICT programme was taken.
EFFECT_UPGRADE = 0.002
EFFECT_ICT_MOVE = 0.0015
#: Job-loss multiplier while in a long (CVET) programme (people leave jobs to train).
LOCK_IN_JOB_EXIT = 3.0


@dataclass(frozen=True)
class Messiness:
    """Rates of register imperfections that are real data, not errors."""

    duplicate_report: float = 0.002
    corrected_report: float = 0.004
    missing_occupation: float = 0.05
    zero_income_report: float = 0.003
    overlapping_spell: float = 0.01
    hours_missing_employer: float = 0.35
    stars_emigrant_accounts: float = 0.01
    new_format_codes: float = 0.04


MESSINESS = Messiness()

#: EECR06 definition used by the ground truth (configurable in the indicator
#: layer): improvement six months after leaving versus the start month.
EECR06_PAY_THRESHOLD = 0.05  # real daily wage up by more than 5 %
EECR06_HORIZON = 6
HORIZONS = (6, 12, 24)
CPI_BASE_YEAR = 2024
