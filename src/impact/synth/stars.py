"""The STARS learning-account platform: catalogue, accounts, grants, applications.

Participation is decided month by month from the *observed* history, so the
selection the evaluation must undo is built in:

* account creation and course starts rise with latent motivation, tertiary
  education, ages 30-49, women, Riga, employment and prior adult learning;
* a recent job loss multiplies both hazards (an Ashenfelter dip);
* grants of EUR 500 are allocated at the three waves of the pilot and lapse
  after six months; CVET and professional-development programmes are fully
  funded without a grant.

Counts are scaled from the report to the simulated population (see
:mod:`impact.synth.params`); the intercepts are solved so that the expected
numbers of accounts and first-time grant recipients match those targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from impact.synth import params as P

_PROVIDERS = (
    ("University of Latvia", 6, "univ"), ("Turība Business University", 12, "univ"),
    ("Riga Technical University", 10, "univ"), ("Vidzeme University of Applied Sciences", 6,
                                                "univ"),
    ("MC Alfa", 14, "private"), ("European Distance Learning Secondary School", 8, "private"),
    ("PTC Mācību centrs plus", 13, "vet"), ("Riga State Technical School", 9, "vet"),
    ("PII Latvian-German VET centre", 7, "vet"), ("PTC Latgale training centre", 7, "vet"),
    ("Rēzekne Technical School", 6, "vet"), ("Jēkabpils Technology Technical School", 5, "vet"),
    ("Other providers", 36, "mixed"),
)
#: Programme types each kind of provider offers.
_PROVIDER_TYPES = {
    "univ": ("STUDY_COURSE", "STUDY_MODULE", "PROF_DEV"),
    "private": ("NON_FORMAL", "MODULE_SET", "PROF_DEV"),
    "vet": ("MODULE", "MODULE_SET", "CVET"),
    "mixed": ("STUDY_COURSE", "MODULE", "MODULE_SET", "NON_FORMAL", "CVET"),
}
#: Titles of the most popular programmes (report, top 10 by participations).
_TOP_TITLES = (
    "Advanced AI tools for daily work and business", "Etsy.com e-commerce basics",
    "Digital marketing skills with ChatGPT", "Using AI in everyday life",
    "AI in the humanities", "AI tools for work and productivity",
    "Digital marketing with AI tools", "Agile project and process management",
    "Cybersecurity basics", "Using ICT tools in a cloud-supported digital environment",
)
_TYPE_INDEX = {pt.code: i for i, pt in enumerate(P.PROGRAMME_TYPES)}


@dataclass
class Catalogue:
    """The programme catalogue and the per-education-group choice CDFs."""

    frame: pl.DataFrame
    type_idx: np.ndarray
    hours: np.ndarray
    cost: np.ndarray
    months: np.ndarray  # duration in months
    is_ict: np.ndarray
    cum_by_group: np.ndarray  # (3, n_prog) choice CDF among grant-funded programmes
    cum_funded: np.ndarray  # (n_prog,) CDF among fully funded programmes


def build_catalogue(rng: np.random.Generator) -> Catalogue:
    """Draw the 139-programme catalogue with the report's type counts.

    Popularity within a type is Zipf-like and 33 programmes, mostly at
    vocational schools, receive no participants (report, section 2.6).
    """
    types: list[str] = []
    providers: list[str] = []
    for name, n_prog, _kind in _PROVIDERS:
        providers += [name] * n_prog
        types += [None] * n_prog  # type: ignore[list-item]
    # assign types so that the report's counts per type hold exactly
    need = {pt.code: pt.programmes for pt in P.PROGRAMME_TYPES}
    kinds = [k for name, n_prog, k in _PROVIDERS for _ in range(n_prog)]
    order = np.argsort([{"univ": 0, "vet": 1, "private": 2, "mixed": 3}[k] for k in kinds],
                       kind="stable")
    for i in order:
        allowed = [t for t in _PROVIDER_TYPES[kinds[i]] if need[t] > 0]
        if not allowed:
            allowed = [t for t in need if need[t] > 0]
        t = allowed[int(rng.integers(len(allowed)))] if len(allowed) > 1 else allowed[0]
        # the big university study-course counts go first
        if kinds[i] == "univ" and need["STUDY_COURSE"] > 0 and rng.random() < 0.7:
            t = "STUDY_COURSE"
        types[i] = t
        need[t] -= 1
    tix = np.array([_TYPE_INDEX[t] for t in types])
    n = tix.size
    lo = np.array([P.PROGRAMME_TYPES[i].hours[0] for i in tix])
    hi = np.array([P.PROGRAMME_TYPES[i].hours[1] for i in tix])
    hours = np.round(lo + (hi - lo) * rng.beta(1.5, 2.5, n)).astype(np.int64)
    c_lo = np.array([P.PROGRAMME_TYPES[i].cost[0] for i in tix])
    c_mean = np.array([P.PROGRAMME_TYPES[i].cost[1] for i in tix])
    c_hi = np.array([P.PROGRAMME_TYPES[i].cost[2] for i in tix])
    spread = np.minimum(c_mean - c_lo, c_hi - c_mean)
    cost = np.round(np.clip(c_mean + spread * rng.uniform(-1, 1, n), c_lo, c_hi), 2)
    months = np.clip(np.round(hours / 40), 1, 12).astype(np.int64)
    months = np.where(tix == _TYPE_INDEX["CVET"], 11, months)
    is_ict = np.ones(n, dtype=bool)
    is_ict[rng.choice(n, size=19, replace=False)] = False  # report: 120 ICT, 19 business
    # popularity: participants per type spread Zipf-like over that type's programmes
    pop_w = np.zeros(n)
    vet = np.array([k == "vet" for k in kinds])
    zero = np.zeros(n, dtype=bool)
    zero_candidates = np.nonzero(vet | (tix == _TYPE_INDEX["MODULE"]))[0]
    zero[rng.choice(zero_candidates, size=min(33, zero_candidates.size), replace=False)] = True
    for i, pt in enumerate(P.PROGRAMME_TYPES):
        m = np.nonzero((tix == i) & ~zero)[0]
        if m.size == 0:
            m = np.nonzero(tix == i)[0]
        ranks = rng.permutation(m.size) + 1
        w = 1.0 / ranks**1.1
        pop_w[m] = pt.participants * w / w.sum()
    titles = np.array([f"{P.PROGRAMME_TYPES[i].label} {k:03d}" for k, i in enumerate(tix)],
                      dtype=object)
    top = np.argsort(-pop_w)[: len(_TOP_TITLES)]
    titles[top] = _TOP_TITLES
    fields_ = np.where(is_ict, "ICT", "BUSINESS_FINANCE_ADMIN")
    frame = pl.DataFrame({
        "programme_id": [f"P{k + 1:04d}" for k in range(n)],
        "title": titles.astype(str),
        "programme_type": [P.PROGRAMME_TYPES[i].code for i in tix],
        "field": fields_,
        "digcomp_level": rng.integers(4, 7, n),
        "hours": hours,
        "cost_eur": cost,
        "provider": providers,
        "call": rng.integers(1, 5, n),
        "delivery_mode": rng.choice(["in_person", "remote", "hybrid"], size=n, p=[0.3, 0.45, 0.25]),
    })
    funded = np.array([P.PROGRAMME_TYPES[i].fully_funded for i in tix])
    cum = np.zeros((3, n))
    study = np.isin(tix, [_TYPE_INDEX["STUDY_COURSE"], _TYPE_INDEX["STUDY_MODULE"]])
    for g, (m_study, m_vet) in enumerate(((0.35, 2.5), (0.6, 1.8), (1.0, 1.0))):
        w = pop_w * np.where(study, m_study, 1.0) * np.where(vet, m_vet, 1.0) * ~funded
        cum[g] = np.cumsum(w) / w.sum()
    wf = pop_w * funded
    return Catalogue(frame=frame, type_idx=tix, hours=hours, cost=cost, months=months,
                     is_ict=is_ict, cum_by_group=cum, cum_funded=np.cumsum(wf) / wf.sum())


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def solve_intercept(index: np.ndarray, target: float, exposure: float = 1.0) -> float:
    """Intercept ``a`` with ``sum(1 - exp(-exposure * exp(a + index))) = target`` (bisection)."""
    lo, hi = -40.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        got = np.sum(-np.expm1(-exposure * np.exp(mid + index)))
        lo, hi = (mid, hi) if got < target else (lo, mid)
    return (lo + hi) / 2


def solve_logit_intercept(index: np.ndarray, target: float) -> float:
    """Intercept ``a`` with ``sum(logistic(a + index)) = target`` (bisection)."""
    lo, hi = -40.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _logistic(mid + index).sum() < target else (lo, mid)
    return (lo + hi) / 2


@dataclass
class Treatment:
    """First started course of each participant (the treatment) and its effect parameters."""

    person: list[np.ndarray] = field(default_factory=list)
    start_t: list[np.ndarray] = field(default_factory=list)
    end_t: list[np.ndarray] = field(default_factory=list)
    prog: list[np.ndarray] = field(default_factory=list)
    completed: list[np.ndarray] = field(default_factory=list)
    delta: list[np.ndarray] = field(default_factory=list)
    gamma: list[np.ndarray] = field(default_factory=list)
    lock_in: list[np.ndarray] = field(default_factory=list)
    exit_mult: list[np.ndarray] = field(default_factory=list)
    ict: list[np.ndarray] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        """Concatenated arrays, one entry per participant in order of start."""
        return {k: (np.concatenate(v) if v else np.zeros(0)) for k, v in self.__dict__.items()}
