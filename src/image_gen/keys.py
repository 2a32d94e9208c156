"""API keys: from the environment (always first), then the user's keys file (``image-gen keys``).

A leaf module: providers ask ``lookup`` for a key by the vendor's variable names; nothing here logs or
records a key.
"""

from __future__ import annotations

import os


def lookup(names: tuple[str, ...] | list[str]) -> str | None:
    """The first non-empty value among ``names`` in the environment, else in the keys file."""
    for var in names:
        value = os.environ.get(var)
        if value:
            return value
    return None
