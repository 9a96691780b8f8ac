"""How badly naive methods are fooled by a synthetic delivery, measured against truth.

These diagnostics read ``truth/`` and therefore belong to the generator, never
to the pipeline. They quantify the selection the generator builds in:

* the **naive difference-in-differences** (participants' earnings change
  from the 12 months before the start to months 13-24 after it, minus the
  same change of all non-participants over the same calendar months) mixes
  the effect with the faster earnings growth of motivated people and with the
  recovery from the pre-training dip;
* a **trajectory-matched** estimate (each participant against its 5 nearest
  non-participants in the same start month, education group and sex, on the
  12 monthly pre-period earnings, the averages of months 13-24 and 25-36,
  months employed, the monthly NVA registration status and birth year)
  removes much of that bias but not all of it, because motivation is only
  partly revealed by the past trajectory.

Both are compared with the true ATT over the same months.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from impact.manifest import DeliveryManifest

_STR = {"person_code": pl.Utf8, "employer_id": pl.Utf8, "report_id": pl.Utf8,
        "occupation_code": pl.Utf8, "period": pl.Utf8}


@dataclass(frozen=True)
class BiasCheck:
    """Estimates of the effect on monthly earnings, months 13-24 after the start (EUR)."""

    true_att: float
    naive_did: float
    adjusted: float
    n_treated: int
    n_controls: int

    @property
    def naive_bias(self) -> float:
        """Naive DiD minus the truth."""
        return self.naive_did - self.true_att

    @property
    def residual_bias(self) -> float:
        """Trajectory-matched estimate minus the truth."""
        return self.adjusted - self.true_att


def _earnings_matrix(landing: Path, codes: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Persons x months nominal earnings (latest correction, duplicates removed)."""
    m = DeliveryManifest.read(landing)
    files = [landing / f.path for f in m.files if f.table == "vid_monthly_reports"]
    if files[0].suffix == ".csv":
        lf = pl.scan_csv(files, schema_overrides=_STR)
    else:
        lf = pl.scan_parquet(files)
    months = pl.date_range(pl.date(int(m.period_start[:4]), int(m.period_start[5:]), 1),
                           pl.date(int(m.period_end[:4]), int(m.period_end[5:]), 1), "1mo",
                           eager=True).dt.strftime("%Y-%m").to_list()
    idx = pl.DataFrame({"person_code": codes, "row": np.arange(codes.len())})
    rows = (
        lf.unique()
        .sort("submitted_on")
        .group_by("person_code", "employer_id", "period").agg(pl.col("gross_income").last())
        .group_by("person_code", "period").agg(pl.col("gross_income").sum())
        .collect()
        .join(idx, on="person_code")
        .with_columns(pl.col("period").replace_strict(
            {p: i for i, p in enumerate(months)}, return_dtype=pl.Int64).alias("col"))
    )
    mat = np.zeros((codes.len(), len(months)))
    mat[rows["row"].to_numpy(), rows["col"].to_numpy()] = rows["gross_income"].to_numpy()
    return mat, months


def _registered_matrix(landing: Path, codes: pl.Series, months: list[str]) -> np.ndarray:
    """Persons x months: registered unemployed at NVA at some point of the month."""
    m = DeliveryManifest.read(landing)
    f = next(landing / e.path for e in m.files if e.table == "nva_unemployment_spells")
    spells = (pl.read_csv(f, schema_overrides=_STR, try_parse_dates=True) if f.suffix == ".csv"
              else pl.read_parquet(f))
    idx = pl.DataFrame({"person_code": codes, "row": np.arange(codes.len())})
    first = np.datetime64(months[0], "M")
    s = spells.join(idx, on="person_code")
    a = (s["registered_on"].to_numpy().astype("datetime64[M]") - first).astype(np.int64)
    end = s["deregistered_on"].to_numpy().astype("datetime64[M]")
    b = np.where(np.isnat(end), len(months) - 1, (end - first).astype(np.int64))
    a, b = np.clip(a, 0, len(months) - 1), np.clip(b, 0, len(months) - 1)
    mat = np.zeros((codes.len(), len(months) + 1))
    np.add.at(mat, (s["row"].to_numpy(), a), 1)
    np.add.at(mat, (s["row"].to_numpy(), b + 1), -1)
    return (np.cumsum(mat, axis=1)[:, :-1] > 0).astype(float)


