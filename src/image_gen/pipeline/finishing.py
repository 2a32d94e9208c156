"""Finishing adapters: ``color-match`` and ``typography-preserve``, run on a stage's output.

Both are ``(image, AdapterContext) -> AdapterResult`` and registered by name in
:mod:`image_gen.pipeline.adapters`.

- :func:`color_match` matches the output's colour distribution (per-channel histograms, scikit-image's
  ``match_histograms``) to a reference: the stage's input image unless ``ctx.options["reference"]`` gives one.
- :func:`typography_preserve` finds the label text the layout stage got right (OCR boxes on its image that
  read as an expected label), and pastes those regions back into the finished image, scaled to its size, with
  a feathered mask and the finished image's tone; regions that the finished image already reads correctly
  are left alone. The record lists every region, what was read before and after, and whether it was restored.

Options (``ctx.options``), all optional:

=====================  ===========================================================================
``reference``          color-match: a PIL image to match instead of ``ctx.previous_image``
``strength``           color-match: 0..1, how far to move towards the matched image (default 1)
``min_label_match``    typography-preserve: similarity a layout OCR line needs to an expected label
                       (or to a piece of one) to count as a label region (default 0.8)
``read_threshold``     typography-preserve: similarity at which the finished image "already reads
                       correctly" and the region is kept (default 1.0: exact, case and spaces aside)
``margin``             typography-preserve: padding around a text box, as a fraction of its height
                       (default 0.35); the feather lies in this padding, so the text itself is pasted whole
``match_tone``         typography-preserve: shift each restored patch to the finished region's mean
                       colour (default True)
``verify``             typography-preserve: OCR the result once more and record what each restored
                       region reads as (default True)
=====================  ===========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from image_gen.imaging.tiling import Edges, blend_weights
from image_gen.pipeline.adapters import AdapterContext, AdapterResult

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.qa.ocr import OcrLine

Box = tuple[int, int, int, int]


def _rgb(image: Image.Image) -> npt.NDArray[np.uint8]:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _with_alpha_of(out: Image.Image, original: Image.Image) -> Image.Image:
    if "A" in original.getbands():
        out = out.convert("RGBA")
        out.putalpha(original.getchannel("A"))
    return out


# -- color-match ---------------------------------------------------------------------------------------------
def color_match(image: Image.Image, ctx: AdapterContext) -> AdapterResult:
    """Match ``image``'s per-channel colour histograms to the reference (default: the stage's input image)."""
    from PIL import Image as PILImage
    from skimage.exposure import match_histograms

    ref_opt = ctx.options.get("reference")
    reference = ref_opt if ref_opt is not None else ctx.previous_image
    if reference is None:
        return AdapterResult(image, {"skipped": "no reference image (the stage has no input image)"})
    strength = float(ctx.options.get("strength", 1.0))
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"color-match strength must be between 0 and 1, got {strength}")
    src = _rgb(image)
    ref = _rgb(reference)
    matched = match_histograms(src, ref, channel_axis=-1)
    out = src.astype(np.float32) * (1.0 - strength) + np.asarray(matched, dtype=np.float32) * strength
    out_u8 = np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def means(a: npt.NDArray[np.uint8]) -> list[float]:
        return [round(float(v), 2) for v in a.reshape(-1, 3).mean(axis=0)]

    record = {
        "reference": "options" if ref_opt is not None else "previous_image",
        "strength": strength,
        "mean_rgb_before": means(src),
        "mean_rgb_after": means(out_u8),
        "mean_rgb_reference": means(ref),
    }
    return AdapterResult(_with_alpha_of(PILImage.fromarray(out_u8, "RGB"), image), record)


# -- typography-preserve -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelRegion:
    """A text box in the layout image that reads as (part of) an expected label."""

    text: str
    """What OCR read there in the layout image (the text the finished image should show)."""
    expected: str
    """The expected label it belongs to."""
    box: Box
    similarity: float
    """How well ``text`` matches its part of ``expected``."""


def find_label_regions(lines: list[OcrLine], expected: list[str], *,
                       min_match: float = 0.8) -> list[LabelRegion]:
    """The OCR lines that read as an expected label, or as a piece of one (OCR splits labels into lines).

    A line counts when its text, aligned against an expected label, matches at least ``min_match`` of the
    line (so a line holding one word of a two-word label counts; stray text does not). With no expected
    labels every line OCR reads with a score of at least 0.5 counts.
    """
    from image_gen.qa.text import best_match, normalise

    regions = []
    for line in lines:
        if not normalise(line.text):
            continue
        if not expected:
            if line.score >= 0.5:
                regions.append(LabelRegion(line.text, line.text, line.box, 1.0))
            continue
        # Align the line inside each expected label: the line is the pattern, the label the text it may
        # fall anywhere in.
        match, label = max(((best_match(line.text, e), e) for e in expected), key=lambda me: me[0].similarity)
        if match.similarity >= min_match and len(normalise(line.text)) >= min(3, len(normalise(label))):
            regions.append(LabelRegion(line.text, label, line.box, round(match.similarity, 4)))
    return regions


def _scale_box(box: Box, sx: float, sy: float, size: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, int(np.floor(x0 * sx))), max(0, int(np.floor(y0 * sy))),
            min(size[0], int(np.ceil(x1 * sx))), min(size[1], int(np.ceil(y1 * sy))))


def _pad_box(box: Box, pad: float, size: tuple[int, int]) -> Box:
    p = int(round(pad))
    return (max(0, box[0] - p), max(0, box[1] - p), min(size[0], box[2] + p), min(size[1], box[3] + p))


def _text_in(lines: list[OcrLine], box: Box) -> str:
    """What OCR read inside ``box``: lines whose vertical centre lies in it and that overlap it across."""
    found = []
    for line in lines:
        x0, y0, x1, y1 = line.box
        cy = (y0 + y1) / 2
        if box[1] <= cy <= box[3] and min(x1, box[2]) > max(x0, box[0]):
            found.append(line)
    return " ".join(line.text for line in sorted(found, key=lambda ln: (ln.box[1], ln.box[0])))


def feathered_mask(width: int, height: int, feather: int, edges: Edges = Edges()) -> npt.NDArray[np.float32]:
    """1 inside, a cosine ramp ``feather`` pixels wide towards each side not listed in ``edges``."""
    feather = max(0, min(feather, (min(width, height) - 1) // 2))
    return blend_weights(width, height, feather, "cosine", edges)


def typography_preserve(image: Image.Image, ctx: AdapterContext) -> AdapterResult:
    """Paste the label text the layout stage got right back over a finished image that garbled it."""
    from PIL import Image as PILImage

    from image_gen.qa.text import best_match, read_for_qa

    layout = ctx.layout_image if ctx.layout_image is not None else ctx.previous_image
    if layout is None:
        return AdapterResult(image, {"skipped": "no layout image", "restored": [], "regions": []})
    opts = ctx.options
    min_match = float(opts.get("min_label_match", 0.8))
    read_threshold = float(opts.get("read_threshold", 1.0))
    margin = float(opts.get("margin", 0.35))
    match_tone = bool(opts.get("match_tone", True))
    verify = bool(opts.get("verify", True))

    layout_rgb = layout.convert("RGB")
    regions = find_label_regions(read_for_qa(layout_rgb), list(ctx.expected_texts), min_match=min_match)
    if not regions:
        return AdapterResult(image, {"regions": [], "restored": [], "kept": []})
    out = _rgb(image).copy()
    # One OCR pass over the whole finished image (OCR on small crops is slower and less reliable).
    finished_lines = read_for_qa(image.convert("RGB"))
    sx, sy = image.width / layout_rgb.width, image.height / layout_rgb.height
    records: list[dict[str, Any]] = []
    for region in regions:
        box_h = region.box[3] - region.box[1]
        layout_pad = _pad_box(region.box, margin * box_h, layout_rgb.size)
        dest = _scale_box(layout_pad, sx, sy, image.size)
        dw, dh = dest[2] - dest[0], dest[3] - dest[1]
        if dw < 2 or dh < 2:
            continue
        before = best_match(region.text, _text_in(finished_lines, dest))
        rec: dict[str, Any] = {"text": region.text, "expected": region.expected,
                               "layout_box": list(region.box), "box": list(dest), "read_before": before.read,
                               "similarity_before": round(before.similarity, 4)}
        records.append(rec)
        if before.similarity >= read_threshold:
            rec["action"] = "kept"
            continue
        patch = np.asarray(layout_rgb.crop(layout_pad).resize((dw, dh), PILImage.Resampling.LANCZOS),
                           dtype=np.float32)
        target = out[dest[1]:dest[3], dest[0]:dest[2]].astype(np.float32)
        if match_tone:
            patch += target.mean(axis=(0, 1)) - patch.mean(axis=(0, 1))
        feather = int(round(margin * box_h * min(sx, sy)))
        edges = Edges(dest[0] == 0, dest[1] == 0, dest[2] == image.width, dest[3] == image.height)
        mask = feathered_mask(dw, dh, feather, edges)[:, :, None]
        blended = patch * mask + target * (1.0 - mask)
        out[dest[1]:dest[3], dest[0]:dest[2]] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        rec["action"] = "restored"
    result = PILImage.fromarray(out, "RGB")
    restored = [r for r in records if r["action"] == "restored"]
    if restored and verify:
        after_lines = read_for_qa(result)
        for r in restored:
            after = best_match(r["text"], _text_in(after_lines, tuple(r["box"])))  # type: ignore[arg-type]
            r.update(read_after=after.read, similarity_after=round(after.similarity, 4))
    return AdapterResult(_with_alpha_of(result, image), {
        "regions": records, "restored": [r["text"] for r in restored],
        "kept": [r["text"] for r in records if r["action"] == "kept"]})
