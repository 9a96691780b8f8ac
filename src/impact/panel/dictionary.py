"""The data dictionary of the research tables: every column's meaning, unit, source, derivation.

The builders select their output columns in the order listed here, so a column cannot
exist without an entry (tests/test_panel.py checks both directions).
``docs/data_dictionary.md`` is generated from this module (``python -c "from
impact.panel.dictionary import markdown; print(markdown(), end='')" >
docs/data_dictionary.md``; a test keeps it current) and the
Dagster assets attach the entries as column metadata.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a research table."""

    name: str
    dtype: str
    unit: str
    source: str
    meaning: str
    derivation: str = ""


_PM = "person-month"
_VID = "VID monthly employer reports"
_NVA = "NVA unemployment spells"
_VSAA = "VSAA benefits"
_PMLP = "PMLP population register"
_STARS = "VIAA STARS"

PANEL: tuple[Column, ...] = (
    Column("person_code", "str", "-", _PMLP, "Person pseudonym (keyed HMAC of the personal "
           "code).", "Pseudonymised at ingest; the same in every table of a run's key."),
    Column("pid", "int32", "-", _PMLP, "Dense person index of this build (0..n-1 in "
           "pseudonym order) for fast array work; valid within one build only.",
           "Row number of the person in the population register sorted by person_code."),
    Column("month", "date", "month", "-", "First day of the calendar month."),
    Column("sex", "str", "M/F", _PMLP, "Sex."),
    Column("age", "int16", "years", _PMLP, "Age in completed years on the first day of the "
           "month.", "From the birth date."),
    Column("exit_month", "bool", "-", _PMLP, "The person died or emigrated during this month "
           "(their last row).", "Earlier of death and emigration date."),
    Column("eligible", "bool", "-", _PMLP, "In the ILA target population this month: aged "
           "18-64 and resident for the whole month.", "18 <= age <= 64 and not exit_month."),
    Column("municipality_code", "str", "ATVK", "PMLP residence", "Municipality of declared "
           "residence.", "Latest declaration effective on or before the month's last day."),
    Column("region_code", "str", "NUTS 3", "PMLP residence + reference", "Statistical region "
           "of the municipality."),
    Column("urbanisation", "int8", "1-3", "PMLP residence + reference", "Degree of "
           "urbanisation of the municipality: 1 cities, 2 towns and suburbs, 3 rural."),
    Column("dependants", "int16", "persons", "PMLP parent-child links", "Children under 18.",
           "Children born on or before the month's last day and not yet 18 on its first."),
    Column("isced_level", "int8", "ISCED 2011", "VIIS education register", "Highest level "
           "of education attained.", "Highest level awarded on or before the month's last "
           "day; null before the first recorded award."),
    Column("isced_field", "str", "ISCED-F 2013", "VIIS education register", "Broad field of "
           "the highest level attained.", "Field of the (latest) award of that level."),
    Column("employed", "bool", "-", _VID, "Any employer reported positive income for the "
           "month."),
    Column("n_employers", "int16", "employers", _VID, "Number of employers reporting."),
    Column("earnings", "float64", "EUR", _VID, "Gross earnings from all jobs, nominal.",
           "Sum of gross_income over the month's reports."),
    Column("earnings_real", "float64", "EUR, base-year prices", _VID + " + CSP CPI",
           "Gross earnings from all jobs in prices of the CPI base year (config).",
           "earnings / (CPI of the month / mean CPI of the base year)."),
    Column("days_worked", "int32", "days", _VID, "Days worked, summed over jobs."),
    Column("hours_worked", "int32", "hours", _VID, "Hours worked, summed over the jobs that "
           "report hours.", "Null if no job reported hours."),
    Column("daily_wage_real", "float64", "EUR/day, base-year prices", _VID, "Real daily wage.",
           "earnings_real / days_worked; null without days worked."),
    Column("hourly_wage_real", "float64", "EUR/hour, base-year prices", _VID, "Real hourly "
           "wage.", "earnings_real / hours_worked, only if every job reported hours > 0."),
    Column("employer_id", "str", "-", _VID, "Main job's employer (pseudonym).", "Main job = "
           "the report with the highest gross income; ties: lowest employer pseudonym."),
    Column("nace_code", "str", "NACE Rev.2 class", "Employer register", "Main employer's "
           "economic activity (class)."),
    Column("nace_section", "str", "NACE Rev.2 section", "Employer register + reference",
           "Main employer's section (A-U)."),
    Column("nace_division", "str", "NACE Rev.2 division", "Employer register + reference",
           "Main employer's 2-digit division."),
    Column("sector", "str", "PUBLIC/PRIVATE", "Employer register", "Main employer's "
           "institutional sector."),
    Column("size_class", "str", "MICRO..LARGE", "Employer register", "Main employer's size "
           "class (<10, 10-49, 50-249, 250+ employees)."),
    Column("occupation_code", "str", "ISCO-08", _VID, "Main job's occupation (4 digits)."),
    Column("skill_level", "int8", "ISCO-08 skill level 1-4", "Reference (ISCO-08)",
           "Skill level of the main job's occupation."),
    Column("contract_type", "str", "-", _VID, "Main job's contract: PERMANENT or "
           "FIXED_TERM."),
    Column("part_time", "bool", "-", _VID, "Main job is part-time."),
    Column("registered_unemployed", "bool", "-", _NVA, "Registered as unemployed on at least "
           "one day of the month.", "Overlapping spells merged; open spells run to the end "
           "of the data."),
    Column("ub_days", "int16", "days", _VSAA, "Unemployment-benefit days paid.",
           "Payments whose period starts in the month."),
    Column("ub_amount", "float64", "EUR", _VSAA, "Unemployment benefit paid (nominal).",
           "Payments whose period starts in the month."),
    Column("sick_benefit_days", "int16", "days", _VSAA, "Sickness-benefit days paid.",
           "Payments whose period starts in the month."),
    Column("ila_account", "bool", "-", _STARS, "Has an ILA account.", "Created on or before "
           "the month's last day."),
    Column("ila_grant_balance", "float64", "EUR", _STARS, "Grant money available at the "
           "month's end.", "Grants allocated by the month's end whose final status (used, "
           "annulled, declined) came later."),
    Column("ila_in_training", "bool", "-", _STARS, "Attending an ILA course in the month.",
           "A started course overlapping the month."),
    Column("ila_started", "int16", "courses", _STARS, "ILA courses started this month."),
    Column("ila_completed", "int16", "courses", _STARS, "ILA courses completed this month."),
    Column("ila_dropped", "int16", "courses", _STARS, "ILA courses interrupted (dropped out) "
           "this month."),
    Column("ila_courses_cum", "int32", "courses", _STARS, "ILA courses started so far."),
    Column("ila_spend_cum", "float64", "EUR", _STARS, "Public ILA spending on the person so "
           "far (grants and fully funded programmes).", "Running sum of public_cost_eur "
           "by course start month."),
    Column("ila_co_payment_cum", "float64", "EUR", _STARS, "Co-payments so far.",
           "Running sum of co_payment_eur by course start month."),
    Column("ila_first_start", "date", "month", _STARS, "Month of the first ILA course start "
           "(the treatment cohort); null if never.", "Same on every row of the person."),
    Column("not_yet_treated", "bool", "-", _STARS, "Has not started any ILA course by this "
           "month (eligible as a twin for the cohort of this month).",
           "ila_first_start is null or later than month."),
    Column("prior_learning_courses", "int32", "courses", "STARS prior adult learning",
           "Courses of earlier adult-learning programmes (e.g. ESF 8.4.1) started so far."),
    Column("prior_learning_completed", "int32", "courses", "STARS prior adult learning",
           "Of those, completed by the month's last day."),
)

