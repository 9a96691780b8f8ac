"""ILA treatment episodes, the treatment each person receives, and near-participants.

Definitions (the estimands of the later stages rest on them)
----------------------------------------------------------------
Episode
    One STARS application whose learning started (``started_on`` present): a course taken
    by a person. Applications that were withdrawn or rejected are not episodes; they are
    counted for near-participants.
Outcome of an episode
    ``completed`` (status COMPLETED), ``dropped`` (INTERRUPTED: left before the end) or
    ``in_progress`` (no end date yet).
Treatment
    A person's **first started course** (earliest ``started_on``; ties broken by application
    id). Cohort = its start month; "leaving" = its end month, whether completed or dropped.
    Later courses are kept in the episodes (``course_seq`` > 1) and summarised in the
    treatment table (``n_courses``, ``later_courses_start``): the estimands are effects of
    *starting ILA learning*, including whatever repeat learning follows (an intention-to-
    treat view of the first course); they are not effects of one course in isolation.
Near-participant
    A person with an ILA account, or a grant, in the period who never started a course
    (the comparison group the ILA report recommends besides statistical twins).

All functions take lazy frames of the clean sources (ingest output, pseudonymised).
"""

from __future__ import annotations

from datetime import date

import polars as pl

OUTCOMES = ("completed", "dropped", "in_progress")


def episodes(applications: pl.LazyFrame, accounts: pl.LazyFrame, programmes: pl.LazyFrame,
             grants: pl.LazyFrame) -> pl.LazyFrame:
    """One row per started course, in the person's order of starting.

    Returns
    -------
    polars.LazyFrame
        ``person_code``, ``course_seq`` (1 = the treatment), ``is_first``,
        ``application_id``, ``account_id``, ``programme_id``, ``programme_type``, ``field``,
        ``digcomp_level``, ``hours``, ``delivery_mode``, ``submitted_on``, ``started_on``,
        ``ended_on``, ``start_month``, ``end_month``, ``duration_months`` (start to end
        month inclusive; null while in progress), ``outcome``, ``public_cost_eur``,
        ``co_payment_eur``, ``co_payment_payer``, ``total_cost_eur``, ``grant_id``,
        ``grant_amount_eur`` (null for fully funded programmes), ``grant_used``.
    """
    started = applications.filter(pl.col("started_on").is_not_null())
    outcome = (pl.when(pl.col("ended_on").is_null()).then(pl.lit("in_progress"))
               .when(pl.col("status") == "COMPLETED").then(pl.lit("completed"))
               .otherwise(pl.lit("dropped")))
    ep = (
        started.join(accounts.select("account_id", "person_code"), on="account_id",
                     how="left")
        .join(programmes.select("programme_id", "programme_type", "field", "digcomp_level",
                                "hours", "delivery_mode"), on="programme_id", how="left")
        .join(grants.select("grant_id", pl.col("amount_eur").alias("grant_amount_eur")),
              on="grant_id", how="left")
        .with_columns(
            outcome.alias("outcome"),
            pl.col("started_on").dt.month_start().alias("start_month"),
            pl.col("ended_on").dt.month_start().alias("end_month"),
            (pl.col("public_cost_eur") + pl.col("co_payment_eur")).alias("total_cost_eur"),
            pl.col("grant_id").is_not_null().alias("grant_used"),
        )
        .with_columns(
            ((pl.col("end_month").dt.year() - pl.col("start_month").dt.year()) * 12
             + pl.col("end_month").dt.month() - pl.col("start_month").dt.month() + 1)
            .cast(pl.Int16).alias("duration_months"),
            pl.int_range(1, pl.len() + 1, dtype=pl.Int16)
            .over("person_code", order_by=["started_on", "application_id"])
            .alias("course_seq"),
        )
        .with_columns((pl.col("course_seq") == 1).alias("is_first"))
    )
    return ep.select(
        "person_code", "course_seq", "is_first", "application_id", "account_id",
        "programme_id", "programme_type", "field", "digcomp_level", "hours", "delivery_mode",
        "submitted_on", "started_on", "ended_on", "start_month", "end_month",
        "duration_months", "outcome", "public_cost_eur", "co_payment_eur", "co_payment_payer",
        "total_cost_eur", "grant_id", "grant_amount_eur", "grant_used",
    ).sort("person_code", "course_seq")


