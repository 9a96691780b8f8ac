"""Evaluation configs (impact.config): valid files load, bad ones fail early and say where."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest
import yaml

from impact.config import (
    ConfigError,
    DemoKey,
    EnvKey,
    EvaluationConfig,
    FileKey,
    load_config,
    parse_config,
)
from impact.pseudonym import PseudonymKey

REPO = Path(__file__).resolve().parents[1]
SYNTH = {"persons": 800, "seed": 1}
HEX_KEY = "ab" * 32


def _write(tmp_path: Path, doc: object, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc, encoding="utf-8")
    return path


def test_demo_config_loads():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.source_file == REPO / "configs" / "demo.yaml"
    assert cfg.is_synthetic and isinstance(cfg.ingest.key, DemoKey)
    assert cfg.data.root == Path("data/demo")
    assert cfg.data.landing == Path("data/demo/landing")
    assert cfg.data.sources == Path("data/demo/sources")
    assert cfg.data.quarantine == Path("data/demo/quarantine")
    synth = cfg.synth.synth_config()
    assert (synth.persons, synth.seed, synth.fmt) == (100_000, 1, "csv")
    settings = cfg.ingest_settings()
    assert settings.out == Path("data/demo")
    assert settings.key == PseudonymKey.demo() and settings.key.is_demo
    assert (settings.already_pseudonymised, settings.verify_checksums) == (False, True)


def test_bias_correction_features_follow_the_twins(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.estimates.bias_correction is False and cfg.bias_correction_features() is None
    path = tmp_path / "bc.yaml"
    path.write_text(yaml.safe_dump({"estimates": {"bias_correction": True},
                                    "twins": {"exact": ["sex", "ila_account_l1"],
                                              "coarsen": []}}), encoding="utf-8")
    feats = load_config(path).bias_correction_features()
    from impact.twins.riskset import TwinSettings

    assert feats[: len(TwinSettings.features)] == TwinSettings.features
    assert feats[-1] == "ila_account_l1" and feats.count("sex") == 1


def test_defaults_are_for_real_data():
    """An empty config: env key IMPACT_PSEUDONYM_KEY, checksums verified, no synth."""
    cfg = parse_config({})
    assert not cfg.is_synthetic
    assert cfg.ingest.key == EnvKey(source="env", variable="IMPACT_PSEUDONYM_KEY")
    assert cfg.ingest.verify_checksums and not cfg.ingest.already_pseudonymised


def test_config_is_frozen():
    cfg = parse_config({})
    with pytest.raises(pydantic.ValidationError):
        cfg.data.root = Path("elsewhere")  # type: ignore[misc]


def test_with_data_root_keeps_the_rest(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml")
    moved = cfg.with_data_root(tmp_path)
    assert moved.data.landing == tmp_path / "landing"
    assert moved.synth == cfg.synth and moved.ingest == cfg.ingest
    assert moved.source_file == cfg.source_file


@pytest.mark.parametrize(
    "doc, where, what",
    [
        ({"dta": {"root": "x"}}, "dta", "unknown field"),
        ({"data": {"rot": "x"}}, "data.rot", "unknown field"),
        ({"ingest": {"verify_checksum": False}}, "ingest.verify_checksum", "unknown field"),
        ({"ingest": {"key": {"source": "vault"}}}, "ingest.key.source", "got 'vault'"),
        ({"ingest": {"key": {"variable": "X"}}}, "ingest.key", "needs `source:`"),
        ({"ingest": {"key": {"source": "file"}}}, "ingest.key.path", "Field required"),
        ({"ingest": {"key": {"source": "env", "path": "k"}}}, "ingest.key.path", "unknown field"),
        ({"ingest": {"key": {"source": "demo"}}}, "ingest.key", "only be used with synthetic"),
        ({"ingest": {"verify_checksums": "maybe"}}, "ingest.verify_checksums", "boolean"),
        ({"synth": {"format": "xlsx"}}, "synth.format", "'csv' or 'parquet'"),
        ({"synth": {"persons": 10}}, "synth", "persons"),
        ({"synth": {"start": "2025-01"}}, "synth", "start must be 2023-12 or earlier"),
        ({"synth": {"end": "2026-13"}}, "synth", "month out of range"),
        ({"twins": {"exact": ["sex", "region_code"]}}, "twins",
         "coarsen drops ['job_recency'], not in the exact strata"),
        ({"twins": {"coarsen": [["region_code"], ["region_code"]]}}, "twins",
         "coarsen drops ['region_code']"),
    ],
)
def test_bad_config_names_file_and_field(tmp_path, doc, where, what):
    path = _write(tmp_path, doc)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    text = str(exc.value)
    assert text.startswith(f"{path}: invalid evaluation config")
    assert f"\n  {where}: " in text
    assert what in text


def test_every_error_is_reported_at_once(tmp_path):
    path = _write(tmp_path, {"data": {"rot": 1}, "ingest": {"key": {"source": "vault"}}})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "data.rot" in str(exc.value) and "ingest.key.source" in str(exc.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("data: [unclosed\n", "not valid YAML"),
        ("- data\n- ingest\n", "must be a YAML mapping"),
        ("just a string\n", "must be a YAML mapping"),
    ],
)
def test_not_a_config(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(path)
    assert str(exc.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_is_the_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")).model_dump() == EvaluationConfig().model_dump()


def test_env_key(tmp_path, monkeypatch):
    path = _write(tmp_path, {"ingest": {"key": {"source": "env", "variable": "TEST_KEY_VAR"}}})
    cfg = load_config(path)  # loading never needs the key
    monkeypatch.delenv("TEST_KEY_VAR", raising=False)
    with pytest.raises(ConfigError) as exc:
        cfg.ingest_settings()
    assert str(exc.value).startswith(f"{path}: ingest.key: ")
    assert "TEST_KEY_VAR" in str(exc.value)
    monkeypatch.setenv("TEST_KEY_VAR", HEX_KEY)
    assert cfg.ingest_settings().key == PseudonymKey(bytes.fromhex(HEX_KEY))


def test_file_key(tmp_path):
    key_file = tmp_path / "secret.key"
    cfg = load_config(
        _write(tmp_path, {"ingest": {"key": {"source": "file", "path": str(key_file)}}})
    )
    assert isinstance(cfg.ingest.key, FileKey)
    with pytest.raises(ConfigError, match="secret.key"):
        cfg.pseudonym_key()
    key_file.write_text(HEX_KEY, encoding="ascii")
    os.chmod(key_file, 0o600)
    assert cfg.pseudonym_key() == PseudonymKey(bytes.fromhex(HEX_KEY))


def test_error_never_contains_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_KEY_VAR", "zz-not-a-key")
    cfg = parse_config({"ingest": {"key": {"source": "env", "variable": "TEST_KEY_VAR"}}})
    with pytest.raises(ConfigError) as exc:
        cfg.pseudonym_key()
    assert "zz-not-a-key" not in str(exc.value)


def test_synthetic_config_accepts_the_demo_key():
    cfg = parse_config({"synth": SYNTH, "ingest": {"key": {"source": "demo"}}})
    assert cfg.pseudonym_key().is_demo


# --------------------------------------------------------------------------- secrets
# Made-up secrets, distinct enough that no 6-character piece of them occurs in a message by
# chance (the messages are English prose, field paths and the variable name).
SECRET_HEX = "9f3c5e7a1b2d4f6081a3c5e7092b4d6f8a1c3e5f7092b4d6e8f0a2c4e6f8091b"
SECRET_B64 = "Qm9yZGVyQ29sbGllMjAyNSt2ZXJ5K3NlY3JldC9rZXk0Mg=="
PASSWORD = "Tr0ub4dor-Xq7w"
TOKEN = "ghp_Zx81QwErTy42UiOp"


def _leaked(secret: str, text: str) -> list[str]:
    """Pieces (6 characters or more) of ``secret`` that occur in ``text``."""
    return [secret[i:i + 6] for i in range(len(secret) - 5) if secret[i:i + 6] in text]


SECRET_CASES = [
    # the pseudonymisation key inline, in every shape
    (f'ingest:\n  key:\n    source: env\n    value: "{SECRET_HEX}"\n', "ingest.key.value",
     SECRET_HEX),
    (f"ingest:\n  key: {{source: file, path: k.key, material: {SECRET_B64}}}\n",
     "ingest.key.material", SECRET_B64),
    (f'ingest:\n  key: "{SECRET_HEX}"\n', "ingest.key", SECRET_HEX),
    (f"ingest:\n  key: {SECRET_B64}\n", "ingest.key", SECRET_B64),
    (f"ingest:\n  key: {{source: env, variable: {SECRET_B64}}}\n", "ingest.key.variable",
     SECRET_B64),
    (f'pseudonym_key: "{SECRET_HEX}"\n', "pseudonym_key", SECRET_HEX),
    (f"ingest:\n  private_key: {SECRET_B64}\n", "ingest.private_key", SECRET_B64),
    (f"ingest:\n  key_material: {SECRET_B64}\n", "ingest.key_material", SECRET_B64),
    (f'twins:\n  hmac: "{SECRET_HEX}"\n', "twins.hmac", SECRET_HEX),
    (f"secrets:\n  pseudonym: {SECRET_B64}\n", "secrets.pseudonym", SECRET_B64),
    # key material where no secret is expected (also as a mapping key or list item)
    (f"twins:\n  exact: [sex, {SECRET_B64}]\n", "twins.exact[1]", SECRET_B64),
    (f'indicators:\n  sector_rank: {{"{SECRET_HEX}": 1.0}}\n',
     "indicators.sector_rank.<redacted>", SECRET_HEX),
    # passwords, anywhere and under any spelling
    (f"password: {PASSWORD}\n", "password", PASSWORD),
    (f"data:\n  root: data/x\n  passwd: {PASSWORD}\n", "data.passwd", PASSWORD),
    (f"database:\n  db_pwd: {PASSWORD}\n", "database.db_pwd", PASSWORD),
    (f"publish:\n  uploadPassword: {PASSWORD}\n", "publish.uploadPassword", PASSWORD),
    (f"ingest:\n  secret: {PASSWORD}\n", "ingest.secret", PASSWORD),
    # credentials in URLs and connection strings
    (f"database:\n  url: postgresql://impact:{PASSWORD}@db.example:5432/impact\n",
     "database.url", PASSWORD),
    (f'data:\n  root: "postgresql://impact:{PASSWORD}@db/impact"\n', "data.root", PASSWORD),
    (f'storage:\n  dsn: "host=db user=impact password={PASSWORD}"\n', "storage.dsn",
     PASSWORD),
    (f'export:\n  url: "https://api.example/v1/upload?token={TOKEN}"\n', "export.url",
     TOKEN),
    # tokens and API keys
    (f"publish:\n  api_key: {TOKEN}\n", "publish.api_key", TOKEN),
    (f"publish:\n  apiKey: {TOKEN}\n", "publish.apiKey", TOKEN),
    (f"publish:\n  access_token: {TOKEN}\n", "publish.access_token", TOKEN),
    ("publish:\n  auth_token: 8812734455\n", "publish.auth_token", "8812734455"),
    (f"credentials: [{TOKEN}]\n", "credentials", TOKEN),
]


@pytest.mark.parametrize("text, where, secret", SECRET_CASES, ids=[c[1] for c in SECRET_CASES])
def test_config_with_a_secret_is_refused_without_echo(tmp_path, text, where, secret):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: refused: the config holds what looks like a secret")
    assert f"\n  {where}: " in message
    assert "docs/key_management.md" in message
    assert not _leaked(secret, message), message
    # the same document parsed by the caller: the same refusal, no echo either
    with pytest.raises(ConfigError) as exc2:
        parse_config(yaml.safe_load(text), "inline")
    assert str(exc2.value).startswith("inline: refused") and not _leaked(secret, str(exc2.value))


def test_every_secret_is_reported_at_once(tmp_path):
    doc = {"ingest": {"key": {"source": "env", "value": SECRET_HEX}}, "password": PASSWORD,
           "database": {"url": f"postgresql://u:{PASSWORD}@h/db"}}
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, doc))
    message = str(exc.value)
    for where in ("ingest.key.value", "password", "database.url"):
        assert f"\n  {where}: " in message
    assert not _leaked(SECRET_HEX, message) and not _leaked(PASSWORD, message)


@pytest.mark.parametrize(
    "doc",
    [
        {"ingest": {"key": {"source": "env", "variable": "IMPACT_PSEUDONYM_KEY_EVALUATION_2025"}}},
        {"ingest": {"key": {"source": "file", "path": "/run/secrets/impact/pseudonym.key"}}},
        {"ingest": {"key": {"source": "file",
                            "path": "/srv/keys/Evaluations/ILA2025/pseudonymKeyForRun2"}}},
        {"data": {"root": "/srv/statistics/Evaluations/ILA_2025/dataRootVersion2"}},
        {"synth": SYNTH, "ingest": {"key": {"source": "demo"}}},
    ],
)
def test_key_references_and_paths_are_not_secrets(doc):
    """A config that names where the key is (variable, key file) and long paths still load."""
    parse_config(doc)


def test_secret_is_refused_when_the_model_is_built_directly():
    """Also without parse_config (defence in depth): and pydantic's error text, which would
    normally show the input value, shows none."""
    for doc in ({"ingest": {"key": {"source": "env", "value": SECRET_HEX}}},
                {"database": {"password": PASSWORD}}):
        with pytest.raises(pydantic.ValidationError) as exc:
            EvaluationConfig.model_validate(doc)
        assert "looks like a secret" in str(exc.value)
        assert not _leaked(SECRET_HEX, str(exc.value)) and not _leaked(PASSWORD, str(exc.value))


def test_schema_errors_never_echo_input_values():
    """An unknown field or a wrongly typed value: the message has the field, not the value."""
    for doc in ({"data": {"rot": PASSWORD}}, {"twins": {"ratio": PASSWORD}},
                {"disclosure": {"min_persons": PASSWORD}}, {"indicators": {"x": PASSWORD}}):
        with pytest.raises(pydantic.ValidationError) as exc:
            EvaluationConfig.model_validate(doc)
        assert not _leaked(PASSWORD, str(exc.value)), str(exc.value)


def _models(annotation, seen):
    """Every pydantic model class reachable from a type annotation."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            for field in annotation.model_fields.values():
                _models(field.annotation, seen)
        return seen
    for arg in typing.get_args(annotation):
        _models(arg, seen)
    return seen


def test_every_config_model_forbids_unknown_fields():
    """A smuggled field (e.g. ``ingest.key.value``) can never be silently ignored."""
    models = _models(EvaluationConfig, set())
    assert {EnvKey, FileKey, DemoKey} <= models and len(models) >= 14
    loose = sorted(m.__name__ for m in models if m.model_config.get("extra") != "forbid")
    assert loose == []


def test_yaml_syntax_error_does_not_quote_the_line(tmp_path):
    path = _write(tmp_path, f'data:\n  root: x\ningest:\n  key: "{SECRET_HEX}\n')
    with pytest.raises(ConfigError, match=r"not valid YAML: .*\(line \d+, column \d+\)") as exc:
        load_config(path)
    assert not _leaked(SECRET_HEX, str(exc.value)), str(exc.value)
