"""Statistical-twin matching: nearest neighbours within exact strata, on a score or Mahalanobis.

One call of :func:`match` is one matching problem (e.g. one cohort month in risk-set
matching): a frame with a unit id, a treated flag, feature columns and optional exact-strata
columns. The result names every treated unit's twins with ATT weights, and every treated unit
left without a twin together with the reason, so no unit is dropped silently.

Determinism
-----------
Each control gets a *tie key*: a seeded 64-bit mix (splitmix64) of its integer id, or of the
rank of its id among the call's ids when ids are not integers. The rows are put in key order
before anything is computed (propensity fit included), ties in distance are broken by the key,
and the ``"random"`` greedy order is the key order. Hence: same data and seed -> same twins,
whatever the order of the input rows (with an ``id`` column; without one the row number is the
id and the row order matters). A different ``seed`` only changes which of several equidistant
controls is taken.

Assumptions
-----------
- Ids are unique within the call; the treated flag is boolean or 0/1; features and exact
  columns have no nulls.
- Matching features must be measured before treatment (no look-ahead); that is the caller's
  contract (design.md, section 5).
- Exact strata are formed from the distinct value combinations of ``exact``; per-stratum work
  is independent (``n_jobs`` threads, or one call per stratum in separate processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from impact.twins import _nn
from impact.twins.design import DesignSpec, check_no_nulls
from impact.twins.options import MatchOptions
from impact.twins.propensity import PropensityModel, treatment_vector

_U64 = np.uint64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser (a bijective 64-bit mix), wrapping uint64 arithmetic."""
    z = x.astype(np.uint64) + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def tie_order(ids: pl.Series, seed: int) -> np.ndarray:
    """Permutation putting rows in seeded tie-key order (independent of input row order).

    Parameters
    ----------
    ids
        Unique unit ids (any sortable dtype).
    seed
        Seed of the key; the key of an integer id depends only on the id and the seed.

    Returns
    -------
    numpy.ndarray
        Row positions sorted by key (keys are distinct for distinct ids).
    """
    if ids.dtype.is_integer():
        base = ids.cast(pl.Int64).to_numpy().view(np.uint64)
    else:  # rank of the id among the call's ids (unique, as ids are)
        base = np.empty(ids.len(), dtype=np.uint64)
        base[ids.arg_sort().to_numpy()] = np.arange(ids.len(), dtype=np.uint64)
    salt = _splitmix64(np.array([seed], dtype=np.int64).view(np.uint64))[0]
    # splitmix64 and xor with a constant are bijections: distinct ids get distinct keys
    key = _splitmix64(base ^ salt)
    return np.argsort(key, kind="stable")


def to_polars(frame: Any) -> pl.DataFrame:
    """Accept a polars or pandas DataFrame (pandas is converted, its index dropped)."""
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(frame, pd.DataFrame):
        return pl.from_pandas(frame, include_index=False)
    raise TypeError(f"expected a polars or pandas DataFrame, got {type(frame).__name__}")


