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

#: Labels of breakdown groups that are not codes, per dimension: (English, Latvian). Other
#: groups (codes such as NACE sections, ISCO groups, regions) keep their code in both.
_GROUP_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "all": {"all": ("all", "visi")},
    "sex": {"M": ("men", "vīrieši"), "F": ("women", "sievietes")},
    "urbanisation": {"1 cities": ("1 cities", "1 pilsētas"),
                     "2 towns and suburbs": ("2 towns and suburbs",
                                             "2 mazpilsētas un piepilsētas"),
                     "3 rural": ("3 rural", "3 lauku teritorijas")},
    "public_private": {"PUBLIC": ("public", "publiskais"), "PRIVATE": ("private", "privātais")},
    "field": {"ICT": ("ICT", "IKT"),
              "BUSINESS_FINANCE_ADMIN": ("business, finance, administration",
                                         "bizness, finanses, administrēšana")},
    "hours_band": {"up to 59": ("up to 59", "līdz 59")},
    "status_at_entry": {"employed": ("employed", "nodarbināts"),
                        "registered unemployed": ("registered unemployed",
                                                  "reģistrēts bezdarbnieks"),
                        "other": ("other (inactive)", "cits (neaktīvs)")},
}
#: Groups with the same meaning in every dimension.
_ANY_DIMENSION = {"unknown": ("unknown", "nezināms"),
                  "not employed": ("not employed", "nav nodarbināts")}


def _group_label(dimension: str, group: str) -> tuple[str, str]:
    own = _GROUP_LABELS.get(dimension, {})
    return own.get(group) or _ANY_DIMENSION.get(group) or (group, group)


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
    from impact.panel.build import person_codes
    from impact.twins.plan import align_pairs

    # twins of cohorts matched on an earlier panel: their pids follow the codes
    pairs = align_pairs(read_pairs(cfg.data.twins), person_codes(cfg.data.sources))
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
    names = {"earnings_real": ("real monthly earnings", "reālie mēneša ienākumi"),
             "employed": ("employment", "nodarbinātība"),
             "daily_wage_real": ("real daily wage", "reālā dienas alga")}
    clocks = {"end": ("months from leaving", "mēneši kopš dalības beigām"),
              "start": ("months from the start", "mēneši kopš dalības sākuma")}
    for outcome, clock in EVENT_STUDY_SERIES:
        (o_en, o_lv), (c_en, c_lv) = names[outcome], clocks[clock]
        ind[f"event_study_{outcome}_{clock}"] = {
            "en": f"Event study: effect on {o_en} by {c_en}",
            "lv": f"Notikumu analīze: ietekme uz {o_lv} pa mēnešiem ({c_lv})",
            "unit": "EUR/month (real)" if outcome == "earnings_real" else (
                "EUR/day (real)" if outcome == "daily_wage_real" else "share"),
            "definition_en": "matched DiD ATT(e) against the mean of months -12..-1 before "
            "the start; pre-period estimates are placebos; band = uniform 95 % band",
            "population": "matched participants observed at the event time"}
    dims = {k: {"en": en, "lv": lv} for k, (en, lv) in DIMENSIONS.items()}
    groups: dict[str, dict[str, dict[str, str]]] = {}
    for dim, grp in table.select("dimension", "group").unique().iter_rows():
        en, lv = _group_label(dim, grp)
        groups.setdefault(dim, {})[grp] = {"en": en, "lv": lv}
    return Labels.from_dict({"indicator": ind, "dimension": dims, "group": groups})


def _code_version() -> str:
    from impact import __version__

    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=10, check=True
                             ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "pipelines"],
                               cwd=PROJECT_ROOT, capture_output=True, timeout=30).returncode
        sha += ".dirty" if dirty else ""  # uncommitted code changes: not the commit's code
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


def key_fingerprint(sources: Path) -> str | None:
    """The fingerprint of the pseudonymisation key of the clean source tables.

    Read from each table's ``_pseudonym_key.json`` (written by the ingest). ``None`` when no
    table has one (tables ingested before the record existed).

    Raises
    ------
    PublicationBlocked
        The tables were pseudonymised with different keys (a rotation left half done):
        their pseudonyms do not link, so nothing built from them may be published.
    """
    from impact.ingest import KEY_RECORD

    seen: dict[str, list[str]] = {}
    for record in sorted(Path(sources).glob(f"*/{KEY_RECORD}")):
        fp = json.loads(record.read_text(encoding="utf-8"))["fingerprint"]
        seen.setdefault(fp, []).append(record.parent.name)
    if len(seen) > 1:
        raise PublicationBlocked(
            "the source tables were pseudonymised with different keys ("
            + "; ".join(f"key {fp}: {', '.join(t)}" for fp, t in sorted(seen.items()))
            + "): re-ingest every table with one key (docs/key_management.md)")
    return next(iter(seen), None)


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
                          "unit", "contrast", "period", "n_participants", "n_twins"})


