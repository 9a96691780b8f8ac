"""Same-firm co-workers who did not train as twin candidates (``twins.pool: coworkers``).

The ILA report's "sector or firm" control group (section 9.3, the alternative variant):
compare participants with employees of the *same firms* who did not complete training, which
removes firm- and sector-specific shocks (a crisis or boom of the employer) from the
comparison. For cohort month ``m``:

* **candidates** of a treated person are the eligible persons who have not started ILA
  learning by ``m`` (as in the ``not_yet_treated`` pool) and whose main employer in month
  ``m-1`` (panel column ``employer_id``, the pseudonymised employer of the main job) is the
  treated person's main employer in ``m-1``;
* only firms with at least ``min_firm_size`` persons whose main employer in ``m-1`` it is
  qualify (counted over every person of the panel in ``m-1``: treated, candidates and
  ineligible persons alike);
* twins are then found *within the firm*: :mod:`impact.twins.riskset` adds the employer
  (:data:`EMPLOYER_KEY`) to the exact strata of this pool, so the usual exact strata,
  propensity score and caliper apply among the firm's co-workers;
* treated persons without a main employer in ``m-1`` (reason :data:`NO_EMPLOYER`) or whose
  firm is smaller than the minimum (:data:`FIRM_TOO_SMALL`) have no candidates; they stay in
  the cohort's treated count and are reported in the unmatched table with that reason (and in
  the summary columns ``unmatched_no_employer`` and ``unmatched_firm_too_small``).

Only month ``m-1`` is read, like every other matching feature: a job change in month ``m`` or
later does not move the twins (no look-ahead; tests/test_coworkers.py).

Memory
------
Employers are not among the month arrays of :class:`impact.twins.features.PanelArrays`
(``employer_id`` for 120 months of 1.2 M persons would double their size). The month ``m-1``
employer of a cohort is read on demand (:func:`read_employers`: one filtered scan of the panel
Parquet for that month, columns ``pid`` and ``employer_id``), coded as int32 (dense rank of
the pseudonym within that month, ``-1`` = none) and kept in ``PanelArrays.employers``: 4 bytes
per person per cohort month, nothing for other months. Codes are comparable within one month
only.

Assumptions and limits
----------------------
* The main job is the panel's (highest gross income of the month); second jobs do not make
  co-workers.
* Firm size is the number of persons of the panel whose main employer it is. On a sample
  panel (or if many employees are non-resident) this understates the firm's headcount in the
  employer register (the panel's ``size_class``).
* Within a firm, the default exact strata (sex, age band, region, education band,
  employment and NVA registration in ``m-1``) leave few candidates per stratum; a config
  may use fewer ``exact`` keys for this pool. The estimand is the ATT of the *matched*
  treated: persons in firms large enough to hold comparable co-workers, a sub-population
  the unmatched table describes.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from impact.twins.features import PanelArrays

#: Frame column and exact-stratum key holding the main employer of month ``m-1`` (int code).
EMPLOYER_KEY = "employer_l1"
#: Default minimum firm size (persons whose main employer in ``m-1`` the firm is).
DEFAULT_MIN_FIRM_SIZE = 10
#: Unmatched reasons of the co-worker pool (besides matching's ``no_controls``, ``caliper``).
NO_EMPLOYER = "no_employer"
FIRM_TOO_SMALL = "firm_too_small"
REASONS = (NO_EMPLOYER, FIRM_TOO_SMALL)


def read_employers(
    panel_dir: Path, month: date, n_persons: int, chunk: int | None = None
) -> np.ndarray:
    """Main employer of every pid in ``month`` as an int32 code (``-1``: none).

    A scan of the panel Parquet filtered on ``month`` (row groups of other months are
    skipped by their statistics), columns ``pid`` and ``employer_id`` only. Codes are the
    dense rank of the employer pseudonym among that month's employers (0, 1, ...).

    ``chunk``: one scan per range of ``chunk`` pids, so that only one range's pseudonyms are
    held at a time (plus the distinct employers); the codes are the same, the position of
    each pseudonym among all the month's distinct pseudonyms (sorted).
    """
    scan = pl.scan_parquet(Path(panel_dir) / "**" / "*.parquet", hive_partitioning=False)
    step = max(chunk or n_persons, 1)
    parts: list[tuple[np.ndarray, np.ndarray, pl.Series]] = []  # pids, local codes, names
    for lo in range(0, n_persons, step):
        cond = (pl.col("month") == month) & pl.col("employer_id").is_not_null()
        if chunk is not None:
            cond &= pl.col("pid").is_between(lo, lo + step - 1)
        df = scan.filter(cond).select("pid", "employer_id").collect()
        pid = df["pid"].to_numpy()
        if pid.size and (pid.min() < 0 or pid.max() >= n_persons):
            raise ValueError(
                f"the panel under {panel_dir} has pids outside the loaded arrays "
                f"(0..{n_persons - 1}) in {month:%Y-%m}: reload the arrays after the panel "
                "changed"
            )
        ids = df["employer_id"]
        code = (ids.rank("dense").cast(pl.Int32) - 1).to_numpy()
        parts.append((pid, code, ids.unique().sort()))
        del df, ids
    out = np.full(n_persons, -1, dtype=np.int32)
    if not parts:
        return out
    everyone = pl.concat([n for _, _, n in parts]).unique().sort().to_numpy()
    for pid, code, names in parts:
        if pid.size:
            out[pid] = np.searchsorted(everyone, names.to_numpy()).astype(np.int32)[code]
    return out


def employers_l1(arrays: PanelArrays, m: int) -> np.ndarray:
    """Main employer in month ``m-1`` of every pid of ``arrays`` (int32 code, ``-1``: none).

    Read from ``arrays.panel_dir`` on first use and cached in ``arrays.employers``.
    """
    if m < 1:
        raise ValueError("the co-worker pool needs the month before the cohort month")
    month = arrays.months[m - 1]
    codes = arrays.employers.get(month)
    if codes is None:
        if arrays.panel_dir is None:
            raise ValueError(
                f"the co-worker pool needs the main employers of {month:%Y-%m}: load the arrays "
                "with PanelArrays.load (which records the panel folder) or put them in "
                "arrays.employers"
            )
        codes = read_employers(arrays.panel_dir, month, arrays.n_persons)
        arrays.employers[month] = codes
    if codes.shape != (arrays.n_persons,):
        raise ValueError(f"employer codes of {month:%Y-%m} do not cover the arrays' persons")
    return codes


def firm_sizes(codes: np.ndarray) -> np.ndarray:
    """Size of every person's firm: persons with the same employer code (0 for ``-1``)."""
    has = codes >= 0
    counts = np.bincount(codes[has], minlength=1)
    return np.where(has, counts[np.maximum(codes, 0)], 0)


