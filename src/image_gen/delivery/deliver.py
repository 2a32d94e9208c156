"""Renditions of a completed run's final asset, one per channel: frame, resample, encode within budget, sign, QA,
write, record.

For each channel, in order:

1. frame     :func:`image_gen.delivery.crop.plan_frame` with the label boxes the QA OCR found on the final asset
             (read from the final stage's QA record when it holds them, else read now) and its saliency map
2. pixels    Lanczos resample of the window; a widened frame is letterboxed or outpainted (the final stage's model
             through the pipeline's ``CallMaker``, so the ledger and the budget hold); a simulated run's rendition
             carries the visible SIMULATED mark
3. encode    sRGB ICC, DPI, XMP (IPTC DigitalSourceType trainedAlgorithmicMedia), A1111 parameters; the byte
             budget met by bisection on the quality (``delivery/encode.py``)
4. sign      optional C2PA manifest (``[provenance] c2pa_cert``/``c2pa_key``); when the manifest pushes the file
             over its budget, the budget search runs again with the manifest's bytes reserved
5. QA        label text, softness, size and format on the encoded file as decoded (``qa.evaluate``)
6. record    the file is written to a temporary name and fsynced; its ``Rendition`` row is inserted and the file
             renamed into place in one transaction, so there is never a row without its file or a file without
             its row (a rendition that fails leaves neither)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from image_gen.channels import ChannelSettings, resolve_channels
from image_gen.delivery.crop import Box, Frame, border_colour, extract, plan_frame, saliency_map
from image_gen.delivery.encode import MIME, BudgetError, Encoded, Metadata, encode_within
from image_gen.delivery.provenance import ModelStep, Provenance, c2pa_manifest, xmp_packet
from image_gen.errors import InputError, WorkFailed

if TYPE_CHECKING:
    from PIL import Image

    from image_gen.config import Config
    from image_gen.pipeline.runner import Runner
    from image_gen.qa.ocr import OcrLine
    from image_gen.store.models import Run
    from image_gen.store.registry import Registry
    from image_gen.workspace import Workspace

log = logging.getLogger("image_gen.delivery")

DELIVERABLE = ("completed",)
DEFAULT_DIR = "deliveries"
"""Where a pipeline's ``deliver = [...]`` puts its renditions, under the workspace folder."""


@dataclass
class RenditionResult:
    channel: str
    format: str
    width: int
    height: int
    path: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    max_bytes: int | None = None
    quality: int | None = None
    encodes: int | None = None
    dpi: int | None = None
    fit: dict[str, Any] | None = None
    qa: dict[str, Any] | None = None
    qa_passed: bool | None = None
    provenance: dict[str, Any] | None = None
    rendition_id: int | None = None
    error: str | None = None
    """Why no rendition was made (no file, no row)."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.qa_passed is not False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeliveryResult:
    run_id: str
    out_dir: str
    renditions: list[RenditionResult] = field(default_factory=list)
    simulated: bool = False

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.renditions)

    @property
    def failed(self) -> list[RenditionResult]:
        return [r for r in self.renditions if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "out_dir": self.out_dir, "simulated": self.simulated, "ok": self.ok,
                "renditions": [r.to_dict() for r in self.renditions]}


@dataclass
class _Source:
    """What every channel of one run shares: the final image, its labels, saliency, models and record."""

    run: Run
    image: Image.Image
    labels: list[Box]
    models: list[ModelStep]
    record: dict[str, Any]
    saliency: Any = None


def channels_of(config: Config | None, names: Sequence[str],
                field: str = "--channel") -> list[tuple[str, ChannelSettings]]:
    """The named channels (presets and the config's ``[channels.NAME]``); bad input naming an unknown one."""
    try:
        return resolve_channels(list(names), dict(config.channels) if config is not None else None)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), field=field) from None