def treatment(episodes_: pl.LazyFrame) -> pl.LazyFrame:
    """One row per treated person: the first course defines the treatment.

    Returns
    -------
    polars.LazyFrame
        ``person_code``, ``cohort`` (start month of the first course), ``start_date``,
        ``end_month`` and ``end_date`` (leaving; null while in progress), ``outcome``,
        ``programme_type``, ``field``, ``hours``, ``public_cost_eur``, ``co_payment_eur``,
        ``n_courses`` (all started courses), ``later_courses_start`` (start month of the
        second course, null if none).
    """
    first = episodes_.filter(pl.col("is_first")).select(
        "person_code", pl.col("start_month").alias("cohort"),
        pl.col("started_on").alias("start_date"), "end_month",
        pl.col("ended_on").alias("end_date"), "outcome", "programme_type", "field", "hours",
        "public_cost_eur", "co_payment_eur")
    counts = episodes_.group_by("person_code").agg(
        pl.len().cast(pl.Int16).alias("n_courses"),
        pl.col("start_month").filter(pl.col("course_seq") == 2).first()
        .alias("later_courses_start"))
    return first.join(counts, on="person_code", how="left").sort("person_code")


def near_participants(accounts: pl.LazyFrame, grants: pl.LazyFrame,
                      applications: pl.LazyFrame, *, first: date | None = None,
                      last: date | None = None) -> pl.LazyFrame:
    """Account or grant holders who never started an ILA course.

    Parameters
    ----------
    accounts, grants, applications
        Clean STARS sources.
    first, last
        Optional period: only persons whose account was created, or who received a grant,
        between these dates (inclusive) qualify. Starting a course at any time excludes a
        person.

    Returns
    -------
    polars.LazyFrame
        ``person_code``, ``account_created_on``, ``profile_completed``, ``n_grants``,
        ``first_grant_on``, ``grant_statuses`` (sorted distinct), ``n_applications`` (not
        started: withdrawn or rejected), ``stage`` (the furthest the person got:
        ``account``, ``grant`` or ``application``), ``reference_month`` (month of the
        person's latest ILA step: a pseudo start month for matching).
    """
    acc = accounts.select("account_id", "person_code", pl.col("created_on")
                          .alias("account_created_on"), "profile_completed")
    g = grants.join(acc.select("account_id", "person_code"), on="account_id", how="inner")
    a = applications.join(acc.select("account_id", "person_code"), on="account_id",
                          how="inner")
    starters = a.filter(pl.col("started_on").is_not_null()).select("person_code").unique()
    g_per = g.group_by("person_code").agg(
        pl.len().cast(pl.Int16).alias("n_grants"),
        pl.col("allocated_on").min().alias("first_grant_on"),
        pl.col("status").unique().sort().str.join(",").alias("grant_statuses"))
    a_per = a.group_by("person_code").agg(
        pl.len().cast(pl.Int16).alias("n_applications"),
        pl.col("submitted_on").max().alias("last_application_on"))
    holders = acc.group_by("person_code").agg(
        pl.col("account_created_on").min(), pl.col("profile_completed").any())
    out = (holders.join(g_per, on="person_code", how="left")
           .join(a_per, on="person_code", how="left")
           .join(starters, on="person_code", how="anti"))
    if first is not None or last is not None:
        lo = first or date.min
        hi = last or date.max
        out = out.filter(pl.col("account_created_on").is_between(lo, hi)
                         | pl.col("first_grant_on").is_between(lo, hi))
    stage = (pl.when(pl.col("n_applications") > 0).then(pl.lit("application"))
             .when(pl.col("n_grants") > 0).then(pl.lit("grant")).otherwise(pl.lit("account")))
    ref = pl.max_horizontal("account_created_on", "first_grant_on", "last_application_on")
    return out.with_columns(
        pl.col("n_grants").fill_null(0), pl.col("n_applications").fill_null(0),
        stage.alias("stage"), ref.dt.month_start().alias("reference_month"),
    ).drop("last_application_on").sort("person_code")
