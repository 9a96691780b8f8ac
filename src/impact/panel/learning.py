"""ILA status and prior adult learning in the person-month panel.

Event frames for :func:`impact.panel.state.cumulate` plus the per-month flags that are
not running sums. Persons without any STARS record get zeros/false (filled by the builder).

Definitions
-----------
``ila_account``
    An account was created on or before the last day of the month.
``ila_grant_balance``
    EUR of grants allocated on or before the month's last day whose final status (used,
    annulled, declined) was reached after it: the grant money available at the month's end.
``ila_in_training``
    A started course with ``started_on`` on or before the month's last day and no end, or an
    end on or after its first day.
``ila_started``, ``ila_completed``, ``ila_dropped``
    Number of courses started / completed / interrupted in the month.
``ila_courses_cum``, ``ila_spend_cum``, ``ila_co_payment_cum``
    Running totals over started courses by start month: count, public cost (grant or full
    programme funding, EUR) and co-payment (EUR).
``ila_first_start``
    Month of the person's first course start (the treatment; see :mod:`impact.episodes`),
    on every row of the person; ``not_yet_treated`` is true while the month is before it.
``prior_learning_courses``, ``prior_learning_completed``
    Adult-learning courses of earlier programmes (e.g. ESF 8.4.1) started, and completed,
    on or before the month's last day.
"""

from __future__ import annotations

import polars as pl

#: Running sums built by :func:`ila_events` / :func:`prior_learning_events`.
ILA_CUMULATIVE = ("ila_account", "ila_grant_balance", "ila_in_training", "ila_courses_cum",
                  "ila_spend_cum", "ila_co_payment_cum")
PRIOR_CUMULATIVE = ("prior_learning_courses", "prior_learning_completed")


def _ev(frame: pl.LazyFrame, when: pl.Expr, **values: pl.Expr | float | int) -> pl.LazyFrame:
    """Events on ``when``'s month with the given deltas; other ILA deltas are zero."""
    cols = {c: pl.lit(0, pl.Int32) for c in ("ila_account", "ila_in_training",
                                             "ila_courses_cum")}
    cols |= {c: pl.lit(0.0) for c in ("ila_grant_balance", "ila_spend_cum",
                                      "ila_co_payment_cum")}
    for name, v in values.items():
        cols[name] = (v if isinstance(v, pl.Expr) else pl.lit(v)).cast(_dtype(name))
    return frame.filter(when.is_not_null()).select(
        "person_code", when.dt.month_start().alias("month"),
        *[e.alias(n) for n, e in cols.items()])


def _dtype(name: str) -> pl.DataType:
    return pl.Float64() if name in ("ila_grant_balance", "ila_spend_cum",
                                    "ila_co_payment_cum") else pl.Int32()


def ila_events(accounts: pl.LazyFrame, grants: pl.LazyFrame,
               applications: pl.LazyFrame) -> pl.LazyFrame:
    """Dated deltas of the cumulative ILA columns (see the module docstring)."""
    owner = accounts.select("account_id", "person_code")
    g = grants.join(owner, on="account_id", how="inner")
    started = applications.filter(pl.col("started_on").is_not_null()).join(
        owner, on="account_id", how="inner")
    after_end = pl.col("ended_on").dt.month_start().dt.offset_by("1mo")
    return pl.concat([
        _ev(accounts, pl.col("created_on"), ila_account=1),
        _ev(g, pl.col("allocated_on"), ila_grant_balance=pl.col("amount_eur")),
        _ev(g, pl.col("status_date"), ila_grant_balance=-pl.col("amount_eur")),
        _ev(started, pl.col("started_on"), ila_in_training=1, ila_courses_cum=1,
            ila_spend_cum=pl.col("public_cost_eur"),
            ila_co_payment_cum=pl.col("co_payment_eur")),
        _ev(started, after_end, ila_in_training=-1),
    ])


def ila_month_flags(accounts: pl.LazyFrame, applications: pl.LazyFrame) -> pl.LazyFrame:
    """Courses started, completed and interrupted per person-month."""
    started = applications.filter(pl.col("started_on").is_not_null()).join(
        accounts.select("account_id", "person_code"), on="account_id", how="inner")
    starts = started.select("person_code", pl.col("started_on").dt.month_start()
                            .alias("month"), pl.lit(1).alias("s"), pl.lit(0).alias("c"),
                            pl.lit(0).alias("d"))
    ends = started.filter(pl.col("ended_on").is_not_null()).select(
        "person_code", pl.col("ended_on").dt.month_start().alias("month"),
        pl.lit(0).alias("s"), (pl.col("status") == "COMPLETED").cast(pl.Int32).alias("c"),
        (pl.col("status") != "COMPLETED").cast(pl.Int32).alias("d"))
    return pl.concat([starts, ends]).group_by("person_code", "month").agg(
        pl.col("s").sum().cast(pl.Int16).alias("ila_started"),
        pl.col("c").sum().cast(pl.Int16).alias("ila_completed"),
        pl.col("d").sum().cast(pl.Int16).alias("ila_dropped"))


def first_start(accounts: pl.LazyFrame, applications: pl.LazyFrame) -> pl.LazyFrame:
    """Month of each person's first course start (``ila_first_start``)."""
    return applications.filter(pl.col("started_on").is_not_null()).join(
        accounts.select("account_id", "person_code"), on="account_id", how="inner",
    ).group_by("person_code").agg(
        pl.col("started_on").min().dt.month_start().alias("ila_first_start"))


def prior_learning_events(prior: pl.LazyFrame) -> pl.LazyFrame:
    """Dated deltas of the prior adult-learning counts."""
    starts = prior.select("person_code", pl.col("start_date").dt.month_start().alias("month"),
                          pl.lit(1, pl.Int32).alias("prior_learning_courses"),
                          pl.lit(0, pl.Int32).alias("prior_learning_completed"))
    done = prior.filter(pl.col("completed") & pl.col("end_date").is_not_null()).select(
        "person_code", pl.col("end_date").dt.month_start().alias("month"),
        pl.lit(0, pl.Int32).alias("prior_learning_courses"),
        pl.lit(1, pl.Int32).alias("prior_learning_completed"))
    return pl.concat([starts, done])
