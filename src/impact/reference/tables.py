"""Classification and geography tables: municipalities, regions, ISCO-08, NACE Rev. 2, ISCED.

Every loader returns a fresh :class:`polars.DataFrame` with the dtypes given by the
``*_SCHEMA`` constant next to it. Provenance, and what is exact versus approximate, is in
``SOURCES.md`` in this package; the short version is repeated in each docstring.
"""

from __future__ import annotations

import polars as pl

from impact.reference._io import read_table

__all__ = [
    "ISCED_FIELDS_SCHEMA",
    "ISCED_LEVELS_SCHEMA",
    "ISCO_MAJOR_GROUPS_SCHEMA",
    "ISCO_OCCUPATIONS_SCHEMA",
    "MUNICIPALITIES_SCHEMA",
    "NACE_CLASSES_SCHEMA",
    "NACE_SECTIONS_SCHEMA",
    "REGIONS_SCHEMA",
    "isced_fields",
    "isced_levels",
    "isco_major_groups",
    "isco_occupations",
    "municipalities",
    "nace_classes",
    "nace_sections",
    "regions",
]

REGIONS_SCHEMA = pl.Schema({"region_code": pl.String, "region_name": pl.String})

_MUNICIPALITIES_CSV = pl.Schema(
    {
        "municipality_code": pl.String,
        "name": pl.String,
        "kind": pl.String,
        "region_code": pl.String,
        "urbanisation": pl.Int8,
        "population": pl.Int64,
    }
)
MUNICIPALITIES_SCHEMA = pl.Schema(
    {
        "municipality_code": pl.String,
        "name": pl.String,
        "kind": pl.String,
        "region_code": pl.String,
        "region_name": pl.String,
        "urbanisation": pl.Int8,
        "population": pl.Int64,
    }
)
ISCO_MAJOR_GROUPS_SCHEMA = pl.Schema(
    {"major_group": pl.Int8, "title_en": pl.String, "skill_level": pl.Int8}
)
ISCO_OCCUPATIONS_SCHEMA = pl.Schema(
    {
        "isco_code": pl.String,
        "title_en": pl.String,
        "major_group": pl.Int8,
        "skill_level": pl.Int8,
        "min_isced": pl.Int8,
        "is_ict": pl.Boolean,
        "rel_wage": pl.Float64,
        "sections": pl.String,
        "weight": pl.Float64,
    }
)
NACE_SECTIONS_SCHEMA = pl.Schema(
    {
        "section": pl.String,
        "title_en": pl.String,
        "rel_wage": pl.Float64,
        "employment_share": pl.Float64,
        "public_share": pl.Float64,
        "divisions": pl.String,
    }
)
NACE_CLASSES_SCHEMA = pl.Schema(
    {
        "nace_code": pl.String,
        "division": pl.String,
        "section": pl.String,
        "title_en": pl.String,
        "weight": pl.Float64,
    }
)
ISCED_LEVELS_SCHEMA = pl.Schema({"level": pl.Int8, "title_en": pl.String, "group": pl.String})
ISCED_FIELDS_SCHEMA = pl.Schema({"field_code": pl.String, "title_en": pl.String})


# --------------------------------------------------------------------------- geography
def regions() -> pl.DataFrame:
    """Latvia's six statistical regions (NUTS-3 units, NUTS 2024 codes).

    Returns
    -------
    polars.DataFrame
        ``region_code`` (``LV005`` Latgale, ``LV006`` Rīga, ``LV007`` Pierīga, ``LV008``
        Vidzeme, ``LV009`` Kurzeme, ``LV00A`` Zemgale) and ``region_name`` (Latvian).
        Codes and names are exact (NUTS 2024; in NUTS 2021 Kurzeme was LV003 and Zemgale
        LV009).
    """
    return read_table("regions.csv", REGIONS_SCHEMA)


def municipalities() -> pl.DataFrame:
    """The 43 local governments after the 2021 administrative-territorial reform.

    Seven state cities (Rīga, Daugavpils, Jelgava, Jūrmala, Liepāja, Rēzekne, Ventspils)
    and 36 municipalities (*novadi*, including Varakļānu novads, restored on 1 July 2022).

    Returns
    -------
    polars.DataFrame
        One row per local government, columns

        ``municipality_code``
            7-digit ATVK-style code (str). State cities carry their long-standing ATVK
            codes (0001000 Rīga, 0050000 Daugavpils, ...). The *novadi* codes are
            **synthetic** ``00NN000`` codes (NN = 20-56 in Latvian alphabetical order,
            50 skipped to avoid Daugavpils' 0050000); they look like ATVK codes but must
            not be matched against the official classifier.
        ``name``
            Latvian name with diacritics (exact).
        ``kind``
            ``"state_city"`` or ``"municipality"``.
        ``region_code``, ``region_name``
            Statistical region (NUTS-3); from 2024 these coincide with the 2021 planning
            regions, with the Rīga planning region split into Rīga and Pierīga.
        ``urbanisation``
            DEGURBA class (1 cities, 2 towns and suburbs, 3 rural areas): a plausible
            assignment by the authors, **not** Eurostat's official LAU classification.
        ``population``
            Approximate residents (early 2024, rounded to 100; total about 1.87 M), for
            sampling weights only.
    """
    mun = read_table("municipalities.csv", _MUNICIPALITIES_CSV)
    out = mun.join(regions(), on="region_code", how="left", maintain_order="left")
    return out.select(MUNICIPALITIES_SCHEMA.names())