def qualifying(arrays: PanelArrays, m: int, min_firm_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Employer codes of ``m-1`` and whether each pid's firm has ``min_firm_size`` persons."""
    return qualifying_codes(employers_l1(arrays, m), min_firm_size)


def qualifying_codes(codes: np.ndarray, min_firm_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``codes`` (employers of ``m-1`` of every pid) and whether each pid's firm has
    ``min_firm_size`` persons."""
    return codes, firm_sizes(codes) >= min_firm_size


def coworker_candidates(
    arrays: PanelArrays,
    m: int,
    treated: np.ndarray,
    candidates: np.ndarray,
    min_firm_size: int = DEFAULT_MIN_FIRM_SIZE,
) -> np.ndarray:
    """The ``candidates`` (e.g. the not-yet-treated eligible of cohort ``m``) who, in month
    ``m-1``, had the same main employer as one of the ``treated`` persons, in a firm of at
    least ``min_firm_size`` persons (sorted pids)."""
    return candidates_by_codes(employers_l1(arrays, m), treated, candidates, min_firm_size)


def candidates_by_codes(
    codes: np.ndarray,
    treated: np.ndarray,
    candidates: np.ndarray,
    min_firm_size: int = DEFAULT_MIN_FIRM_SIZE,
) -> np.ndarray:
    """:func:`coworker_candidates` from the employer ``codes`` of ``m-1`` of every pid."""
    codes, ok = qualifying_codes(codes, min_firm_size)
    firms = np.unique(codes[treated[ok[treated]]])
    keep = ok[candidates] & np.isin(codes[candidates], firms)
    return candidates[keep]


def treated_reasons(
    arrays: PanelArrays, m: int, treated: np.ndarray, min_firm_size: int = DEFAULT_MIN_FIRM_SIZE
) -> np.ndarray:
    """Why each of the ``treated`` persons of cohort ``m`` cannot have co-worker twins:
    :data:`NO_EMPLOYER`, :data:`FIRM_TOO_SMALL`, or ``""`` (the firm qualifies)."""
    return reasons_by_codes(employers_l1(arrays, m), treated, min_firm_size)


def reasons_by_codes(
    codes: np.ndarray, treated: np.ndarray, min_firm_size: int = DEFAULT_MIN_FIRM_SIZE
) -> np.ndarray:
    """:func:`treated_reasons` from the employer ``codes`` of ``m-1`` of every pid."""
    codes, ok = qualifying_codes(codes, min_firm_size)
    c = codes[treated]
    return np.where(c < 0, NO_EMPLOYER, np.where(ok[treated], "", FIRM_TOO_SMALL))
