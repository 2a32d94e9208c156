"""``finish`` and ``upscale``: run a finishing config, or a tiled/native upscale, on an existing image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from image_gen.cli._common import emit_json, json_option, workspace_option
from image_gen.cli.run_cmd import estimate_option, print_estimate

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.api import GenerateResult


def _open_image(path: str, field: str) -> Image.Image:
    from image_gen.imaging.images import open_user_image

    return open_user_image(path, field)


def _check_out(out: str | None) -> None:
    from image_gen.errors import InputError

    if out and Path(out).suffix.lower() not in ("", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"):
        raise InputError("expected an image file name (.png, .jpg, .webp, .tif)", file=out, field="--out")


def _report(result: GenerateResult, out: str | None, as_json: bool) -> None:
    from image_gen.cli._render import exit_code, print_outcomes

    outcome = result.record
    written = str(result.save(out)) if out and outcome.final_artifact else None
    if as_json:
        data: dict[str, Any] = {"run": outcome.to_dict(), "out": written,
                                "artifact": str(result.path) if result.path else None}
        emit_json(data)
    else:
        print_outcomes([outcome])
        if written:
            click.echo(f"wrote {written}")
        elif result.path:
            click.echo(f"image: {result.path}")
    sys.exit(exit_code([outcome]))


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Finishing config (TOML, YAML or JSON): a model with upscale/adapters, or stages.")
@click.option("--prompt", default=None, help="The brief (default: the prompt embedded in IMAGE, if any).")
@click.option("--simulate", is_flag=True, help="Run on the simulated twin of the model (offline, no key).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the finished image here.")
@estimate_option
@workspace_option
@json_option
def finish(image: str, config_path: str, prompt: str | None, simulate: bool, out: str | None, estimate: bool,
           workspace: str | None, registry_url: str | None, as_json: bool) -> None:
    """Run a finishing config on an existing IMAGE (upscale, color-match, typography-preserve, QA)."""
    from image_gen import api
    from image_gen.cli._common import workspace_of

    _check_out(out)
    img = _open_image(image, "IMAGE")
    cfg = api.load_config(config_path)
    ws = workspace_of(workspace, registry_url, cfg.registry_url, cfg_artifacts_url=cfg.artifacts_url)
    if estimate:
        from image_gen.pipeline.estimate import estimate_runner

        runner = api.make_runner(cfg, workspace=ws, simulate=simulate or None, config_source=config_path)
        print_estimate(estimate_runner(runner, seed_size=img.size), as_json)
        return
    result = api.generate_pipeline(seed_image=img, cfg=cfg, prompt=prompt, simulate=simulate or None,
                                   workspace=ws)
    _report(result, out, as_json)


@click.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--factor", type=click.Choice(["2", "4"]), default="2", show_default=True, help="Upscale factor.")
@click.option("--model", default="sd3.5-medium", show_default=True,
              help="Catalog model whose image-to-image refines the tiles (or whose native upscaler runs).")
@click.option("--tile-size", type=click.IntRange(64, 4096), default=512, show_default=True,
              help="Tile size in pixels.")
@click.option("--overlap", type=click.IntRange(0, 1024), default=32, show_default=True,
              help="Overlap between tiles in pixels (less than half the tile size).")
@click.option("--native", is_flag=True, help="Use the model's native upscaler instead of tiles.")
@click.option("--prompt", default=None, help="The brief (default: the prompt embedded in IMAGE, if any).")
@click.option("--simulate", is_flag=True, help="Run on the simulated twin of the model (offline, no key).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the upscaled image here.")
@estimate_option
@workspace_option
@json_option
def upscale(image: str, factor: str, model: str, tile_size: int, overlap: int, native: bool, prompt: str | None,
            simulate: bool, out: str | None, estimate: bool, workspace: str | None, registry_url: str | None,
            as_json: bool) -> None:
    """Upscale IMAGE 2x or 4x: resample, refine tile by tile through MODEL, blend, harmonise.

    The calls and cost it takes are printed (on stderr) before it starts; --estimate prints them and stops."""
    from image_gen import api
    from image_gen.cli._common import workspace_of
    from image_gen.errors import InputError
    from image_gen.pipeline.estimate import estimate as estimate_of
    from image_gen.pipeline.estimate import upscale_stage

    _check_out(out)
    if not native and 2 * overlap >= tile_size:
        raise InputError(f"must be less than half of --tile-size ({tile_size}), got {overlap}", field="--overlap")
    img = _open_image(image, "IMAGE")
    ws = workspace_of(workspace, registry_url)
    tiles = None if native else tile_size
    est = estimate_of(upscale_stage(img.width, img.height, int(factor), model, tiles, overlap),
                      simulate=simulate or None, seed_size=img.size)
    if estimate:
        print_estimate(est, as_json)
        return
    stage = est.stages[0]
    how = "; ".join(stage.notes) or f"with {', '.join(sorted({g.model for g in stage.groups}))}"
    click.echo(f"upscale: {stage.calls} calls, about ${stage.cost_usd:.4f} ({how})", err=True)
    result = api.upscale_image(img, factor=int(factor), model=model, tile_size=tiles,
                               overlap=overlap, prompt=prompt, simulate=simulate or None, workspace=ws)
    _report(result, out, as_json)
