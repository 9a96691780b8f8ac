"""Compute every indicator: the implementation behind :mod:`impact.indicators`."""


from __future__ import annotations

import calendar
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from impact.indicators.breakdowns import DIMENSIONS, breakdown_keys
from impact.indicators.curves import career_step_km, income_curves
from impact.indicators.estimate import estimate_cells, ratio_rows
from impact.indicators.rules import Context, Spec, Values, compute_values
from impact.indicators.sample import MatchedSample, build_sample
from impact.indicators.settings import IndicatorSettings
from impact.indicators.subpanel import SubPanel, month_index

__all__ = ["DIMENSIONS", "IndicatorResult", "IndicatorSettings", "compute_indicators",
           "load_context", "prepare", "read_pairs"]


@dataclass(frozen=True)
class IndicatorResult:
    """Outputs of :func:`compute_indicators` (see the module docstring)."""

    table: pl.DataFrame
    income_curves: pl.DataFrame
    career_step_km: pl.DataFrame
    specs: dict[str, Spec]
    n_treated: int
    n_pairs: int


def _read(sources: Path, name: str) -> pl.DataFrame:
    path = sources / name
    return pl.read_parquet(path / "**" / "*.parquet" if path.is_dir() else path)


def sector_wage_table(panel_dir: Path, sub: SubPanel) -> np.ndarray:
    """Mean real daily wage of everyone working in each NACE section and month (from the
    whole panel), ``[section level of sub, month]``; NaN where nobody worked.

    Read a year at a time (a month's persons are all in its year's folder), so memory is one
    year of three columns rather than the whole panel's.
    """
    parts = []
    for year in sorted(Path(panel_dir).glob("year=*")):
        files = sorted(year.glob("*.parquet"))
        if files:
            parts.append(
                pl.scan_parquet(files, hive_partitioning=False)
                .filter(pl.col("daily_wage_real").is_not_null()
                        & pl.col("nace_section").is_not_null())
                .group_by("nace_section", "month")
                .agg(pl.col("daily_wage_real").mean().alias("w"))
                .collect())
    agg = (pl.concat(parts) if parts else
           pl.DataFrame(schema={"nace_section": pl.String, "month": pl.Date, "w": pl.Float64}))
    lv = sub.levels["nace_section"]
    out = np.full((len(lv), sub.n_months), np.nan)
    agg = agg.filter(pl.col("nace_section").is_in(lv))
    r = np.searchsorted(lv, agg["nace_section"].to_numpy())
    c = month_index(agg["month"], sub.months[0])
    out[r, c] = agg["w"].to_numpy()
    return out


def load_context(panel_dir: Path, sources: Path, sub: SubPanel, sample: MatchedSample,
                 settings: IndicatorSettings) -> Context:
    """Occupation and sector ranks, sector wages and field mappings for the rules."""
    occ_lv = sub.levels["occupation_code"]
    if settings.eecr06.occupation_rank is None:
        isco = _read(sources, "ref_isco")
        rank_of = dict(zip(isco["isco_code"].cast(str), isco["skill_level"].cast(float),
                           strict=True))
        occ_rank = np.array([rank_of.get(o, np.nan) for o in occ_lv], dtype=float)
    else:
        r = settings.eecr06.occupation_rank
        occ_rank = np.array([r.get(o[:1], np.nan) for o in occ_lv], dtype=float)
    sec_lv = sub.levels["nace_section"]
    if settings.sector_rank is None:
        ref = _read(sources, "ref_nace_sections")
        rank_of = dict(zip(ref["section"].cast(str), ref["rel_wage"].cast(float), strict=True))
    else:
        rank_of = dict(settings.sector_rank)
    sector_rank = np.array([rank_of.get(s, np.nan) for s in sec_lv], dtype=float)
    field_match = {f: np.array([o.startswith(tuple(prefixes)) for o in occ_lv], dtype=bool)
                   for f, prefixes in settings.field_occupations.items()}
    t = sample.treated
    pre = t.window_sum("earnings_real", t.entry - 12, 12) / 12
    scale = float(np.nanmean(pre)) if np.isfinite(pre).any() else float("nan")
    dim = np.array([calendar.monthrange(m.year, m.month)[1] for m in sub.months], float)
    return Context(settings=settings, occ_rank=occ_rank, sector_rank=sector_rank,
                   sector_wage=sector_wage_table(panel_dir, sub), field_match=field_match,
                   earnings_scale=scale if scale > 0 else 1.0, days_in_month=dim)


