"""Content-addressed artifact store: each image stored once under its sha256, written atomically.

PNGs carry their generation parameters in a ``parameters`` text chunk (the format AUTOMATIC1111-style tools
read) and the full record as JSON in an ``image-gen`` chunk. Never a secret: only the fields given are written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

PARAMS_CHUNK = "parameters"
JSON_CHUNK = "image-gen"

STATED_STEPS = 30
"""``Steps`` written when neither the stage nor the catalog gives a step count (vendors that hide theirs)."""
STATED_CFG = 7.0
"""``CFG scale`` written when neither the stage nor the catalog gives a guidance scale."""

_UNSAFE = re.compile(r"[,:\n\r\"]")


def a1111_name(text: str) -> str:
    """A value safe in the ``key: value, key: value`` line without quoting: ``sim:sd3.5-medium`` ->
    ``sim-sd3.5-medium`` (colons become dashes, commas and line breaks spaces, quotes dropped)."""
    out = text.replace(":", "-").replace(",", " ").replace("\n", " ").replace("\r", " ").replace('"', "")
    return re.sub(r"\s+", " ", out).strip() or "unknown"


def _a1111_value(value: Any) -> str:
    """A value as A1111 writes it: quoted (JSON string) when it holds a comma, colon, quote or line break."""
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) else str(value)
    return json.dumps(text) if _UNSAFE.search(text) else text


@lru_cache(maxsize=256)
def _catalog_defaults(model: str) -> tuple[str | None, int | None, float | None]:
    """(provider, default steps, default guidance) of a catalog model, or Nones when it is not in the catalog."""
    try:
        from image_gen.catalog import SIM_PREFIX, Catalog

        entry = Catalog.load().resolve(model)
        base = Catalog.load().resolve(model[len(SIM_PREFIX):]) if model.startswith(SIM_PREFIX) else entry
    except Exception:  # an unknown or user-defined model: nothing to add
        return None, None, None
    cfg = base.options.get("guidance_scale", base.options.get("cfg_scale"))
    return entry.provider, base.default_steps, float(cfg) if isinstance(cfg, int | float) else None


def a1111_fields(meta: dict[str, Any]) -> list[tuple[str, Any]]:
    """The settings line's ``(key, value)`` pairs, in A1111's order, always with Steps, Sampler, CFG scale, Seed,
    Size and Model (stated defaults where the record gives none), then Denoising strength and our own keys."""
    model = str(meta.get("model") or "none")
    provider, default_steps, default_cfg = _catalog_defaults(model) if meta.get("model") else (None, None, None)
    steps = meta.get("steps") or meta.get("default_steps") or default_steps
    if steps is None:
        steps = STATED_STEPS if meta.get("model") else 0
    cfg = meta.get("guidance_scale")
    if cfg is None:
        cfg = default_cfg if default_cfg is not None else STATED_CFG if meta.get("model") else 0.0
    sampler = meta.get("sampler") or meta.get("provider") or provider or ("sim" if meta.get("simulated") else None)
    seed = meta.get("seed")
    fields: list[tuple[str, Any]] = [
        ("Steps", int(steps)),
        ("Sampler", a1111_name(str(sampler or "unknown"))),
        ("CFG scale", float(cfg)),
        ("Seed", int(seed) if isinstance(seed, int) or (isinstance(seed, str) and seed.isdigit()) else -1),
        ("Size", str(meta.get("size") or "0x0")),
        ("Model", a1111_name(model)),
    ]
    if meta.get("strength") is not None:
        fields.append(("Denoising strength", float(meta["strength"])))
    if meta.get("stage"):
        fields.append(("Stage", a1111_name(str(meta["stage"]))))
    if meta.get("simulated"):
        fields.append(("Simulated", "true"))
    fields.append(("Generator", "image-gen"))
    return fields


def a1111_parameters(meta: dict[str, Any]) -> str:
    """``prompt\\nNegative prompt: ...\\nSteps: 20, Sampler: X, CFG scale: 6.0, Seed: 42, Size: 1024x1024,
    Model: ..., Denoising strength: 0.6, ...`` (the AUTOMATIC1111 format: the last line is ``key: value`` pairs
    joined by ``, ``, a value holding a comma or colon quoted)."""
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative_prompt"):
        lines.append(f"Negative prompt: {meta['negative_prompt']}")
    lines.append(", ".join(f"{k}: {_a1111_value(v)}" for k, v in a1111_fields(meta)))
    return "\n".join(lines)


def encode_with_metadata(image: Any, meta: dict[str, Any]) -> bytes:
    """PNG bytes of ``image`` with an A1111 ``parameters`` chunk and the full record as JSON (``image-gen``)."""
    from PIL.PngImagePlugin import PngInfo

    meta = dict(meta)
    meta.setdefault("size", f"{image.width}x{image.height}")
    info = PngInfo()
    info.add_text(PARAMS_CHUNK, a1111_parameters(meta))
    info.add_text(JSON_CHUNK, json.dumps(meta, sort_keys=True, default=str))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=3)
    return buf.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def png_with_metadata(png: bytes, meta: dict[str, Any], size: tuple[int, int]) -> bytes:
    """``png`` (an encoded PNG) with the same chunks as ``encode_with_metadata`` writes, without decoding or
    encoding a pixel: its own ``parameters`` / ``image-gen`` text chunks are dropped, ours go in before the first
    ``IDAT`` (where readers that stop at the pixels still find them). Raises ``ValueError`` for bytes that are no PNG.
    """
    import struct
    import zlib

    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    meta = dict(meta)
    meta.setdefault("size", f"{size[0]}x{size[1]}")
    ours = {PARAMS_CHUNK: a1111_parameters(meta), JSON_CHUNK: json.dumps(meta, sort_keys=True, default=str)}

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # iTXt, uncompressed, no language: UTF-8 text as Pillow's PngInfo writes it for text beyond latin-1
    text = b"".join(chunk(b"iTXt", key.encode("latin-1") + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))
                    for key, value in ours.items())
    out, pos, inserted = [png[:8]], 8, False
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        end = pos + 12 + length
        if end > len(png):
            raise ValueError("PNG chunk runs past the end")
        if kind in _TEXT_CHUNKS and png[pos + 8:end - 4].split(b"\x00", 1)[0].decode("latin-1") in ours:
            pos = end
            continue
        if kind == b"IDAT" and not inserted:
            out.append(text)
            inserted = True
        out.append(png[pos:end])
        pos = end
    if not inserted:
        raise ValueError("PNG without pixel data")
    return b"".join(out)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The PNG's text chunks (``parameters``, ``image-gen``, ...)."""
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

    def put_png(self, png: bytes, meta: dict[str, Any]) -> tuple[str, Path, bytes]:
        """Like ``put_image`` for an image that is already the PNG ``png``: the metadata chunks are added to its
        bytes (``png_with_metadata``), its pixels are neither decoded nor encoded again."""
        from PIL import Image

        with Image.open(io.BytesIO(png)) as header:
            size = header.size
        data = png_with_metadata(png, meta, size)
        sha, path = self.put_bytes(data)
        return sha, path, data

    def read_bytes(self, sha: str) -> bytes:
        return self.path_for(sha).read_bytes()

    def open(self, sha: str) -> Any:
        from PIL import Image

        img = Image.open(self.path_for(sha))
        img.load()
        return img
