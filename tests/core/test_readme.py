"""The README's configuration reference and examples stay true: they validate against the schema."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from image_gen.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_toml_block_in_the_readme_is_a_valid_config_or_fragment() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 3
    full = [b for b in blocks if "[pipeline]" in b]
    assert full, "the configuration reference block is missing"
    for block in full:
        cfg = load_config(tomllib.loads(block))
        names = [n for n, _ in cfg.stage_specs()]
        assert names == ["draft", "layout", "final", "hires"]
    for block in blocks:
        tomllib.loads(block)  # every block at least parses
