"""Invalid rows of known kinds, planted for the contract tests (``--inject-errors``).

Each kind breaks exactly one rule of the data contracts, so a validation layer
can be tested one kind at a time: the planted rows must be quarantined by the
rule meant for them, and nothing else. Every planted row is listed in
``truth/injected_errors`` with the table, the kind and a key that identifies
the row; the manifest carries the counts per kind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from impact import personal_code

#: kind -> (table, rule the contract should apply)
KINDS: dict[str, tuple[str, str]] = {
    "invalid_personal_code": ("pmlp_persons", "person_code fails the format/check-digit rule"),
    "missing_person_code": ("vid_monthly_reports", "person_code is null"),
    "unknown_person": ("vid_monthly_reports", "person_code not in pmlp_persons"),
    "unknown_employer": ("vid_monthly_reports", "employer_id not in employers"),
    "negative_income": ("vid_monthly_reports", "gross_income >= 0"),
    "absurd_income": ("vid_monthly_reports", "gross_income <= 1,000,000"),
    "period_outside_delivery": ("vid_monthly_reports", "period within the delivery window"),
    "invalid_isco": ("vid_monthly_reports", "occupation_code in ISCO-08"),
    "days_out_of_range": ("vid_monthly_reports", "0 <= days_worked <= 31"),
    "income_after_death": ("vid_monthly_reports", "no report after the person's death"),
    "invalid_nace": ("employers", "nace_code in NACE Rev.2"),
    "unknown_municipality": ("pmlp_residence", "municipality_code in ATVK"),
    "spell_end_before_start": ("nva_unemployment_spells", "deregistered_on >= registered_on"),
    "invalid_isced": ("viis_education", "isced_level in 0..8"),
    "ended_before_started": ("stars_applications", "ended_on >= started_on"),
}


@dataclass
class Injected:
    """Planted rows: (table, kind, key) triples."""

    table: list[str]
    kind: list[str]
    key: list[str]

    def frame(self) -> pl.DataFrame:
        """As a DataFrame with the rule each row violates."""
        return pl.DataFrame({"table": self.table, "kind": self.kind, "key": self.key}).with_columns(
            pl.col("kind").replace_strict({k: v[1] for k, v in KINDS.items()}).alias("rule"))

    def counts(self) -> dict[str, int]:
        """Number of planted rows per kind."""
        out: dict[str, int] = {}
        for k in self.kind:
            out[k] = out.get(k, 0) + 1
        return out


def _pick(df: pl.DataFrame, k: int, rng: np.random.Generator) -> pl.DataFrame:
    return df[np.sort(rng.choice(df.height, size=min(k, df.height), replace=False))]


def inject(frames: dict[str, pl.DataFrame], reports: pl.DataFrame, per_kind: int,
           start: str, rng: np.random.Generator) -> tuple[dict[str, pl.DataFrame], pl.DataFrame,
                                                          Injected]:
    """Plant ``per_kind`` invalid rows of every kind.

    Parameters
    ----------
    frames
        Register tables other than the employer reports (modified copies returned).
    reports
        One year of employer reports into which the report-level kinds go.
    per_kind
        Rows planted per kind.
    start
        First month of the delivery (``YYYY-MM``); used for out-of-window periods.
    """
    inj = Injected([], [], [])
    frames = dict(frames)

    def note(kind: str, keys: list[str]) -> None:
        table = KINDS[kind][0]
        inj.table += [table] * len(keys)
        inj.kind += [kind] * len(keys)
        inj.key += keys

    persons = frames["pmlp_persons"]
    # persons with an invalid code (new rows: a register row that fails the format)
    bad = _pick(persons.filter(pl.col("person_code").str.slice(0, 2) != "32"), per_kind, rng)
    bad_codes = personal_code.corrupt_check_digit(bad["person_code"].to_numpy(), rng)
    bad = bad.with_columns(pl.Series("person_code", bad_codes.astype(str)))
    frames["pmlp_persons"] = pl.concat([persons, bad])
    note("invalid_personal_code", bad["person_code"].to_list())

    base = _pick(reports, per_kind * 10, rng)
    chunks = []

    def plant(kind: str, i: int, **changes: pl.Expr) -> None:
        rows = base[i * per_kind:(i + 1) * per_kind].with_columns(
            (pl.lit(f"E{i:02d}") + pl.col("report_id")).alias("report_id"), **changes)
        chunks.append(rows)
        note(kind, rows["report_id"].to_list())

    valid_new = personal_code.generate_new(per_kind, rng, exclude=persons["person_code"].to_numpy())
    plant("missing_person_code", 0, person_code=pl.lit(None, dtype=pl.Utf8))
    plant("unknown_person", 1, person_code=pl.Series(valid_new.astype(str)))
    plant("unknown_employer", 2, employer_id=pl.lit("40009999999"))
    plant("negative_income", 3, gross_income=-pl.col("gross_income").abs() - 1.0)
    plant("absurd_income", 4, gross_income=pl.lit(2_500_000.0))
    before = np.datetime64(start, "M") - 3
    plant("period_outside_delivery", 5, period=pl.lit(str(before)))
    plant("invalid_isco", 6, occupation_code=pl.lit("9999"))
    plant("days_out_of_range", 7, days_worked=pl.lit(45, dtype=pl.Int64))
    dead = persons.filter(pl.col("death_date").is_not_null())
    dead = _pick(dead, per_kind, rng)
    if dead.height:
        after = (dead["death_date"].to_numpy().astype("datetime64[M]") + 2)
        rows = base[8 * per_kind:8 * per_kind + dead.height].with_columns(
            (pl.lit("E08") + pl.col("report_id")).alias("report_id"),
            person_code=dead["person_code"],
            period=pl.Series(np.datetime_as_string(after, unit="M")),
        )
        chunks.append(rows)
        note("income_after_death", rows["report_id"].to_list())
    reports = pl.concat([reports, *chunks])

    emp = frames["employers"]
    be = _pick(emp, per_kind, rng).with_columns(
        (pl.lit("4000") + pl.int_range(9_000_000, 9_000_000 + pl.len()).cast(pl.Utf8))
        .alias("employer_id"), nace_code=pl.lit("99.99"))
    frames["employers"] = pl.concat([emp, be])
    note("invalid_nace", be["employer_id"].to_list())

    res = frames["pmlp_residence"]
    br = _pick(res, per_kind, rng).with_columns(municipality_code=pl.lit("0999999"))
    frames["pmlp_residence"] = pl.concat([res, br])
    note("unknown_municipality", [f"{a}|{b}" for a, b in zip(br["person_code"], br["valid_from"],
                                                              strict=True)])

    sp = frames["nva_unemployment_spells"].filter(pl.col("deregistered_on").is_not_null())
    bs = _pick(sp, per_kind, rng).with_columns(
        (pl.lit("E") + pl.col("spell_id")).alias("spell_id"),
        deregistered_on=pl.col("registered_on") - pl.duration(days=20))
    frames["nva_unemployment_spells"] = pl.concat([frames["nva_unemployment_spells"], bs])
    note("spell_end_before_start", bs["spell_id"].to_list())

    ed = frames["viis_education"]
    bd = _pick(ed, per_kind, rng).with_columns(isced_level=pl.lit(11, dtype=pl.Int64))
    frames["viis_education"] = pl.concat([ed, bd])
    note("invalid_isced", [f"{a}|{b}" for a, b in zip(bd["person_code"], bd["award_date"],
                                                       strict=True)])

    ap = frames["stars_applications"].filter(pl.col("started_on").is_not_null())
    ba = _pick(ap, per_kind, rng).with_columns(
        (pl.lit("E") + pl.col("application_id")).alias("application_id"),
        ended_on=pl.col("started_on") - pl.duration(days=15))
    frames["stars_applications"] = pl.concat([frames["stars_applications"], ba])
    note("ended_before_started", ba["application_id"].to_list())
    return frames, reports, inj