EPISODES: tuple[Column, ...] = (
    Column("person_code", "str", "-", _STARS, "Person pseudonym."),
    Column("course_seq", "int16", "-", _STARS, "Order of the course among the person's "
           "started courses (1 = the treatment).", "By start date, then application id."),
    Column("is_first", "bool", "-", _STARS, "The course defines the person's treatment."),
    Column("application_id", "str", "-", _STARS, "Application."),
    Column("account_id", "str", "-", _STARS, "Learning account."),
    Column("programme_id", "str", "-", _STARS, "Programme."),
    Column("programme_type", "str", "-", _STARS, "Programme type (report Table 12)."),
    Column("field", "str", "-", _STARS, "Training field."),
    Column("digcomp_level", "int", "DigComp level", _STARS, "Digital proficiency level."),
    Column("hours", "int", "academic hours", _STARS, "Programme length."),
    Column("delivery_mode", "str", "-", _STARS, "In person, remote or hybrid."),
    Column("submitted_on", "date", "date", _STARS, "Application submitted."),
    Column("started_on", "date", "date", _STARS, "Learning started."),
    Column("ended_on", "date", "date", _STARS, "Completed or interrupted; null while in "
           "progress."),
    Column("start_month", "date", "month", _STARS, "Month of start (cohort if is_first)."),
    Column("end_month", "date", "month", _STARS, "Month of leaving."),
    Column("duration_months", "int16", "months", _STARS, "Start to end month, inclusive."),
    Column("outcome", "str", "-", _STARS, "completed, dropped or in_progress."),
    Column("public_cost_eur", "float64", "EUR", _STARS, "Public funding of the course."),
    Column("co_payment_eur", "float64", "EUR", _STARS, "Co-payment."),
    Column("co_payment_payer", "str", "-", _STARS, "Who paid the co-payment."),
    Column("total_cost_eur", "float64", "EUR", _STARS, "Public cost plus co-payment."),
    Column("grant_id", "str", "-", _STARS, "Grant used; null for fully funded programmes."),
    Column("grant_amount_eur", "float64", "EUR", _STARS, "Amount of the grant used."),
    Column("grant_used", "bool", "-", _STARS, "The course was paid with a grant."),
)

