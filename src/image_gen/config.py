"""The config schema (pydantic, ``extra="forbid"``) and loading from TOML, YAML or JSON.

Every form users already write is accepted: a staged pipeline (``pipeline.stages = ["draft:ideogram-v1-turbo", ...]``
with ``[stage.<name>]`` sections), the baseline ``pipeline.model = "largest-available"``, a single model id, and a
flat per-stage JSON such as ``{"model": "ideogram-v1-turbo", "steps": 20, "guidance_scale": 6.0, "seed": 42}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from image_gen.adapter_table import adapter_names
from image_gen.channels import ChannelSettings, check_channel_name, known_channels, unknown_channel_message
from image_gen.errors import ConfigError

STAGED = "staged-selection"
SLA_FIELDS = frozenset({"sla_s", "sla_target", "sla_model", "sla_min_samples"})
"""Pipeline-wide routing settings: not stage defaults."""
LARGEST = "largest-available"
DEFAULT_OVERLAP = 32
"""Tile overlap in pixels where a stage sets ``tile_size`` but no ``overlap``."""
MAX_RATIO = 16
"""The most elongated aspect ratio accepted (long side : short side)."""
_RATIO = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class FieldError(ValueError):
    """A validation error found above the field it is about; ``field`` is its dotted path from the top."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_ratio(value: str) -> tuple[int, int]:
    """``"W:H"`` to two positive integers no more elongated than :data:`MAX_RATIO`; raises ``ValueError``."""
    m = _RATIO.match(value)
    if not m:
        raise ValueError("expected W:H with two positive whole numbers, such as 16:9")
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0:
        raise ValueError("expected W:H with both terms greater than 0, such as 16:9")
    if max(w, h) > MAX_RATIO * min(w, h):
        raise ValueError(f"expected a ratio between 1:{MAX_RATIO} and {MAX_RATIO}:1")
    return w, h


class _Strict(BaseModel):
    # strict: a config file's types are its own (TOML, YAML and JSON all have numbers and booleans), so "20" is
    # not a number of steps and true is not 1; finite: inf and nan are no value for any setting.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class QASettings(_Strict):
    """Automatic QA thresholds for a stage's output. Defaults are calibrated (see README)."""

    enabled: bool = Field(default=True, description="Run QA on this stage's output")
    text_min_similarity: float | None = Field(
        default=None, ge=0, le=1,
        description="Minimum normalised edit similarity (1 - Levenshtein / longer length) per expected label "
        "string; None uses the calibrated threshold (qa/thresholds.json)",
    )
    text_min_precision: float | None = Field(
        default=None, ge=0, le=1,
        description="Minimum share of the text read at the label that is the expected text (stray letters or "
        "words fail); None uses the calibrated threshold (qa/thresholds.json)",
    )
    sharpness_min: float | None = Field(
        default=None, ge=0, description="Minimum sharpness score; None uses the calibrated threshold"
    )
    check_text: bool = Field(default=True, description="Check the prompt's quoted label text by OCR")
    check_sharpness: bool = Field(default=True, description="Check for soft focus")
    check_size: bool = Field(default=True, description="Check the delivered size against the asked size")