def _hide_all(cfg: EvaluationConfig, table: pl.DataFrame) -> Any:
    """The configured disclosure settings, hiding every measured column of a suppressed
    cell (effective sizes and adjusted p-values too, not only the default value columns)
    unless the config lists the columns itself."""
    if cfg.disclosure.value_columns is not None:
        return cfg.disclosure
    cols = tuple(c for c in table.columns if c not in _DESCRIPTIVE and not c.startswith("_"))
    return cfg.disclosure.model_copy(update={"value_columns": cols})


#: Event-study series published (outcome, clock): earnings and employment on both clocks.
EVENT_STUDY_SERIES = (("earnings_real", "end"), ("earnings_real", "start"), ("employed", "end"),
                      ("daily_wage_real", "end"))


def _event_study_cells(estimates: Path) -> pl.DataFrame:
    """Event-study rows as disclosure cells (one indicator per outcome and clock)."""
    es = pl.read_parquet(estimates / "event_study.parquet")
    keep = pl.any_horizontal([(pl.col("outcome") == o) & (pl.col("clock") == c)
                              for o, c in EVENT_STUDY_SERIES])
    return es.filter(keep).select(
        (pl.lit("event_study_") + pl.col("outcome") + "_" + pl.col("clock")).alias("indicator"),
        pl.lit("all").alias("dimension"), pl.lit("all").alias("group"),
        pl.col("event_time").cast(pl.Int64).alias("horizon"), pl.lit("other").alias("kind"),
        "period", pl.col("n_treated").alias("n_participants"), "n_twins", "twin_ess",
        pl.col("att").alias("net"), "se", "ci_low", "ci_high", "band_low", "band_high",
        pl.col("pvalue").alias("p_value"), "att_naive", "se_naive")