@dataclass(frozen=True)
class MatchResult:
    """Result of one matching problem.

    Attributes
    ----------
    pairs : polars.DataFrame
        One row per (treated, twin): ``treated_id``, ``control_id``, ``weight`` (``1/k'``,
        ``k'`` = number of twins of that treated unit), ``distance`` (|logit difference|, or
        Mahalanobis distance with ``distance="mahalanobis"`` or ``mahvars``), ``rank``
        (1 = nearest), ``stratum``, ``match_pass`` (0 = the ``exact`` strata, 1 = the first
        ``exact_fallback`` level, ...).
    unmatched : polars.DataFrame
        Treated units without any twin: ``treated_id``, ``stratum`` (of the last pass they
        entered), ``reason`` (``"no_controls"``: no control in the stratum; ``"caliper"``:
        nearest (available) control outside the caliper; ``"exhausted"``: without
        replacement, all controls of the stratum already used) and ``nearest_distance``.
    strata : polars.DataFrame
        Per stratum of every pass (``match_pass``; codes unique over passes; the columns a
        coarser level drops are null): the exact columns' values, ``n_treated`` (treated
        units the pass matched there), ``n_controls`` (controls it could use), ``n_matched``
        (treated with at least one twin), ``n_unmatched`` and its split by reason
        (``n_unmatched_caliper``, ``n_unmatched_no_controls``, ``n_unmatched_exhausted``),
        ``n_controls_used`` and ``n_pairs``. A treated unit unmatched in one pass is counted
        again in the stratum of the next; the first pass holds every treated unit once.
    units : polars.DataFrame
        One row per input unit: ``id``, ``treated``, ``stratum``, ``score`` (logit; null for
        Mahalanobis) and ``weight``, the ATT matching weight (matched treated 1, unmatched
        treated 0, control: sum of ``1/k'`` over the treated units it serves, 0 if unused).
    options : MatchOptions
    caliper_distance : float
        The caliper on the distance scale actually applied (``inf``: none).
    score_sd : float or None
        SD of the logit score used to standardise the caliper (glm only).
    propensity : PropensityModel or None
        The model fitted for ``ps_model="per_call"``.
    id_column : str
        The id column of the input (``"_row"``: row numbers, when no ``id`` was given).
    """

    pairs: pl.DataFrame
    unmatched: pl.DataFrame
    strata: pl.DataFrame
    units: pl.DataFrame
    options: MatchOptions
    caliper_distance: float
    score_sd: float | None
    propensity: PropensityModel | None
    id_column: str

    @property
    def n_treated(self) -> int:
        """All treated units of the call (matched or not): those of the first pass."""
        first = self.strata.filter(pl.col("match_pass").fill_null(0) == 0)
        return int(first["n_treated"].sum())

    @property
    def n_matched(self) -> int:
        """Treated units with at least one twin (in any pass)."""
        return int(self.strata["n_matched"].sum())

    @property
    def n_unmatched(self) -> int:
        return self.n_treated - self.n_matched

    @property
    def unmatched_share(self) -> float:
        """Share of treated units without a twin (0 when there are no treated units)."""
        return self.n_unmatched / self.n_treated if self.n_treated else 0.0

    def n_matched_by_pass(self) -> list[int]:
        """Treated units matched in each pass (``[n_matched]`` without ``exact_fallback``)."""
        n_passes = len(self.options.exact_levels)
        by = self.strata.group_by(pl.col("match_pass").fill_null(0)).agg(pl.col("n_matched").sum())
        got = dict(by.iter_rows())
        return [int(got.get(p, 0)) for p in range(n_passes)]

    @property
    def n_controls_used(self) -> int:
        """Distinct controls serving as twins."""
        return int(self.pairs["control_id"].n_unique())

    def summary(self) -> dict[str, Any]:
        """Totals over strata (plain numbers, JSON-ready)."""
        by_reason = {r: 0 for r in _nn.REASONS.values()}
        if self.unmatched.height:
            for reason, n in self.unmatched.group_by("reason").len().iter_rows():
                by_reason[reason] = int(n)
        w = self.units.filter(~pl.col("treated"))["weight"].to_numpy()
        ess = float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0
        return {
            "n_treated": self.n_treated,
            "n_matched": self.n_matched,
            "n_unmatched": self.n_unmatched,
            "unmatched_by_reason": by_reason,
            "unmatched_share": self.unmatched_share,
            "n_matched_by_pass": self.n_matched_by_pass(),
            "n_controls_used": self.n_controls_used,
            "n_pairs": self.pairs.height,
            "control_ess": ess,
            "n_strata": self.strata.height,
            "caliper_distance": self.caliper_distance,
        }

    def attach_weights(self, frame: Any, *, name: str = "weight") -> pl.DataFrame:
        """Return ``frame`` (polars or pandas) with the ATT matching weight as column ``name``.

        Rows are matched on the id column; rows not in the match (or unused) get 0.
        """
        df = to_polars(frame)
        row_ids = self.id_column == "_row" and "_row" not in df.columns  # matched without id
        if row_ids:
            df = df.with_row_index("_row")
        w = self.units.select(pl.col("id").alias(self.id_column), pl.col("weight").alias(name))
        out = df.join(w, on=self.id_column, how="left", maintain_order="left").with_columns(
            pl.col(name).fill_null(0.0)
        )
        return out.drop("_row") if row_ids else out


