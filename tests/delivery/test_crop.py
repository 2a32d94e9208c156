"""The frame of a rendition: labels always inside a crop, saliency picks the offset, a widened frame when the labels
cannot fit, the whole image for letterbox/outpaint."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from image_gen.delivery.crop import aspect_window, extract, plan_frame, saliency_map


def _contains(window: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> bool:
    return window[0] <= box[0] and window[1] <= box[1] and window[2] >= box[2] and window[3] >= box[3]


@settings(max_examples=150, deadline=None)
@given(
    iw=st.integers(64, 900), ih=st.integers(64, 900), tw=st.integers(16, 2000), th=st.integers(16, 2000),
    fx=st.floats(0, 0.9), fy=st.floats(0, 0.9), fw=st.floats(0.02, 1.0), fh=st.floats(0.02, 1.0),
)
def test_labels_always_inside_the_frame_and_aspect_kept(iw: int, ih: int, tw: int, th: int, fx: float, fy: float,
                                                         fw: float, fh: float) -> None:
    x0, y0 = int(fx * iw), int(fy * ih)
    box = (x0, y0, min(iw, x0 + max(1, int(fw * iw))), min(ih, y0 + max(1, int(fh * ih))))
    frame = plan_frame((iw, ih), (tw, th), "crop", labels=[box], margin=0.03)
    assert _contains(frame.window, box)
    assert abs(frame.width / frame.height - tw / th) <= max(1 / frame.height, 1 / frame.width) * (tw / th) + 1e-9
    if frame.mode == "crop":
        assert frame.inside((iw, ih))
        # the crop is the largest window of the ratio: it spans the image along one axis
        assert (frame.width, frame.height) == aspect_window(iw, ih, tw / th)
    else:
        assert frame.mode == "letterbox" and not frame.inside((iw, ih))
        # widened just enough: along its tight axis the frame is the label box grown by the margin (within a pixel)


def test_saliency_picks_the_side_with_the_subject() -> None:
    img = Image.new("RGB", (600, 300), (235, 235, 235))
    ImageDraw.Draw(img).ellipse((430, 90, 560, 220), fill=(200, 30, 30), outline=(0, 0, 0), width=6)
    sal = saliency_map(img)
    assert sal.shape == (64, 128) and sal.min() >= 0.0 and sal.max() <= 1.0  # the longer side is 128 cells
    assert sal[:, 85:].mean() > 2 * sal[:, :43].mean()
    frame = plan_frame(img.size, (300, 300), "crop", saliency=sal)
    assert frame.window[0] >= 250  # the square crop goes to the red disc, not the empty left
    assert frame.saliency_kept is not None and frame.saliency_kept > 0.5


def test_labels_win_over_saliency() -> None:
    img = Image.new("RGB", (600, 300), (235, 235, 235))
    ImageDraw.Draw(img).ellipse((430, 90, 560, 220), fill=(200, 30, 30))
    label = (20, 120, 140, 160)
    frame = plan_frame(img.size, (300, 300), "crop", labels=[label], saliency=saliency_map(img), margin=0.02)
    assert frame.mode == "crop" and _contains(frame.window, label)


def test_label_too_wide_widens_the_frame_with_the_channels_extend() -> None:
    label = (40, 140, 560, 180)  # 520 px wide on a 600x300 image; a 9:16 crop is only 169 px wide
    frame = plan_frame((600, 300), (1080, 1920), "crop", labels=[label], margin=0.0, extend="outpaint")
    assert frame.mode == "outpaint" and frame.asked == "crop"
    assert _contains(frame.window, label) and not frame.inside((600, 300))
    assert frame.width == pytest.approx(520, abs=1) and "do not fit" in (frame.reason or "")


@pytest.mark.parametrize("fit", ["letterbox", "outpaint"])
def test_letterbox_and_outpaint_keep_the_whole_image(fit: str) -> None:
    frame = plan_frame((400, 400), (1920, 1080), fit)
    assert frame.mode == fit and _contains(frame.window, (0, 0, 400, 400))
    assert frame.height == 400 and frame.width == round(400 * 1920 / 1080)
    img = Image.new("RGB", (400, 400), (10, 200, 10))
    canvas, inner = extract(img, frame.window, (1, 2, 3))
    arr = np.asarray(canvas)
    assert canvas.size == (frame.width, frame.height) and inner == (frame.window[0] * -1, 0,
                                                                    -frame.window[0] + 400, 400)
    assert tuple(arr[5, 2]) == (1, 2, 3) and tuple(arr[200, inner[0] + 10]) == (10, 200, 10)
