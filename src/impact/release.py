"""From effect estimates to a publication: indicators, disclosure control, release files.

Two stages, each called by one Dagster asset:

:func:`run_indicators`
    Every indicator for participants, twins and net, overall and by breakdown
    (:mod:`impact.indicators`), written to ``data.indicators`` **before** disclosure control:
    these tables carry small cells and the magnitude columns of the dominance rules, so they
    stay in the secure environment.
:func:`run_publication`
    Refuses to publish when the twins failed their balance gate (``publish.require_balance``),
    applies disclosure control (:mod:`impact.disclosure`) to the indicator table and to the
    income curves, thresholds the Kaplan-Meier curves by persons at risk, and writes the
    publication with :func:`impact.publish.publish` to ``data.publish/<run_id>/``
    (``latest`` moves only once it is complete).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from impact.atomic import write_json, write_parquet
from impact.config import EvaluationConfig

__all__ = ["PublicationBlocked", "ReleaseResult", "labels", "run_indicators",
           "run_publication"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Latvian labels of breakdown groups that are not codes (codes stay as they are).
_GROUP_LV = {
    "all": "visi", "M": "vīrieši", "F": "sievietes", "unknown": "nezināms",
    "not employed": "nav nodarbināts", "employed": "nodarbināts",
    "registered unemployed": "reģistrēts bezdarbnieks", "other": "cits (neaktīvs)",
    "1 cities": "1 pilsētas", "2 towns and suburbs": "2 mazpilsētas un piepilsētas",
    "3 rural": "3 lauku teritorijas", "PUBLIC": "publiskais", "PRIVATE": "privātais",
    "up to 59": "līdz 59", "ICT": "IKT", "BUSINESS_FINANCE_ADMIN": "bizness, finanses, "
    "administrēšana",
}
_GROUP_EN = {"M": "men", "F": "women", "PUBLIC": "public", "PRIVATE": "private",
             "BUSINESS_FINANCE_ADMIN": "business, finance, administration"}


class PublicationBlocked(RuntimeError):
    """A gate that must pass before publication failed (the message says which and why)."""


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`run_publication` wrote."""

    path: Path
    run_id: str
    cells: int
    suppressed: int
    recovered: int


def run_indicators(cfg: EvaluationConfig) -> dict[str, Any]:
    """Compute every indicator and write the unsuppressed tables to ``data.indicators``.

    Files: ``indicators.parquet`` (with the internal ``_`` magnitude columns),
    ``income_curves.parquet``, ``career_step_km.parquet``, ``definitions.json``.
    """
    from impact.indicators import compute_indicators, read_pairs

    pairs = read_pairs(cfg.data.twins)
    treatment = pl.read_parquet(cfg.data.research / "treatment.parquet")
    res = compute_indicators(cfg.data.panel, pairs, treatment, cfg.data.sources,
                             cfg.indicators)
    out = cfg.data.indicators
    write_parquet(res.table, out / "indicators.parquet")
    write_parquet(res.income_curves, out / "income_curves.parquet")
    write_parquet(res.career_step_km, out / "career_step_km.parquet")
    write_json({k: vars(s) for k, s in res.specs.items()}, out / "definitions.json")
    head = res.table.filter(pl.col("dimension") == "all")
    return {"cells": res.table.height, "indicators": len(res.specs),
            "n_treated": res.n_treated, "n_pairs": res.n_pairs,
            "headline": {r["indicator"]: r["net"] for r in head.iter_rows(named=True)}}


def labels(definitions: dict[str, dict[str, Any]], table: pl.DataFrame) -> Any:
    """Publication labels (English and Latvian) of indicators, dimensions and groups."""
    from impact.indicators.breakdowns import DIMENSIONS
    from impact.publish import Labels

    ind = {k: {"en": d["label_en"], "lv": d["label_lv"], "definition_en": d["definition_en"],
               "unit": d["unit"], "population": d["population"]}
           for k, d in definitions.items()}
    ind["income_curve"] = {"en": "Mean real monthly earnings by month from leaving",
                           "lv": "Vidējie reālie mēneša ienākumi pa mēnešiem pēc dalības "
                           "beigām", "unit": "EUR/month (real)",
                           "definition_en": "participants and weighted twins observed in "
                           "month L+e; net = level difference", "population": "participants"}
    dims = {k: {"en": en, "lv": lv} for k, (en, lv) in DIMENSIONS.items()}
    groups: dict[str, dict[str, dict[str, str]]] = {}
    for dim, grp in table.select("dimension", "group").unique().iter_rows():
        groups.setdefault(dim, {})[grp] = {"en": _GROUP_EN.get(grp, grp),
                                           "lv": _GROUP_LV.get(grp, grp)}
    return Labels.from_dict({"indicator": ind, "dimension": dims, "group": groups})


def _code_version() -> str:
    from impact import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=10, check=True
                             ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__


def _inputs(cfg: EvaluationConfig) -> list[Any]:
    """The delivery files (from each manifest, checksummed at ingest) and the manifests."""
    from impact.ingest import deliveries_in
    from impact.publish import InputFile

    files = []
    for d in deliveries_in(cfg.data.landing):
        files.append(InputFile.of(d / "manifest.json", cfg.data.landing))
        for f in json.loads((d / "manifest.json").read_text())["files"]:
            files.append(InputFile(f"{d.name}/{f['path']}", f["sha256"], int(f["bytes"])))
    return files


