"""Evaluation configs (``configs/*.yaml``), validated before anything runs.

One YAML file describes one evaluation: where its data live, how the synthetic
default delivery is generated (synthetic runs only) and how deliveries are
ingested (pseudonymisation key, switches). :func:`load_config` reads and
validates a file; every error names the file and the field, e.g.::

    configs/demo.yaml: invalid evaluation config
      ingest.key.source: must be one of 'env', 'file', 'demo' (got 'vault')

Paths
-----
Relative paths (``data.root``, ``ingest.key.path``) are relative to the
working directory of the run, like the CLI's ``--out`` (run from the
repository root, as ``dagster dev`` and ``impact`` are).

Layout under ``data.root``::

    landing/<delivery>/      extract files + manifest.json (complete deliveries)
    truth/                   ground truth of a synthetic delivery (tests only)
    sources/<table>/         clean, typed Parquet per register (ingest output)
    quarantine/<table>.parquet  rejected rows with their reasons
    panel/year=YYYY/         the person-month research panel
    research/<table>.parquet episodes, treatment, near_participants
    twins/                   statistical twins per cohort, balance, overlap
    estimates/               event studies, staggered cross-check, headline effects

The key itself is never part of the config: it is named (environment variable
or key file) and read only when a run needs it (:meth:`KeySpec.load`).

Secrets
-------
A config file is versioned, copied and logged, so it must never hold a secret.
Before the schema is checked, the parsed YAML is scanned (:func:`secret_findings`)
and the file is refused if a field is named like a secret (``password``,
``passwd``, ``secret``, ``token``, ``api_key``, ``private_key``,
``key_material``, ``hmac``, ``credentials``, ``*_key``, ...) and has a literal
value, if ``ingest.key`` holds anything but ``source``/``variable``/``path``, if
a string looks like key material (64+ hex digits; 43+ base64 characters outside
path fields) or if a URL or connection string carries a password
(``postgresql://user:pw@host/db``, ``?password=...``). The error names the file
and the field, never the value::

    configs/x.yaml: refused: the config holds what looks like a secret (values are never shown)
      ingest.key.value: literal value in the section of a secret (only source, variable, path)

Validation errors of the models never echo input values either
(``hide_input_in_errors``); see ``docs/key_management.md``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from impact.disclosure.settings import DisclosureSettings
from impact.indicators.settings import IndicatorSettings

if TYPE_CHECKING:  # heavy / optional imports stay out of `import impact.config`
    from impact.ingest import IngestSettings
    from impact.pseudonym import PseudonymKey
    from impact.synth.config import SynthConfig

DEFAULT_KEY_VARIABLE = "IMPACT_PSEUDONYM_KEY"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the fields."""


class _Section(BaseModel):
    # unknown (e.g. misspelt, or smuggled secret) fields are errors; no error echoes a value
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# --------------------------------------------------------------------------- data


class DataSection(_Section):
    """Where the evaluation's data live."""

    root: Path = Field(Path("data/demo"), description="Folder of this evaluation's data.")

    @property
    def landing(self) -> Path:
        """Deliveries as they arrive: ``root/landing/<delivery>/`` with a manifest."""
        return self.root / "landing"

    @property
    def truth(self) -> Path:
        """Ground truth of a synthetic delivery (read only by tests and benchmarks)."""
        return self.root / "truth"

    @property
    def sources(self) -> Path:
        """Clean typed Parquet per register (``sources/<table>/``)."""
        return self.root / "sources"

    @property
    def quarantine(self) -> Path:
        """Rejected rows, one Parquet file per table."""
        return self.root / "quarantine"

    @property
    def panel(self) -> Path:
        """The person-month panel, ``panel/year=YYYY/part-0.parquet``."""
        return self.root / "panel"

    @property
    def research(self) -> Path:
        """Episode tables: ``episodes``, ``treatment``, ``near_participants`` (Parquet)."""
        return self.root / "research"

    @property
    def twins(self) -> Path:
        """Statistical twins per cohort and their balance diagnostics."""
        return self.root / "twins"

    @property
    def outcomes(self) -> Path:
        """Event-time outcome trajectories per cohort (``outcomes/cohort=YYYY-MM/``)."""
        return self.root / "outcomes"

    @property
    def estimates(self) -> Path:
        """Event studies, the staggered cross-check and the headline effects."""
        return self.root / "estimates"

    @property
    def indicators(self) -> Path:
        """Indicator tables before disclosure control (stay in the secure environment)."""
        return self.root / "indicators"

    @property
    def publish(self) -> Path:
        """Publications: ``publish/<run_id>/`` and ``publish/latest``."""
        return self.root / "publish"

    @property
    def reports(self) -> Path:
        """Evaluator reports: ``reports/<run_id>/report.html``."""
        return self.root / "reports"