def _strata_codes(df: pl.DataFrame, exact: Sequence[str] | None) -> tuple[np.ndarray, pl.DataFrame]:
    if not exact:
        return np.zeros(df.height, np.int64), pl.DataFrame(
            {"stratum": [0]}, schema={"stratum": pl.Int64}
        )
    missing = [c for c in exact if c not in df.columns]
    if missing:
        raise KeyError(f"exact columns not in the frame: {missing}")
    check_no_nulls(df, exact)
    sort_key = [  # strata numbered in the sorted order of the values (strings, not codes)
        pl.col(c).cast(pl.String) if isinstance(df.schema[c], pl.Categorical | pl.Enum) else c
        for c in exact
    ]
    table = df.select(exact).unique().sort(sort_key).with_row_index("stratum")
    table = table.with_columns(pl.col("stratum").cast(pl.Int64))
    codes = (
        df.select(exact)
        .join(table, on=list(exact), how="left", maintain_order="left")
        .get_column("stratum")
        .to_numpy()
    )
    return codes.astype(np.int64), table.select(["stratum", *exact])


def _whiten(x: np.ndarray, treated: np.ndarray) -> np.ndarray:
    """Rotate/scale ``x`` so Euclidean distance = Mahalanobis distance under the pooled
    within-group covariance (pseudo-inverse for singular directions)."""
    p = x.shape[1]
    n1, n0 = int(treated.sum()), int((~treated).sum())
    cov = np.zeros((p, p))
    for grp, n in ((treated, n1), (~treated, n0)):
        if n > 1:
            cov += np.cov(x[grp], rowvar=False).reshape(p, p) * (n - 1)
    cov /= max(n1 + n0 - 2, 1)
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > max(vals.max(initial=0.0), 0.0) * 1e-10
    if not keep.any():
        raise ValueError("Mahalanobis distance: the features have no within-group variance")
    return x @ (vecs[:, keep] / np.sqrt(vals[keep]))


def _match_stratum(
    t_points: np.ndarray,
    c_points: np.ndarray,
    t_score: np.ndarray | None,
    options: MatchOptions,
    caliper: float,
    maha: tuple[np.ndarray, np.ndarray] | None = None,
) -> _nn.StratumMatch:
    """Match one stratum (pure function of its inputs; strata are independent)."""
    if maha is not None:  # mahvars: score caliper, Mahalanobis distance within it
        return _nn.match_mahvars(
            _nn.LineSearcher(c_points),
            t_points,
            maha[0],
            maha[1],
            options.ratio,
            caliper,
            options.mahvars_candidates,
        )
    if options.distance == "glm":
        searcher: _nn.Searcher = _nn.LineSearcher(c_points)
    else:
        searcher = _nn.TreeSearcher(c_points, None if np.isinf(caliper) else caliper)
    if options.replace:
        return _nn.match_with_replacement(searcher, t_points, options.ratio, caliper)
    n_t = len(t_points)
    if options.m_order == "largest":
        order = np.lexsort((np.arange(n_t), -t_score))
    elif options.m_order == "smallest":
        order = np.lexsort((np.arange(n_t), t_score))
    else:  # "random": the seeded tie-key order the treated units arrive in
        order = np.arange(n_t)
    return _nn.match_greedy(searcher, t_points, options.ratio, caliper, order)