def _ratio_specs(settings: IndicatorSettings) -> list[tuple[Spec, str, str, float]]:
    """(spec, numerator indicator, cost column, scale) of the ratio indicators."""
    out = []
    for h in (12, 24):
        for cost, who_en, who_lv in (("public", "public training cost",
                                      "publiskajām mācību izmaksām"),
                                     ("total", "total training cost incl. co-payment",
                                      "kopējām mācību izmaksām ar līdzmaksājumu")):
            out.append((Spec(f"roi_{cost}_h{h}", "roi", "other", "EUR per EUR", "did", h,
                             f"ROI: extra real earnings in {h} months per EUR of {who_en}",
                             f"Atdeve: papildu reālie ienākumi {h} mēnešos uz 1 EUR no "
                             f"{who_lv}",
                             f"net effect on real earnings summed over L+1..L+{h} (DiD vs "
                             f"E-{h}..E-1) / mean {who_en} of the participants",
                             "participants with a leaving month whose months are observed"),
                        f"earnings_real_sum_h{h}", cost, 1.0))
    out.append((Spec("roi_public_annual", "roi", "other", "EUR per EUR per year", "did", 24,
                     "ROI per year: extra real earnings per year per EUR of public cost",
                     "Gada atdeve: papildu reālie ienākumi gadā uz 1 EUR publisko izmaksu",
                     "net effect on real earnings over L+1..L+24 divided by 2 (annualised) "
                     "/ mean public training cost", "participants with a leaving month "
                     "whose months are observed"), "earnings_real_sum_h24", "public", 0.5))
    for h in (12, 24):
        out.append((Spec(f"fiscal_return_h{h}", "roi", "other", "EUR per EUR", "did", h,
                         f"Fiscal return in {h} months per EUR of public cost",
                         f"Fiskālā atdeve {h} mēnešos uz 1 EUR publisko izmaksu",
                         f"net effect on taxes and contributions less benefits (indicator "
                         f"fiscal_balance_h{h}) / mean public training cost "
                         f"(rates: {settings.fiscal.model_dump()})",
                         "participants with a leaving month whose months are observed"),
                    f"fiscal_balance_h{h}", "public", 1.0))
    return out


def prepare(panel_dir: Path, pairs: pl.DataFrame, treatment: pl.DataFrame, sources: Path,
            settings: IndicatorSettings) -> tuple[MatchedSample, Context, list[Values]]:
    """Load the matched sample and every indicator's per-person values (the first half of
    :func:`compute_indicators`; for diagnostics and truth checks)."""
    pids = np.concatenate([pairs["treated_pid"].to_numpy(), pairs["twin_pid"].to_numpy()])
    sub = SubPanel.load(panel_dir, pids)
    sample = build_sample(sub, pairs, treatment)
    ctx = load_context(panel_dir, sources, sub, sample, settings)
    return sample, ctx, compute_values(sample, ctx)


def compute_indicators(panel_dir: Path, pairs: pl.DataFrame, treatment: pl.DataFrame,
                       sources: Path, settings: IndicatorSettings | None = None
                       ) -> IndicatorResult:
    """Every indicator for participants, twins and net, overall and by breakdown.

    Parameters
    ----------
    panel_dir
        The person-month panel (``data.panel``).
    pairs
        Twins of all cohorts (``data.twins/pairs``): ``cohort``, ``treated_pid``,
        ``treated_code``, ``twin_pid``, ``weight``.
    treatment
        ``research/treatment.parquet`` (entry and leaving months, programme, costs).
    sources
        Ingested sources (reference tables ``ref_isco`` and ``ref_nace_sections``).
    settings
        Indicator settings (defaults: :class:`IndicatorSettings`).
    """
    settings = settings or IndicatorSettings()
    sample, ctx, values = prepare(panel_dir, pairs, treatment, sources, settings)
    groups = breakdown_keys(sample)
    table, fits = estimate_cells(values, sample.pair_treated, sample.weight,
                                 sample.twin_pid, groups, alpha=settings.alpha)
    index = {v.spec.id: k for k, v in enumerate(values)}
    info = sample.info
    costs = {"public": info["public_cost_eur"].cast(float).to_numpy(),
             "total": (info["public_cost_eur"].cast(float)
                       + info["co_payment_eur"].cast(float).fill_null(0.0)).to_numpy()}
    specs = {v.spec.id: v.spec for v in values}
    ratios = []
    for spec, num, cost, scale in _ratio_specs(settings):
        ratios.append(ratio_rows(spec, fits, index[num], costs[cost], groups, scale=scale,
                                 alpha=settings.alpha))
        specs[spec.id] = spec
    table = pl.concat([table, *ratios], how="diagonal_relaxed")
    table = _adjust_pvalues(table)
    return IndicatorResult(
        table=table, income_curves=income_curves(sample, alpha=settings.alpha),
        career_step_km=career_step_km(sample, ctx), specs=specs,
        n_treated=sample.n_treated, n_pairs=int(sample.weight.size))


def _adjust_pvalues(table: pl.DataFrame) -> pl.DataFrame:
    """Holm and Benjamini-Hochberg p-values over the breakdown cells of each indicator
    (the ``all`` row is the headline and is not adjusted)."""
    from statsmodels.stats.multitest import multipletests

    holm = np.full(table.height, np.nan)
    bh = np.full(table.height, np.nan)
    p = table["p_value"].to_numpy().astype(float)
    ind = table["indicator"].to_numpy()
    sub = table["dimension"].to_numpy() != "all"
    for name in np.unique(ind):
        sel = np.flatnonzero((ind == name) & sub & np.isfinite(p))
        if sel.size:
            holm[sel] = multipletests(p[sel], method="holm")[1]
            bh[sel] = multipletests(p[sel], method="fdr_bh")[1]
    return table.with_columns(pl.Series("p_holm", holm).fill_nan(None),
                              pl.Series("p_bh", bh).fill_nan(None))


def read_pairs(twins_dir: Path) -> pl.DataFrame:
    """All cohorts' pairs written by :func:`impact.twins.riskset.write`."""
    files = sorted((Path(twins_dir) / "pairs").glob("cohort=*/*.parquet"))
    if not files:
        raise FileNotFoundError(f"no twins under {Path(twins_dir) / 'pairs'}")
    return pl.read_parquet(files, hive_partitioning=False)