class Deliverer:
    """Makes and records the renditions of runs in one workspace."""

    def __init__(self, workspace: Workspace, *, runner: Runner | None = None, config: Config | None = None,
                 ocr_engine: str = "rapidocr", qa: bool = True) -> None:
        self.workspace = workspace
        self.runner = runner
        self.config = config if config is not None else (runner.config if runner is not None else None)
        self.ocr_engine = ocr_engine
        self.qa = qa

    @property
    def registry(self) -> Registry:
        return self.workspace.registry()

    # -- the run -------------------------------------------------------------------------------------------------
    def deliver(self, run_id: str, channels: Sequence[str], out_dir: str | os.PathLike[str] | None = None,
                ) -> DeliveryResult:
        """Renditions of the run's final asset into ``out_dir`` (default ``<workspace>/deliveries``)."""
        run = self.registry.find_run(run_id)
        chosen = channels_of(self.config, channels)
        if not chosen:
            raise InputError("no channel given", field="--channel")
        if run.status not in DELIVERABLE or not run.final_artifact:
            raise InputError(f"run {run.id} is {run.status}: only a completed run's final asset is delivered"
                             + (f" (image-gen approve {run.id})" if run.status == "awaiting_approval" else ""),
                             field="RUN")
        dest = Path(out_dir) if out_dir is not None else self.workspace.root / DEFAULT_DIR
        if dest.exists() and not dest.is_dir():
            raise InputError("not a folder", file=str(dest), field="--out-dir")
        dest.mkdir(parents=True, exist_ok=True)
        source = self._source(run)
        result = DeliveryResult(run.id, str(dest), simulated=bool(run.simulated))
        for name, ch in chosen:
            result.renditions.append(self.rendition(source, name, ch, dest))
        return result

    def _source(self, run: Run) -> _Source:
        store = self.workspace.artifacts()
        assert run.final_artifact is not None
        try:
            img = store.open(run.final_artifact)
        except OSError as exc:
            raise WorkFailed(f"run {run.id}: its final artifact cannot be read ({exc})") from None
        record: dict[str, Any] = {}
        raw = img.info.get("image-gen")
        if isinstance(raw, str):
            try:
                record = json.loads(raw)
            except ValueError:
                record = {}
        image = img.convert("RGB")
        return _Source(run, image, self._labels(run, image), self._models(run), record)

    def _labels(self, run: Run, image: Image.Image) -> list[Box]:
        """The label boxes: OCR lines the text check placed at the label (from the final stage's QA when it read
        this image, else read now); every OCR line when the brief names no label text."""
        from image_gen.pipeline.runner import Brief
        from image_gen.qa.text import read_for_qa, score_text

        expected = Brief(run.prompt, run.negative_prompt, run.expect_text).expected()
        lines: list[dict[str, Any]] | None = None
        stages = [s for s in self.registry.stage_runs(run.id) if s.artifact_sha == run.final_artifact]
        for st in reversed(stages):
            qa = st.qa or {}
            scores = qa.get("scores") or {}
            text = (qa.get("details") or {}).get("text")
            if text and (scores.get("width"), scores.get("height")) == (image.width, image.height):
                lines = list(text.get("ocr_lines") or [])
                break
        if lines is None:
            read: list[OcrLine] = read_for_qa(image, self.ocr_engine)
            lines = score_text(expected, read).ocr_lines if expected else [
                {"text": ln.text, "box": list(ln.box), "near_label": True} for ln in read]
        near = [ln for ln in lines if ln.get("near_label")]
        chosen = near or ([] if expected else lines)
        return [(int(b[0]), int(b[1]), int(b[2]), int(b[3])) for b in (ln["box"] for ln in chosen)]

    def _models(self, run: Run) -> list[ModelStep]:
        """Each model that touched the final asset, in order: every finished stage's model and the models its
        upscale, tile and outpaint calls went to."""
        steps: list[ModelStep] = []
        calls = self.registry.calls(run.id)
        for st in self.registry.stage_runs(run.id):
            if st.status != "done" or not st.artifact_sha:
                continue
            params = st.params or {}
            if params.get("rendered") is not False:
                steps.append(ModelStep(st.name, st.model_id, str(params.get("operation") or "generate")))
            seen: set[tuple[str, str]] = set()
            for c in calls:
                if c.stage_run_id == st.id and c.state == "ok" and c.purpose in ("upscale", "tile") \
                        and (c.model_id, c.purpose) not in seen:
                    seen.add((c.model_id, c.purpose))
                    steps.append(ModelStep(st.name, c.model_id, c.purpose))
        return steps

    # -- one channel ---------------------------------------------------------------------------------------------
    def rendition(self, src: _Source, name: str, ch: ChannelSettings, dest: Path) -> RenditionResult:
        t0 = time.perf_counter()
        res = RenditionResult(name, ch.format, ch.width, ch.height, max_bytes=ch.max_bytes, dpi=ch.dpi)
        try:
            pixels, frame, fit_record = self._pixels(src, ch)
            edits = _edits(frame, src.image.size, (ch.width, ch.height))
            models = list(src.models) + ([ModelStep("delivery", fit_record["outpaint"]["model"], "outpaint")]
                                         if fit_record.get("outpaint") else [])
            prov = Provenance(src.run.id, name, src.run.prompt, models, bool(src.run.simulated),
                              version=_version(), edits=edits)
            data, enc, signed = self._encode(pixels, ch, prov, src, f"{src.run.id}-{name}.{ch.extension}")
            verdict = self._qa(data, src.run, ch)
            res.quality, res.encodes, res.fit = enc.quality, enc.encodes, fit_record
            res.qa = verdict
            res.qa_passed = None if verdict is None else bool(verdict["passed"])
            res.provenance = {
                "digital_source_type": "trainedAlgorithmicMedia", "xmp": True,
                "a1111_parameters": True, "icc": "sRGB", "c2pa": signed,
                "models": [m.to_dict() for m in models], "edits": edits, "simulated": bool(src.run.simulated),
                "encode_sizes": enc.sizes, "encode_note": enc.note,
            }
            self._write(res, src.run, dest / f"{src.run.id}-{name}.{ch.extension}", data)
        except BudgetError as exc:
            res.error = f"byte budget: {exc}"
        except (InputError, WorkFailed):
            raise
        except Exception as exc:  # one channel failing must not lose the others; the reason is reported
            log.exception("rendition %s of run %s failed", name, src.run.id)
            res.error = f"{type(exc).__name__}: {exc}"
        res.seconds = round(time.perf_counter() - t0, 4)
        return res

    def _pixels(self, src: _Source, ch: ChannelSettings) -> tuple[Image.Image, Frame, dict[str, Any]]:
        from PIL import Image as PILImage

        from image_gen.imaging.marks import mark_simulated

        image = src.image
        target = (ch.width, ch.height)
        if ch.fit == "crop" and src.saliency is None:
            src.saliency = saliency_map(image)
        frame = plan_frame(image.size, target, ch.fit, labels=src.labels, saliency=src.saliency, margin=ch.margin,
                           extend=ch.extend)
        record = frame.to_dict()
        lanczos = PILImage.Resampling.LANCZOS
        if frame.inside(image.size):
            out = image.resize(target, lanczos, box=frame.window, reducing_gap=3.0)
            record["mode"] = "crop" if frame.window != (0, 0, *image.size) else "resize"
        else:
            fill = border_colour(image) if ch.background == "auto" else _hex(ch.background)
            canvas, inner = extract(image, frame.window, fill)
            record["mode"] = "letterbox"
            record["background"] = "#{:02x}{:02x}{:02x}".format(*fill)
            if frame.mode == "outpaint":
                canvas, record = self._outpaint(src, canvas, inner, record)
            out = canvas.resize(target, lanczos, reducing_gap=3.0)
        record["scale"] = round(ch.width / frame.width, 4)
        if record["scale"] > 1.0:
            record["upsampled"] = True
        if src.run.simulated:
            out = mark_simulated(out)
        return out, frame, record

    def _outpaint(self, src: _Source, canvas: Image.Image, inner: tuple[int, int, int, int],
                  record: dict[str, Any]) -> tuple[Image.Image, dict[str, Any]]:
        from image_gen.delivery.outpaint import OutpaintUnavailable, outpaint

        if self.runner is None:
            record["outpaint_skipped"] = "no pipeline runner to make the call; letterboxed"
            return canvas, record
        try:
            painted, call = outpaint(self.runner, src.run.id, canvas, inner, src.run.prompt, src.run.negative_prompt)
        except OutpaintUnavailable as exc:
            record["outpaint_skipped"] = f"{exc}; letterboxed"
            return canvas, record
        record["mode"] = "outpaint"
        record["outpaint"] = call
        return painted, record

    def _metadata(self, prov: Provenance, src: _Source, ch: ChannelSettings) -> Metadata:
        from image_gen.store.artifacts import a1111_parameters

        meta = {**src.record, "size": f"{ch.width}x{ch.height}", "prompt": src.run.prompt}
        meta.setdefault("simulated", bool(src.run.simulated))
        record = {**meta, "run_id": src.run.id, "channel": prov.channel, "source_artifact": src.run.final_artifact,
                  "digital_source_type": "trainedAlgorithmicMedia"}
        return Metadata(xmp=xmp_packet(prov), parameters=a1111_parameters(meta),
                        json_record=json.dumps(record, sort_keys=True, default=str), dpi=ch.dpi)

    def _encode(self, pixels: Image.Image, ch: ChannelSettings, prov: Provenance, src: _Source,
                title: str) -> tuple[bytes, Encoded, bool]:
        meta = self._metadata(prov, src, ch)
        signer = self._signer()
        budget = ch.max_bytes
        enc = encode_within(pixels, ch.format, meta, quality=ch.encoder_quality, min_quality=ch.min_quality,
                            max_bytes=budget)
        if signer is None:
            return enc.data, enc, False
        encodes = enc.encodes
        manifest = c2pa_manifest(prov, title, MIME[ch.format])
        for _ in range(3):
            signed = signer.sign(enc.data, MIME[ch.format], manifest)
            if budget is None or len(signed) <= ch.max_bytes:  # type: ignore[operator]
                enc.encodes = encodes
                enc.note = ((enc.note + "; ") if enc.note else "") + f"C2PA manifest {len(signed) - len(enc.data)} B"
                return signed, enc, True
            budget -= len(signed) - len(enc.data)  # reserve the manifest's bytes and search again
            if budget <= 0:
                break
            enc = encode_within(pixels, ch.format, meta, quality=ch.encoder_quality, min_quality=ch.min_quality,
                                max_bytes=budget)
            encodes += enc.encodes
        raise BudgetError(f"the signed file is over the budget of {ch.max_bytes} bytes even with the C2PA manifest's "
                          "bytes reserved")

    def _signer(self) -> Any:
        prov = self.config.provenance if self.config is not None else None
        if prov is None or not prov.c2pa_cert or not prov.c2pa_key:
            return None
        from image_gen.delivery.provenance import C2paSigner

        return C2paSigner(prov.c2pa_cert, prov.c2pa_key, prov.c2pa_tsa_url)

    def _qa(self, data: bytes, run: Run, ch: ChannelSettings) -> dict[str, Any] | None:
        if not self.qa:
            return None
        from image_gen.imaging.images import open_image
        from image_gen.qa import evaluate

        decoded = open_image(data)
        verdict = evaluate(decoded, prompt=run.prompt, expect_text=run.expect_text, asked_size=(ch.width, ch.height),
                           asked_format=ch.format, ocr_engine=self.ocr_engine)
        out: dict[str, Any] = verdict.to_dict()
        return out

    # -- record --------------------------------------------------------------------------------------------------
    def _write(self, res: RenditionResult, run: Run, path: Path, data: bytes) -> None:
        """Write the file and its row together: temp file, fsync, then in one transaction the row (replacing an
        earlier rendition at the same path) and the rename. A failure leaves no file and no row."""
        from sqlalchemy import delete

        from image_gen.store.models import Rendition

        sha = hashlib.sha256(data).hexdigest()
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        renamed = False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            shown = _shown_path(path, self.workspace.root)
            with self.registry.session() as s:
                s.execute(delete(Rendition).where(Rendition.run_id == run.id, Rendition.channel == res.channel,
                                                  Rendition.path == shown))
                row = Rendition(run_id=run.id, channel=res.channel, sha256=sha, path=shown, format=res.format,
                                width=res.width, height=res.height, size_bytes=len(data), max_bytes=res.max_bytes,
                                quality=res.quality, encodes=res.encodes, dpi=res.dpi, fit=res.fit, qa=res.qa,
                                qa_passed=res.qa_passed, provenance=res.provenance)
                s.add(row)
                s.flush()
                res.rendition_id = row.id
                os.replace(tmp, path)
                renamed = True
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            if renamed:
                path.unlink(missing_ok=True)
            res.rendition_id = None
            raise
        res.path, res.sha256, res.size_bytes = str(path), sha, len(data)


