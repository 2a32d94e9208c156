"""``generate`` (the default command): render prompts with one model, e.g.
``image-gen --model ideogram-v2a --prompt-file prompts.txt --batch 1 --out-dir tiles/``."""

from __future__ import annotations

from typing import Any

import click

from image_gen.cli._common import json_option, workspace_option
from image_gen.cli.run_cmd import estimate_option


@click.command()
@click.option("--model", "-m", default=None,
              help="Model id or alias (see `image-gen models`), sim:<id>, local:<repo>, or largest-available. "
                   "Required unless --config gives the pipeline.")
@click.option("--config", "config_path", type=click.Path(), help="Base config; flags below override it.")
@click.option("--prompt", "-p", "prompts", multiple=True, help="A prompt (repeatable).")
@click.option("--prompt-file", type=click.Path(), help="One prompt per line.")
@click.option("--batch", type=click.IntRange(1, 8), default=None, help="Images per call.")
@click.option("--width", type=click.IntRange(1, 16384))
@click.option("--height", type=click.IntRange(1, 16384))
@click.option("--aspect-ratio")
@click.option("--steps", type=click.IntRange(1, 500))
@click.option("--guidance-scale", type=click.FloatRange(0, 50))
@click.option("--seed", type=click.IntRange(0, 2**32 - 2))
@click.option("--negative-prompt")
@click.option("--tile-size", type=click.IntRange(64, 4096), help="Tile size for tiled work (pixels).")
@click.option("--overlap", type=click.IntRange(0, 1024), help="Tile overlap (pixels).")
@click.option("--upscale", type=click.Choice(["2x", "4x"]))
@click.option("--simulate", is_flag=True, help="Use the offline simulator (no key, no GPU).")
@click.option("--no-qa", is_flag=True, help="Skip automatic QA (e.g. for abstract or text-free images).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Export images here with readable names.")
@estimate_option
@workspace_option
@json_option
def generate(model: str | None, config_path: str | None, prompts: tuple[str, ...], prompt_file: str | None,
             batch: int | None, width: int | None, height: int | None, aspect_ratio: str | None, steps: int | None,
             guidance_scale: float | None, seed: int | None, negative_prompt: str | None, tile_size: int | None,
             overlap: int | None, upscale: str | None, simulate: bool, no_qa: bool, out_dir: str | None,
             estimate: bool, workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Render prompts with one model (the default command)."""
    from image_gen.cli.run_cmd import _briefs, run_briefs
    from image_gen.config import STAGED, read_config_file
    from image_gen.errors import ConfigError

    base = read_config_file(config_path) if config_path else {}
    flags = {"model": None if model in (None, STAGED) else model, "num_images": batch, "width": width,
             "height": height,
             "aspect_ratio": aspect_ratio, "steps": steps, "guidance_scale": guidance_scale, "seed": seed,
             "negative_prompt": negative_prompt, "tile_size": tile_size, "overlap": overlap, "upscale": upscale,
             "qa": {"enabled": False} if no_qa else None}
    flags = {k: v for k, v in flags.items() if v is not None}
    if base:
        data = dict(base)
        pipeline = dict(data.get("pipeline", {}))
        if "model" in flags:
            pipeline["model"] = flags.pop("model")
            pipeline["stages"] = []
            data["stage"] = {}
        pipeline.update(flags)
        data["pipeline"] = pipeline
    else:
        if "model" not in flags:
            raise ConfigError("give --model MODEL (or --config FILE)", field="--model")
        data = flags
    cfg = _load(data, config_path or "command-line flags")
    briefs = _briefs(prompts, prompt_file)
    run_briefs(cfg, config_path, briefs, simulate=simulate, workspace=workspace, registry_url=registry_url,
               as_json=as_json, out_dir=out_dir, estimate=estimate)


def _load(data: dict, source: str) -> Any:
    from image_gen.config import parse_config

    return parse_config(data, source=source)
