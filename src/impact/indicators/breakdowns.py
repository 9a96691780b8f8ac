"""Breakdown keys of the participants: who they were when they entered.

Every key is measured in the month before entry (``E-1``, the last month no training can
have affected) except the programme's own attributes and the cohort. A participant with an
unknown value is in the group ``"unknown"`` (kept, so that the groups of a dimension still
partition the participants and margins add up).
"""

from __future__ import annotations

import numpy as np

from impact.indicators.sample import MatchedSample

__all__ = ["DIMENSIONS", "breakdown_keys"]

#: Breakdown dimensions in publication order, with English and Latvian labels.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "all": ("All participants", "Visi dalībnieki"),
    "sex": ("Sex", "Dzimums"),
    "age_band": ("Age band", "Vecuma grupa"),
    "education": ("Education level (ISCED)", "Izglītības līmenis (ISCED)"),
    "region": ("Region", "Reģions"),
    "urbanisation": ("Urbanisation", "Urbanizācijas pakāpe"),
    "occupation_group": ("Occupation group at entry (ISCO-08 major group)",
                         "Profesiju grupa dalības sākumā (ISCO-08 pamatgrupa)"),
    "sector_at_entry": ("Economic activity at entry (NACE section)",
                        "Saimnieciskā darbība dalības sākumā (NACE sadaļa)"),
    "public_private": ("Public or private employer at entry",
                       "Publiskais vai privātais darba devējs dalības sākumā"),
    "programme_type": ("Programme type", "Programmas veids"),
    "field": ("Training field", "Mācību joma"),
    "hours_band": ("Programme length (academic hours)", "Programmas apjoms (akadēmiskās stundas)"),
    "cohort_quarter": ("Quarter of entry", "Dalības sākuma ceturksnis"),
    "status_at_entry": ("Labour-market status at entry", "Statuss darba tirgū dalības sākumā"),
}


def _label(codes: np.ndarray, levels: list[str]) -> np.ndarray:
    lv = np.array([*levels, "unknown"], dtype=object)
    return lv[np.where(codes >= 0, codes, len(levels))]


def breakdown_keys(sample: MatchedSample) -> dict[str, np.ndarray]:
    """Group of every participant in every dimension of :data:`DIMENSIONS`.

    Age bands 18-29, 30-39, 40-49, 50-64 (65+ if any); education ISCED 0-2 / 3-4 / 5-8;
    hours bands up to 59 / 60-99 / 100-159 / 160+ (the catalogue's length classes merged);
    labour-market status: employed, registered unemployed, or other (inactive).
    """
    t = sample.treated
    sub = t.sub
    before = t.entry - 1
    n = t.n
    out: dict[str, np.ndarray] = {"all": np.full(n, "all", dtype=object)}
    out["sex"] = _label(t.code("sex", t.entry), sub.levels["sex"])
    age = t.num("age", t.entry)
    out["age_band"] = np.select(
        [age < 18, age < 30, age < 40, age < 50, age < 65, age >= 65],
        ["<18", "18-29", "30-39", "40-49", "50-64", "65+"], "unknown").astype(object)
    isced = t.num("isced_level", before)
    out["education"] = np.select([isced <= 2, isced <= 4, isced <= 8],
                                 ["ISCED 0-2", "ISCED 3-4", "ISCED 5-8"], "unknown"
                                 ).astype(object)
    out["region"] = _label(t.code("region_code", t.entry), sub.levels["region_code"])
    urb = t.num("urbanisation", t.entry)
    out["urbanisation"] = np.select([urb == 1, urb == 2, urb == 3],
                                    ["1 cities", "2 towns and suburbs", "3 rural"],
                                    "unknown").astype(object)
    emp = t.num("employed", before) == 1
    occ = _label(t.code("occupation_code", before), sub.levels["occupation_code"])
    major = np.array([o[:1] if o != "unknown" else o for o in occ], dtype=object)
    out["occupation_group"] = np.where(emp, np.char.add("ISCO ", major.astype(str)).astype(
        object), "not employed")
    out["occupation_group"] = np.where(emp & (major == "unknown"), "unknown",
                                       out["occupation_group"])
    sec = _label(t.code("nace_section", before), sub.levels["nace_section"])
    out["sector_at_entry"] = np.where(emp, sec, "not employed")
    pp = _label(t.code("sector", before), sub.levels["sector"])
    out["public_private"] = np.where(emp, pp, "not employed")
    info = sample.info
    for col in ("programme_type", "field"):
        v = info[col].cast(str).fill_null("unknown").to_numpy() if col in info.columns \
            else np.full(n, "unknown")
        out[col] = v.astype(object)
    hours = info["hours"].cast(float).fill_null(np.nan).to_numpy() if "hours" in info.columns \
        else np.full(n, np.nan)
    out["hours_band"] = np.select(
        [hours < 60, hours < 100, hours < 160, hours >= 160],
        ["up to 59", "60-99", "100-159", "160+"], "unknown").astype(object)
    months = sub.months
    out["cohort_quarter"] = np.array(
        [f"{months[m].year}-Q{(months[m].month - 1) // 3 + 1}" if 0 <= m < len(months)
         else "unknown" for m in t.entry], dtype=object)
    reg = t.num("registered_unemployed", before) == 1
    seen = np.isfinite(t.num("employed", before))
    out["status_at_entry"] = np.where(
        ~seen, "unknown", np.where(emp, "employed", np.where(reg, "registered unemployed",
                                                             "other"))).astype(object)
    return out
