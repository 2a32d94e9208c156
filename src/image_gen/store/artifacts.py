"""Content-addressed artifact store: each image stored once under its sha256, written atomically.

PNGs carry their generation parameters in a ``parameters`` text chunk (the format AUTOMATIC1111-style tools
read) and the full record as JSON in an ``image-gen`` chunk. Never a secret: only the fields given are written.
"""

from __future__ import annotations

import contextlib
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


# -- the store ---------------------------------------------------------------------------------------------------

SHA_RE = re.compile(r"[0-9a-f]{64}")
BUILTIN_SCHEMES = ("file", "s3", "memory")
"""Schemes always accepted by ``artifacts_url`` (``s3`` needs the ``[s3]`` extra, s3fs, to be used)."""
_S3_SCHEMES = ("s3", "s3a")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)
_EXAMPLES = "file:///absolute/path, s3://bucket/prefix or memory://name"


def url_scheme(url: str) -> str | None:
    """The URL's scheme in lower case (``s3``), or None for a plain path."""
    m = _URL.match(url)
    return m.group(1).lower() if m else None


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without credentials, user, password)``: ``s3://KEY:SECRET@bucket/p`` -> ``(s3://bucket/p, KEY,
    SECRET)``. Userinfo is what precedes the first ``@`` when it holds a ``:`` and its user part no ``/``."""
    from urllib.parse import unquote

    m = _URL.match(url)
    if not m or "@" not in m.group(2):
        return url, None, None
    info, _, rest = m.group(2).partition("@")
    user, colon, password = info.partition(":")
    if not colon or "/" in user:
        return url, None, None
    return f"{m.group(1)}://{rest}", unquote(user), unquote(password)


def redact_artifacts_url(url: str) -> str:
    """The URL with any password masked (``s3://KEY:***@bucket/prefix``): what may be shown or recorded."""
    clean, user, password = _split_userinfo(url)
    if user is None:
        return url
    scheme, _, rest = clean.partition("://")
    return f"{scheme}://{user}:{'***' if password else ''}@{rest}"


def strip_credentials(url: str) -> str:
    """The URL without its user and password (credentials then come from the environment)."""
    return _split_userinfo(url)[0]


def check_artifacts_url(url: str) -> str:
    """``url`` stripped of surrounding blanks when it can name an artifact store, else ``ValueError`` saying what
    was expected (never quoting the URL, which may hold a password): ``file:///abs/path``, ``s3://bucket[/prefix]``,
    ``memory://[name]`` or a URL of any fsspec protocol whose implementation is installed."""
    text = url.strip()
    m = _URL.match(text)
    if not m:
        raise ValueError(f"expected a URL such as {_EXAMPLES}")
    scheme, rest = m.group(1).lower(), _split_userinfo(text)[0].partition("://")[2]
    if scheme == "file":
        from urllib.parse import urlsplit

        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError("expected file:///absolute/path (three slashes)")
        if parts.query or parts.fragment:
            raise ValueError("expected no '?' or '#' in a file URL")
    elif scheme in _S3_SCHEMES:
        bucket = rest.split("/", 1)[0]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,62}", bucket):
            raise ValueError("expected s3://bucket/prefix with a bucket name")
    elif scheme != "memory":
        import fsspec

        try:
            fsspec.get_filesystem_class(scheme)
        except (ValueError, ImportError) as exc:
            why = "its package is not installed" if isinstance(exc, ImportError) else "not a known fsspec protocol"
            raise ValueError(f"cannot store artifacts at {scheme}:// ({why}); expected {_EXAMPLES} or an installed "
                             f"fsspec protocol") from None
    return text


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not SHA_RE.fullmatch(sha):
        raise ValueError(f"not an artifact sha256: {sha!r}")
    return sha


