"""A contact sheet of renditions: one row per run, one cell per channel with its QA verdict, bytes vs budget,
quality and encode count (``reporting.sheets.grid_sheet``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.delivery.deliver import DeliveryResult


def rendition_sheet(results: Sequence[DeliveryResult], prompts: dict[str, str] | None = None,
                    title: str = "Renditions", thumb: int = 200) -> Image.Image:
    from PIL import Image as PILImage

    from image_gen.reporting.sheets import grid_sheet

    rows: list[tuple[str, list[tuple[Any, list[str], bool | None]]]] = []
    for res in results:
        cells: list[tuple[Any, list[str], bool | None]] = []
        for r in res.renditions:
            if r.error or not r.path:
                cells.append((None, [f"{r.channel}: FAILED", (r.error or "")[:60]], False))
                continue
            with PILImage.open(Path(r.path)) as img:
                img.load()
                shown = img.convert("RGB")
            budget = f"/{r.max_bytes // 1000}k" if r.max_bytes else ""
            q = f" q{r.quality}" if r.quality is not None else ""
            qa = {True: "QA pass", False: "QA FAIL", None: "QA -"}[r.qa_passed]
            mode = (r.fit or {}).get("mode", "?")
            cells.append((shown, [f"{r.channel} {qa}", f"{r.width}x{r.height} {r.format} {mode}",
                                  f"{(r.size_bytes or 0) // 1000}k{budget}{q} {r.encodes} enc"], r.qa_passed))
        label = (prompts or {}).get(res.run_id, res.run_id)
        rows.append((label[:18], cells))
    return grid_sheet(title, rows, sim=any(r.simulated for r in results), thumb=thumb)