# --------------------------------------------------------------------------- synth


class SynthSection(_Section):
    """Settings of the synthetic default delivery (see ``impact synth --help``).

    Present only in configs that run on synthetic registers; the values are
    checked by :class:`impact.synth.config.SynthConfig` when the file is loaded.
    """

    persons: int = 100_000
    seed: int = 1
    start: str = "2019-01"
    end: str = "2028-06"
    format: Literal["csv", "parquet"] = "csv"
    inject_errors: bool = False
    hidden_confounding: float = 1.0

    @model_validator(mode="after")
    def _valid_for_the_generator(self) -> SynthSection:
        try:
            self.synth_config()
        except ValidationError as exc:  # the generator's own rules (window, population size)
            reasons = "; ".join(
                ".".join(str(x) for x in e["loc"]).replace("fmt", "format")
                + (": " if e["loc"] else "")
                + str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise ValueError(f"not accepted by the synthetic generator: {reasons}") from None
        return self

    def synth_config(self) -> SynthConfig:
        """The generator's own config object."""
        from impact.synth.config import SynthConfig

        return SynthConfig(
            persons=self.persons,
            seed=self.seed,
            start=self.start,
            end=self.end,
            fmt=self.format,
            inject_errors=self.inject_errors,
            hidden_confounding=self.hidden_confounding,
        )


# --------------------------------------------------------------------------- ingest


class EnvKey(_Section):
    """The pseudonymisation key is in an environment variable (the default for real data)."""

    source: Literal["env"]
    variable: str = Field(DEFAULT_KEY_VARIABLE, min_length=1)

    def load(self) -> PseudonymKey:
        from impact.pseudonym import PseudonymKey

        return PseudonymKey.from_env(self.variable)

    def describe(self) -> str:
        return f"environment variable {self.variable}"


class FileKey(_Section):
    """The pseudonymisation key is in a file readable only by the pipeline's account."""

    source: Literal["file"]
    path: Path

    def load(self) -> PseudonymKey:
        from impact.pseudonym import PseudonymKey

        return PseudonymKey.from_file(self.path)

    def describe(self) -> str:
        return f"key file {self.path}"


class DemoKey(_Section):
    """The fixed, PUBLIC demo key: synthetic data only.

    Anyone can recompute its pseudonyms, so it protects nothing; a config that
    uses it must also have a ``synth`` section (synthetic registers).
    """

    source: Literal["demo"]

    def load(self) -> PseudonymKey:
        from impact.pseudonym import PseudonymKey

        return PseudonymKey.demo()

    def describe(self) -> str:
        return "the public demo key (NOT SECRET, synthetic data only)"


KeySpec = Annotated[EnvKey | FileKey | DemoKey, Field(discriminator="source")]
_KEY_SOURCES = ("env", "file", "demo")


class IngestSection(_Section):
    """How deliveries are validated and pseudonymised."""

    key: KeySpec = Field(default_factory=lambda: EnvKey(source="env"))
    already_pseudonymised: bool = Field(
        False, description="Deliveries carry pseudonyms instead of raw personal codes."
    )
    verify_checksums: bool = Field(
        True, description="Compare every file's SHA-256 with the delivery manifest."
    )
    incremental: bool = Field(
        True, description="Reuse the cached validation of every group of files (a year of a "
        "year-split table, else the whole table) whose inputs did not change: files, "
        "contract, key, and the reference rows and delivery period its rules looked at. "
        "The output equals a full re-ingest; false (or `impact run --full-ingest`) "
        "validates everything again."
    )
    bucket_rows: int | None = Field(
        None, ge=1, description="Largest expected number of rows validated at a time: a "
        "group of files with more rows (a year of monthly employer reports, about 8 M rows "
        "at 1.2 M persons) is validated in ceil(rows / bucket_rows) buckets of a hash of the "
        "person, so that ingest memory follows this setting rather than the population "
        "(about 0.5 GiB per million rows). null: each group at once (fastest). The "
        "accepted rows, quarantine and reconciliation do not depend on it."
    )
    parallel_groups: int = Field(
        2, ge=1, description="Groups of files (years) validated at the same time; each "
        "holds one group (or one bucket) in memory."
    )


# --------------------------------------------------------------------------- panel


class PanelSection(_Section):
    """How the person-month panel is built."""

    cpi_base_year: int = Field(
        2024, ge=1996, le=2100,
        description="Real amounts are in the average consumer prices of this year.")
    block_persons: int | None = Field(
        None, ge=1, description="Persons whose year of monthly reports and benefit payments "
        "is held in memory at a time (a range of pseudonyms); memory follows this instead "
        "of the population (about 1 GiB per 300,000 persons at 1.2 M). null: everyone at "
        "once (fastest). The panel's rows do not depend on it.")


# --------------------------------------------------------------------------- twins


class TwinsSection(_Section):
    """How statistical twins are matched (R MatchIt vocabulary; see impact.twins.riskset)."""

    pool: Literal["not_yet_treated", "never_treated", "account_holders", "coworkers"] = Field(
        "not_yet_treated",
        description="Twin candidates: not yet started by the cohort month; never started; "
        "not yet started and holding an ILA account by the month before (near-participants); "
        "or not yet started and working for the treated person's main employer the month "
        "before (same-firm co-workers, matched within the firm).")
    coworkers_min_firm_size: int = Field(
        10, ge=2, description="pool coworkers: smallest firm (persons whose main employer it "
        "is the month before the cohort month) whose employees are candidates; treated persons "
        "in smaller firms or without an employer stay unmatched (with the reason).")
    exact: list[str] = Field(
        default_factory=lambda: ["sex", "age_band", "region_code", "edu_band", "employed_l1",
                                 "registered_l1", "job_recency"],
        description="Exact strata: twins share these features. employed_l1 and registered_l1 "
        "nest the publication's status at entry (employed, registered unemployed, other); "
        "job_recency (months since the last job, in bands) lines up the twins' last job, which "
        "the DiD baseline of recent job losers depends on (README, 'Status at entry and job "
        "history as exact strata'). Adding ila_account_l1 (held an ILA account the month "
        "before) takes account holders' twins from account holders who had not started: at "
        "national scale it closes more of the participants' unobserved-motivation gap, at the "
        "cost of treated persons without an account-holder twin (README, 'The report's "
        "near-participants help').")
    coarsen: list[list[str]] = Field(
        default_factory=lambda: [["region_code"], ["job_recency"]],
        description="Treated persons without twins in the exact strata are matched again in "
        "coarser strata: each entry lists exact columns dropped for one further pass "
        "(cumulative). The default drops region, then the months since the last job; the "
        "twins' summary counts who was matched in a further pass (n_matched_fallback) "
        "(README, 'Status at entry and job history as exact strata'). []: one pass.")
    distance: Literal["glm", "mahalanobis"] = "glm"
    ps_scope: Literal["pooled", "per_cohort"] = "pooled"
    caliper: float | None = Field(0.2, gt=0, description="In SD of the logit score (glm).")
    ratio: int = Field(5, ge=1, le=50, description="Twins per treated person (k).")
    replace: bool = True
    seed: int = Field(0, ge=0)
    max_abs_smd: float = Field(0.1, gt=0, description="Balance gate: largest |SMD| after.")
    max_unmatched_share: float = Field(0.05, ge=0, le=1,
                                       description="Balance gate: treated without twins.")
    gate_min_treated: int = Field(1000, ge=1, description="Cohort groups for the gate.")
    mahvars: list[str] | None = Field(
        None, description="MatchIt mahvars: Mahalanobis ranking within the caliper.")
    smd_binary: Literal["std", "raw"] = "std"
    person_chunk: int | None = Field(
        None, ge=1,
        description="Build each cohort's features, its risk set, the pooled model's candidate "
        "sample and the pre-period means from the panel this many persons (pids) at a time, "
        "so that the twins stage's memory is bounded by person_chunk x months rather than by "
        "the population (plus one cohort's feature frame). The twins are identical; null "
        "(default): every person at once, faster. Not a matching setting: it is not part of "
        "the plan (impact.twins.riskset.Population).")

    @model_validator(mode="after")
    def _known_features(self) -> TwinsSection:
        from impact.twins.features import (
            ALL_NUMERIC_FEATURES,
            CATEGORICAL_FEATURES,
            COARSE_FEATURES,
            OPTIONAL_CATEGORICAL_FEATURES,
        )

        known = {*CATEGORICAL_FEATURES, *ALL_NUMERIC_FEATURES, *COARSE_FEATURES,
                 *OPTIONAL_CATEGORICAL_FEATURES}
        bad = [c for c in [*self.exact, *(self.mahvars or [])] if c not in known]
        if bad:
            raise ValueError(f"exact: unknown matching features {bad}; known: "
                             f"{sorted(known)}")
        from impact.twins.riskset import TwinSettings

        TwinSettings(exact=tuple(self.exact), coarsen=tuple(map(tuple, self.coarsen)))
        return self

    def settings(self) -> object:
        """The :class:`impact.twins.riskset.TwinSettings` of this section."""
        from impact.twins.riskset import TwinSettings

        values = self.model_dump(exclude={"person_chunk"})
        values["exact"] = tuple(values["exact"])
        values["coarsen"] = tuple(tuple(group) for group in values["coarsen"])
        if values["mahvars"] is not None:
            values["mahvars"] = tuple(values["mahvars"])
        return TwinSettings(**values)


class EstimatesSection(_Section):
    """Inference settings of the estimators."""

    reps: int = Field(999, ge=99, description="Multiplier-bootstrap replications.")
    seed: int = Field(0, ge=0)
    naive_sample: int = Field(
        200_000, ge=1_000,
        description="Persons drawn at random (seed: estimates.seed) from the whole panel for "
        "the naive comparison beside the matched estimate (the mean change of a cohort's "
        "risk set is taken over its sampled members; at least the panel's size: everyone). "
        "The estimates stage loads only the matched persons and this sample, so its panel "
        "arrays take about (n_treated + n_twins + naive_sample) x n_months x 40 bytes (75 at "
        "the load's peak), whatever the population; the estimation adds what grows with the "
        "participants (impact.evaluate.load_estimation_arrays). The larger, the closer the "
        "naive means to those of the whole risk set.")
    bias_correction: bool = Field(
        False,
        description="Correct each twin's change for its remaining gap to the treated person "
        "in the matching features and exact strata by a weighted regression on the twins, per "
        "event time (Abadie-Imbens 2011; impact.estimate.bias_correction): the matched event "
        "studies and their subgroups. Event times with fewer than 5 observed twin rows per "
        "coefficient keep the plain estimate (column bias_corrected of event_study.parquet). "
        "The pre-trend tests, the placebo in time, refutation and the indicators stay on the "
        "plain matched estimator (README, 'Regression bias correction').")


class PublishSection(_Section):
    """What a publication requires and contains."""

    require_balance: bool = Field(
        True, description="Refuse to publish when the twins' balance gate failed.")
    require_parallel_trends: bool = Field(
        True, description="Refuse to publish when the joint pre-trend test of an outcome in "
        "pretrend_outcomes rejects (start clock, placebo months before the baseline).")
    pretrend_outcomes: list[str] = Field(
        default_factory=lambda: ["earnings_real", "employed"],
        description="Outcomes whose pre-trend test gates the publication.")
    pretrend_alpha: float = Field(
        0.05, gt=0, lt=1, description="Level of the pre-trend gate (Bonferroni over the "
        "outcomes).")

    @field_validator("pretrend_outcomes")
    @classmethod
    def _known_outcomes(cls, v: list[str]) -> list[str]:
        from impact.outcomes import OUTCOMES

        unknown = [o for o in v if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown outcomes {unknown}; choose from {sorted(OUTCOMES)}")
        return v
    open_data: list[str] = Field(
        default_factory=lambda: ["indicators"],
        description="Tables exported as open data (disclosure-safe rows only).")


# --------------------------------------------------------------------------- evaluation


class EvaluationConfig(_Section):
    """One evaluation: ``configs/<name>.yaml``."""

    data: DataSection = Field(default_factory=DataSection)
    synth: SynthSection | None = Field(
        None, description="Synthetic default delivery; absent for real register data."
    )
    ingest: IngestSection = Field(default_factory=IngestSection)
    panel: PanelSection = Field(default_factory=PanelSection)
    twins: TwinsSection = Field(default_factory=TwinsSection)
    estimates: EstimatesSection = Field(default_factory=EstimatesSection)
    indicators: IndicatorSettings = Field(default_factory=IndicatorSettings)
    disclosure: DisclosureSettings = Field(default_factory=DisclosureSettings)
    publish: PublishSection = Field(default_factory=PublishSection)

    _source_file: Path | None = PrivateAttr(None)

    @property
    def source_file(self) -> Path | None:
        """The YAML file this config was read from (``None`` if built in code)."""
        return self._source_file

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        """Refuse secrets also when the model is built directly (not by :func:`parse_config`)."""
        findings = secret_findings(data) if isinstance(data, dict) else []
        if findings:
            raise ValueError("holds what looks like a secret (values are never shown) at "
                             + ", ".join(where for where, _ in findings) + ". " + _SECRET_ADVICE)
        return data

    @model_validator(mode="after")
    def _demo_key_only_for_synthetic_data(self) -> EvaluationConfig:
        if isinstance(self.ingest.key, DemoKey) and self.synth is None:
            raise ValueError(
                "ingest.key: the demo key is public (not secret) and may only be used with "
                "synthetic data (a `synth` section); use {source: env} or {source: file} "
                "for real register data"
            )
        return self

    @property
    def is_synthetic(self) -> bool:
        """The evaluation runs on the synthetic default delivery."""
        return self.synth is not None

    def with_data_root(self, root: Path | str) -> EvaluationConfig:
        """A copy whose data live under ``root`` (e.g. ``impact demo --out``)."""
        return self.model_copy(update={"data": DataSection(root=Path(root))})

    def pseudonym_key(self) -> PseudonymKey:
        """Read the pseudonymisation key (environment, file or demo).

        Raises
        ------
        ConfigError
            The variable is unset, the file missing, or the key unusable.
        """
        try:
            return self.ingest.key.load()
        except ConfigError:
            raise
        except Exception as exc:  # a missing variable/file; never contains the key itself
            where = f"{self.source_file}: " if self.source_file else ""
            raise ConfigError(
                f"{where}ingest.key: cannot read the pseudonymisation key from "
                f"{self.ingest.key.describe()}: {exc}"
            ) from None

    def bias_correction_features(self) -> tuple[str, ...] | None:
        """The covariates of the estimates' regression bias correction (the twins' score
        features and exact strata), or ``None`` when ``estimates.bias_correction`` is off."""
        if not self.estimates.bias_correction:
            return None
        from impact.estimate.bias_correction import correction_features

        return correction_features(self.twins.settings())

    def ingest_settings(self, key: PseudonymKey | None = None,
                        full: bool = False) -> IngestSettings:
        """Settings for :func:`impact.ingest.ingest_source` (output under ``data.root``).

        ``full`` forces a full re-ingest (no cached group is reused) whatever
        ``ingest.incremental`` says.
        """
        from impact.ingest import IngestSettings

        return IngestSettings(
            out=self.data.root,
            key=key if key is not None else self.pseudonym_key(),
            already_pseudonymised=self.ingest.already_pseudonymised,
            verify_checksums=self.ingest.verify_checksums,
            incremental=self.ingest.incremental and not full,
            bucket_rows=self.ingest.bucket_rows,
            parallel_groups=self.ingest.parallel_groups,
        )


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for e in exc.errors():
        parts = list(e.get("loc", ()))
        if parts[:2] == ["ingest", "key"] and len(parts) > 2 and parts[2] in _KEY_SOURCES:
            del parts[2]  # the union member's tag, not a field the user wrote
        loc = ".".join(str(x) for x in parts)
        msg = str(e.get("msg", "")).removeprefix("Value error, ")
        if e.get("type") == "union_tag_invalid":
            ctx = e.get("ctx") or {}
            msg = f"must be one of {ctx.get('expected_tags', '')} (got {ctx.get('tag', '?')!r})"
            loc = f"{loc}.source" if not loc.endswith("source") else loc
        elif e.get("type") == "union_tag_not_found":
            msg = "needs `source:` (one of 'env', 'file', 'demo')"
        elif e.get("type") == "extra_forbidden":
            msg = "unknown field (not part of the config schema)"
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- secrets

#: a field whose name (lower case, separators removed) contains one of these holds a secret
_SECRET_WORDS = re.compile(
    r"password|passwd|passphrase|secret|token|apikey|privatekey|keymaterial|hmac|credential")
#: ... as does a field with one of these words in its name (``db_pwd``, ``auth``, ...)
_SECRET_NAME_WORDS = frozenset({"pw", "pwd", "pass", "auth", "salt", "pepper"})
#: ... or a field whose name ends in ``key`` (``key``, ``signing_key``, ``pseudonym_key``)
_KEY_NAME_ENDINGS = frozenset({"key", "keys"})
#: the fields of a key *reference* (``ingest.key``): they say where the key is, not what
_KEY_REFERENCE_FIELDS = frozenset({"source", "variable", "path"})
#: fields holding file system paths (long base64-like strings are normal there)
_PATH_FIELDS = frozenset({"root", "path"})
_PATH_SUFFIXES = ("_path", "_dir", "_file", "_folder", "_root")
#: ``scheme://user:password@host``: a password in a URL's user info
_URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.\-]*://[^\s@/:]*:[^\s@]+@", re.IGNORECASE)
#: ``...?password=...``, ``token=...`` in a query string or a libpq keyword DSN
_INLINE_CREDENTIAL = re.compile(
    r"(?:^|[\s?&;])(?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey|auth"
    r"|sslpassword)\s*=\s*[^\s&;#]", re.IGNORECASE)
#: key material as :class:`impact.pseudonym.PseudonymKey` reads it: >= 32 bytes of hex ...
_HEX_MATERIAL = re.compile(r"(?:0x)?[0-9a-fA-F]{64,}")
#: ... or base64 (standard or URL-safe; 43 characters carry 32 bytes)
_B64_MATERIAL = re.compile(r"[A-Za-z0-9+/_-]{43,}={0,2}")
_SECRET_ADVICE = (
    "A config names where a secret is kept, it never contains one: ingest.key: {source: env, "
    f"variable: {DEFAULT_KEY_VARIABLE}}} or {{source: file, path: <key file outside the "
    "repository>}; passwords belong in the environment or the credential store of the "
    "deployment (docs/key_management.md). Remove the value from the file and treat a key or "
    "password that was written into it as exposed: rotate it.")


def _secret_field(name: str) -> bool:
    """Is ``name`` the name of a field that would hold a secret?"""
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return bool(_SECRET_WORDS.search("".join(words)) or _SECRET_NAME_WORDS.intersection(words)
                or (words and words[-1] in _KEY_NAME_ENDINGS))


def _path_field(name: str | None) -> bool:
    return name is not None and (name in _PATH_FIELDS or name.endswith(_PATH_SUFFIXES))


def _secret_value(text: str, *, path: bool = False) -> str | None:
    """Why the string ``text`` looks like a secret itself (``None``: it does not).

    ``path``: the value of a path field, where long base64-like strings are ordinary.
    """
    if _URL_PASSWORD.search(text):
        return "URL with a password (user:password@host)"
    if _INLINE_CREDENTIAL.search(text):
        return "connection string or query with a password or token (name=value)"
    compact = re.sub(r"\s+", "", text)
    if _HEX_MATERIAL.fullmatch(compact):
        return "looks like key material (64 or more hex digits)"
    if (not path and _B64_MATERIAL.fullmatch(compact) and re.search("[a-z]", compact)
            and re.search("[A-Z]", compact) and re.search("[0-9]", compact)):
        return "looks like key material (base64 text of 32 or more bytes)"
    return None


def secret_findings(data: object) -> list[tuple[str, str]]:
    """Fields of a parsed YAML document that hold, or look like, a secret.

    Returns ``(field path, reason)`` pairs, e.g. ``("ingest.key.value", "literal value in
    the section of a secret ...")``. Neither part ever contains a value (a mapping key that
    looks like a secret itself is shown as ``<redacted>``). Rules (see the module docstring):

    * a field named like a secret (:func:`_secret_field`: ``password``, ``secret``,
      ``token``, ``api_key``, ``private_key``, ``key_material``, ``hmac``, ``*_key``, ...)
      whose value is not a mapping;
    * inside such a mapping (``ingest.key``), any literal but the key reference fields
      ``source``, ``variable`` and ``path``;
    * anywhere, a string that is a URL or connection string with a password or token, or
      that looks like key material (:func:`_secret_value`); a byte string (``!!binary``).
    """
    found: list[tuple[str, str]] = []
    active: set[int] = set()  # containers on the current path (YAML aliases can recurse)

    def shown(key: object) -> str:
        return "<redacted>" if _secret_value(str(key)) else str(key)

    def walk(node: object, where: str, name: str | None, in_secret: bool) -> None:
        if isinstance(node, dict | list):
            if id(node) in active:
                return
            active.add(id(node))
            try:
                if isinstance(node, list):
                    for i, item in enumerate(node):
                        walk(item, f"{where}[{i}]", name, in_secret)
                    return
                for key, value in node.items():
                    at = f"{where}.{shown(key)}" if where else shown(key)
                    if shown(key) == "<redacted>":
                        found.append((at, "a field name that looks like a secret"))
                    elif _secret_field(str(key)) and not isinstance(value, dict):
                        found.append((at, "named like a secret and holds a literal value"))
                    else:
                        walk(value, at, str(key), in_secret or _secret_field(str(key)))
            finally:
                active.discard(id(node))
            return
        if node is None and not in_secret:
            return
        if in_secret and name not in _KEY_REFERENCE_FIELDS:
            found.append((where, "literal value in the section of a secret (only "
                                 + ", ".join(sorted(_KEY_REFERENCE_FIELDS)) + " may be set)"))
        elif isinstance(node, bytes | bytearray):
            found.append((where, "binary value (possibly key material)"))
        elif isinstance(node, str):
            why = _secret_value(node, path=_path_field(name))
            if why:
                found.append((where, why))

    walk(data, "", None, False)
    return found


def _refuse_secrets(data: object, source: Path | str) -> None:
    findings = secret_findings(data)
    if findings:
        lines = "\n".join(f"  {where}: {why}" for where, why in findings)
        raise ConfigError(f"{source}: refused: the config holds what looks like a secret "
                          f"(values are never shown)\n{lines}\n{_SECRET_ADVICE}")


def parse_config(data: object, source: Path | str = "<config>") -> EvaluationConfig:
    """Validate an already parsed YAML document; errors name ``source`` and the fields.

    Raises
    ------
    ConfigError
        ``data`` is not a mapping, holds a secret (:func:`secret_findings`; refused before
        the schema is checked, without echoing the value) or breaks the schema.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: an evaluation config must be a YAML mapping of "
            f"sections (data, synth, ingest), not a {type(data).__name__}"
        )
    _refuse_secrets(data, source)
    try:
        cfg = EvaluationConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid evaluation config\n{_format_errors(exc)}") from None
    cfg._source_file = Path(source)
    return cfg


def load_config(path: Path | str) -> EvaluationConfig:
    """Read and validate ``configs/<name>.yaml``.

    Raises
    ------
    ConfigError
        The file is missing, not YAML, holds a secret or breaks the schema; the
        message names the file and every offending field, never a secret's value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    return parse_config(data, path)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's message with line and column, without the quoted source line (which
    could be a line holding a secret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "; ".join(x for x in (exc.context, exc.problem) if x)
        return f"{what or 'syntax error'}{where}"
    return str(exc).splitlines()[0]  # ReaderError: a character code and its position