TREATMENT: tuple[Column, ...] = (
    Column("person_code", "str", "-", _STARS, "Person pseudonym."),
    Column("cohort", "date", "month", _STARS, "Start month of the first course."),
    Column("start_date", "date", "date", _STARS, "Start date of the first course."),
    Column("end_month", "date", "month", _STARS, "Month of leaving the first course."),
    Column("end_date", "date", "date", _STARS, "Completion or interruption date."),
    Column("outcome", "str", "-", _STARS, "completed, dropped or in_progress."),
    Column("programme_type", "str", "-", _STARS, "Programme type of the first course."),
    Column("field", "str", "-", _STARS, "Training field of the first course."),
    Column("hours", "int", "academic hours", _STARS, "Length of the first course."),
    Column("public_cost_eur", "float64", "EUR", _STARS, "Public cost of the first course."),
    Column("co_payment_eur", "float64", "EUR", _STARS, "Co-payment of the first course."),
    Column("n_courses", "int16", "courses", _STARS, "All courses the person started."),
    Column("later_courses_start", "date", "month", _STARS, "Start month of the second "
           "course; null if none."),
)

NEAR_PARTICIPANTS: tuple[Column, ...] = (
    Column("person_code", "str", "-", _STARS, "Person pseudonym."),
    Column("account_created_on", "date", "date", _STARS, "Account created."),
    Column("profile_completed", "bool", "-", _STARS, "Profile questionnaire completed."),
    Column("n_grants", "int16", "grants", _STARS, "Grants allocated."),
    Column("first_grant_on", "date", "date", _STARS, "First grant allocation."),
    Column("grant_statuses", "str", "-", _STARS, "Distinct final statuses of the grants."),
    Column("n_applications", "int16", "applications", _STARS, "Applications never started "
           "(withdrawn or rejected)."),
    Column("stage", "str", "-", _STARS, "Furthest step: account, grant or application."),
    Column("reference_month", "date", "month", _STARS, "Month of the latest ILA step (pseudo "
           "start month for matching)."),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "panel": PANEL, "episodes": EPISODES, "treatment": TREATMENT,
    "near_participants": NEAR_PARTICIPANTS,
}


def names(table: str) -> list[str]:
    """Column names of a research table, in output order."""
    return [c.name for c in TABLES[table]]


def markdown() -> str:
    """The dictionary as Markdown (``docs/data_dictionary.md``)."""
    lines = ["# Data dictionary of the research tables", "",
             "Generated from `src/impact/panel/dictionary.py`; do not edit by hand.", ""]
    for table, cols in TABLES.items():
        lines += [f"## `{table}`", "", "| column | type | unit | source | meaning | "
                  "derivation |", "|---|---|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.dtype} | {c.unit} | {c.source} | {c.meaning} | "
                  f"{c.derivation} |" for c in cols]
        lines.append("")
    return "\n".join(lines)

