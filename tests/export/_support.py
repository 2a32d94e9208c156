"""Scaffolding for the export tests: channel renditions and batches written straight into the registry.

``add_rendition`` stands in for the delivery service (``api.deliver`` will replace it): it writes a real image file
through the artifact store and a ``Rendition`` row. ``add_batch`` stands in for the batch service: a ``Batch`` row,
one ``BatchItem`` per run and the runs' ``batch_id``.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Sequence

from image_gen.store.models import Batch, BatchItem, Rendition, Run
from image_gen.workspace import Workspace


def add_rendition(ws: Workspace, run_id: str, channel: str, size: tuple[int, int], fmt: str = "JPEG",
                  qa_passed: bool | None = True, reasons: Sequence[str] = ()) -> Rendition:
    reg = ws.registry()
    run = reg.get_run(run_id)
    assert run is not None and run.final_artifact
    img = ws.artifacts().open(run.final_artifact).convert("RGB").resize(size)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 80} if fmt in ("JPEG", "WEBP") else {}))
    data = buf.getvalue()
    sha, path = ws.artifacts().put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    row = Rendition(run_id=run_id, channel=channel, sha256=sha, path=str(path), format=fmt.lower(), width=size[0],
                    height=size[1], size_bytes=len(data), qa={"passed": qa_passed, "reasons": list(reasons)},
                    qa_passed=qa_passed)
    return reg.add(row)


def add_batch(ws: Workspace, run_ids: Sequence[str], name: str = "test batch") -> str:
    reg = ws.registry()
    bid = uuid.uuid4().hex[:12]
    reg.add(Batch(id=bid, name=name, status="completed", config={}, brief_count=len(run_ids), simulated=True))
    for i, rid in enumerate(run_ids):
        reg.add(BatchItem(batch_id=bid, idx=i, brief={"prompt": f"brief {i}"}, run_id=rid, status="completed"))
        reg.update(Run, rid, batch_id=bid)
    return bid