def _twins_overview(cfg: EvaluationConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Matching summary per cohort group, pooled balance per covariate and the pre-period
    trajectories: aggregates over groups of at least ``disclosure.min_persons`` persons
    (groups below it are left out, counted in the disclosure report's note)."""
    k = cfg.disclosure.min_persons
    summary = pl.read_parquet(cfg.data.twins / "summary.parquet")
    balance = pl.read_parquet(cfg.data.twins / "balance.parquet").filter(
        pl.col("cohort").is_null())  # cohort groups (cohort_group set) and pooled (null)
    smd = balance.filter(pl.col("cohort_group").is_not_null()).group_by("cohort_group").agg(
        pl.col("smd_before").abs().max().alias("max_abs_smd_before"),
        pl.col("smd_after").abs().max().alias("max_abs_smd_after"))
    if "n_matched_fallback" not in summary.columns:  # twins matched before coarsening existed
        summary = summary.with_columns(pl.lit(0, dtype=pl.Int64).alias("n_matched_fallback"))
    groups = summary.group_by("cohort_group").agg(
        pl.col("cohort").min().alias("first_cohort"), pl.col("cohort").max().alias(
            "last_cohort"), pl.col("n_treated").sum(), pl.col("n_matched").sum(),
        pl.col("n_matched_fallback").sum(), pl.col("n_unmatched").sum(),
        pl.col("gate_passed").all()
    ).join(smd, on="cohort_group", how="left").with_columns(
        (pl.col("n_unmatched") / pl.col("n_treated")).alias("unmatched_share"),
        (pl.col("n_matched_fallback") / pl.col("n_matched")).alias("fallback_share"),
    ).filter(pl.col("n_matched") >= k).sort("cohort_group")
    groups = groups.with_columns(  # a handful of persons: a share, not a count
        pl.when(pl.col(c) < k).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("n_unmatched", "n_matched_fallback"))
    bal = balance.filter(pl.col("cohort_group").is_null() & (pl.col("n_treated_after") >= k)
                         & (pl.col("n_control_after") >= k)).select(
        "covariate", "variable", "type", "smd_before", "smd_after", "vr_before", "vr_after",
        "ks_before", "ks_after", "n_treated_after", "n_control_after")
    pre = pl.read_parquet(cfg.data.twins / "pre_trajectories.parquet").with_columns(
        pl.col("event_time").cast(pl.Int64))
    n_matched = int(summary["n_matched"].sum())
    if n_matched < k:
        pre = pre.clear()
    return groups, bal, pre


def _data_quality(cfg: EvaluationConfig) -> pl.DataFrame:
    """Rows in, accepted, quarantined, duplicates and superseded per source table (counts of
    register rows, not of persons), from ``reconciliation.json``."""
    path = cfg.data.root / "reconciliation.json"
    if not path.is_file():
        return pl.DataFrame(schema={"table": pl.String, "rows_in": pl.Int64})
    rec = json.loads(path.read_text())
    rows = []
    for table, r in sorted(rec.items()):
        files = r.get("files") or []
        rows.append({"table": table, "rows_in": r.get("rows_in"), "accepted": r.get("accepted"),
                     "quarantined": r.get("quarantined"),
                     "duplicates": sum(int(f.get("duplicates") or 0) for f in files),
                     "superseded": sum(int(f.get("superseded") or 0) for f in files),
                     "ok": bool(r.get("ok"))})
    return pl.DataFrame(rows)


def balance_failures(cfg: EvaluationConfig) -> list[str]:
    """The twins' balance-gate failures recorded in ``twins/settings.json``."""
    meta = json.loads((cfg.data.twins / "settings.json").read_text())
    return list(meta.get("failures") or [])


def run_publication(cfg: EvaluationConfig) -> ReleaseResult:
    """Disclosure control and the release files of one evaluation run.

    Raises
    ------
    PublicationBlocked
        The twins failed their balance gate (and ``publish.require_balance``), the joint
        pre-trend test rejected for a gating outcome (and
        ``publish.require_parallel_trends``), the source tables were pseudonymised with
        different keys, or the disclosure audit could still recover a suppressed cell.
    """
    from impact.disclosure import apply_disclosure_control
    from impact.publish import RunMeta, publish, run_id

    fingerprint = key_fingerprint(cfg.data.sources)

    if cfg.publish.require_balance:
        fails = balance_failures(cfg)
        if fails:
            raise PublicationBlocked(
                "the statistical twins failed their balance gate, so no indicator is "
                "published (publish.require_balance): " + " | ".join(fails)[:2000])
    if cfg.publish.require_parallel_trends:
        from impact.evaluate import pretrend_failures

        fails = pretrend_failures(cfg.data.estimates, cfg.publish.pretrend_outcomes,
                                  cfg.publish.pretrend_alpha)
        if fails:
            raise PublicationBlocked(
                "the pre-period trends of participants and twins differ, so no indicator "
                "is published (publish.require_parallel_trends): " + " | ".join(fails))
    src = cfg.data.indicators
    table = pl.read_parquet(src / "indicators.parquet")
    definitions = json.loads((src / "definitions.json").read_text())
    published, report = apply_disclosure_control(table, _hide_all(cfg, table))
    curves = _curves_cells(pl.read_parquet(src / "income_curves.parquet"))
    curves_pub, curves_report = apply_disclosure_control(curves, _hide_all(cfg, curves))
    recovered = report.audit.recovered + curves_report.audit.recovered
    es = _event_study_cells(cfg.data.estimates)
    es_pub, es_report = apply_disclosure_control(es, _hide_all(cfg, es))
    recovered += es_report.audit.recovered
    km = _km_thresholded(pl.read_parquet(src / "career_step_km.parquet"),
                         cfg.disclosure.min_persons)
    groups, bal, pre = _twins_overview(cfg)
    if recovered:
        raise PublicationBlocked(f"disclosure audit recovered {recovered} suppressed cells; "
                                 "nothing published")
    config = cfg.model_dump(mode="json")
    config["data"].pop("root", None)  # where the data sit is not part of the result
    meta = RunMeta(
        data_vintage=_data_vintage(cfg), config=config, code_version=_code_version(),
        input_files=_inputs(cfg),
        # the key is part of the run: another key gives other pids, tie-breaks and twins
        seeds={"twins": cfg.twins.seed, "estimates": cfg.estimates.seed,
               **({"synth": cfg.synth.seed} if cfg.synth else {}),
               **({"pseudonym_key": fingerprint} if fingerprint else {})},
        estimator={"indicators": "matched estimator on per-person indicator values "
                   "(did: post minus pre-period; level: post), Abadie-Imbens variance "
                   "for reused twins, normal CIs; ratios linearised",
                   "multiple_comparisons": "Holm and Benjamini-Hochberg within indicator"},
        control_group={"kind": "statistical twins (risk-set matching)",
                       "settings": cfg.twins.model_dump(mode="json")})
    path = publish(published, report, labels(definitions, table), meta, cfg.data.publish,
                   extra_tables={"income_curves": curves_pub, "career_step_km": km,
                                 "event_study": es_pub, "twins_groups": groups,
                                 "balance": bal, "pre_trajectories": pre,
                                 "data_quality": _data_quality(cfg)},
                   open_data=cfg.publish.open_data, min_persons=cfg.disclosure.min_persons,
                   key=cfg.pseudonym_key())
    return ReleaseResult(path=path, run_id=run_id(meta), cells=published.height,
                         suppressed=int(published["suppressed"].sum()), recovered=recovered)
