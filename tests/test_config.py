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
