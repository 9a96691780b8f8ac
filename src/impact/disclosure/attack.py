"""The intruder: feasible intervals of suppressed values from the published tables.

The attacker sees only the published table, plus the worst-case side knowledge below.
Per block of rows that can share persons (one ``(population, horizon)`` when the table
has a ``population`` column, else one ``(indicator, horizon)``) one linear programme
holds, for every cell,

* ``n`` -- ``n_participants``, one variable per population cell, so a value published
  under one indicator pins the same cell hidden under another;
* ``q`` -- for kind "rate" the count ``value * n``, for kind "mean" the total
  ``value * n``, for each of ``settings.additive_columns`` present (kind "other" is not
  additive: only its ``n`` takes part);

and the constraints

* ``n(total) = sum of n(groups)`` and the same for each ``q``, per table and dimension;
* published cell: ``n`` fixed (``+- round_base/2`` when rounded), ``q = value * n``;
* hidden cell (side knowledge, the realistic worst case): ``1 <= n <= min_persons - 1``
  if its true ``n_participants`` is below the threshold, else ``n >= min_persons``
  (lower bound 0 for an empty cell); counts of a rate lie in ``[0, n]``, net counts in
  ``[-n, n]``; totals of a mean are non-negative when every true value of that indicator
  and column is (a public fact such as "earnings >= 0"), else free;
* ``q(net) = q(participants) - q(twins)`` in every cell when the true table satisfies it.

Each hidden ``n`` and ``q`` is minimised and maximised with HiGHS (the build behind
:func:`scipy.optimize.linprog`; one model per block, warm-started primal simplex, only the
objective changes between programmes). It is *recovered* when ``max - min`` is below the
protection width: a person (``protection_persons``) for ``n`` and counts,
``protection_pct`` % of the true value for totals. Totals of a mean are scaled per
indicator inside the programme for numerical stability. ``n_twins`` is not additive (a
twin serves several groups) and is not attacked. :class:`Auditor` audits successive
versions of one table, re-solving only blocks whose published rows changed, and can skip
programmes whose answer is already implied (``exact=False``).
Not modelled: nesting of populations across horizons (attrition) or indicators.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize._highspy import _core as _highs  # the HiGHS build behind linprog
from scipy.sparse import csc_array

from impact.disclosure.settings import DisclosureSettings
from impact.disclosure.table import KEY, TOTAL, prepare

__all__ = ["AUDIT_SCHEMA", "Auditor", "audit", "audit_prepared"]

AUDIT_SCHEMA: dict[str, Any] = {
    "indicator": pl.String, "dimension": pl.String, "group": pl.String, "horizon": pl.Int64,
    "quantity": pl.String, "true_value": pl.Float64, "lower": pl.Float64,
    "upper": pl.Float64, "width": pl.Float64, "required_width": pl.Float64,
    "recovered": pl.Boolean, "status": pl.String,
}
_INF = math.inf
_NET_TOL = 1e-9
#: smallest spread of found vertices (in programme units, 10x HiGHS' primal feasibility
#: tolerance) taken as proof of a wide interval; narrower spreads could be round-off
_SPREAD_FLOOR = 1e-6


@dataclass
class _Program:
    """A linear programme under construction (sparse rows as {column: coefficient})."""

    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    eq: list[tuple[dict[int, float], float]] = field(default_factory=list)
    le: list[tuple[dict[int, float], float]] = field(default_factory=list)

    def var(self, lo: float, hi: float) -> int:
        self.lower.append(lo)
        self.upper.append(hi)
        return len(self.lower) - 1

    def solver(self) -> _Solver:
        """The programme as one HiGHS model (``-inf <= a x <= b`` rows first, like linprog)."""
        rows = self.le + self.eq
        data, ri, ci = [], [], []
        for r, (coef, _) in enumerate(rows):
            for c, v in coef.items():
                ri.append(r)
                ci.append(c)
                data.append(v)
        a = csc_array((data, (ri, ci)), shape=(len(rows), len(self.lower)))
        a.sort_indices()
        row_up = np.array([b for _, b in rows], dtype=np.float64)
        row_lo = row_up.copy()
        row_lo[:len(self.le)] = -_INF
        return _Solver(a, row_lo, row_up, np.array(self.lower, dtype=np.float64),
                       np.array(self.upper, dtype=np.float64))


class _Solver:
    """One HiGHS model per block; each LP only changes the objective.

    Primal simplex restarts from the previous optimal basis, which stays primal feasible
    when only the cost vector changes, so most of the ``2 x hidden values`` programmes
    of a block take a few pivots. Every optimal vertex is a feasible point of the
    attacker's model: ``seen_lo`` / ``seen_hi`` keep the range of values each variable
    took over the vertices found so far, an inner bound of its feasible interval.
    """

    def __init__(self, a: Any, row_lo: Any, row_up: Any, col_lo: Any, col_up: Any) -> None:
        self.size = len(col_lo)
        h = _highs._Highs()
        for key, value in (("output_flag", False), ("log_to_console", False),
                           ("simplex_strategy", 4)):  # 4 = primal simplex
            h.setOptionValue(key, value)
        lp = _highs.HighsLp()
        lp.num_col_, lp.num_row_ = self.size, len(row_up)
        lp.col_cost_ = np.zeros(self.size)
        lp.col_lower_, lp.col_upper_ = col_lo, col_up
        lp.row_lower_, lp.row_upper_ = row_lo, row_up
        lp.a_matrix_.format_ = _highs.MatrixFormat.kColwise
        lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = self.size, len(row_up)
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        h.passModel(lp)
        self._highs = h
        self._cost_var: int | None = None
        self.feasible = False  # some programme of this model had an optimal solution
        self.seen_lo = np.full(self.size, _INF)
        self.seen_hi = np.full(self.size, -_INF)

    def extreme(self, var: int, sign: float) -> tuple[float, str]:
        """``min`` (sign +1) or ``-max`` (sign -1) of one variable, and the status."""
        h = self._highs
        if self._cost_var is not None and self._cost_var != var:
            h.changeColCost(self._cost_var, 0.0)
        h.changeColCost(var, sign)
        self._cost_var = var
        h.run()
        status = h.getModelStatus()
        if status == _highs.HighsModelStatus.kOptimal:
            x = np.asarray(h.getSolution().col_value, dtype=np.float64)
            np.minimum(self.seen_lo, x, out=self.seen_lo)
            np.maximum(self.seen_hi, x, out=self.seen_hi)
            self.feasible = True
            return float(h.getInfo().objective_function_value), "optimal"
        if status == _highs.HighsModelStatus.kUnbounded or (
                # the feasible region is the same for every objective
                status == _highs.HighsModelStatus.kUnboundedOrInfeasible and self.feasible):
            return -_INF, "optimal"
        # a failed solve must not leave a broken basis for the next programme
        h.clearSolver()
        return math.nan, "infeasible" if status == _highs.HighsModelStatus.kInfeasible \
            else "error"

    def interval(self, var: int) -> tuple[float, float, str]:
        lo, s1 = self.extreme(var, 1.0)
        neg_hi, s2 = self.extreme(var, -1.0)
        status = s1 if s1 != "optimal" else s2
        return lo, -neg_hi, status

    def decide(self, var: int, scale: float, required: float) -> tuple[float, float, str]:
        """Enough of the interval of ``var`` to tell whether its width reaches ``required``.

        No programme is solved when two vertices found so far already lie ``required``
        (and at least ``_SPREAD_FLOOR``) apart: the feasible interval contains their
        range. Else the minimum is solved, and the maximum only if the vertices still do
        not span ``required``. The decision is the same as from :meth:`interval`; returned
        bounds are exact when the width is below ``required``; otherwise they may be
        inner bounds (feasible values) of a wide interval.
        """
        def spans(lo: float) -> bool:
            spread = self.seen_hi[var] - lo
            return bool(spread >= _SPREAD_FLOOR and spread * scale >= required)

        if spans(self.seen_lo[var]):
            return float(self.seen_lo[var]), float(self.seen_hi[var]), "optimal"
        lo, status = self.extreme(var, 1.0)
        if status != "optimal":
            return lo, math.nan, status
        if lo == -_INF or spans(lo):
            return lo, float(self.seen_hi[var]), status
        neg_hi, status = self.extreme(var, -1.0)
        return lo, -neg_hi, status


def _align(full: pl.DataFrame, published: pl.DataFrame) -> pl.DataFrame:
    """Published n, values and the suppressed flag joined onto the prepared full table."""
    missing = [c for c in (*KEY, "n_participants") if c not in published.columns]
    if missing:
        raise ValueError(f"published table: column {missing[0]!r} is missing")
    if published.height != full.height:
        raise ValueError(f"published table has {published.height} rows, the full table "
                         f"{full.height}; both must hold the same cells")
    pub = published.with_columns(pl.col("horizon").cast(pl.Int64))
    if "suppressed" not in pub.columns:
        pub = pub.with_columns(pl.col("n_participants").is_null().alias("suppressed"))
    cols = ["n_participants", "suppressed"] + [
        c for c in full.columns if c in pub.columns and c not in (*KEY, "n_participants",
                                                                  "suppressed")]
    pub = pub.select(*KEY, *[pl.col(c).alias(f"pub:{c}") for c in cols])
    out = full.join(pub, on=list(KEY), how="left", nulls_equal=True, maintain_order="left")
    bad = out.filter(pl.col("pub:suppressed").is_null())
    if bad.height:
        raise ValueError(f"published table lacks the cell {bad.select(KEY).row(0, named=True)}")
    return out


def _knowledge(n_true: int, m: int) -> tuple[float, float]:
    """Worst-case side knowledge about a hidden n: which side of the threshold it is on."""
    lo = 1.0 if n_true >= 1 else 0.0
    return (lo, float(m - 1)) if n_true < m else (float(m), _INF)


def _block_rows(df: pl.DataFrame) -> dict[tuple[Any, Any], list[int]]:
    pop = df["population"].to_list() if "population" in df.columns else df["indicator"].to_list()
    blocks: dict[tuple[Any, Any], list[int]] = defaultdict(list)
    for i, (p, h) in enumerate(zip(pop, df["horizon"].to_list(), strict=True)):
        blocks[(p, h)].append(i)
    return blocks


def _indicator_facts(df: pl.DataFrame, qcols: list[str]) -> dict[str, dict[str, Any]]:
    """Per indicator: scale of totals, non-negative columns, whether net = p - t holds."""
    facts: dict[str, dict[str, Any]] = {}
    for (ind,), part in df.group_by(["indicator"], maintain_order=True):
        n = part["n_participants"].to_numpy().astype(np.float64)
        vals = {c: part[c].to_numpy(allow_copy=True).astype(np.float64) for c in qcols}
        mags = [np.abs(v * n) for v in vals.values()]
        scale = max([1.0, *[float(np.nanmax(a)) for a in mags if np.isfinite(a).any()]])
        nonneg = {c: bool(np.all(v[~np.isnan(v)] >= 0)) for c, v in vals.items()}
        linked = all(c in qcols for c in ("participants", "twins", "net"))
        if linked:
            p, t, d = vals["participants"], vals["twins"], vals["net"]
            ok = ~(np.isnan(p) | np.isnan(t) | np.isnan(d))
            size = np.maximum(1.0, np.maximum(np.abs(p), np.abs(t)))
            linked = bool(np.all(np.abs(p - t - d)[ok] <= _NET_TOL * size[ok]))
        facts[str(ind)] = {"scale": scale, "nonneg": nonneg, "linked": linked}
    return facts


def _audit_block(col: dict[str, list[Any]], rows: list[int], qcols: list[str],
                 facts: dict[str, dict[str, Any]], settings: DisclosureSettings,
                 exact: bool = True) -> list[dict[str, Any]]:
    """Intervals of the hidden values of one block (rows = positions in ``col``).

    With ``exact`` False only what decides ``recovered`` is computed (:meth:`_Solver.decide`):
    bounds of values that are not recovered may then be inner bounds.
    """
    m, half = settings.min_persons, (settings.round_base or 0) / 2
    prog = _Program()
    # n: one variable per population cell (dimension, group) of the block
    nvar: dict[tuple[str, str], int] = {}
    published_n: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in rows:
        if not col["pub:suppressed"][i]:
            published_n[(col["dimension"][i], col["group"][i])].append(col["pub:n_participants"][i])
    for i in rows:
        cell = (col["dimension"][i], col["group"][i])
        if cell in nvar:
            continue
        if published_n[cell]:
            lo, hi = min(published_n[cell]) - half, max(published_n[cell]) + half
            nvar[cell] = prog.var(max(lo, 0.0), hi)
        else:
            nvar[cell] = prog.var(*_knowledge(col["n_participants"][i], m))
    # q: count / total per row and additive column
    qvar: dict[tuple[int, str], int] = {}
    for i in rows:
        f, kind = facts[col["indicator"][i]], col["kind"][i]
        if kind not in ("rate", "mean"):
            continue
        n = nvar[(col["dimension"][i], col["group"][i])]
        for c in qcols:
            scale = 1.0 if kind == "rate" else f["scale"]
            if kind == "rate":
                q = prog.var(-_INF if c == "net" else 0.0, _INF)
                prog.le.append(({q: 1.0, n: -1.0}, 0.0))
                if c == "net":
                    prog.le.append(({q: -1.0, n: -1.0}, 0.0))
            else:
                q = prog.var(0.0 if f["nonneg"][c] else -_INF, _INF)
            qvar[(i, c)] = q
            value = col[f"pub:{c}"][i] if f"pub:{c}" in col else None
            if not col["pub:suppressed"][i] and value is not None:
                prog.eq.append(({q: 1.0, n: -value / scale}, 0.0))
        if f["linked"]:
            prog.eq.append(({qvar[(i, "net")]: 1.0, qvar[(i, "participants")]: -1.0,
                             qvar[(i, "twins")]: 1.0}, 0.0))
    # partitions: total = sum of groups, per table and dimension
    tables: dict[tuple[str, str], list[int]] = defaultdict(list)
    total_of: dict[str, int] = {}
    for i in rows:
        if col["dimension"][i] == TOTAL:
            total_of[col["indicator"][i]] = i
        else:
            tables[(col["indicator"][i], col["dimension"][i])].append(i)
    seen: set[tuple[int, ...]] = set()
    for (ind, _dim), groups in tables.items():
        t = total_of[ind]
        coef = {nvar[(col["dimension"][t], col["group"][t])]: -1.0}
        for g in groups:
            coef[nvar[(col["dimension"][g], col["group"][g])]] = 1.0
        sig = tuple(sorted(coef))
        if sig not in seen:
            seen.add(sig)
            prog.eq.append((coef, 0.0))
        for c in qcols:
            if (t, c) in qvar:
                prog.eq.append(({qvar[(t, c)]: -1.0} | {qvar[(g, c)]: 1.0 for g in groups},
                                0.0))
    solver = prog.solver()
    cache: dict[tuple[int, float], tuple[float, float, str]] = {}
    out: list[dict[str, Any]] = []
    for i in rows:
        if not col["pub:suppressed"][i]:
            continue
        f = facts[col["indicator"][i]]
        n_true = col["n_participants"][i]
        targets = [("n_participants", nvar[(col["dimension"][i], col["group"][i])],
                    float(n_true), 1.0, settings.protection_persons)]
        for c in qcols:
            if (i, c) not in qvar or col[c][i] is None:
                continue
            true = col[c][i] * n_true
            if col["kind"][i] == "rate":
                targets.append((f"count:{c}", qvar[(i, c)], true, 1.0,
                                settings.protection_persons))
            else:
                targets.append((f"total:{c}", qvar[(i, c)], true, f["scale"],
                                settings.protection_pct / 100 * abs(true)))
        for name, var, true, scale, required in targets:
            key = (var, math.inf if exact else required)
            if key not in cache:
                cache[key] = (solver.interval(var) if exact
                              else solver.decide(var, scale, required))
            lo, hi, status = cache[key]
            lo, hi = lo * scale, hi * scale
            width = hi - lo
            recovered = status == "optimal" and width + 1e-6 * max(1.0, required) < required
            out.append({**{k: col[k][i] for k in KEY}, "quantity": name, "true_value": true,
                        "lower": lo, "upper": hi, "width": width, "required_width": required,
                        "recovered": recovered, "status": status})
    return out


def _signature(col: dict[str, list[Any]], rows: list[int], cols: list[str]) -> tuple[Any, ...]:
    """Everything the intruder sees of a block (NaN made comparable)."""
    return tuple(tuple("nan" if isinstance(v, float) and math.isnan(v) else v
                       for v in (col[c][i] for c in cols)) for i in rows)


class Auditor:
    """The intruder audit of successive published versions of one prepared table.

    The programme of a block depends only on the full table (fixed here) and on what is
    published of the block's rows, so the result of a block whose published rows did not
    change since the previous call is reused: in the rounds of
    :func:`~impact.disclosure.control.apply_disclosure_control` only the blocks that got
    new suppressions are solved again.

    Parameters
    ----------
    full
        A table returned by :func:`impact.disclosure.table.prepare`.
    settings
        As for :func:`audit`.
    exact
        True: ``lower``/``upper`` are the attacker's exact feasible bounds (two programmes
        per hidden value). False: only ``recovered`` and ``status`` are exact -- a value
        is settled without a programme as soon as feasible points found while solving
        others lie at least the protection width apart, and ``lower``/``upper`` of such a
        value are then those points (inner bounds). ``recovered`` is the same either way.
    """

    def __init__(self, full: pl.DataFrame, settings: DisclosureSettings, *,
                 exact: bool = True) -> None:
        self.full, self.settings, self.exact = full, settings, exact
        self.qcols = [c for c in settings.additive_columns if c in full.columns]
        self._facts: dict[str, dict[str, Any]] | None = None
        self._blocks: dict[tuple[Any, Any], tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}
        #: blocks whose programmes were built and solved, over all calls
        self.blocks_solved = 0

    def __call__(self, published: pl.DataFrame) -> pl.DataFrame:
        """Audit one published version of the table; see :func:`audit`."""
        df = _align(self.full, published)
        if self._facts is None:  # true values only: the same for every published version
            self._facts = _indicator_facts(df, self.qcols)
        col = {c: df[c].to_list() for c in df.columns}
        seen = ["pub:suppressed", "pub:n_participants",
                *[f"pub:{c}" for c in self.qcols if f"pub:{c}" in col]]
        out: list[dict[str, Any]] = []
        for block, rows in _block_rows(df).items():
            if not any(col["pub:suppressed"][i] for i in rows):
                continue
            sig = _signature(col, rows, seen)
            cached = self._blocks.get(block)
            if cached is None or cached[0] != sig:
                cached = (sig, _audit_block(col, rows, self.qcols, self._facts,
                                            self.settings, self.exact))
                self._blocks[block] = cached
                self.blocks_solved += 1
            out += cached[1]
        return pl.DataFrame(out, schema=AUDIT_SCHEMA)


def audit_prepared(full: pl.DataFrame, published: pl.DataFrame,
                   settings: DisclosureSettings, *, exact: bool = True) -> pl.DataFrame:
    """:func:`audit` on a table already returned by :func:`impact.disclosure.table.prepare`."""
    return Auditor(full, settings, exact=exact)(published)


def audit(full: pl.DataFrame, published: pl.DataFrame,
          settings: DisclosureSettings | None = None) -> pl.DataFrame:
    """Play the intruder on a published table; one row per hidden cell and quantity.

    Parameters
    ----------
    full
        The unsuppressed cell table (inside the secure environment: the audit needs the
        true values to judge protection and to give the attacker worst-case knowledge).
    published
        The published table, e.g. from :func:`apply_disclosure_control`: the same cells,
        with a ``suppressed`` column (else a null ``n_participants`` marks a hidden cell),
        possibly rounded n.
    settings
        ``min_persons``, ``round_base``, ``additive_columns``, ``protection_persons``,
        ``protection_pct``.

    Returns
    -------
    polars.DataFrame
        Columns of :data:`AUDIT_SCHEMA`: the cell key, ``quantity`` ("n_participants",
        "count:<column>" for rates, "total:<column>" for means), ``true_value``, the
        attacker's feasible ``lower``/``upper`` bound, ``width``, ``required_width``,
        ``recovered`` (width below the required width) and the LP ``status`` ("optimal";
        "infeasible" means the published values contradict the attacker's model).
    """
    settings = settings or DisclosureSettings()
    return audit_prepared(prepare(full, settings), published, settings)
