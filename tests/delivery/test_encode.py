"""Encoders: byte budgets met by bisection (the highest quality that fits), PNG quantised or failing clearly, sRGB
ICC, DPI, XMP with IPTC DigitalSourceType in every format, A1111 parameters readable by sd-parsers."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageCms

from image_gen.delivery.encode import BudgetError, Metadata, encode, encode_within, srgb_icc
from image_gen.delivery.provenance import (
    TRAINED_ALGORITHMIC_MEDIA,
    ModelStep,
    Provenance,
    digital_source_type,
    read_xmp,
    xmp_packet,
)
from image_gen.store.artifacts import a1111_parameters


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:360, 0:480]
    base = np.stack([x * 0.5, y * 0.6, (x + y) * 0.3], axis=-1)
    noise = rng.normal(0, 18, (360, 480, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def meta() -> Metadata:
    prov = Provenance("run1", "square", 'bottle "AQUA PURE"', [ModelStep("draft", "sim:ideogram-v1-turbo", "generate"),
                                                                 ModelStep("final", "sim:sd3.5-medium", "img2img")],
                      simulated=True, edits=["resized to 480x360 (Lanczos)"])
    params = a1111_parameters({"prompt": 'bottle "AQUA PURE"', "model": "sim:sd3.5-medium", "seed": 7, "steps": 30,
                               "size": "480x360", "simulated": True})
    return Metadata(xmp=xmp_packet(prov), parameters=params, json_record='{"run_id": "run1"}', dpi=300)


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "avif"])
def test_budget_met_by_bisection_at_the_highest_fitting_quality(photo: Image.Image, meta: Metadata, fmt: str) -> None:
    top = len(encode(photo, fmt, 90, meta))
    budget = int(top * 0.5)
    enc = encode_within(photo, fmt, meta, quality=90, min_quality=10, max_bytes=budget)
    assert len(enc.data) <= budget and enc.quality is not None and 10 <= enc.quality < 90
    # the next quality up would not fit: the search found the highest, not a guess
    assert len(encode(photo, fmt, enc.quality + 1, meta)) > budget
    assert enc.encodes == len(enc.sizes) <= 1 + math.ceil(math.log2(90 - 10 + 1))
    assert enc.sizes[0][0] == 90  # the channel's quality is tried first


def test_no_budget_or_a_loose_one_is_one_encode(photo: Image.Image, meta: Metadata) -> None:
    assert encode_within(photo, "webp", meta, quality=85, min_quality=30, max_bytes=None).encodes == 1
    enc = encode_within(photo, "webp", meta, quality=85, min_quality=30, max_bytes=10**8)
    assert enc.encodes == 1 and enc.quality == 85


def test_impossible_budget_fails_clearly(photo: Image.Image, meta: Metadata) -> None:
    with pytest.raises(BudgetError, match="lowest allowed quality 40 is .* over the budget of 2000 bytes"):
        encode_within(photo, "jpeg", meta, quality=90, min_quality=40, max_bytes=2000)
    with pytest.raises(BudgetError, match="PNG is .* lossless and .* quantised to 2 colours, over the budget"):
        encode_within(photo, "png", meta, quality=90, min_quality=40, max_bytes=3000)


def test_png_lossless_then_quantised(photo: Image.Image, meta: Metadata) -> None:
    lossless = encode_within(photo, "png", meta, quality=90, min_quality=30, max_bytes=None)
    assert lossless.quality is None and np.array_equal(np.asarray(Image.open(io.BytesIO(lossless.data)).convert(
        "RGB")), np.asarray(photo))
    budget = len(lossless.data) // 3
    enc = encode_within(photo, "png", meta, quality=90, min_quality=30, max_bytes=budget)
    assert len(enc.data) <= budget and enc.quality is not None and 2 <= enc.quality <= 256
    assert "quantised" in (enc.note or "")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "avif"])
def test_every_format_carries_icc_xmp_and_parameters(photo: Image.Image, meta: Metadata, fmt: str) -> None:
    data = encode(photo, fmt, 80, meta)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "avif": "AVIF"}[fmt]
    icc = img.info.get("icc_profile")
    assert icc == srgb_icc()
    assert "sRGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    xmp = read_xmp(img.info)
    assert digital_source_type(xmp) == TRAINED_ALGORITHMIC_MEDIA
    assert xmp is not None and "sim:sd3.5-medium" in xmp and "run1" in xmp
    if fmt == "png":
        assert img.info["parameters"].startswith('bottle "AQUA PURE"\n')
    else:
        comment = img.getexif().get_ifd(0x8769).get(0x9286)
        assert comment is not None and comment.startswith(b"UNICODE\x00")
        assert 'bottle "AQUA PURE"' in comment[8:].decode("utf-16-be")
    if fmt in ("png", "jpeg"):
        assert round(img.info["dpi"][0]) == 300
    else:
        assert img.getexif().get(0x011A) == 300


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_a1111_parameters_read_back_by_sd_parsers(photo: Image.Image, meta: Metadata, fmt: str) -> None:
    sd_parsers = pytest.importorskip("sd_parsers")
    img = Image.open(io.BytesIO(encode(photo, fmt, 80, meta)))
    info = sd_parsers.ParserManager().parse(img)
    assert info is not None
    assert any('bottle "AQUA PURE"' in p.value for p in info.prompts)
    assert any(model.name == "sim-sd3.5-medium" for model in info.models)
