"""``image-gen keys``: a 0600 file in the user's config folder; the environment wins; no value is ever printed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from image_gen import keys
from tests.core.helpers import invoke

SECRET = "sk-test-0123456789abcdefSECRET"
OTHER = "sk-env-9876543210zyxwvuOTHER"


def _cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "image_gen.cli", *args], input=stdin, capture_output=True,
                          text=True, env=full, timeout=120)


def test_set_from_stdin_writes_a_0600_file_and_lookup_reads_it(_keys_file: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    r = _cli("keys", "set", "IDEOGRAM_API_KEY", stdin=SECRET + "\n")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(_keys_file.stat().st_mode) == 0o600
    assert keys.lookup(["IDEOGRAM_API_KEY"]) == SECRET
    monkeypatch.setenv("IDEOGRAM_API_KEY", OTHER)
    assert keys.lookup(["IDEOGRAM_API_KEY"]) == OTHER  # the environment wins
    monkeypatch.delenv("IDEOGRAM_API_KEY")
    assert keys.lookup(("GEMINI_API_KEY", "GOOGLE_API_KEY")) is None


def test_no_key_value_appears_in_any_output(_keys_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = [invoke("keys", "set", "IDEOGRAM_API_KEY", "--value", SECRET),
               invoke("keys", "set", "STABILITY_API_KEY", "--value", SECRET, "--json")]
    monkeypatch.setenv("GEMINI_API_KEY", OTHER)
    outputs += [invoke("keys", "list"), invoke("keys", "list", "--json"), invoke("keys", "path"),
                invoke("providers"), invoke("providers", "--json")]
    for r in outputs:
        assert r.code == 0, r.stderr
        for value in (SECRET, OTHER):
            assert value not in r.stdout and value not in r.stderr
            assert value[-8:] not in r.stdout and value[:12] not in r.stdout
    listed = {k["name"]: k for k in invoke("keys", "list", "--json").json()["keys"]}
    assert listed["IDEOGRAM_API_KEY"]["source"] == "keys file"
    assert listed["IDEOGRAM_API_KEY"]["fingerprint"] == keys.fingerprint(SECRET)
    assert listed["GEMINI_API_KEY"]["source"] == "environment"
    prov = {p["name"]: p for p in invoke("providers", "--json").json()["providers"]}
    assert prov["ideogram"]["key_from"] == "IDEOGRAM_API_KEY (keys file)"
    assert prov["google"]["key_from"] == "GEMINI_API_KEY"


def test_bad_names_and_empty_values_are_bad_input(_keys_file: Path) -> None:
    assert invoke("keys", "set", "not a name", "--value", "x").code == 2
    assert _cli("keys", "set", "IDEOGRAM_API_KEY", stdin="\n").returncode == 2
    assert not _keys_file.exists()
    assert invoke("keys", "remove", "IDEOGRAM_API_KEY").code == 2


def test_default_path_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("IMAGE_GEN_KEYS_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert keys.keys_path() == tmp_path / "xdg" / "image-gen" / "keys.toml"
    assert invoke("keys", "path").stdout.strip() == str(keys.keys_path())


def test_a_broken_keys_file_never_quotes_its_contents(_keys_file: Path) -> None:
    _keys_file.parent.mkdir(parents=True)
    _keys_file.write_text(f'IDEOGRAM_API_KEY = "{SECRET}\n', encoding="utf-8")  # unterminated string
    assert keys.lookup(["IDEOGRAM_API_KEY"]) is None
    r = invoke("keys", "list")
    assert r.code == 2 and SECRET not in r.stderr and SECRET not in r.stdout
