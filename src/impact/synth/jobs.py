"""Employers and the vectorised samplers that place people into jobs.

A hire is drawn in three steps, each a single vectorised inverse-CDF lookup:
occupation given education (level and field) and a mode (any occupation, a
strictly higher skill level, or an ICT occupation); NACE section given the
occupation; employer given section and region (80 % local, 20 % anywhere in
Latvia), with probability proportional to a Pareto firm-size weight.

Assumptions
-----------
* Occupation choice weights = reference employment weight x education fit
  (qualified: 1, over-qualified by 3+ levels: 0.35, under-qualified by 1-2
  levels: 0.05) x field affinity (e.g. ICT graduates x6 on ICT occupations).
* One employer per 12 persons, at least one in every (section, region) cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from impact import reference
from impact.synth import params as P

N_LEVELS = 9  # ISCED 0..8
FIELDS = ["00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]
MODES = ("any", "ict")
_SIZE_CLASSES = np.array(["MICRO", "SMALL", "MEDIUM", "LARGE"])

#: Field affinity: ISCED-F field -> (ISCO code prefixes, multiplier).
_AFFINITY: dict[str, tuple[tuple[str, ...], float]] = {
    "01": (("23",), 8.0),
    "02": (("26", "34"), 3.0),
    "03": (("24", "26", "33"), 2.0),
    "04": (("12", "24", "33", "41", "43"), 2.5),
    "05": (("21", "31"), 3.0),
    "06": (("25", "35", "133"), 6.0),
    "07": (("21", "31", "7", "8"), 2.0),
    "08": (("6", "92"), 4.0),
    "09": (("22", "32", "53"), 6.0),
    "10": (("5", "9"), 1.5),
}


@dataclass
class Occupations:
    """Occupation table and the cumulative choice matrix."""

    code: np.ndarray  # ISCO-08 4-digit str
    skill: np.ndarray  # skill level 1-4
    is_ict: np.ndarray
    log_rel_wage: np.ndarray
    cum: np.ndarray  # (n_keys, n_occ) cumulative choice probabilities
    valid: np.ndarray  # (n_keys,) whether the key has any admissible occupation
    section_cum: np.ndarray  # (n_occ, n_sections) cumulative section choice

    @staticmethod
    def key(level: np.ndarray, field_idx: np.ndarray, mode: np.ndarray, min_skill: np.ndarray
            ) -> np.ndarray:
        """Row of the choice matrix for (education level, field, mode, minimum skill)."""
        return ((level * len(FIELDS) + field_idx) * len(MODES) + mode) * 5 + min_skill

    def draw(self, level: np.ndarray, field_idx: np.ndarray, mode: np.ndarray,
             min_skill: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Occupation index for each draw, -1 where no occupation is admissible."""
        k = self.key(level, field_idx, mode, min_skill)
        idx = (self.cum[k] <= u[:, None]).sum(axis=1)
        idx = np.minimum(idx, self.code.size - 1)
        return np.where(self.valid[k], idx, -1)

    def draw_section(self, occ: np.ndarray, u: np.ndarray) -> np.ndarray:
        """NACE section index (into ``SECTIONS``) for each occupation."""
        idx = (self.section_cum[occ] <= u[:, None]).sum(axis=1)
        return np.minimum(idx, self.section_cum.shape[1] - 1)