def _shown_path(path: Path, root: Path) -> str:
    """The path recorded: relative to the workspace folder when inside it, else absolute."""
    full = path.resolve()
    try:
        return str(full.relative_to(root.resolve()))
    except ValueError:
        return str(full)


def _edits(frame: Frame, size: tuple[int, int], target: tuple[int, int]) -> list[str]:
    out = []
    x0, y0, x1, y1 = frame.window
    if frame.inside(size):
        if frame.window != (0, 0, *size):
            out.append(f"cropped to {x1 - x0}x{y1 - y0} at ({x0}, {y0})")
    else:
        out.append(f"{frame.mode} to {x1 - x0}x{y1 - y0} around the {size[0]}x{size[1]} image")
    out.append(f"resized to {target[0]}x{target[1]} (Lanczos)")
    return out


def _hex(value: str) -> tuple[int, int, int]:
    v = value.lstrip("#")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("image-gen")
    except PackageNotFoundError:
        return "0"


def deliver_completed(runner: Runner, run_id: str) -> list[str]:
    """The pipeline's ``deliver = [...]`` for a run that just completed (the runner's ``on_complete``): its
    renditions in ``<workspace>/deliveries``. Returns warnings for the outcome; never raises."""
    names = list(runner.config.pipeline.deliver)
    if not names:
        return []
    try:
        result = Deliverer(runner.workspace, runner=runner).deliver(run_id, names)
    except Exception as exc:
        log.exception("delivery of run %s failed", run_id)
        return [f"delivery failed: {type(exc).__name__}: {exc}"]
    runner.events("delivery", result.to_dict())
    warnings = []
    for r in result.renditions:
        if r.error:
            warnings.append(f"rendition {r.channel}: {r.error}")
        elif r.qa_passed is False:
            reasons = "; ".join((r.qa or {}).get("reasons") or [])
            warnings.append(f"rendition {r.channel} fails QA: {reasons}")
    return warnings


def attach(runner: Runner) -> Runner:
    """Make ``runner`` deliver its config's channels whenever a run completes (incl. after approval, resume)."""
    if runner.config.pipeline.deliver:
        runner.on_complete = lambda run_id: deliver_completed(runner, run_id)
    return runner