class StageSettings(_Strict):
    """Settings of one stage. Every field may also be set under ``[pipeline]`` as a default for all stages."""

    model: str | None = Field(
        default=None, description="Catalog id or alias, sim:<id>, local:<repo>, or class:<capability> (the "
        "cheapest configured model of that class that meets min_pass_rate and max_latency_s)")
    provider: str | None = Field(default=None, description="Route the model to another provider (e.g. local)")
    steps: int | None = Field(default=None, gt=0, le=500, description="Sampling steps")
    guidance_scale: float | None = Field(default=None, ge=0, le=50, description="Classifier-free guidance")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2, description="Seed; derived from the prompt if unset")
    width: int | None = Field(default=None, gt=0, le=16384, description="Asked width in pixels")
    height: int | None = Field(default=None, gt=0, le=16384, description="Asked height in pixels")
    aspect_ratio: str | None = Field(default=None, description="W:H, used when width/height are not set")
    strength: float | None = Field(
        default=None, ge=0, le=1,
        description="Image-to-image strength: 0 keeps the previous stage's image, 1 ignores it",
    )
    upscale: Literal["2x", "4x"] | None = Field(default=None, description="Upscale the stage's output")
    tile_size: int | None = Field(default=None, ge=64, le=4096, description="Tile size for tiled work")
    overlap: int | None = Field(default=None, ge=0, le=1024, description="Tile overlap in pixels")
    adapters: list[str] | None = Field(default=None, description="Named adapters run after the stage")
    gate: Literal["approval"] | None = Field(default=None, description="Wait for a person's approval")
    retries: int | None = Field(default=None, ge=0, le=20, description="Retries of transient errors")
    num_images: int | None = Field(default=None, ge=1, le=8, description="Images per call")
    negative_prompt: str | None = None
    qa: QASettings | None = None
    max_rerolls: int | None = Field(default=None, ge=0, le=10, description="QA re-rolls with a new seed")
    escalate_to: str | None = Field(default=None, description="Model to try when re-rolls are spent")
    fallback_model: str | None = Field(default=None, description="Lighter model for out-of-memory fallback")
    on_retired: Literal["fail", "successor"] | None = None
    options: dict[str, Any] | None = Field(default=None, description="Model options passed to the provider")
    render: bool | None = Field(
        default=None,
        description="false: take the input image as is (finish an existing image: upscale and adapters only)",
    )
    min_pass_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="model = \"class:...\": a candidate's recorded QA pass rate must be at least this",
    )
    max_latency_s: float | None = Field(
        default=None, gt=0, le=86400,
        description="model = \"class:...\": a candidate's p95 stage latency (recorded, else catalog) must be at most "
        "this",
    )

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _ratio_number(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("expected a quoted W:H string such as \"16:9\" (YAML 1.1 reads an unquoted 16:9 as the "
                             "base-60 number 969)")
        return v

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, v: str | None) -> str | None:
        if v is not None:
            w, h = check_ratio(v)
            return f"{w}:{h}"
        return v

    @field_validator("adapters")
    @classmethod
    def _adapters(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        known = adapter_names()
        for name in v:
            if name not in known:
                raise ValueError(f"unknown adapter {name!r}; known adapters: {', '.join(sorted(known))}")
        return v

    @model_validator(mode="after")
    def _overlap(self) -> StageSettings:
        if self.tile_size is not None and self.overlap is not None and self.overlap * 2 >= self.tile_size:
            raise FieldError("overlap", f"expected less than half of tile_size ({self.tile_size}), got {self.overlap}")
        return self


class PipelineSettings(StageSettings):
    """``[pipeline]``: which model(s) and defaults shared by every stage."""

    model: str | None = Field(
        default=STAGED, description="staged-selection, largest-available, or a model id for a single stage"
    )
    stages: list[str] = Field(default_factory=list, description='["name:model", ...] in order')
    sla_s: float | None = Field(
        default=None, gt=0, le=86400,
        description="Latency SLA in seconds (machine latency of the whole run; approval waits excluded): when the "
        "staged path is unlikely to meet it, the run goes single-call on sla_model",
    )
    sla_target: float = Field(
        default=0.95, gt=0, le=1, description="Least probability of finishing within sla_s for the staged path"
    )
    sla_model: str = Field(default=LARGEST, description="The single-call model when the staged path misses the SLA")
    sla_min_samples: int = Field(
        default=20, ge=1, le=100000,
        description="Recorded stage latencies a model needs at a size before the estimate uses them instead of the "
        "catalog's typical latency",
    )
    deliver: list[str] = Field(default_factory=list, description='Channels rendered when a run completes, e.g. '
                               '["web-hero", "square"] (presets or [channels.NAME])')


_NOT_STAGE = {"model", "stages", "deliver", *SLA_FIELDS}
"""Fields of ``[pipeline]`` that are not stage defaults."""


class ProvenanceSettings(_Strict):
    """``[provenance]``: what every rendition says about where it came from (XMP and A1111 are always written)."""

    c2pa_cert: str | None = Field(default=None, description="PEM certificate chain (signer first) for C2PA manifests")
    c2pa_key: str | None = Field(default=None, description="PEM private key of the C2PA signing certificate")
    c2pa_tsa_url: str | None = Field(default=None, description="RFC 3161 time-stamp authority URL (optional)")

    @model_validator(mode="after")
    def _pair(self) -> ProvenanceSettings:
        if (self.c2pa_cert is None) != (self.c2pa_key is None):
            missing = "c2pa_key" if self.c2pa_key is None else "c2pa_cert"
            raise FieldError(missing, "expected c2pa_cert and c2pa_key together (a certificate chain and its key)")
        return self


class BudgetSettings(_Strict):
    per_run_usd: float | None = Field(default=None, ge=0, description="Cap on one run's spend")
    per_day_usd: float | None = Field(
        default=None, ge=0, description="Cap on the workspace's spend per calendar day in budget.timezone"
    )
    timezone: str = Field(
        default="UTC", description="IANA time zone (e.g. Europe/Berlin) whose midnight starts the per-day cap's day"
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception:  # ZoneInfoNotFoundError (a KeyError), ValueError for paths, OSError for odd names
            raise ValueError("expected an IANA time zone name such as UTC or Europe/Berlin") from None
        return v


class ProviderConfig(_Strict):
    base_url: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(v)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        return v
    timeout_s: float = Field(default=60.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    options: dict[str, Any] = Field(default_factory=dict)


class SimSettings(_Strict):
    """The offline simulator's knobs; defect rates default to each model's catalog figures."""

    latency_scale: float = Field(default=0.0, ge=0, le=1, description="Fraction of the simulated latency to wait")
    soft_rate: float | None = Field(default=None, ge=0, le=1)
    typo_rate: float | None = Field(default=None, ge=0, le=1)
    fail_rate: float | None = Field(default=None, ge=0, le=1)


class RetrySettings(_Strict):
    """Backoff between retries of transient errors and rate limits (exponential with jitter)."""

    # 0 is allowed: retries without waiting (tests, fail-fast setups); nothing divides by these.
    initial_s: float = Field(default=1.0, ge=0, le=3600, description="First backoff, seconds")
    max_s: float = Field(default=30.0, ge=0, le=3600, description="Longest backoff, seconds")
    max_retry_after_s: float = Field(default=120.0, ge=0, le=86400, description="Longest Retry-After honoured, seconds")

    @model_validator(mode="after")
    def _order(self) -> RetrySettings:
        if self.max_s < self.initial_s:
            raise FieldError("max_s", f"expected at least initial_s ({self.initial_s}), got {self.max_s}")
        return self


class ModelOverride(_Strict):
    provider: str | None = None
    vendor_model: str | None = None
    aliases: list[str] | None = None
    capabilities: list[Literal["txt2img", "img2img", "upscale", "typography", "large-format"]] | None = None
    price_per_image: float | None = Field(default=None, ge=0)
    price_per_megapixel: float | None = Field(default=None, ge=0)
    price_read_on: str | None = None
    latency_s: float | None = Field(default=None, ge=0)
    default_steps: int | None = Field(default=None, gt=0, le=500)
    native_megapixels: float | None = Field(default=None, gt=0, le=268)
    aspect_ratios: list[str] | None = None
    fidelity: int | None = Field(default=None, ge=0, le=100)
    lifecycle: Literal["active", "retired"] | None = None
    retired_on: str | None = None
    successor: str | None = None
    options: dict[str, Any] | None = None
    local_repo: str | None = None
    native_upscaler: str | None = None
    sim_soft_rate: float | None = Field(default=None, ge=0, le=1)
    sim_typo_rate: float | None = Field(default=None, ge=0, le=1)
    sim_fail_rate: float | None = Field(default=None, ge=0, le=1)

    @field_validator("aspect_ratios")
    @classmethod
    def _ratios(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for i, ratio in enumerate(v):
            try:
                w, h = check_ratio(ratio)
            except ValueError as exc:
                raise FieldError(f"[{i}]", str(exc)) from None
            out.append(f"{w}:{h}")
        return out


class Config(_Strict):
    """The whole config file."""

    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    stage: dict[str, StageSettings] = Field(default_factory=dict, description="Per-stage settings by stage name")
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    channels: dict[str, ChannelSettings] = Field(default_factory=dict, description="Delivery channels by name")
    provenance: ProvenanceSettings = Field(default_factory=ProvenanceSettings)
    models: dict[str, ModelOverride] = Field(default_factory=dict, description="Catalog additions and overrides")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    sim: SimSettings = Field(default_factory=SimSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    simulate: bool = Field(default=False, description="Run every stage on its simulated twin")
    on_retired: Literal["fail", "successor"] = Field(
        default="fail", description="A retired model: fail naming the successor, or run the successor"
    )
    registry_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the workspace")
    artifacts_url: str | None = Field(
        default=None, description="Where artifacts are stored: file:///path, s3://bucket/prefix, memory://name or any "
        "installed fsspec protocol; default the workspace's .image-gen/artifacts folder")
    concurrency: int = Field(default=1, ge=1, le=64, description="Briefs run at once (threads)")
    name: str | None = Field(default=None, description="Pipeline name shown in reports")

    @field_validator("artifacts_url")
    @classmethod
    def _artifacts_url(cls, v: str | None) -> str | None:
        from image_gen.store.artifacts import check_artifacts_url

        return check_artifacts_url(v) if v is not None else None

    @model_validator(mode="after")
    def _stages(self) -> Config:
        names: list[str] = []
        for i, spec in enumerate(self.pipeline.stages):
            name, _, model = spec.partition(":")
            name, model = name.strip(), model.strip()
            where = f"pipeline.stages[{i}]"
            if not name:
                raise FieldError(where, f"expected 'name:model', got {spec!r}")
            if not _STAGE_NAME.match(name):
                raise FieldError(where, f"expected a stage name of letters, digits, '_', '.' or '-', got {name!r}")
            if name in names:
                raise FieldError(where, f"stage {name!r} is listed twice")
            names.append(name)
            if not model and not (self.stage.get(name) and self.stage[name].model):
                raise FieldError(where, f"stage {name!r} has no model (expected 'name:model' or stage.{name}.model)")
        for name, st in self.stage.items():
            if not _STAGE_NAME.match(name):
                raise FieldError(f"stage.{name}", "expected a stage name of letters, digits, '_', '.' or '-'")
            if self.pipeline.stages and name not in names:
                raise FieldError(f"stage.{name}", f"no stage named {name!r} in pipeline.stages ({', '.join(names)})")
            if not self.pipeline.stages and self.pipeline.model == STAGED and not st.model:
                raise FieldError(f"stage.{name}.model", "stage has no model")
        if self.pipeline.model == STAGED and not self.pipeline.stages and not self.stage:
            raise FieldError("pipeline.stages", "staged-selection needs at least one stage")
        if self.pipeline.model not in (STAGED, None):
            if self.pipeline.stages:
                raise FieldError("pipeline.stages", f"expected no stages list: pipeline.model = "
                                 f"{self.pipeline.model!r} runs one model (use 'staged-selection' to run stages)")
            if len(self.stage) > 1:
                raise FieldError("stage", f"expected at most one [stage.<name>] section: pipeline.model = "
                                 f"{self.pipeline.model!r} runs one stage (got {', '.join(self.stage)})")
        self._check_merged()
        self._check_channels()
        return self

    def _check_channels(self) -> None:
        for name in self.channels:
            try:
                check_channel_name(name)
            except ValueError as exc:
                raise FieldError(f"channels.{name}", str(exc)) from None
        known = known_channels(self.channels)
        for i, name in enumerate(self.pipeline.deliver):
            if name not in known:
                raise FieldError(f"pipeline.deliver[{i}]", unknown_channel_message(name, self.channels))

    def _origin(self, name: str, field: str) -> str:
        """Where a stage's merged setting was written: its own section, else the pipeline defaults."""
        own = self.stage.get(name)
        if own is not None and getattr(own, field) is not None:
            return f"stage.{name}.{field}"
        if getattr(self.pipeline, field, None) is not None:
            return f"pipeline.{field}"
        return f"stage.{name}.{field}"

    def _check_merged(self) -> None:
        """Checks of a stage's settings merged over the pipeline defaults (a pair may come from two sections)."""
        defaults = self.pipeline.model_dump(exclude=_NOT_STAGE, exclude_none=True)
        sections = [(n, st) for n, st in self.stage.items()] or [("main", StageSettings())]
        for name, own in sections:
            merged = {**defaults, **own.model_dump(exclude_none=True)}
            tile, overlap = merged.get("tile_size"), merged.get("overlap")
            if tile is not None:
                eff = DEFAULT_OVERLAP if overlap is None else overlap
                if 2 * eff >= tile:
                    where = self._origin(name, "overlap" if overlap is not None else "tile_size")
                    got = f"overlap {eff}" + ("" if overlap is not None else " (the default)")
                    raise FieldError(where, f"expected overlap less than half of tile_size {tile}, got {got}")
            width, height = merged.get("width"), merged.get("height")
            if width is not None and height is not None and width * height > 16384 * 16384:
                raise FieldError(self._origin(name, "width"), f"{width}x{height} is over 268 megapixels")

    def stage_specs(self) -> list[tuple[str, StageSettings]]:
        """The stages in order, each with its settings merged over the pipeline defaults."""
        defaults = self.pipeline.model_dump(exclude=_NOT_STAGE, exclude_none=True)
        if self.pipeline.model not in (STAGED, None):
            # A single model or the baseline: one stage named "main" unless a [stage.X] names it.
            (name, own) = next(iter(self.stage.items())) if self.stage else ("main", StageSettings())
            merged = {**defaults, **own.model_dump(exclude_none=True)}
            merged.setdefault("model", self.pipeline.model)
            return [(name, StageSettings(**merged))]
        specs: list[tuple[str, StageSettings]] = []
        if self.pipeline.stages:
            for spec in self.pipeline.stages:
                name, _, model = (p.strip() for p in spec.partition(":"))
                own = self.stage.get(name, StageSettings())
                merged = {**defaults, **own.model_dump(exclude_none=True)}
                if model and "model" not in own.model_dump(exclude_none=True):
                    merged["model"] = model
                specs.append((name, StageSettings(**merged)))
        else:
            for name, own in self.stage.items():
                specs.append((name, StageSettings(**{**defaults, **own.model_dump(exclude_none=True)})))
        return specs


STAGE_FIELDS = set(StageSettings.model_fields)


def _normalise(raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], str | None]:
    """Turn the flat per-stage form ({"model": ..., "steps": ...}) into the full schema; also the stage's name
    when the form was flat."""
    data = dict(raw)
    if "pipeline" not in data and "stage" not in data and "model" in data:
        stage_keys = {k: v for k, v in data.items() if k in STAGE_FIELDS}
        rest = {k: v for k, v in data.items() if k not in STAGE_FIELDS}
        name = rest.pop("stage_name", None) or ("final" if "upscale" in stage_keys or "adapters" in stage_keys
                                               else "main")
        if not isinstance(name, str):
            raise ConfigError(f"expected a stage name (string), got {name!r}", file=source, field="stage_name")
        return {**rest, "pipeline": {"model": stage_keys["model"]}, "stage": {name: stage_keys}}, name
    return data, None


def _error_path(err: Any, flat: str | None) -> str:
    loc = ""
    for part in err["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, FieldError):
        sub = ctx_err.field
        loc = loc + sub if sub.startswith("[") or not loc else f"{loc}.{sub}"
    # the flat per-stage form: the user wrote the stage's fields at the top level
    if flat is not None and (loc == "pipeline.model" or loc.startswith(f"stage.{flat}.")):
        loc = loc.removeprefix("pipeline.").removeprefix(f"stage.{flat}.")
    return loc


def _format_errors(exc: ValidationError, flat: str | None = None) -> list[tuple[str, str]]:
    """(field path, message naming what was expected) for each error."""
    parts: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = _error_path(err, flat)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not in the schema; check the spelling)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Input should be "):
            msg = "expected " + msg.removeprefix("Input should be ")
        inp = err.get("input")
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(inp, dict | list):
            shown = repr(inp)
            if loc == "artifacts_url" and isinstance(inp, str):  # never echo an object store's password
                from image_gen.store.artifacts import redact_artifacts_url

                shown = repr(redact_artifacts_url(inp))
            msg += f" (got {shown if len(shown) <= 80 else shown[:77] + '...'})"
        parts.append((loc, msg))
    return parts


def _config_error(exc: ValidationError, source: str, *, flat: str | None = None, prefix: str = "") -> ConfigError:
    """One ConfigError naming the first error's field; the others follow in its message."""
    parts = [(f"{prefix}.{loc}" if prefix and loc else (prefix or loc), msg) for loc, msg in _format_errors(exc, flat)]
    (field, message), rest = parts[0], parts[1:]
    if rest:
        message += "; also " + "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in rest)
    return ConfigError(message, file=source, field=field or None)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a table/mapping at the top level, got {type(data).__name__}", file=source)
    normalised, flat = _normalise(data, source)
    try:
        cfg = Config.model_validate(normalised)
    except ValidationError as exc:
        raise _config_error(exc, source, flat=flat) from None
    _check_models(cfg, source, flat)
    return cfg


def _check_models(cfg: Config, source: str, flat: str | None = None) -> None:
    from image_gen.catalog import CAPABILITIES, CLASS_PREFIX, Catalog, UnknownModel

    overrides = {k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()}
    try:
        catalog = Catalog.load(overrides)
    except ValidationError as exc:
        for mid, fields in overrides.items():  # which override makes an incomplete or invalid model entry
            try:
                Catalog.load({mid: fields})
            except ValidationError as one:
                raise _config_error(one, source, prefix=f"models.{mid}") from None
        raise _config_error(exc, source, prefix="models") from None
    for name, st in cfg.stage_specs():
        for fld in ("model", "escalate_to", "fallback_model"):
            value = getattr(st, fld)
            if value is None or value == LARGEST:
                continue
            if fld == "model" and value.startswith(CLASS_PREFIX):
                cls = value[len(CLASS_PREFIX):]
                if cls not in CAPABILITIES or cls == "upscale":
                    known = ", ".join(CLASS_PREFIX + c for c in CAPABILITIES if c != "upscale")
                    raise ConfigError(f"unknown model class {value!r} (expected one of {known})", file=source,
                                      field=_model_field(cfg, name, fld, flat))
                continue
            try:
                catalog.resolve(value)
            except UnknownModel as exc:
                raise ConfigError(str(exc), file=source, field=_model_field(cfg, name, fld, flat)) from None
    if cfg.pipeline.sla_model != LARGEST:
        try:
            catalog.resolve(cfg.pipeline.sla_model)
        except UnknownModel as exc:
            raise ConfigError(str(exc), file=source, field="pipeline.sla_model") from None


def _model_field(cfg: Config, name: str, fld: str, flat: str | None) -> str:
    """Where a stage's model setting was written (for an error naming the field)."""
    if flat is not None:
        return fld
    if name in cfg.stage and getattr(cfg.stage[name], fld) is not None:
        return f"stage.{name}.{fld}"
    if cfg.pipeline.stages and fld == "model":
        index = [p.partition(":")[0].strip() for p in cfg.pipeline.stages].index(name)
        return f"pipeline.stages[{index}]"
    return f"pipeline.{fld}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found" if not p.exists() else "expected a file, found a folder", file=str(path))
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError("expected a .toml, .yaml, .yml or .json file", file=str(path))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"expected UTF-8 text (byte {exc.start} is not)", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    data: Any
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # tomllib, yaml and json each raise their own parse error
        detail = " ".join(str(exc).split())  # YAML's messages span lines; one error, one line
        raise ConfigError(f"cannot parse: {detail}", file=str(path)) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"expected a table/mapping at the top level, got {got}", file=str(path))
    return data


def load_config(source: str | Path | Mapping[str, Any]) -> Config:
    """Load and validate a config from a file path or a mapping; raises ``ConfigError``."""
    if isinstance(source, Mapping):
        return parse_config(source)
    return parse_config(read_config_file(source), source=str(source))


def config_schema() -> dict[str, Any]:
    return Config.model_json_schema()
