"""The report's contact sheets: per brief, every stage's output of every pipeline, with its QA verdict."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from image_gen.reporting.formatting import money, secs

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.reporting.report import Comparison

THUMB = 240


def contact_sheet(
    comparison: Comparison, i: int, prompt: str, open_artifact: Callable[[str], Image.Image], sim: bool,
    *, title: str | None = None,
) -> Image.Image:
    """One row per pipeline, one cell per stage: the stage's output with model, QA verdict, cost and latency.
    ``title`` replaces the heading ``Brief N: prompt`` (an export's sheet has one row per run)."""
    from PIL import Image, ImageDraw, ImageFont

    rows = [(p.label, p.runs[i]) for p in comparison.pipelines]
    cols = max((len(r.stages) for _, r in rows), default=1)
    label_w, cap_h, pad, head_h = 150, 62, 10, 70 if sim else 46
    width = label_w + cols * (THUMB + pad) + pad
    height = head_h + len(rows) * (THUMB + cap_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    d = ImageDraw.Draw(sheet)
    f_title = ImageFont.load_default(size=16)
    f_cell = ImageFont.load_default(size=12)
    heading = title if title is not None else f"Brief {i + 1}: {prompt}"
    d.text((pad, 8), _fit(d, heading, f_title, width - 2 * pad), font=f_title, fill=(20, 20, 20))
    if sim:
        d.rectangle((0, 34, width, 62), fill=(255, 243, 205))
        d.text(
            (pad, 39), "SIMULATED: offline simulator output, not the vendors' models", font=f_title, fill=(160, 90, 0)
        )
    y = head_h
    for label, run in rows:
        verdict = "success" if run.success else run.status
        d.text((pad, y + 8), label, font=f_title, fill=(20, 20, 20))
        d.text((pad, y + 30), verdict, font=f_cell, fill=(0, 120, 0) if run.success else (180, 0, 0))
        d.text((pad, y + 46), f"{money(run.cost_to_gate_usd)}  {secs(run.latency_to_gate_s)}", font=f_cell,
               fill=(60, 60, 60))
        if run.past_gate:
            d.text((pad, y + 62), "to the gate", font=f_cell, fill=(90, 90, 90))
        x = label_w
        for s in run.stages:
            cell = _thumb(open_artifact, s.artifact, s.status)
            sheet.paste(cell, (x + (THUMB - cell.width) // 2, y + (THUMB - cell.height) // 2))
            qa = {True: "QA pass", False: "QA FAIL", None: "QA -"}[s.qa_passed]
            colour = {True: (0, 120, 0), False: (180, 0, 0), None: (90, 90, 90)}[s.qa_passed]
            d.rectangle((x - 1, y - 1, x + THUMB, y + THUMB), outline=colour, width=2)
            d.text((x, y + THUMB + 4), _fit(d, f"{s.name} · {s.model}", f_cell, THUMB), font=f_cell, fill=(20, 20, 20))
            if s.ran:
                caption = f"{qa}   {money(s.cost_usd)}  {secs(s.latency_s)}" + ("  cache" if s.cache_hit else "")
            elif s.waiting:
                caption = f"waiting: PROJECTED {money(s.projected_usd)}"
            else:
                caption = "did not run"
            d.text((x, y + THUMB + 20), caption, font=f_cell, fill=colour)
            why = s.qa_reasons[0] if s.qa_passed is False and s.qa_reasons else ""
            if why:
                d.text((x, y + THUMB + 36), _fit(d, why, f_cell, THUMB), font=f_cell, fill=(120, 0, 0))
            x += THUMB + pad
        y += THUMB + cap_h + pad
    return sheet


def _thumb(open_artifact: Callable[[str], Image.Image], sha: str | None, status: str) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFont

    if sha:
        try:
            img = open_artifact(sha).convert("RGB")
            img.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
            return img
        except (OSError, KeyError):
            status = "image missing"
    cell = Image.new("RGB", (THUMB, THUMB), (225, 225, 225))
    d = ImageDraw.Draw(cell)
    f = ImageFont.load_default(size=14)
    text = status.replace("_", " ")
    w = d.textlength(text, font=f)
    d.text(((THUMB - w) / 2, THUMB / 2 - 8), text, font=f, fill=(90, 90, 90))
    return cell


def _fit(d: Any, text: str, font: Any, width: float) -> str:
    if d.textlength(text, font=font) <= width:
        return text
    while text and d.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def grid_sheet(title: str, rows: list[tuple[str, list[tuple[Image.Image | None, list[str], bool | None]]]],
               sim: bool, thumb: int = THUMB) -> Image.Image:
    """A generic contact sheet: one row per label, one cell per (image, caption lines, passed) with the image
    fitted in a ``thumb`` box (aspect kept), framed green (pass), red (fail) or grey (not checked)."""
    from PIL import Image, ImageDraw, ImageFont

    cols = max((len(cells) for _, cells in rows), default=1)
    lines = max((len(c[1]) for _, cells in rows for c in cells), default=1)
    label_w, pad, head_h = 150, 10, 70 if sim else 46
    cap_h = 8 + 16 * lines
    width = label_w + cols * (thumb + pad) + pad
    height = head_h + len(rows) * (thumb + cap_h + pad) + pad
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    d = ImageDraw.Draw(sheet)
    f_title = ImageFont.load_default(size=16)
    f_cell = ImageFont.load_default(size=12)
    d.text((pad, 8), _fit(d, title, f_title, width - 2 * pad), font=f_title, fill=(20, 20, 20))
    if sim:
        d.rectangle((0, 34, width, 62), fill=(255, 243, 205))
        d.text((pad, 39), "SIMULATED: offline simulator output, not the vendors' models", font=f_title,
               fill=(160, 90, 0))
    y = head_h
    for label, cells in rows:
        d.text((pad, y + 8), _fit(d, label, f_title, label_w - pad), font=f_title, fill=(20, 20, 20))
        x = label_w
        for image, caption, passed in cells:
            colour = {True: (0, 120, 0), False: (180, 0, 0), None: (90, 90, 90)}[passed]
            if image is not None:
                cell = image.convert("RGB")
                cell.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
                sheet.paste(cell, (x + (thumb - cell.width) // 2, y + (thumb - cell.height) // 2))
            d.rectangle((x - 1, y - 1, x + thumb, y + thumb), outline=colour, width=2)
            for k, text in enumerate(caption):
                d.text((x, y + thumb + 4 + 16 * k), _fit(d, text, f_cell, thumb), font=f_cell,
                       fill=colour if k == 0 else (40, 40, 40))
            x += thumb + pad
        y += thumb + cap_h + pad
    return sheet