# --------------------------------------------------------------------------- ISCO-08
def isco_major_groups() -> pl.DataFrame:
    """ISCO-08 major groups 1-9 (armed forces, group 0, are not covered).

    Returns
    -------
    polars.DataFrame
        ``major_group`` (Int8), ``title_en`` (ILO titles, exact), ``skill_level``
        (ISCO-08 skill level, 1-4). ISCO-08 gives major group 1 (managers) skill levels
        "3 and 4"; we use 4, a convention of this project.
    """
    return read_table("isco_major_groups.csv", ISCO_MAJOR_GROUPS_SCHEMA)


def isco_occupations() -> pl.DataFrame:
    """A selection of 91 ISCO-08 unit groups, weighted to Latvian employment.

    Returns
    -------
    polars.DataFrame
        ``isco_code``
            4-digit unit-group code (str); codes and ``title_en`` are exact ISCO-08.
        ``major_group``, ``skill_level``
            First digit, and the skill level of that major group (1 -> 4 by our
            convention, 2 -> 4, 3 -> 3, 4-8 -> 2, 9 -> 1).
        ``min_isced``
            Typical minimum ISCED 2011 level for entry (0-8), the ILO skill-level/ISCED
            correspondence adjusted to Latvian practice (e.g. technicians 4: vocational
            post-secondary). Approximate.
        ``is_ict``
            ICT specialist per Eurostat's ISCO-08 based definition (133, 25, 35, and 2152,
            2153, 2166, 2356, 2434, 7422).
        ``rel_wage``
            Average gross wage of the occupation / national average: approximations in
            the spirit of CSP occupational wage statistics (structure of earnings
            survey); not published figures.
        ``sections``
            Semicolon-separated NACE sections where the occupation is common (judgement).
        ``weight``
            Share of employment among the listed occupations (sums to 1). Major-group
            totals follow approximate Latvian LFS shares (1: 10 %, 2: 22 %, 3: 15 %,
            4: 6 %, 5: 14 %, 6: 2.5 %, 7: 11 %, 8: 9 %, 9: 10.5 %); the split within a
            group is judgement.
    """
    return read_table("isco_occupations.csv", ISCO_OCCUPATIONS_SCHEMA)


# --------------------------------------------------------------------------- NACE Rev. 2
def nace_sections() -> pl.DataFrame:
    """NACE Rev. 2 sections A-U with approximate Latvian wage and employment structure.

    Returns
    -------
    polars.DataFrame
        ``section`` (letter), ``title_en`` (exact NACE Rev. 2 title),
        ``rel_wage`` (section average gross wage / national average; approximate CSP
        structure, e.g. K 1.75, J 1.65, I 0.60), ``employment_share`` (approximate LFS
        shares, sum exactly 1), ``public_share`` (approximate share of employees in the
        public sector, incl. state/municipal companies: O 0.99, P 0.85, Q 0.70, D 0.60),
        ``divisions`` (semicolon list of all the section's 2-digit divisions, exact).
    """
    return read_table("nace_sections.csv", NACE_SECTIONS_SCHEMA)


def nace_classes() -> pl.DataFrame:
    """A selection of 120 NACE Rev. 2 classes, every section A-U represented.

    Returns
    -------
    polars.DataFrame
        ``nace_code`` (``"NN.NN"``), ``division`` (2-digit str), ``section`` (letter),
        ``title_en`` (exact NACE Rev. 2 titles), ``weight`` (relative employment within
        its section, sums to 1 per section; judgement, not published figures).
    """
    return read_table("nace_classes.csv", NACE_CLASSES_SCHEMA)


# --------------------------------------------------------------------------- ISCED 2011/2013
def isced_levels() -> pl.DataFrame:
    """ISCED 2011 levels 0-8 with the low/medium/high grouping used by Eurostat.

    Returns
    -------
    polars.DataFrame
        ``level`` (Int8), ``title_en`` (exact), ``group`` (``"low"`` 0-2, ``"medium"``
        3-4, ``"high"`` 5-8).
    """
    return read_table("isced_levels.csv", ISCED_LEVELS_SCHEMA)


def isced_fields() -> pl.DataFrame:
    """ISCED-F 2013 broad fields of education and training.

    Returns
    -------
    polars.DataFrame
        ``field_code`` (``"00"`` ... ``"10"``) and ``title_en`` (exact UNESCO titles).
    """
    return read_table("isced_fields.csv", ISCED_FIELDS_SCHEMA)