def match(
    frame: Any,
    *,
    treatment: str,
    features: Sequence[str] = (),
    id: str | None = None,
    options: MatchOptions | None = None,
    score: str | None = None,
    score_sd: float | None = None,
    n_jobs: int = 1,
) -> MatchResult:
    """Find statistical twins (nearest-neighbour controls) for the treated units of ``frame``.

    Parameters
    ----------
    frame
        polars or pandas DataFrame, one row per unit (treated or candidate control).
    treatment
        Boolean or 0/1 column, true for treated units.
    features
        Columns the distance is built from: propensity-model covariates (``distance="glm"``,
        ``ps_model="per_call"``) or Mahalanobis features. Numeric columns are standardised,
        string/categorical columns one-hot encoded (:mod:`impact.twins.design`).
    id
        Unique unit id column. Needed for results that do not depend on the row order; if
        ``None``, the row number is used.
    options
        :class:`MatchOptions` (default: MatchIt-like glm, caliper 0.2 SD, ratio 5, with
        replacement).
    score
        With ``options.ps_model="precomputed"``: the column holding the logit score (e.g. from
        a :class:`PropensityModel` fitted on all cohorts pooled).
    score_sd
        SD that turns a standardised caliper into logit units. Default: the SD of the score
        over the rows of this call. Pass the pooled SD to use one caliper width across cohorts.
    n_jobs
        Threads over strata (strata are independent problems).

    Returns
    -------
    MatchResult
    """
    opts = options or MatchOptions()
    df = to_polars(frame)
    if opts.ps_model == "precomputed" and score is None:
        raise ValueError("ps_model='precomputed' needs score=<column with the logit score>")
    if score is not None and opts.ps_model != "precomputed":
        raise ValueError("score= is only used with MatchOptions(ps_model='precomputed')")
    id_col = id if id is not None else "_row"
    if id is None:
        if "_row" in df.columns:
            raise ValueError("pass id=...: the frame already has a '_row' column")
        df = df.with_row_index("_row")
    elif id not in df.columns:
        raise KeyError(f"id column {id!r} not in the frame")
    ids = df.get_column(id_col)
    if ids.null_count():
        raise ValueError(f"id column {id_col!r} has nulls")
    if ids.n_unique() != df.height:
        raise ValueError(f"id column {id_col!r} is not unique within the call")
    exact = list(opts.exact or ())
    used_features = [] if opts.ps_model == "precomputed" else list(features)  # else unused
    mahvars = list(opts.mahvars or ())
    needed = list(
        dict.fromkeys(
            [id_col, treatment, *used_features, *mahvars, *exact, *([score] if score else [])]
        )
    )
    missing = [c for c in [*needed, *features] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {list(dict.fromkeys(missing))}")

    # canonical order: seeded tie-key order, so nothing below depends on the input row order
    df = df.select(needed)
    df = df[tie_order(df.get_column(id_col), opts.seed)]
    treated = treatment_vector(df, treatment)
    strata_codes, strata_table = _strata_codes(df, exact)

    propensity: PropensityModel | None = None
    logit: np.ndarray | None = None
    sd: float | None = None
    maha_points: np.ndarray | None = None
    if opts.distance == "glm":
        if opts.ps_model == "per_call":
            propensity = PropensityModel(C=opts.ps_C).fit(
                df, treatment=treatment, features=features
            )
            logit = propensity.logit(df)
        else:
            check_no_nulls(df, [score])
            logit = df.get_column(score).cast(pl.Float64).to_numpy()
            if not np.isfinite(logit).all():
                raise ValueError(f"score column {score!r} has NaN or infinite values")
        points = logit
        if mahvars:
            spec = DesignSpec.fit(df, mahvars, drop_first=True, standardise=True)
            maha_points = _whiten(spec.transform(df), treated)
        sd = float(score_sd) if score_sd is not None else float(np.std(logit, ddof=1))
        if opts.caliper is None:
            caliper = np.inf
        else:
            caliper = opts.caliper * sd if opts.std_caliper else opts.caliper
    else:
        if not features:
            raise ValueError("distance='mahalanobis' needs features")
        x = DesignSpec.fit(df, features, drop_first=True, standardise=True).transform(df)
        points = _whiten(x, treated)
        caliper = np.inf if opts.caliper is None else float(opts.caliper)

    def run(job: _Job) -> _nn.StratumMatch:
        if not job.t_rows.size:  # controls only: nothing to match, skip building the searcher
            e = np.zeros(0, np.int64)
            return _nn.StratumMatch(e, e, np.zeros(0), e, np.zeros(0, np.int8), np.zeros(0))
        t_score = logit[job.t_rows] if logit is not None else None
        maha = None if maha_points is None else (maha_points[job.t_rows],
                                                 maha_points[job.c_rows])
        return _match_stratum(
            points[job.t_rows], points[job.c_rows], t_score, opts, caliper, maha
        )

    # one pass per level of exact strata; a pass matches the treated left by the passes before
    waiting = treated.copy()  # treated rows still without twins
    free = ~treated  # controls a pass may use (all of them with replacement)
    tables: list[pl.DataFrame] = []
    jobs: list[_Job] = []
    results: list[_nn.StratumMatch] = []
    strata_codes = np.zeros(0, np.int64)
    first_table = pl.DataFrame()
    offset = 0
    for level, cols in enumerate(opts.exact_levels):
        if level and not waiting.any():
            break
        if level == 0:
            strata_codes, first_table = _strata_codes(df, cols)
            codes, table = strata_codes, first_table
        else:  # coarser strata from the first pass's (a few rows), not from every row
            of_first, table = _strata_codes(first_table, cols)
            codes = of_first[strata_codes]
        pass_jobs = _jobs(codes, table.height, waiting, free, offset, level)
        if n_jobs > 1 and len(pass_jobs) > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                pass_results = list(pool.map(run, pass_jobs))
        else:
            pass_results = [run(j) for j in pass_jobs]
        tables.append(
            table.with_columns(
                pl.col("stratum") + offset, pl.lit(level, dtype=pl.Int32).alias("match_pass")
            )
        )
        for job, r in zip(pass_jobs, pass_results, strict=True):
            waiting[job.t_rows[r.reason == _nn.REASON_MATCHED]] = False
            if not opts.replace:
                free[job.c_rows[r.control]] = False
        jobs += pass_jobs
        results += pass_results
        offset += table.height
    strata_table = pl.concat(tables, how="diagonal_relaxed")

    return _assemble(
        df,
        id_col,
        treated,
        strata_codes,
        strata_table,
        logit,
        jobs,
        results,
        opts,
        caliper,
        sd,
        propensity,
    )


@dataclass(frozen=True)
class _Job:
    """One stratum of one pass: its code (unique over passes), the pass, and the rows of the
    treated units it matches and of the controls it may use (in key order)."""

    stratum: int
    match_pass: int
    t_rows: np.ndarray
    c_rows: np.ndarray


def _jobs(
    codes: np.ndarray, n_strata: int, waiting: np.ndarray, free: np.ndarray, offset: int,
    level: int,
) -> list[_Job]:
    """The strata of one pass (``codes``: stratum per row) as jobs; rows stay in key order
    inside a stratum (stable sort). Pass 0 keeps strata without treated units (their
    controls are counted); later passes only those with treated units left to match."""
    by_stratum = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[by_stratum], np.arange(n_strata + 1))
    out = []
    for s in range(n_strata):
        rows = by_stratum[bounds[s] : bounds[s + 1]]
        t_rows = rows[waiting[rows]]
        if level and not t_rows.size:
            continue
        out.append(_Job(s + offset, level, t_rows, rows[free[rows]]))
    return out