def build_occupations(sections: pl.DataFrame) -> Occupations:
    """Build the occupation sampler from the reference tables."""
    occ = reference.isco_occupations()
    code = occ["isco_code"].to_numpy().astype(str)
    skill = occ["skill_level"].to_numpy().astype(np.int64)
    min_isced = occ["min_isced"].to_numpy().astype(np.int64)
    weight = occ["weight"].to_numpy().astype(float)
    is_ict = occ["is_ict"].to_numpy().astype(bool)
    n_occ = code.size
    n_keys = N_LEVELS * len(FIELDS) * len(MODES) * 5
    mat = np.zeros((n_keys, n_occ))
    for level in range(N_LEVELS):
        gap = level - min_isced
        fit = np.where(gap >= 3, 0.35, np.where(gap >= 0, 1.0, np.where(gap >= -2, 0.05, 0.0)))
        for fi, f in enumerate(FIELDS):
            aff = np.ones(n_occ)
            if f in _AFFINITY:
                prefixes, mult = _AFFINITY[f]
                hit = np.array([c.startswith(prefixes) for c in code])
                aff = np.where(hit, mult, 1.0)
            for mi, mode in enumerate(MODES):
                mode_w = is_ict.astype(float) if mode == "ict" else np.ones(n_occ)
                for ms in range(5):
                    w = weight * fit * aff * mode_w * (skill >= ms)
                    mat[Occupations.key(level, fi, mi, ms)] = w
    tot = mat.sum(axis=1)
    valid = tot > 0
    cum = np.cumsum(mat, axis=1) / np.where(valid, tot, 1.0)[:, None]
    cum[~valid] = 1.0
    # section choice given occupation: the occupation's usual sections, weighted
    sec_letters = sections["section"].to_list()
    share = sections["employment_share"].to_numpy().astype(float)
    smat = np.zeros((n_occ, len(sec_letters)))
    for i, s in enumerate(occ["sections"].to_list()):
        allowed = {x.strip() for x in str(s).split(";") if x.strip()}
        row = np.array([share[j] if sec_letters[j] in allowed else 0.0
                        for j in range(len(sec_letters))])
        if row.sum() == 0:
            row = share.copy()
        smat[i] = row / row.sum()
    return Occupations(
        code=code,
        skill=skill,
        is_ict=is_ict,
        log_rel_wage=np.log(occ["rel_wage"].to_numpy().astype(float)),
        cum=cum,
        valid=valid,
        section_cum=np.cumsum(smat, axis=1),
    )


@dataclass
class Employers:
    """The employer register and the employer sampler."""

    employer_id: np.ndarray  # str, 11-digit registration number
    section: np.ndarray  # index into sections
    nace_code: np.ndarray  # str "NN.NN"
    public: np.ndarray  # bool
    municipality: np.ndarray  # index into municipalities
    region: np.ndarray  # index into regions
    wage_effect: np.ndarray  # float, log points
    log_rel_wage_section: np.ndarray  # per section
    hours_reported: np.ndarray  # bool: employer reports hours
    registered_on: np.ndarray  # datetime64[D]
    cell_order: np.ndarray  # firm indices sorted by (section, region)
    cell_cum: np.ndarray  # cumulative weights in cell_order (global running sum)
    cell_lo: np.ndarray  # (n_sections, n_regions) running sum before the cell
    cell_hi: np.ndarray  # running sum at the end of the cell
    sec_order: np.ndarray
    sec_cum: np.ndarray
    sec_lo: np.ndarray
    sec_hi: np.ndarray

    def draw(self, section: np.ndarray, region: np.ndarray, u_local: np.ndarray,
             u: np.ndarray) -> np.ndarray:
        """Employer index for hires into ``section`` living in ``region``."""
        local = u_local < 0.8
        lo = np.where(local, self.cell_lo[section, region], self.sec_lo[section])
        hi = np.where(local, self.cell_hi[section, region], self.sec_hi[section])
        target = lo + u * (hi - lo)
        out = np.empty(section.size, dtype=np.int64)
        i_loc = np.searchsorted(self.cell_cum, target[local], side="right")
        out[local] = self.cell_order[np.minimum(i_loc, self.cell_order.size - 1)]
        i_nat = np.searchsorted(self.sec_cum, target[~local], side="right")
        out[~local] = self.sec_order[np.minimum(i_nat, self.sec_order.size - 1)]
        return out

    def size_class(self, max_headcount: np.ndarray) -> np.ndarray:
        """Size class from the largest monthly headcount seen in the data."""
        return _SIZE_CLASSES[np.searchsorted([10, 50, 250], max_headcount, side="right")]


