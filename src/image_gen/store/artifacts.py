"""Content-addressed artifact store: each image stored once under its sha256, written atomically.

PNGs carry their generation parameters in a ``parameters`` text chunk (the format AUTOMATIC1111-style tools
read) and the full record as JSON in an ``image-gen`` chunk. Never a secret: only the fields given are written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

PARAMS_CHUNK = "parameters"
JSON_CHUNK = "image-gen"


def a1111_parameters(meta: dict[str, Any]) -> str:
    """``prompt\\nNegative prompt: ...\\nSteps: 20, CFG scale: 6.0, Seed: 42, Size: 1024x1024, Model: ...``."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    fields = []
    for label, key in (("Steps", "steps"), ("CFG scale", "guidance_scale"), ("Seed", "seed"),
                       ("Size", "size"), ("Model", "model"), ("Stage", "stage"), ("Denoising strength",
                                                                                    "strength")):
        if meta.get(key) is not None:
            fields.append(f"{label}: {meta[key]}")
    if meta.get("simulated"):
        fields.append("Simulated: true")
    fields.append("Generator: image-gen")
    lines.append(", ".join(fields))
    return "\n".join(lines)


def encode_with_metadata(image: Any, meta: dict[str, Any]) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMS_CHUNK, a1111_parameters(meta))
    info.add_text(JSON_CHUNK, json.dumps(meta, sort_keys=True, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=3)
    return buf.getvalue()


def read_metadata(path: str | Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as img:
        return {str(k): v for k, v in img.info.items() if isinstance(v, str)}


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha: str) -> Path:
        return self.root / sha[:2] / f"{sha}.png"

    def put_bytes(self, data: bytes) -> tuple[str, Path]:
        sha = hashlib.sha256(data).hexdigest()
        dest = self.path_for(sha)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".tmp-{os.getpid()}-", suffix=".png")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return sha, dest

    def clean_temp(self, max_age_s: float = 3600.0) -> int:
        """Remove temporary files left by writers that died (their process is gone, or they are old)."""
        import time

        removed = 0
        if not self.root.is_dir():
            return 0
        now = time.time()
        for tmp in self.root.glob("*/.tmp-*"):
            parts = tmp.name.split("-")
            pid = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else None
            try:
                stale = now - tmp.stat().st_mtime > max_age_s
                if pid is not None and pid != os.getpid():
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        stale = True
                    except PermissionError:
                        pass
                if stale:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def put_image(self, image: Any, meta: dict[str, Any]) -> tuple[str, Path, bytes]:
        data = encode_with_metadata(image, meta)
        sha, path = self.put_bytes(data)
        return sha, path, data

    def read_bytes(self, sha: str) -> bytes:
        return self.path_for(sha).read_bytes()

    def open(self, sha: str) -> Any:
        from PIL import Image

        img = Image.open(self.path_for(sha))
        img.load()
        return img