def _assemble(
    df: pl.DataFrame,
    id_col: str,
    treated: np.ndarray,
    strata_codes: np.ndarray,
    strata_table: pl.DataFrame,
    logit: np.ndarray | None,
    jobs: list[_Job],
    results: list[_nn.StratumMatch],
    opts: MatchOptions,
    caliper: float,
    sd: float | None,
    propensity: PropensityModel | None,
) -> MatchResult:
    """Map per-stratum local indices back to rows and build the result tables.

    ``strata_codes``: every row's stratum of the first pass; ``jobs``/``results``: the
    strata of every pass in pass order, their codes unique over passes (rows of
    ``strata_table``). A treated unit's unmatched reason is that of the last pass it entered.
    """
    cat = np.concatenate
    e_i, e_f = np.zeros(0, np.int64), np.zeros(0)
    t_pos_a = cat([e_i, *(j.t_rows[r.treated] for j, r in zip(jobs, results, strict=True))])
    c_pos_a = cat([e_i, *(j.c_rows[r.control] for j, r in zip(jobs, results, strict=True))])
    dist = cat([e_f, *(r.distance for r in results)])
    rank = cat([e_i, *(r.rank for r in results)])
    pair_stratum = cat([e_i, *(np.full(r.treated.size, j.stratum) for j, r in
                               zip(jobs, results, strict=True))])
    pair_pass = cat([e_i, *(np.full(r.treated.size, j.match_pass) for j, r in
                            zip(jobs, results, strict=True))])
    n_twins = np.bincount(t_pos_a, minlength=df.height)
    weight = 1.0 / n_twins[t_pos_a] if t_pos_a.size else np.zeros(0)
    ids = df.get_column(id_col)
    pairs = pl.DataFrame(
        {
            "treated_id": ids.gather(t_pos_a),
            "control_id": ids.gather(c_pos_a),
            "weight": weight,
            "distance": dist,
            "rank": rank.astype(np.int32),
            "stratum": pair_stratum,
            "match_pass": pair_pass.astype(np.int32),
        }
    ).sort(["stratum", "treated_id", "rank"])

    # final state of every treated row: the pass it was last matched in (later passes win)
    reason = np.full(df.height, _nn.REASON_MATCHED, np.int8)
    nearest = np.full(df.height, np.nan)
    last_stratum = strata_codes.copy()
    for j, r in zip(jobs, results, strict=True):
        reason[j.t_rows] = r.reason
        nearest[j.t_rows] = r.nearest
        last_stratum[j.t_rows] = j.stratum
    um_rows = np.flatnonzero(treated & (reason != _nn.REASON_MATCHED))
    labels = np.array(["matched", *(_nn.REASONS[i] for i in sorted(_nn.REASONS))])
    unmatched = (
        pl.DataFrame(
            {
                "treated_id": ids.gather(um_rows),
                "stratum": last_stratum[um_rows],
                "reason": labels[reason[um_rows]],
                "nearest_distance": nearest[um_rows],
            },
            schema_overrides={"nearest_distance": pl.Float64, "reason": pl.String},
        )
        .with_columns(pl.col("nearest_distance").fill_nan(None))
        .sort(["stratum", "treated_id"])
    )

    unit_w = np.zeros(df.height)
    unit_w[treated] = (n_twins[treated] > 0).astype(np.float64)
    np.add.at(unit_w, c_pos_a, weight)
    units = (
        pl.DataFrame(
            {
                "id": ids,
                "treated": treated,
                "stratum": strata_codes,
                "score": logit if logit is not None else np.full(df.height, np.nan),
                "weight": unit_w,
            }
        )
        .with_columns(pl.col("score").fill_nan(None))
        .sort("id")
    )

    # per stratum of every pass: the treated units it matched and the controls it could use
    counts: dict[str, list[int]] = {
        k: [] for k in ("n_treated", "n_controls", "n_matched", "n_unmatched",
                        *(f"n_unmatched_{label}" for label in _nn.REASONS.values()),
                        "n_controls_used", "n_pairs")
    }
    codes = []
    for j, r in zip(jobs, results, strict=True):
        codes.append(j.stratum)
        counts["n_treated"].append(j.t_rows.size)
        counts["n_controls"].append(j.c_rows.size)
        counts["n_matched"].append(int((r.reason == _nn.REASON_MATCHED).sum()))
        counts["n_unmatched"].append(int((r.reason != _nn.REASON_MATCHED).sum()))
        for code, label in _nn.REASONS.items():
            counts[f"n_unmatched_{label}"].append(int((r.reason == code).sum()))
        counts["n_controls_used"].append(int(np.unique(r.control).size))
        counts["n_pairs"].append(int(r.treated.size))
    per_job = pl.DataFrame(
        {"stratum": pl.Series(codes, dtype=pl.Int64),
         **{k: pl.Series(v, dtype=pl.Int64) for k, v in counts.items()}}
    )
    # every stratum of the first pass is a job; a later pass's only if it had treated to match
    strata = strata_table.join(per_job, on="stratum", how="inner", maintain_order="left")
    return MatchResult(
        pairs=pairs,
        unmatched=unmatched,
        strata=strata,
        units=units,
        options=opts,
        caliper_distance=float(caliper),
        score_sd=sd,
        propensity=propensity,
        id_column=id_col,
    )
