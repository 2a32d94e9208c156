"""API keys: from the environment (always first), then the user's keys file (``image-gen keys``).

The keys file is TOML (``NAME = "value"``), mode 0600, in the user's config folder:
``$XDG_CONFIG_HOME/image-gen/keys.toml`` (default ``~/.config/image-gen/keys.toml``; on macOS
``~/Library/Application Support/image-gen/keys.toml``; on Windows ``%APPDATA%\\image-gen\\keys.toml``).
``IMAGE_GEN_KEYS_FILE`` names another file (tests).

A leaf module: providers ask ``lookup`` for a key by the vendor's variable names; nothing here logs, prints or
records a key. ``fingerprint`` gives a short, one-way tag to tell keys apart without showing them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("image_gen.keys")

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KeysFileError(ValueError):
    """The keys file cannot be read or parsed (its contents are never quoted)."""


def keys_path() -> Path:
    """Where the keys file lives (``IMAGE_GEN_KEYS_FILE`` overrides)."""
    override = os.environ.get("IMAGE_GEN_KEYS_FILE")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "image-gen" / "keys.toml"


def read_keys(path: Path | None = None) -> dict[str, str]:
    """The keys file's entries (empty when there is no file); KeysFileError when it cannot be parsed."""
    import tomllib

    p = path or keys_path()
    if not p.is_file():
        return {}
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # the parser's message may quote the file's text: say only where
        where = getattr(exc, "lineno", None)
        raise KeysFileError(f"{p}: cannot read the keys file" + (f" (line {where})" if where else "")) from None
    return {k: v for k, v in data.items() if isinstance(v, str) and v}


def write_keys(entries: dict[str, str], path: Path | None = None) -> Path:
    """Write the keys file atomically, mode 0600 (its folder 0700 when created)."""
    p = path or keys_path()
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# image-gen API keys (written by `image-gen keys set`). Environment variables win over this file.\n"]
    for name in sorted(entries):
        if not NAME.match(name):
            raise ValueError(f"not a key name: {name!r}")
        lines.append(f"{name} = {json.dumps(entries[name], ensure_ascii=True)}\n")
    fd, tmp = tempfile.mkstemp(prefix=".keys-", suffix=".tmp", dir=p.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o600)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def set_key(name: str, value: str, path: Path | None = None) -> Path:
    if not NAME.match(name):
        raise ValueError(f"not a key name: {name!r} (letters, digits and _, e.g. IDEOGRAM_API_KEY)")
    if not value.strip():
        raise ValueError("empty key")
    entries = read_keys(path)
    entries[name] = value.strip()
    return write_keys(entries, path)


def remove_key(name: str, path: Path | None = None) -> bool:
    entries = read_keys(path)
    if name not in entries:
        return False
    del entries[name]
    write_keys(entries, path)
    return True


def fingerprint(value: str) -> str:
    """A short one-way tag of a key (first 8 hex digits of its sha256): tells keys apart, reveals nothing."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def lookup(names: tuple[str, ...] | list[str]) -> str | None:
    """The first non-empty value among ``names`` in the environment, else in the keys file."""
    for var in names:
        value = os.environ.get(var)
        if value:
            return value
    try:
        stored = read_keys()
    except KeysFileError as exc:
        log.warning("%s; ignoring it", exc)
        return None
    for var in names:
        if stored.get(var):
            return stored[var]
    return None