def selection_bias(root: Path, controls: int = 20_000, seed: int = 0) -> BiasCheck:
    """Naive and trajectory-matched DiD against the true ATT.

    Parameters
    ----------
    root
        Output folder of :func:`impact.synth.generate` (with ``landing/`` and ``truth/``).
    controls
        Number of non-participants sampled as the comparison group; each gets a
        pseudo start month drawn from the participants' start months.
    seed
        Seed of the control sample.
    """
    landing = next((root / "landing").iterdir())
    truth = root / "truth"
    parts = pl.read_parquet(truth / "participants.parquet")
    latent = pl.read_parquet(truth / "latent.parquet")
    persons = pl.read_csv(landing / "pmlp_persons.csv", schema_overrides=_STR,
                          try_parse_dates=True) if (landing / "pmlp_persons.csv").exists() \
        else pl.read_parquet(landing / "pmlp_persons.parquet")
    rng = np.random.default_rng(seed)
    pool = persons.join(latent.filter(~pl.col("participant") & ~pl.col("account"))
                        .select("person_code"), on="person_code")
    pool = pool.filter(pl.col("death_date").is_null() & pl.col("emigration_date").is_null())
    pool = pool.filter(pl.col("birth_date").dt.year().is_between(1962, 2002))
    pick = rng.choice(pool.height, size=min(controls, pool.height), replace=False)
    ctrl = pool[np.sort(pick)]
    codes = pl.concat([parts["person_code"], ctrl["person_code"]])
    mat, months = _earnings_matrix(landing, codes)
    reg = _registered_matrix(landing, codes, months)
    n_t = parts.height
    info = parts.select("person_code").join(persons, on="person_code", how="left",
                                            maintain_order="left")
    birth_year = np.concatenate([info["birth_date"].dt.year().to_numpy(),
                                 ctrl["birth_date"].dt.year().to_numpy()]).astype(float)
    female = np.concatenate([info["sex"].to_numpy(), ctrl["sex"].to_numpy()]) == "F"
    edu_file = next(landing / e.path for e in DeliveryManifest.read(landing).files
                    if e.table == "viis_education")
    edu = (pl.read_csv(edu_file, schema_overrides=_STR) if edu_file.suffix == ".csv"
           else pl.read_parquet(edu_file))
    top = edu.group_by("person_code").agg(pl.col("isced_level").max())
    level = pl.DataFrame({"person_code": codes}).join(top, on="person_code", how="left",
                                                      maintain_order="left")
    level = level["isced_level"].fill_null(0).to_numpy()
    # exact strata: education group (ISCED 0-2 / 3-4 / 5-8) x sex
    stratum = np.select([level >= 5, level >= 3], [2, 1], 0) * 2 + female

    def features(rows: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
        pre = mat[rows, s - 12:s]
        mid = mat[rows, s - 24:s - 12].mean(axis=1)
        far = mat[rows, s - 36:s - 24].mean(axis=1)
        post = mat[rows, s + 13:s + 25].mean(axis=1)
        x = np.column_stack([pre, mid, far, (mat[rows, s - 36:s] > 0).sum(axis=1),
                             reg[rows, s - 12:s] * 1000.0, reg[rows, s - 36:s].sum(axis=1),
                             birth_year[rows], female[rows] * 1000.0])
        return x, post - pre.mean(axis=1)

    start = parts["start_t"].to_numpy()
    ctrl_rows = np.arange(n_t, codes.len())
    naive_parts, matched_parts, kept = [], [], []
    from sklearn.neighbors import NearestNeighbors

    for s in np.unique(start):
        if s - 36 < 0 or s + 25 > len(months):
            continue
        tr_all = np.nonzero(start == s)[0]
        xt_all, yt_all = features(tr_all, int(s))
        xc_all, yc_all = features(ctrl_rows, int(s))
        naive_parts.append(yt_all - yc_all.mean())
        scale = np.concatenate([xt_all, xc_all]).std(axis=0) + 1e-9
        for g in np.unique(stratum[tr_all]):
            ti = stratum[tr_all] == g
            ci = stratum[ctrl_rows] == g
            if ci.sum() < 5:
                continue
            nn = NearestNeighbors(n_neighbors=5).fit(xc_all[ci] / scale)
            _, idx = nn.kneighbors(xt_all[ti] / scale)
            matched_parts.append(yt_all[ti] - yc_all[ci][idx].mean(axis=1))
            kept.append(tr_all[ti])
    naive = float(np.concatenate(naive_parts).mean())  # over all participants in range
    adjusted = float(np.concatenate(matched_parts).mean())
    kept_codes = set(parts["person_code"].to_numpy()[np.concatenate(kept)].tolist())
    paths = pl.read_parquet(truth / "paths.parquet").filter(
        pl.col("event_start").is_between(13, 24))
    # truth is in base-year prices: convert back to nominal with the delivered CPI
    ref = (pl.read_csv(landing / "ref_cpi.csv") if (landing / "ref_cpi.csv").exists()
           else pl.read_parquet(landing / "ref_cpi.parquet"))
    base = ref.filter(pl.col("month").str.starts_with("2024"))["cpi"].mean()
    att = paths.join(ref, on="month").group_by("person_code").agg(
        ((pl.col("earnings_real_1") - pl.col("earnings_real_0")) * pl.col("cpi") / base).mean()
        .alias("effect"))
    true_att = float(att.filter(pl.col("person_code").is_in(list(kept_codes)))["effect"].mean())
    return BiasCheck(true_att=true_att, naive_did=naive, adjusted=adjusted,
                     n_treated=len(kept_codes), n_controls=int(ctrl_rows.size))
