"""Which providers are installed and configured here (from the environment and the keys file). Never a key:
only the names of the variables that hold keys, and base URLs stripped of user info and queries."""

from __future__ import annotations

import os
from typing import Any

# Where each built-in provider looks; only the variable NAMES are ever printed.
KEY_VARS: dict[str, tuple[str, ...]] = {
    "ideogram": ("IDEOGRAM_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "stability": ("STABILITY_API_KEY",),
    "bfl": ("BFL_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "fal": ("FAL_KEY",),
    "replicate": ("REPLICATE_API_TOKEN",),
}
BASE_URL_VARS: dict[str, str] = {
    "ideogram": "IDEOGRAM_BASE_URL",
    "google": "GOOGLE_GEMINI_BASE_URL",
    "stability": "STABILITY_BASE_URL",
    "bfl": "BFL_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "fal": "FAL_QUEUE_BASE_URL",
    "replicate": "REPLICATE_BASE_URL",
}


def provider_status() -> list[dict[str, Any]]:
    """One row per installed provider: configured or not, which variable holds the key, base URL."""
    from image_gen.providers import available_providers, load_provider_class
    from image_gen.providers.base import ProviderError, ProviderSettings

    rows: list[dict[str, Any]] = []
    for name in available_providers():
        row: dict[str, Any] = {
            "name": name,
            "configured": False,
            "key_from": None,
            "key_vars": None,
            "base_url": None,
            "error": None,
        }
        try:
            provider = load_provider_class(name)(ProviderSettings())
            row["configured"] = bool(provider.is_configured())
        except (ImportError, ProviderError, OSError, ValueError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        if name in KEY_VARS:
            row["key_vars"] = list(KEY_VARS[name])
            row["key_from"] = _key_from(KEY_VARS[name])
            row["base_url"] = _public_url(os.environ.get(BASE_URL_VARS[name]))
        rows.append(row)
    return rows


def _key_from(names: tuple[str, ...]) -> str | None:
    """Where a provider's key comes from: the variable's name, or "NAME (keys file)"; never the key."""
    from image_gen.keys import KeysFileError, read_keys

    env = next((v for v in names if os.environ.get(v)), None)
    if env:
        return env
    try:
        stored = read_keys()
    except KeysFileError:
        return None
    return next((f"{v} (keys file)" for v in names if stored.get(v)), None)


def _public_url(url: str | None) -> str | None:
    """A base URL without user info or query (where a careless setup might have put a key)."""
    if not url:
        return None
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