def _data_vintage(cfg: EvaluationConfig) -> str:
    files = sorted(cfg.data.panel.glob("year=*/*.parquet"))
    last = pl.scan_parquet(files, hive_partitioning=False).select(pl.col("month").max()
                                                                  ).collect().item()
    return last.strftime("%Y-%m")


def _curves_cells(curves: pl.DataFrame) -> pl.DataFrame:
    return curves.rename({"event_time": "horizon"}).with_columns(
        pl.lit("income_curve").alias("indicator"), pl.lit("all").alias("dimension"),
        pl.lit("all").alias("group"), pl.lit("mean").alias("kind"),
        pl.lit("EUR/month (real)").alias("unit"))


def _km_thresholded(km: pl.DataFrame, min_persons: int) -> pl.DataFrame:
    """Kaplan-Meier rows whose arm has fewer than ``min_persons`` at risk are suppressed."""
    small = pl.col("at_risk") < min_persons
    return km.with_columns(
        small.alias("suppressed"),
        pl.when(small).then(pl.lit("primary:threshold")).otherwise(None).alias(
            "suppression_reason"),
        *(pl.when(small).then(None).otherwise(pl.col(c)).alias(c)
          for c in ("survival", "ci_low", "ci_high", "at_risk")))


#: Columns that describe a cell rather than measure it (kept when the cell is suppressed;
#: the person counts are handled by disclosure control itself).
_DESCRIPTIVE = frozenset({"indicator", "family", "dimension", "group", "horizon", "kind",
                          "unit", "contrast", "n_participants", "n_twins"})


def _hide_all(cfg: EvaluationConfig, table: pl.DataFrame) -> Any:
    """The configured disclosure settings, hiding every measured column of a suppressed
    cell (effective sizes and adjusted p-values too, not only the default value columns)
    unless the config lists the columns itself."""
    if cfg.disclosure.value_columns is not None:
        return cfg.disclosure
    cols = tuple(c for c in table.columns if c not in _DESCRIPTIVE and not c.startswith("_"))
    return cfg.disclosure.model_copy(update={"value_columns": cols})


def balance_failures(cfg: EvaluationConfig) -> list[str]:
    """The twins' balance-gate failures recorded in ``twins/settings.json``."""
    meta = json.loads((cfg.data.twins / "settings.json").read_text())
    return list(meta.get("failures") or [])


def run_publication(cfg: EvaluationConfig) -> ReleaseResult:
    """Disclosure control and the release files of one evaluation run.

    Raises
    ------
    PublicationBlocked
        The twins failed their balance gate (and ``publish.require_balance``), or the
        disclosure audit could still recover a suppressed cell.
    """
    from impact.disclosure import apply_disclosure_control
    from impact.publish import RunMeta, publish, run_id

    if cfg.publish.require_balance:
        fails = balance_failures(cfg)
        if fails:
            raise PublicationBlocked(
                "the statistical twins failed their balance gate, so no indicator is "
                "published (publish.require_balance): " + " | ".join(fails)[:2000])
    src = cfg.data.indicators
    table = pl.read_parquet(src / "indicators.parquet")
    definitions = json.loads((src / "definitions.json").read_text())
    published, report = apply_disclosure_control(table, _hide_all(cfg, table))
    curves = _curves_cells(pl.read_parquet(src / "income_curves.parquet"))
    curves_pub, curves_report = apply_disclosure_control(curves, _hide_all(cfg, curves))
    recovered = report.audit.recovered + curves_report.audit.recovered
    if recovered:
        raise PublicationBlocked(f"disclosure audit recovered {recovered} suppressed cells; "
                                 "nothing published")
    km = _km_thresholded(pl.read_parquet(src / "career_step_km.parquet"),
                         cfg.disclosure.min_persons)
    config = cfg.model_dump(mode="json")
    config["data"].pop("root", None)  # where the data sit is not part of the result
    meta = RunMeta(
        data_vintage=_data_vintage(cfg), config=config, code_version=_code_version(),
        input_files=_inputs(cfg),
        seeds={"twins": cfg.twins.seed, "estimates": cfg.estimates.seed,
               **({"synth": cfg.synth.seed} if cfg.synth else {})},
        estimator={"indicators": "matched estimator on per-person indicator values "
                   "(did: post minus pre-period; level: post), Abadie-Imbens variance "
                   "for reused twins, normal CIs; ratios linearised",
                   "multiple_comparisons": "Holm and Benjamini-Hochberg within indicator"},
        control_group={"kind": "statistical twins (risk-set matching)",
                       "settings": cfg.twins.model_dump(mode="json")})
    path = publish(published, report, labels(definitions, table), meta, cfg.data.publish,
                   extra_tables={"income_curves": curves_pub, "career_step_km": km},
                   open_data=cfg.publish.open_data, min_persons=cfg.disclosure.min_persons,
                   key=cfg.pseudonym_key())
    return ReleaseResult(path=path, run_id=run_id(meta), cells=published.height,
                         suppressed=int(published["suppressed"].sum()), recovered=recovered)
