"""The delivery demo: the ten briefs of examples/prompts.txt through the staged pipeline (simulator) with
``deliver`` set to four channel presets, then a summary and a contact sheet of every rendition.

    python tools/delivery_demo.py OUT_DIR [--channels web-hero square portrait story] [--briefs N]

The pipeline is examples/staged.toml without its approval-gated hires stage (its final stage upscales 2x, so the
final asset is 2048x2048). Writes OUT_DIR/summary.json (every rendition: QA, bytes vs budget, quality, encodes,
fit) and OUT_DIR/renditions-sheet.png; exits 1 when a rendition fails QA or misses its budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--channels", nargs="+", default=["web-hero", "square", "portrait", "story"])
    p.add_argument("--briefs", type=int, default=10)
    args = p.parse_args()

    from image_gen import api
    from image_gen.delivery.deliver import DeliveryResult, RenditionResult
    from image_gen.delivery.sheet import rendition_sheet
    from image_gen.imaging.labels import label_texts
    from image_gen.store.models import Rendition
    from image_gen.workspace import Workspace

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "examples" / "staged.toml").read_text())
    cfg["pipeline"]["stages"] = [s for s in cfg["pipeline"]["stages"] if not s.startswith("hires:")]
    cfg["stage"].pop("hires", None)
    cfg["pipeline"]["deliver"] = list(args.channels)
    cfg["simulate"] = True
    cfg["budget"] = {"per_run_usd": 5.0}
    briefs = api.read_prompt_file(root / "examples" / "prompts.txt")[: args.briefs]
    ws_dir = args.out / "workspace"
    ws_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    outcomes = api.run_pipeline(cfg, briefs, workspace=str(ws_dir))
    elapsed = time.perf_counter() - t0
    ws = Workspace.resolve(ws_dir)
    results = []
    with ws.registry().reading() as s:
        for o in outcomes:
            res = DeliveryResult(o.run_id, str(ws_dir / "deliveries"), simulated=o.simulated)
            for r in s.query(Rendition).filter(Rendition.run_id == o.run_id).order_by(Rendition.id):
                res.renditions.append(RenditionResult(
                    r.channel, r.format, r.width, r.height, path=str(ws_dir / r.path), sha256=r.sha256,
                    size_bytes=r.size_bytes, max_bytes=r.max_bytes, quality=r.quality, encodes=r.encodes, dpi=r.dpi,
                    fit=r.fit, qa=r.qa, qa_passed=r.qa_passed, provenance=r.provenance, rendition_id=r.id))
            results.append(res)
    labels = {o.run_id: " / ".join(label_texts(o.prompt)) for o in outcomes}
    sheet = rendition_sheet(results, labels, title=f"{len(outcomes)} briefs x {len(args.channels)} channels")
    sheet.save(args.out / "renditions-sheet.png")
    rows = [r for res in results for r in res.renditions]
    summary = {
        "runs": [{"run_id": o.run_id, "status": o.status, "qa_passed": o.qa_passed, "warnings": o.warnings,
                  "final": o.final_artifact} for o in outcomes],
        "seconds_pipeline_and_delivery": round(elapsed, 1),
        "renditions": len(rows),
        "qa_passed": sum(r.qa_passed is True for r in rows),
        "within_budget": sum(r.size_bytes is not None and (r.max_bytes is None or r.size_bytes <= r.max_bytes)
                             for r in rows),
        "per_channel": {ch: {
            "bytes_max": max(r.size_bytes or 0 for r in rows if r.channel == ch),
            "budget": next(r.max_bytes for r in rows if r.channel == ch),
            "quality": sorted({r.quality for r in rows if r.channel == ch}, key=lambda q: q or 0),
            "encodes_mean": round(sum(r.encodes or 0 for r in rows if r.channel == ch)
                                  / max(1, sum(r.channel == ch for r in rows)), 2),
            "fit": sorted({(r.fit or {}).get("mode", "?") for r in rows if r.channel == ch}),
        } for ch in args.channels},
        "failures": [{"run_id": res.run_id, "channel": r.channel, "reasons": (r.qa or {}).get("reasons")}
                     for res in results for r in res.renditions if r.qa_passed is not True],
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    ok = summary["qa_passed"] == summary["within_budget"] == len(rows) == len(outcomes) * len(args.channels)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
