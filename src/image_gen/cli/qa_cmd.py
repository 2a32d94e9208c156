"""``qa``: check image files with automatic QA (label text by OCR, softness, size, format); verdicts."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

import click

from image_gen.cli._common import EXIT_FAILED, emit_json, ignored_workspace_options, json_option, qa_word

if TYPE_CHECKING:
    from PIL import Image

_SIZE = re.compile(r"^(\d+)[x×](\d+)$")


def _parse_size(value: str | None) -> tuple[int, int] | None:
    from image_gen.errors import InputError

    if value is None:
        return None
    m = _SIZE.match(value.strip().lower())
    if not m or int(m.group(1)) <= 0 or int(m.group(2)) <= 0:
        raise InputError(f"expected WIDTHxHEIGHT such as 1024x1024, got {value!r}", field="--size")
    return int(m.group(1)), int(m.group(2))


def _open(path: str) -> Image.Image:
    """Open and decode an image fully, under the pixel limit, so an unusable file is bad input before any check."""
    from image_gen.imaging.images import open_user_image

    return open_user_image(path, "IMAGES")


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--expect-text",
    "expect_text",
    multiple=True,
    metavar="TEXT",
    help="Label text the image must carry (repeat for several strings).",
)
@click.option(
    "--prompt",
    default=None,
    help="The brief's prompt: its quoted strings are the expected text (default: the prompt embedded in the image).",
)
@click.option("--size", "size", metavar="WxH", help="The size the stage asked for, e.g. 1024x1024.")
@click.option(
    "--format", "fmt", metavar="FORMAT", help="The file format the stage asked for (PNG, JPEG, WEBP)."
)
@click.option("--no-text", is_flag=True, help="Skip the OCR text check.")
@click.option("--no-sharpness", is_flag=True, help="Skip the softness check.")
@click.option(
    "--ocr-engine",
    type=click.Choice(["rapidocr", "tesseract", "auto"]),
    default="rapidocr",
    show_default=True,
    help="OCR engine for the text check.",
)
@ignored_workspace_options
@json_option
def qa(
    images: tuple[str, ...],
    expect_text: tuple[str, ...],
    prompt: str | None,
    size: str | None,
    fmt: str | None,
    no_text: bool,
    no_sharpness: bool,
    ocr_engine: str,
    as_json: bool,
) -> None:
    """Check IMAGE files: label text (OCR), softness, size and format; one verdict per image.

    Expected text comes from --expect-text, else from the quoted strings of --prompt, else from those of the
    prompt embedded in the image (image-gen's metadata); each verdict says which, or why the text check was
    skipped. Exit 1 when any image fails, 2 when an image cannot be read.
    """
    from image_gen.config import QASettings
    from image_gen.qa import evaluate

    asked = _parse_size(size)
    opened = [(path, _open(path)) for path in images]  # all inputs are checked before any work
    settings = QASettings(check_text=not no_text, check_sharpness=not no_sharpness)
    results: list[dict[str, Any]] = []
    for path, img in opened:
        verdict = evaluate(
            img,
            prompt=prompt,
            expect_text=list(expect_text) or None,
            asked_size=asked,
            asked_format=fmt,
            settings=settings,
            ocr_engine=ocr_engine,
        )
        results.append({"image": path, **verdict.to_dict()})
    if as_json:
        emit_json({"images": results})
    else:
        for r in results:
            _print_verdict(r)
    failed = sum(not r["passed"] for r in results)
    if not as_json and len(results) > 1:
        click.echo(f"{len(results) - failed}/{len(results)} passed")
    if failed:
        sys.exit(EXIT_FAILED)


def _print_verdict(r: dict[str, Any]) -> None:
    s = r["scores"]
    shown = []
    if "text_similarity_min" in s:
        shown.append(f"text similarity {s['text_similarity_min']:.2f}")
        shown.append(f"precision {s['text_precision']:.2f}")
    if "hf_energy" in s:
        shown.append(f"Laplacian var {s['laplacian_var']:.1f}")
        shown.append(f"HF energy {s['hf_energy']:.2e}")
    shown.append(f"{int(s['width'])}x{int(s['height'])}")
    status = qa_word(r["passed"])
    click.echo(f"{status} {r['image']}  ({', '.join(shown)})")
    for reason in r["reasons"]:
        click.echo(f"  - {reason}")
    expected = r["details"].get("expected")
    if expected:
        click.echo(f"  {expected['summary']}")
    text = r["details"].get("text")
    if text and r["passed"] is False and text["read_text"]:
        click.echo(f"  read: {text['read_text']}")