def _running(order_key: np.ndarray, weight: np.ndarray, n_cells: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(order_key, kind="stable")
    cum = np.cumsum(weight[order])
    counts = np.bincount(order_key, minlength=n_cells)
    ends = np.cumsum(counts)
    hi = np.where(ends > 0, cum[np.maximum(ends - 1, 0)], 0.0)
    lo = np.concatenate([[0.0], hi[:-1]])
    # cells without firms keep lo == hi; callers never draw from them
    return order, cum, lo, hi


def build_employers(n_persons: int, sections: pl.DataFrame, municipalities: pl.DataFrame,
                    rng: np.random.Generator) -> Employers:
    """Draw the employer register.

    Every (section, region) cell gets at least one employer so that a hire can
    always be placed locally; the remaining employers follow section
    employment shares and municipal population.
    """
    sec_letters = sections["section"].to_list()
    n_sec = len(sec_letters)
    regions = sorted(set(municipalities["region_code"].to_list()))
    reg_of_mun = np.array([regions.index(r) for r in municipalities["region_code"].to_list()])
    n_reg = len(regions)
    pop = municipalities["population"].to_numpy().astype(float)
    n_firms = max(n_persons // 12, n_sec * n_reg * 2)
    share = sections["employment_share"].to_numpy().astype(float)
    base_sec = np.repeat(np.arange(n_sec), n_reg)
    base_reg = np.tile(np.arange(n_reg), n_sec)
    extra = n_firms - base_sec.size
    section = np.concatenate([base_sec, rng.choice(n_sec, size=extra, p=share / share.sum())])
    mun = np.empty(n_firms, dtype=np.int64)
    # municipality within the region for the seeded cells, by population otherwise
    for r in range(n_reg):
        in_r = np.nonzero(reg_of_mun == r)[0]
        pr = pop[in_r] / pop[in_r].sum()
        m = np.nonzero(base_reg == r)[0]
        mun[m] = in_r[rng.choice(in_r.size, size=m.size, p=pr)]
    mun[base_sec.size:] = rng.choice(pop.size, size=extra, p=pop / pop.sum())
    region = reg_of_mun[mun]
    weight = np.minimum(rng.pareto(1.15, n_firms) + 1.0, 4000.0)
    public_share = sections["public_share"].to_numpy().astype(float)
    public = rng.random(n_firms) < public_share[section]
    # public bodies are large: give them more weight
    weight = np.where(public, weight * 4.0, weight)
    # NACE class within the section
    classes = reference.nace_classes()
    nace_code = np.empty(n_firms, dtype=object)
    u = rng.random(n_firms)
    for s, letter in enumerate(sec_letters):
        c = classes.filter(pl.col("section") == letter)
        m = section == s
        if c.height == 0:
            nace_code[m] = f"{letter}"
            continue
        w = c["weight"].to_numpy().astype(float)
        cum = np.cumsum(w / w.sum())
        nace_code[m] = np.asarray(c["nace_code"].to_list(), dtype=object)[
            np.minimum(np.searchsorted(cum, u[m], side="right"), c.height - 1)
        ]
    serial = rng.permutation(np.arange(1_000_000, 1_000_000 + n_firms * 7))[:n_firms]
    prefix = np.where(public, "9000", np.where(rng.random(n_firms) < 0.8, "4000", "4010"))
    employer_id = np.char.add(prefix.astype(str), serial.astype(str)).astype(object)
    registered_on = np.datetime64("1991-06-01") + rng.integers(0, 30 * 365, n_firms)
    cell_key = section * n_reg + region
    c_order, c_cum, c_lo, c_hi = _running(cell_key, weight, n_sec * n_reg)
    s_order, s_cum, s_lo, s_hi = _running(section, weight, n_sec)
    return Employers(
        employer_id=employer_id,
        section=section,
        nace_code=nace_code,
        public=public,
        municipality=mun,
        region=region,
        wage_effect=rng.normal(0.0, P.FIRM_EFFECT_SD, n_firms) + np.where(public, -0.03, 0.0),
        log_rel_wage_section=np.log(sections["rel_wage"].to_numpy().astype(float)),
        hours_reported=rng.random(n_firms) >= P.MESSINESS.hours_missing_employer,
        registered_on=registered_on,
        cell_order=c_order,
        cell_cum=c_cum,
        cell_lo=c_lo.reshape(n_sec, n_reg),
        cell_hi=c_hi.reshape(n_sec, n_reg),
        sec_order=s_order,
        sec_cum=s_cum,
        sec_lo=s_lo,
        sec_hi=s_hi,
    )
