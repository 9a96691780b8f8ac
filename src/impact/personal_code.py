"""Latvian personal codes (*personas kods*): generation, normalisation and validation.

Two formats are in use, both 11 digits, conventionally written with a hyphen after the
sixth digit:

Legacy format ``DDMMYY-CNNNK`` (issued until 30 June 2017, still valid for life)
    ``DDMMYY`` is the date of birth, ``C`` the century digit (0 = 1800s, 1 = 1900s,
    2 = 2000s), ``NNN`` a serial number and ``K`` a check digit::

        K = (1101 - sum(w_i * d_i for i in 1..10)) mod 11,   w = (1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

    A prefix whose computed check value is 10 cannot be completed by a single digit, so
    such codes are never issued; we treat them as invalid. Because every weight is
    non-zero modulo the prime 11, *any* single-digit error in the first ten digits changes
    the computed check value, and a change of ``K`` itself is a mismatch, so every
    single-digit substitution is detected (and every adjacent transposition within the
    first ten digits, since consecutive weights differ modulo 11). The one exception: an
    error that makes the code start with ``32`` (e.g. day ``22`` typed as ``32``) yields a
    syntactically valid *new-format* code, which has no checksum to fail.

New format ``32NNNN-NNNNN`` (issued since 1 July 2017)
    Starts with ``32`` (never a legal day of month, so the formats cannot be confused),
    carries no birth date and has **no public checksum**. Validation can therefore only
    check the prefix and that there are eleven digits; a mistyped new-format code is
    undetectable here and must be caught by linkage (e.g. against the population register).

Sources and assumptions
-----------------------
* The check-digit rule is the one used by the Latvian population register as described
  in public references (e.g. OECD "Latvia - Information on Tax Identification Numbers").
  ``python-stdnum`` (``stdnum.lv.pvn``) implements the same rule in the equivalent form
  ``(1 + sum(w'_i d_i)) mod 11`` with ``w' = -w mod 11`` and its documented example
  ``161175-19997`` passes here; note that stdnum maps a check value of 10 to the digit 0,
  whereas we follow the rule that such codes are not issued. Real registers may hold a
  handful of historical codes that fail the checksum; the data contracts decide how to
  treat those (quarantine, not silent repair).
* The serial digits ``NNN`` have no public structure; generation draws them uniformly.
* Plausibility beyond the calendar (birth date not in the future, age range) is a data
  contract rule, not part of code validity.
* Normalisation removes ASCII whitespace (space, ``\\t \\n \\r \\f \\v``) and hyphens
  anywhere in the string, so ``"120785 12347"`` and ``"120785-12347"`` are the same code.
  Anything else (letters, other separators, non-ASCII digits) makes a code invalid.

The polars expressions (:func:`valid_expr`, :func:`normalise_expr`,
:func:`birth_date_expr`) are the implementation used at full volume; the numpy-facing
functions (:func:`is_valid`, :func:`normalise`, :func:`birth_date`) evaluate the same
expressions, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

__all__ = [
    "CHECK_WEIGHTS",
    "NEW_FORMAT_PREFIX",
    "birth_date",
    "birth_date_expr",
    "check_value",
    "corrupt_check_digit",
    "generate_legacy",
    "generate_new",
    "is_valid",
    "normalise",
    "normalise_expr",
    "valid_expr",
]

#: Weights of the first ten digits in the legacy check-digit rule.
CHECK_WEIGHTS: tuple[int, ...] = (1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: Prefix of every new-format (post 1 July 2017) personal code.
NEW_FORMAT_PREFIX = "32"

_W = np.asarray(CHECK_WEIGHTS, dtype=np.int64)
#: characters removed by normalisation (ASCII whitespace and hyphen)
_STRIP_REGEX = r"[ \t\n\r\f\v-]"
#: powers of ten for the 11 digits of a code held as an int64, most significant first
_POW11 = 10 ** np.arange(10, -1, -1, dtype=np.int64)
#: random rounds before the deterministic fill in :func:`generate_legacy`
_LEGACY_RANDOM_ROUNDS = 8
#: dates handled per block in the deterministic fill (bounds memory to ~4 MB per block)
_FILL_BLOCK = 1024
_NEW_MAX_ROUNDS = 64

CodesLike = np.ndarray | pl.Series | Sequence[str | None]


# --------------------------------------------------------------------------- checksum
def check_value(first10: np.ndarray) -> np.ndarray:
    """Legacy check value for an ``(n, 10)`` array of digits.

    Parameters
    ----------
    first10
        Integer array of shape ``(n, 10)`` holding the first ten digits of each code.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(n,)`` with values 0-10; 10 means "not issuable".
    """
    d = np.asarray(first10, dtype=np.int64)
    return (1101 - d @ _W) % 11


def _serial_invalid_table() -> np.ndarray:
    """``table[r, t]`` is True when serial ``t`` gives check value 10 after a prefix whose
    weighted sum of the first seven digits is congruent to ``r`` modulo 11."""
    t = np.arange(1000, dtype=np.int64)
    serial_sum = 8 * (t // 100) + 4 * (t // 10 % 10) + 2 * (t % 10)
    r = np.arange(11, dtype=np.int64)[:, None]
    return (1101 - r - serial_sum[None, :]) % 11 == 10


_SERIAL_INVALID = _serial_invalid_table()


# --------------------------------------------------------------------------- formatting
def _format_codes(codes11: np.ndarray) -> np.ndarray:
    """Format 11-digit integers as hyphenated ``NNNNNN-NNNNN`` strings (``<U12``)."""
    digits = (np.asarray(codes11, dtype=np.int64)[:, None] // _POW11) % 10
    out = np.empty((digits.shape[0], 12), dtype=np.uint8)
    out[:, :6] = digits[:, :6] + 48
    out[:, 6] = ord("-")
    out[:, 7:] = digits[:, 6:] + 48
    return np.ascontiguousarray(out).view("S12").ravel().astype("U12")


def _as_series(codes: CodesLike) -> pl.Series:
    """Coerce an array, list or polars Series of strings (or None) to a String Series."""
    if isinstance(codes, pl.Series):
        if codes.dtype == pl.String:
            return codes
        if codes.dtype == pl.Null:
            return codes.cast(pl.String)
        raise TypeError(f"personal codes must be strings, got a Series of {codes.dtype}")
    arr = np.asarray(codes, dtype=object) if not isinstance(codes, np.ndarray) else codes
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "latin-1")
    if arr.dtype.kind == "U":
        return pl.Series("code", arr, dtype=pl.String)
    if arr.dtype != object:
        raise TypeError(f"personal codes must be strings, got an array of {arr.dtype}")
    try:
        return pl.Series("code", arr.tolist(), dtype=pl.String, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as exc:  # non-string elements
        raise TypeError("personal codes must be str or None") from exc


def _col(col: str | pl.Expr) -> pl.Expr:
    return pl.col(col) if isinstance(col, str) else col


def _evaluate(s: pl.Series, make_expr: Callable[[str], pl.Expr]) -> pl.Series:
    """Evaluate an expression on a Series through a lazy query.

    Lazy evaluation lets polars eliminate the common sub-expressions of
    :func:`_components` (eager ``select`` does not, and is ~5x slower here).
    """
    lf = pl.LazyFrame({"code": s})
    return lf.select(make_expr("code").alias("out")).collect().to_series()


# --------------------------------------------------------------------------- expressions
def normalise_expr(col: str | pl.Expr) -> pl.Expr:
    """Polars expression: remove ASCII whitespace and hyphens from a string column.

    Parameters
    ----------
    col
        Column name or expression of dtype String.

    Returns
    -------
    polars.Expr
        The compact form (11 digits for a well-formed code); null stays null. No other
        repair is attempted, so malformed input stays malformed and fails validation.
    """
    return _col(col).str.replace_all(_STRIP_REGEX, "")


def _components(col: str | pl.Expr) -> dict[str, pl.Expr]:
    """Expressions for the parts of a code, all derived from one integer parse.

    ``shape_ok`` says the normalised string is exactly 11 ASCII digits; the numeric parts
    are null or meaningless otherwise and must always be combined with it. Every part
    refers to the same sub-expressions, which polars' common-subexpression elimination
    computes once in lazy queries.
    """
    s = normalise_expr(col)
    shape_ok = s.str.contains(r"^[0-9]{11}$").fill_null(False)
    num = s.str.to_integer(base=10, strict=False)
    digit = [(num // 10 ** (10 - i)) % 10 for i in range(11)]
    day = num // 10**9
    month = (num // 10**7) % 100
    century = digit[6]
    year = 1800 + 100 * century + (num // 10**5) % 100
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days_in_month = (
        pl.when(month == 2)
        .then(28 + leap.cast(pl.Int64))
        .when(month.is_in([4, 6, 9, 11]))
        .then(30)
        .otherwise(31)
    )
    weighted = digit[0] * CHECK_WEIGHTS[0]
    for w, d in zip(CHECK_WEIGHTS[1:], digit[1:10], strict=True):
        weighted = weighted + d * w
    check = (1101 - weighted) % 11
    is_new = s.str.starts_with(NEW_FORMAT_PREFIX).fill_null(False)
    legacy_ok = (
        shape_ok
        & ~is_new
        & (century <= 2)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= days_in_month)
        & (check != 10)
        & (check == digit[10])
    ).fill_null(False)
    return {
        "normalised": s,
        "shape_ok": shape_ok,
        "is_new": is_new,
        "legacy_ok": legacy_ok,
        "year": year,
        "month": month,
        "day": day,
    }


def valid_expr(col: str | pl.Expr) -> pl.Expr:
    """Polars expression: is the string a valid Latvian personal code?

    Rules (after :func:`normalise_expr`): exactly 11 ASCII digits, and either

    * new format: starts with ``"32"`` (no checksum exists to test), or
    * legacy format: century digit in {0, 1, 2}, a real calendar date ``DDMMYY`` in that
      century (leap years per the Gregorian rule) and a matching check digit (a computed
      check value of 10 is never valid).

    Null and empty strings give False (never null).

    Parameters
    ----------
    col
        Column name or String expression.

    Returns
    -------
    polars.Expr
        Boolean expression.
    """
    c = _components(col)
    return (c["shape_ok"] & (c["is_new"] | c["legacy_ok"])).fill_null(False)


def birth_date_expr(col: str | pl.Expr) -> pl.Expr:
    """Polars expression: birth date encoded in a valid legacy code, else null.

    New-format and invalid codes give null (the new format carries no birth date).
    """
    c = _components(col)
    good = c["legacy_ok"]
    # neutral components for rows that are not valid, so pl.date never sees e.g. 31 Feb
    y = pl.when(good).then(c["year"]).otherwise(2000)
    m = pl.when(good).then(c["month"]).otherwise(1)
    d = pl.when(good).then(c["day"]).otherwise(1)
    return pl.when(good).then(pl.date(y, m, d)).otherwise(None)


# --------------------------------------------------------------------------- array API
def normalise(codes: CodesLike) -> np.ndarray:
    """Remove ASCII whitespace and hyphens (see :func:`normalise_expr`).

    Parameters
    ----------
    codes
        numpy array, list or polars Series of str (None allowed).

    Returns
    -------
    numpy.ndarray
        Object array of compact strings (None where the input was None).
    """
    return _evaluate(_as_series(codes), normalise_expr).to_numpy().astype(object)


def is_valid(codes: CodesLike) -> np.ndarray:
    """Validate personal codes (either format), with or without the hyphen.

    Parameters
    ----------
    codes
        numpy array, list or polars Series of str; None and empty strings are invalid.

    Returns
    -------
    numpy.ndarray
        Boolean array, same length as ``codes``. See :func:`valid_expr` for the rules.
    """
    out = _evaluate(_as_series(codes), valid_expr)
    return out.to_numpy().astype(bool, copy=False)


def birth_date(codes: CodesLike) -> np.ndarray:
    """Birth dates encoded in legacy codes as ``datetime64[D]`` (NaT if none).

    New-format codes and invalid codes give NaT.
    """
    out = _evaluate(_as_series(codes), birth_date_expr)
    return out.to_numpy().astype("datetime64[D]")


# --------------------------------------------------------------------------- generation
def _date_parts(birth_dates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bd = np.asarray(birth_dates).astype("datetime64[D]")
    if np.isnat(bd).any():
        raise ValueError("birth_dates contains NaT")
    year = bd.astype("datetime64[Y]").astype(np.int64) + 1970
    month_start = bd.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day = (bd - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def generate_legacy(birth_dates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Generate unique, valid legacy-format codes for the given birth dates.

    Parameters
    ----------
    birth_dates
        ``datetime64[D]`` array (anything convertible to it), years 1800-2099.
    rng
        numpy random generator; the result is a deterministic function of its state.

    Returns
    -------
    numpy.ndarray
        ``<U12`` array of hyphenated codes ``DDMMYY-CNNNK``, one per birth date, all
        distinct, all passing :func:`is_valid`, encoding exactly the given birth dates.

    Raises
    ------
    ValueError
        If a date is outside 1800-2099, or if more people share one birth date than the
        roughly 909 serials that date can issue.

    Notes
    -----
    Serials are drawn uniformly from 000-999. Draws that give check value 10 or collide
    with another person of the same birth date are redrawn, over the colliding subset
    only, for a few rounds; whatever is left (only happens for dates close to capacity)
    is then filled deterministically with free serials in random order, so the loop is
    bounded and always terminates.
    """
    year, month, day = _date_parts(birth_dates)
    n = year.size
    if n == 0:
        return np.empty(0, dtype="U12")
    century = year // 100 - 18
    if ((century < 0) | (century > 2)).any():
        raise ValueError("legacy personal codes encode birth years 1800-2099 only")
    yy = year % 100
    # 7-digit prefix DDMMYYC as an integer; one value per birth date
    prefix = day * 100_000 + month * 1_000 + yy * 10 + century
    prefix_digits = (prefix[:, None] // 10 ** np.arange(6, -1, -1, dtype=np.int64)) % 10
    residue = (prefix_digits @ _W[:7]) % 11

    # capacity per birth date = serials whose check value is not 10
    dates, inverse, counts = np.unique(prefix, return_inverse=True, return_counts=True)
    date_residue = np.empty(dates.size, dtype=np.int64)
    date_residue[inverse] = residue
    capacity = 1000 - _SERIAL_INVALID[date_residue].sum(axis=1)
    if (counts > capacity).any():
        worst = int(np.argmax(counts - capacity))
        raise ValueError(
            f"{counts[worst]} people share birth date prefix {dates[worst]:07d}, "
            f"but only {capacity[worst]} legacy serials exist for it"
        )

    serial = np.zeros(n, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    for _ in range(_LEGACY_RANDOM_ROUNDS):
        idx = np.flatnonzero(pending)
        if idx.size == 0:
            break
        serial[idx] = rng.integers(0, 1000, idx.size)
        # only rows sharing a birth date with a redrawn row can collide
        rows = np.flatnonzero(np.isin(inverse, np.unique(inverse[idx])))
        pending = _pending_after_draw(rows, prefix, serial, residue, pending)

    if pending.any():
        _fill_deterministically(pending, inverse, residue, serial, dates.size, rng)

    first10 = prefix * 1000 + serial
    check = (1101 - _digits10(first10) @ _W) % 11
    return _format_codes(first10 * 10 + check)


def _digits10(first10: np.ndarray) -> np.ndarray:
    return (first10[:, None] // 10 ** np.arange(9, -1, -1, dtype=np.int64)) % 10


def _pending_after_draw(
    rows: np.ndarray,
    prefix: np.ndarray,
    serial: np.ndarray,
    residue: np.ndarray,
    pending: np.ndarray,
) -> np.ndarray:
    """Rows (among ``rows``) whose serial is unusable: check value 10 or a duplicate.

    Among equal codes, rows that were already settled (not pending) win, so settled rows
    are never disturbed and the number of settled rows never decreases.
    """
    code = prefix[rows] * 1000 + serial[rows]
    bad = _SERIAL_INVALID[residue[rows], serial[rows]]
    order = np.lexsort((pending[rows], code))  # by code, settled rows first
    sc = code[order]
    dup_sorted = np.zeros(sc.size, dtype=bool)
    dup_sorted[1:] = sc[1:] == sc[:-1]
    dup = np.empty_like(dup_sorted)
    dup[order] = dup_sorted
    out = np.zeros(pending.size, dtype=bool)
    out[rows] = dup | bad
    return out


def _fill_deterministically(
    pending: np.ndarray,
    inverse: np.ndarray,
    residue: np.ndarray,
    serial: np.ndarray,
    n_dates: int,
    rng: np.random.Generator,
) -> None:
    """Give every pending row a free, issuable serial of its birth date (in place)."""
    pend_idx = np.flatnonzero(pending)
    pend_dates = np.unique(inverse[pend_idx])
    date_pos = np.full(n_dates, -1, dtype=np.int64)
    date_pos[pend_dates] = np.arange(pend_dates.size)
    settled = np.flatnonzero(~pending & (date_pos[inverse] >= 0))
    for lo in range(0, pend_dates.size, _FILL_BLOCK):
        block = pend_dates[lo : lo + _FILL_BLOCK]
        m = block.size
        local = np.full(n_dates, -1, dtype=np.int64)
        local[block] = np.arange(m)
        # residue of each date in the block (all rows of a date share it)
        rep = np.zeros(m, dtype=np.int64)
        rows_in_block = np.flatnonzero(local[inverse] >= 0)
        rep[local[inverse[rows_in_block]]] = residue[rows_in_block]
        used = _SERIAL_INVALID[rep].copy()
        s_rows = settled[local[inverse[settled]] >= 0]
        used[local[inverse[s_rows]], serial[s_rows]] = True
        keys = rng.random((m, 1000))
        keys[used] = np.inf
        free_order = np.argsort(keys, axis=1)
        p_rows = pend_idx[local[inverse[pend_idx]] >= 0]
        p_local = local[inverse[p_rows]]
        order = np.argsort(p_local, kind="stable")
        p_rows, p_local = p_rows[order], p_local[order]
        starts = np.searchsorted(p_local, np.arange(m))
        rank = np.arange(p_local.size) - starts[p_local]
        serial[p_rows] = free_order[p_local, rank]
    pending[:] = False


def generate_new(
    n: int,
    rng: np.random.Generator,
    exclude: CodesLike | None = None,
) -> np.ndarray:
    """Generate unique new-format codes ``32NNNN-NNNNN``.

    Parameters
    ----------
    n
        Number of codes.
    rng
        numpy random generator.
    exclude
        Codes that must not be produced (any format, hyphen optional); e.g. codes already
        issued in the same synthetic population.

    Returns
    -------
    numpy.ndarray
        ``<U12`` array of ``n`` distinct hyphenated codes, none in ``exclude``.

    Notes
    -----
    The nine digits after ``32`` are drawn uniformly (10**9 possibilities); collisions are
    redrawn over the colliding subset only. The real allocation scheme is not public, so
    no structure beyond the prefix is imitated.
    """
    if n < 0:
        raise ValueError("n must be non-negative")
    if n == 0:
        return np.empty(0, dtype="U12")
    base = int(NEW_FORMAT_PREFIX) * 10**9
    taken = np.empty(0, dtype=np.int64)
    if exclude is not None:
        ex = pl.Series("c", normalise(exclude), dtype=pl.String)
        ex = ex.filter(ex.str.contains(r"^32[0-9]{9}$").fill_null(False))
        taken = np.unique(ex.cast(pl.Int64).to_numpy())
    if n > 10**9 - taken.size:
        raise ValueError("not enough new-format codes left")
    code = np.zeros(n, dtype=np.int64)
    pending = np.ones(n, dtype=bool)
    for _ in range(_NEW_MAX_ROUNDS):
        idx = np.flatnonzero(pending)
        if idx.size == 0:
            break
        code[idx] = base + rng.integers(0, 10**9, idx.size)
        order = np.lexsort((pending, code))  # settled codes first among equals
        sc = code[order]
        dup_sorted = np.zeros(n, dtype=bool)
        dup_sorted[1:] = sc[1:] == sc[:-1]
        dup = np.empty_like(dup_sorted)
        dup[order] = dup_sorted
        pending = dup | np.isin(code, taken)
    if pending.any():  # pragma: no cover - needs ~10**9 codes to happen
        raise RuntimeError("could not draw enough distinct new-format codes")
    return _format_codes(code)


def corrupt_check_digit(codes: CodesLike, rng: np.random.Generator) -> np.ndarray:
    """Return the legacy codes with a wrong check digit (to inject errors in tests).

    Parameters
    ----------
    codes
        Valid legacy-format codes (hyphen optional).
    rng
        numpy random generator.

    Returns
    -------
    numpy.ndarray
        ``<U12`` hyphenated codes identical to the input except for the last digit, which
        is replaced by a different, uniformly drawn digit. Because the correct check digit
        is unique, every returned code fails :func:`is_valid`.

    Raises
    ------
    ValueError
        If any input is not a valid legacy-format code (new-format codes have no check
        digit to corrupt).
    """
    s = _as_series(codes)
    legacy = _evaluate(s, lambda c: _components(c)["legacy_ok"])
    if not legacy.all():
        raise ValueError("corrupt_check_digit needs valid legacy-format codes")
    compact = _evaluate(s, normalise_expr).cast(pl.Int64).to_numpy()
    k = compact % 10
    wrong = (k + rng.integers(1, 10, compact.size)) % 10
    return _format_codes(compact - k + wrong)
