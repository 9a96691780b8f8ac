"""Event-time outcome trajectories stored per cohort month, so that a refresh rebuilds only
what changed.

The estimates pool every cohort, but the trajectories they start from
(:func:`impact.outcomes.build_trajectories`) are row-wise: a treated person's grid depends
only on the person, their twins, the panel and the treatment table. They are therefore built
and stored one cohort month at a time, ``<store>/cohort=YYYY-MM/trajectories.npz`` with a
``meta.json`` that records the **fingerprint of every input** the cohort's grids depend on:

- the cohort's pairs (codes and weights) and its treated persons' leaving months;
- the months the grids span (the first month loaded and the panel's last month) and the
  outcomes held;
- the sector reference (``sector_rel_wage``);
- the panel build (path, size and modification time of every panel file: a rebuilt panel,
  for example after a new month of register data, invalidates every cohort);
- :data:`STORE_VERSION`, bumped whenever the layout or the computation changes.

A new cohort therefore builds only its own trajectories; a new month of data rebuilds every
cohort (each gains an event time). :func:`trajectories_for` combines the stored cohorts with
freshly built ones into exactly the :class:`~impact.outcomes.Trajectories` that
:func:`~impact.outcomes.build_trajectories` gives for all pairs at once (tested), in the
canonical row order of the arrays at hand. Persons are stored by pseudonym, never by ``pid``
(a later delivery can shift pids; see :func:`impact.twins.plan.align_pairs`).

Assumptions
-----------
- Every cohort's grids are built on arrays loaded from the same first month
  (:func:`impact.evaluate.load_arrays`' rule: 36 months before the first cohort); that month
  and the panel's last month are part of the fingerprint.
- The event windows are the defaults of :func:`~impact.outcomes.build_trajectories`
  (``-36`` to as far as the data reach); a cohort's grid stops at its own last observable
  event time and is padded with ``BEYOND_DATA`` cells when combined, which is what the joint
  build holds there.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from impact.atomic import write_json
from impact.outcomes import CLOCKS, EventGrid, Status, Trajectories, build_trajectories
from impact.twins.features import PanelArrays

__all__ = [
    "STORE_VERSION",
    "StoreStats",
    "cohort_fingerprint",
    "panel_signature",
    "prune",
    "read_cohort",
    "store_cohorts",
    "trajectories_for",
    "write_cohort",
]

#: Bumped whenever the stored layout or the trajectories' computation changes.
STORE_VERSION = 1
_NPZ = "trajectories.npz"
_META = "meta.json"


@dataclass(frozen=True)
class StoreStats:
    """What :func:`trajectories_for` did: cohorts read from the store and cohorts built."""

    reused: tuple[str, ...]
    built: tuple[str, ...]


def _key(cohort: date) -> str:
    return cohort.strftime("%Y-%m")


def _folder(store: Path, cohort: date) -> Path:
    return Path(store) / f"cohort={_key(cohort)}"


def panel_signature(panel_dir: Path) -> str:
    """Digest of the panel build: relative path, size and modification time of every file.

    Cheap (no data read). A rebuilt year folder changes it, so trajectories built on an
    earlier panel are never reused; an untouched panel keeps it.
    """
    h = hashlib.sha256()
    for p in sorted(Path(panel_dir).glob("**/*.parquet")):
        st = p.stat()
        h.update(f"{p.relative_to(panel_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cohort_fingerprint(
    pairs: pl.DataFrame,
    treatment: pl.DataFrame,
    *,
    months: tuple[date, date],
    outcomes: Sequence[str],
    sector_rel_wage: Mapping[str, float] | None,
    panel: str,
) -> str:
    """Fingerprint of everything one cohort's trajectories depend on (see the module notes).

    ``pairs`` are the cohort's rows of the twins table; ``treatment`` the treatment table
    (only the cohort's treated persons' rows are used); ``panel`` :func:`panel_signature`.
    """
    p = pairs.select(
        pl.col("treated_code").cast(pl.Utf8), pl.col("twin_code").cast(pl.Utf8),
        pl.col("weight").cast(pl.Float64),
    ).sort("treated_code", "twin_code")
    codes = p["treated_code"].unique()
    t = (treatment.select(pl.col("person_code").cast(pl.Utf8), "end_month")
         .filter(pl.col("person_code").is_in(codes.implode())).sort("person_code"))
    h = hashlib.sha256()
    h.update(json.dumps({
        "version": STORE_VERSION,
        "months": [str(months[0]), str(months[1])],
        "outcomes": list(outcomes),
        "sector_rel_wage": sorted((sector_rel_wage or {}).items()),
        "panel": panel,
    }, sort_keys=True).encode())
    h.update(p.write_csv().encode())
    h.update(t.write_csv().encode())
    return h.hexdigest()


def write_cohort(traj: Trajectories, cohort: date, store: Path, fingerprint: str) -> Path:
    """Store one cohort's trajectories (``traj`` holds that cohort only).

    The ``.npz`` is written aside and renamed into place before ``meta.json`` (which carries
    the fingerprint), so a reader never pairs a fingerprint with a half-written grid.
    """
    if np.unique(traj.cohort).size > 1:
        raise ValueError("write_cohort takes the trajectories of one cohort")
    folder = _folder(store, cohort)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = _as_part(traj)
    tmp = folder / f".{_NPZ}.{os.getpid()}.tmp"
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, folder / _NPZ)
    write_json({"fingerprint": fingerprint, "cohort": _key(cohort),
                "outcomes": list(traj.outcomes), "clocks": sorted(traj.grids),
                "months": [str(traj.months[0]), str(traj.months[-1])],
                "n_treated": traj.n_treated, "n_pairs": traj.n_pairs}, folder / _META)
    return folder


def _dates(months: list, idx: np.ndarray) -> np.ndarray:
    """Month indices as ``datetime64[M]`` (``NaT`` for -1): independent of the first month."""
    base = np.datetime64(months[0], "M")
    out = base + np.asarray(idx, np.int64).astype("timedelta64[M]")
    return np.where(np.asarray(idx) >= 0, out, np.datetime64("NaT", "M"))


def _indices(months: list, d: np.ndarray) -> np.ndarray:
    base = np.datetime64(months[0], "M")
    out = (d - base).astype(np.int64)
    return np.where(np.isnat(d), -1, out).astype(np.int64)


def stored_fingerprint(store: Path, cohort: date) -> str | None:
    """The fingerprint of the stored trajectories of ``cohort`` (None if none are stored)."""
    meta = _folder(store, cohort) / _META
    if not meta.exists() or not (meta.parent / _NPZ).exists():
        return None
    return json.loads(meta.read_text(encoding="utf-8")).get("fingerprint")


def read_cohort(store: Path, cohort: date) -> dict[str, np.ndarray]:
    """The stored arrays of one cohort (names as written by :func:`write_cohort`)."""
    with np.load(_folder(store, cohort) / _NPZ, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rows(codes: np.ndarray, lut: pl.DataFrame, what: str) -> np.ndarray:
    got = pl.DataFrame({"code": codes.astype(str)}).join(
        lut, on="code", how="left", maintain_order="left")["row"]
    if got.null_count():
        raise ValueError(f"{got.null_count()} stored {what} persons are not in the arrays: "
                         "rebuild the outcome store on this panel")
    return got.to_numpy().astype(np.int64)


def _combine(parts: list[dict[str, np.ndarray]], arrays: PanelArrays,
             outcomes: tuple[str, ...]) -> Trajectories:
    """One :class:`Trajectories` from per-cohort arrays, in canonical order for ``arrays``."""
    months = list(arrays.months)
    lut = pl.DataFrame({"code": arrays.person_code.astype(str),
                        "row": np.arange(arrays.n_persons, dtype=np.int64)})
    offsets = np.cumsum([0, *(p["treated_code"].size for p in parts)])[:-1]
    treated_code = np.concatenate([p["treated_code"] for p in parts])
    treated_pid = _rows(treated_code, lut, "treated")
    twin_code = np.concatenate([p["twin_code"] for p in parts])
    twin_pid = _rows(twin_code, lut, "twin")
    pair_treated = np.concatenate([p["pair_treated"] + o for p, o in zip(parts, offsets,
                                                                          strict=True)])
    end = _indices(months, np.concatenate([p["end_month"] for p in parts]))
    twin_start = _indices(months, np.concatenate([p["twin_start_month"] for p in parts]))
    weight = np.concatenate([p["weight"] for p in parts])
    # canonical order: treated by pid, pairs by (treated pid, twin pid)
    t_order = np.argsort(treated_pid, kind="stable")
    new_row = np.empty_like(t_order)
    new_row[t_order] = np.arange(t_order.size)
    p_order = np.lexsort((twin_pid, new_row[pair_treated]))
    grids: dict[str, EventGrid] = {}
    for clock in CLOCKS:
        have = [f"{clock}/event_time" in p for p in parts]
        if not any(have):
            continue
        lo = min(int(p[f"{clock}/event_time"][0]) for p, h in zip(parts, have, strict=True) if h)
        hi = max(int(p[f"{clock}/event_time"][-1]) for p, h in zip(parts, have, strict=True)
                 if h)
        ev = np.arange(lo, hi + 1, dtype=np.int64)

        def padded(p: dict[str, np.ndarray], name: str, rows: int, fill: float | int,
                   dtype: type, *, clock: str = clock, ev: np.ndarray = ev) -> np.ndarray:
            out = np.full((rows, ev.size), fill, dtype=dtype)
            if f"{clock}/event_time" in p:
                e = p[f"{clock}/event_time"]
                out[:, int(e[0] - ev[0]): int(e[-1] - ev[0]) + 1] = p[name]
            return out

        beyond = int(Status.BEYOND_DATA)
        n_t = [p["treated_code"].size for p in parts]
        n_p = [p["twin_code"].size for p in parts]
        tv = {o: np.concatenate([padded(p, f"{clock}/treated/{o}", n, np.nan, np.float32)
                                 for p, n in zip(parts, n_t, strict=True)])[t_order]
              for o in outcomes}
        pv = {o: np.concatenate([padded(p, f"{clock}/twins/{o}", n, np.nan, np.float32)
                                 for p, n in zip(parts, n_p, strict=True)])[p_order]
              for o in outcomes}
        ts = np.concatenate([padded(p, f"{clock}/treated_status", n, beyond, np.int8)
                             for p, n in zip(parts, n_t, strict=True)])[t_order]
        ps = np.concatenate([padded(p, f"{clock}/twin_status", n, beyond, np.int8)
                             for p, n in zip(parts, n_p, strict=True)])[p_order]
        grids[clock] = EventGrid(clock=clock, event_time=ev, treated=tv, twins=pv,
                                 treated_status=ts, twin_status=ps)
    first = np.datetime64(months[0], "M")
    cohort_idx = np.concatenate([np.full(p["treated_code"].size,
                                         int((p["cohort"][0] - first).astype(np.int64)))
                                 for p in parts])
    return Trajectories(
        outcomes=outcomes,
        months=months,
        treated_pid=treated_pid[t_order],
        treated_code=treated_code[t_order],
        cohort=cohort_idx[t_order],
        end=end[t_order],
        pair_treated=new_row[pair_treated][p_order],
        twin_pid=twin_pid[p_order],
        twin_code=twin_code[p_order],
        weight=weight[p_order],
        twin_start=twin_start[p_order],
        grids=grids,
    )


def trajectories_for(
    arrays: PanelArrays,
    pairs: pl.DataFrame,
    treatment: pl.DataFrame,
    store: Path,
    *,
    sector_rel_wage: Mapping[str, float] | None = None,
    cohorts: Sequence[date] | None = None,
    write: bool = True,
) -> tuple[Trajectories, StoreStats]:
    """The trajectories of ``pairs``, reusing every cohort stored with a current fingerprint.

    Parameters
    ----------
    arrays
        Panel arrays holding every treated person and twin of ``pairs`` (the whole panel or
        a subset, :func:`impact.evaluate.load_estimation_arrays`), loaded from the first
        month of :func:`impact.evaluate.load_arrays`.
    pairs
        The twins, with ``treated_pid``/``twin_pid`` rows of ``arrays``.
    treatment
        ``research/treatment.parquet``.
    store
        The store folder (``data.root/outcomes``).
    sector_rel_wage
        As for :func:`~impact.outcomes.build_trajectories`.
    cohorts
        Only these cohorts (default: every cohort of ``pairs``).
    write
        Store the cohorts built here (otherwise only read).

    Returns
    -------
    Trajectories
        Equal to ``build_trajectories(arrays, pairs_of_cohorts, treatment,
        sector_rel_wage=...)``.
    StoreStats
        Which cohorts were read and which were built.
    """
    parts, reused, built = [], [], []
    for key, part, was_stored in _cohort_parts(arrays, pairs, treatment, store,
                                               sector_rel_wage=sector_rel_wage,
                                               cohorts=cohorts, write=write, read=True):
        (reused if was_stored else built).append(key)
        parts.append(part)
    return (_combine(parts, arrays, _outcomes(sector_rel_wage)),
            StoreStats(tuple(reused), tuple(built)))


def store_cohorts(
    arrays: PanelArrays,
    pairs: pl.DataFrame,
    treatment: pl.DataFrame,
    store: Path,
    *,
    sector_rel_wage: Mapping[str, float] | None = None,
    cohorts: Sequence[date] | None = None,
) -> StoreStats:
    """Build and store the trajectories of the cohorts not stored with current inputs.

    What :func:`trajectories_for` does for each cohort, without reading the current cohorts
    back or combining anything (a cohort partition's run). Arguments as there.
    """
    reused, built = [], []
    for key, _, was_stored in _cohort_parts(arrays, pairs, treatment, store,
                                            sector_rel_wage=sector_rel_wage,
                                            cohorts=cohorts, write=True, read=False):
        (reused if was_stored else built).append(key)
    return StoreStats(tuple(reused), tuple(built))


def _cohort_parts(
    arrays: PanelArrays,
    pairs: pl.DataFrame,
    treatment: pl.DataFrame,
    store: Path,
    *,
    sector_rel_wage: Mapping[str, float] | None,
    cohorts: Sequence[date] | None,
    write: bool,
    read: bool,
) -> Iterator[tuple[str, dict[str, np.ndarray] | None, bool]]:
    """Per wanted cohort: its key, its arrays (stored ones only if ``read``) and whether
    they were stored with a current fingerprint; cohorts built here are stored if ``write``."""
    if pairs.height == 0:
        raise ValueError("no pairs: nothing to lay out")
    all_cohorts = sorted(set(pairs["cohort"].to_list()))
    wanted = all_cohorts if cohorts is None else sorted(set(cohorts))
    outcomes = _outcomes(sector_rel_wage)
    months = (arrays.months[0], arrays.months[-1])
    panel = panel_signature(arrays.panel_dir) if arrays.panel_dir is not None else "memory"
    first = np.datetime64(arrays.months[0], "M")
    for c in wanted:
        if int((np.datetime64(c, "M") - first).astype(np.int64)) < 0:
            raise ValueError(f"cohort {_key(c)} precedes the loaded months")
        pc = pairs.filter(pl.col("cohort") == c)
        if pc.height == 0:
            raise ValueError(f"no pairs of cohort {_key(c)}")
        fp = cohort_fingerprint(pc, treatment, months=months, outcomes=outcomes,
                                sector_rel_wage=sector_rel_wage, panel=panel)
        if stored_fingerprint(store, c) == fp:
            part = read_cohort(store, c) if read else None
            was_stored = True
        else:
            traj = build_trajectories(arrays, pc, treatment, outcomes=outcomes,
                                      sector_rel_wage=sector_rel_wage)
            if write:
                write_cohort(traj, c, store, fp)
            part = _as_part(traj)
            was_stored = False
        if part is not None:
            part["cohort"] = np.array([np.datetime64(c, "M")])
        yield _key(c), part, was_stored


def prune(store: Path, keep: Sequence[date]) -> list[str]:
    """Remove stored cohorts not in ``keep`` (e.g. after a new twins plan dropped a cohort);
    returns their keys."""
    import shutil

    wanted = {f"cohort={_key(c)}" for c in keep}
    gone = []
    for folder in sorted(Path(store).glob("cohort=*")):
        if folder.name not in wanted:
            shutil.rmtree(folder)
            gone.append(folder.name.removeprefix("cohort="))
    return gone


def _outcomes(sector_rel_wage: Mapping[str, float] | None) -> tuple[str, ...]:
    """The outcomes :func:`~impact.outcomes.build_trajectories` holds by default."""
    from impact.outcomes import OUTCOMES

    return tuple(o for o in OUTCOMES if o != "sector_rel_wage" or sector_rel_wage)


def _as_part(traj: Trajectories) -> dict[str, np.ndarray]:
    """The arrays :func:`write_cohort` stores, without writing them."""
    part: dict[str, np.ndarray] = {
        "treated_code": traj.treated_code.astype(str),
        "end_month": _dates(traj.months, traj.end),
        "pair_treated": traj.pair_treated,
        "twin_code": traj.twin_code.astype(str),
        "weight": traj.weight,
        "twin_start_month": _dates(traj.months, traj.twin_start),
    }
    for clock, g in traj.grids.items():
        part[f"{clock}/event_time"] = g.event_time
        part[f"{clock}/treated_status"] = g.treated_status
        part[f"{clock}/twin_status"] = g.twin_status
        for name in traj.outcomes:
            part[f"{clock}/treated/{name}"] = g.treated[name]
            part[f"{clock}/twins/{name}"] = g.twins[name]
    return part