def _write_atomic(dest: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``dest`` (``.tmp-<pid>-...``), fsync, then rename into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".tmp-{os.getpid()}-", suffix=dest.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore:
    """Content-addressed images, each stored once under ``<prefix>/<sha[:2]>/<sha>.png``, read back by hash.

    ``root`` is a folder (a ``Path``, or a ``file://`` URL) or any fsspec URL (``s3://bucket/prefix``,
    ``memory://name``). A put is atomic: in a folder it writes a temporary name and renames it into place; in an
    object store it is one conditional PUT (``If-None-Match: *``) so the first writer wins and no partial or
    temporary object is ever visible. Credentials never come from what is recorded: an ``s3://KEY:SECRET@...``
    URL's pair is handed to s3fs as options and masked in :attr:`url`; otherwise s3fs reads the standard AWS
    variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...) or fsspec's own
    configuration (``FSSPEC_S3_*``).

    ``fallback`` is read (never written) when a sha is not in this store: a workspace whose artifacts moved to
    object storage still shows the runs it made before. ``cache_dir`` holds the local copies :meth:`local_path`
    makes of remote objects for callers that need a file.
    """

    def __init__(self, root: str | os.PathLike[str], *, relative_to: Path | None = None,
                 cache_dir: Path | None = None, fallback: ArtifactStore | None = None,
                 storage_options: dict[str, Any] | None = None, source: str | None = None) -> None:
        text = os.fspath(root)
        scheme = url_scheme(text) if isinstance(root, str) else None
        self.fallback = fallback
        self.relative_to = relative_to
        self._cache_dir = cache_dir
        self._fs_obj: Any = None
        self._fs_args: tuple[str, dict[str, Any]] = ("", {})
        self._pid = os.getpid()
        self._base = ""
        if scheme is None or scheme == "file":
            if scheme == "file":
                from urllib.parse import unquote, urlsplit

                text = unquote(urlsplit(text).path)
            self.root: Path | None = Path(text)
            self.url = "file://" + str(Path(text).absolute())
            return
        self.root = None
        self.url = redact_artifacts_url(text)
        self._open_remote(text, scheme, dict(storage_options or {}), source or "artifacts_url")

    def _open_remote(self, text: str, scheme: str, opts: dict[str, Any], where: str) -> None:
        from image_gen.errors import InputError

        try:
            check_artifacts_url(text)
        except ValueError as exc:
            raise InputError(f"{exc} (got {self.url!r})", field=where) from None
        clean, user, password = _split_userinfo(text)
        if scheme in _S3_SCHEMES:
            if user:
                opts.setdefault("key", user)
                opts.setdefault("secret", password)
            opts.setdefault("use_listings_cache", False)  # another worker's put must be seen at once
        import fsspec

        try:
            self._fs_obj, path = fsspec.core.url_to_fs(clean, **opts)
        except ImportError as exc:
            extra = " (pip install 'image-gen[s3]')" if scheme in _S3_SCHEMES else ""
            raise InputError(f"cannot open {self.url}: {exc}{extra}", field=where) from None
        except Exception as exc:
            raise InputError(f"cannot open {self.url}: {type(exc).__name__}: {exc}", field=where) from None
        self._base = str(path).rstrip("/")
        self._fs_args = (clean, opts)

    @property
    def _fs(self) -> Any:
        """The fsspec filesystem; made again in a forked child (an async client cannot cross a fork)."""
        if self._pid != os.getpid():
            import fsspec

            clean, opts = self._fs_args
            self._fs_obj = fsspec.core.url_to_fs(clean, skip_instance_cache=True, **opts)[0]
            self._pid = os.getpid()
        return self._fs_obj

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_fs_obj"], state["_pid"] = None, -1  # made again where it is unpickled (a process or Ray worker)
        return state

    # -- where ----------------------------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return self.root is not None

    @staticmethod
    def key(sha: str) -> str:
        """The object's key below the store's root: ``ab/abcd....png``."""
        return f"{_check_sha(sha)[:2]}/{sha}.png"

    def path_for(self, sha: str) -> Path:
        """The file of ``sha`` in a folder store (it may not exist); a remote store has none (see local_path)."""
        if self.root is None:
            raise ValueError(f"{self.url} is not a folder: use local_path() for a local copy")
        return self.root / self.key(sha)

    def _remote(self, sha: str) -> str:
        return f"{self._base}/{self.key(sha)}" if self._base else self.key(sha)

    def location(self, sha: str) -> str:
        """What the registry records as the artifact's place: the path relative to the workspace for the workspace's
        own folder (as before, so a workspace can move), else the object's URL (credentials masked)."""
        if self.root is not None:
            path = self.path_for(sha)
            if self.relative_to is not None:
                try:
                    return str(path.relative_to(self.relative_to))
                except ValueError:
                    pass
            return "file://" + str(path.absolute())
        return f"{self.url.rstrip('/')}/{self.key(sha)}"

    # -- write ----------------------------------------------------------------------------------------------------
    def put_bytes(self, data: bytes) -> tuple[str, str]:
        """Store ``data`` under its sha256 (first writer wins; the same bytes again is a no-op): ``(sha, location)``.
        """
        sha = hashlib.sha256(data).hexdigest()
        if self.root is not None:
            dest = self.path_for(sha)
            if not dest.exists():
                _write_atomic(dest, data)
            return sha, self.location(sha)
        path = self._remote(sha)
        if not self._fs.exists(path):
            with contextlib.suppress(FileExistsError):  # another writer stored the same content first
                self._fs.pipe_file(path, data, mode="create")
        return sha, self.location(sha)

    def put_image(self, image: Any, meta: dict[str, Any]) -> tuple[str, str, bytes]:
        data = encode_with_metadata(image, meta)
        sha, where = self.put_bytes(data)
        return sha, where, data

    def clean_temp(self, max_age_s: float = 3600.0) -> int:
        """Remove temporary files left by writers that died (their process is gone, or they are old). An object
        store has none: its put is a single conditional PUT."""
        import time

        removed = 0
        if self.root is None or not self.root.is_dir():
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

    # -- read by hash ---------------------------------------------------------------------------------------------
    def _has(self, sha: str) -> bool:
        if self.root is not None:
            return self.path_for(sha).is_file()
        return bool(self._fs.exists(self._remote(sha)))

    def exists(self, sha: str) -> bool:
        return self._has(sha) or (self.fallback is not None and self.fallback.exists(sha))

    def _read_own(self, sha: str) -> bytes:
        if self.root is not None:
            return self.path_for(sha).read_bytes()
        data: bytes = self._fs.cat_file(self._remote(sha))
        if hashlib.sha256(data).hexdigest() != sha:
            raise OSError(f"artifact {sha} in {self.url} does not match its hash")
        return data

    def put_png(self, png: bytes, meta: dict[str, Any]) -> tuple[str, str, bytes]:
        """Like ``put_image`` for an image that is already the PNG ``png``: the metadata chunks are added to its
        bytes (``png_with_metadata``), its pixels are neither decoded nor encoded again."""
        from PIL import Image

        with Image.open(io.BytesIO(png)) as header:
            size = header.size
        data = png_with_metadata(png, meta, size)
        sha, where = self.put_bytes(data)
        return sha, where, data

    def read_bytes(self, sha: str) -> bytes:
        """The stored bytes of ``sha`` (``FileNotFoundError`` when neither this store nor its fallback holds it);
        an object read from a remote store is checked against its hash."""
        try:
            return self._read_own(sha)
        except FileNotFoundError:
            if self.fallback is None:
                raise
            return self.fallback.read_bytes(sha)

    def size(self, sha: str) -> int:
        if not self._has(sha) and self.fallback is not None:
            return self.fallback.size(sha)
        if self.root is not None:
            return self.path_for(sha).stat().st_size
        return int(self._fs.size(self._remote(sha)))

    def open_image(self, sha: str) -> Any:
        """The image of ``sha`` (PIL, loaded)."""
        from PIL import Image

        img = Image.open(io.BytesIO(self.read_bytes(sha)))
        img.load()
        return img

    open = open_image

    def local_path(self, sha: str) -> Path:
        """A local file holding ``sha``'s bytes, for callers that need a path: the stored file in a folder store,
        else a copy kept in the cache folder (written once, atomically). ``FileNotFoundError`` when absent."""
        if self.root is not None and self.path_for(sha).is_file():
            return self.path_for(sha)
        if self.root is None:
            dest = (self._cache_dir or Path(tempfile.gettempdir()) / "image-gen-artifacts") / self.key(sha)
            if dest.is_file():
                return dest
            try:
                _write_atomic(dest, self._read_own(sha))
                return dest
            except FileNotFoundError:
                pass
        if self.fallback is None:
            raise FileNotFoundError(f"no artifact {sha} in {self.url}")
        return self.fallback.local_path(sha)
