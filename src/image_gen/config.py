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
from image_gen.errors import ConfigError

STAGED = "staged-selection"
LARGEST = "largest-available"
_RATIO = re.compile(r"^\d+:\d+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QASettings(_Strict):
    """Automatic QA thresholds for a stage's output. Defaults are calibrated (see README)."""

    enabled: bool = Field(default=True, description="Run QA on this stage's output")
    text_min_similarity: float | None = Field(
        default=None, ge=0, le=1,
        description="Minimum normalised edit similarity (1 - Levenshtein / longer length) per expected label "
        "string; None uses the calibrated threshold (qa/thresholds.json)",
    )
    sharpness_min: float | None = Field(
        default=None, ge=0, description="Minimum sharpness score; None uses the calibrated threshold"
    )
    check_text: bool = Field(default=True, description="Check the prompt's quoted label text by OCR")
    check_sharpness: bool = Field(default=True, description="Check for soft focus")
    check_size: bool = Field(default=True, description="Check the delivered size against the asked size")


class StageSettings(_Strict):
    """Settings of one stage. Every field may also be set under ``[pipeline]`` as a default for all stages."""

    model: str | None = Field(default=None, description="Catalog id or alias, sim:<id>, local:<repo>")
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

    @field_validator("aspect_ratio")
    @classmethod
    def _ratio(cls, v: str | None) -> str | None:
        if v is not None and not _RATIO.match(v):
            raise ValueError("expected W:H such as 16:9")
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
            raise ValueError("overlap must be less than half of tile_size")
        return self


class PipelineSettings(StageSettings):
    """``[pipeline]``: which model(s) and defaults shared by every stage."""

    model: str | None = Field(
        default=STAGED, description="staged-selection, largest-available, or a model id for a single stage"
    )
    stages: list[str] = Field(default_factory=list, description='["name:model", ...] in order')


class BudgetSettings(_Strict):
    per_run_usd: float | None = Field(default=None, ge=0, description="Cap on one run's spend")
    per_day_usd: float | None = Field(default=None, ge=0, description="Cap on the workspace's spend per UTC day")


class ProviderConfig(_Strict):
    base_url: str | None = None
    timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    max_concurrency: int = Field(default=4, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class SimSettings(_Strict):
    """The offline simulator's knobs; defect rates default to each model's catalog figures."""

    latency_scale: float = Field(default=0.0, ge=0, le=1, description="Fraction of the simulated latency to wait")
    soft_rate: float | None = Field(default=None, ge=0, le=1)
    typo_rate: float | None = Field(default=None, ge=0, le=1)
    fail_rate: float | None = Field(default=None, ge=0, le=1)


class RetrySettings(_Strict):
    """Backoff between retries of transient errors and rate limits (exponential with jitter)."""

    initial_s: float = Field(default=1.0, ge=0, description="First backoff, seconds")
    max_s: float = Field(default=30.0, ge=0, description="Longest backoff, seconds")
    max_retry_after_s: float = Field(default=120.0, ge=0, description="Longest Retry-After honoured, seconds")


class ModelOverride(_Strict):
    provider: str | None = None
    vendor_model: str | None = None
    aliases: list[str] | None = None
    capabilities: list[Literal["txt2img", "img2img", "upscale", "typography"]] | None = None
    price_per_image: float | None = Field(default=None, ge=0)
    price_per_megapixel: float | None = Field(default=None, ge=0)
    price_read_on: str | None = None
    latency_s: float | None = Field(default=None, ge=0)
    default_steps: int | None = None
    native_megapixels: float | None = None
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


class Config(_Strict):
    """The whole config file."""

    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    stage: dict[str, StageSettings] = Field(default_factory=dict, description="Per-stage settings by stage name")
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    models: dict[str, ModelOverride] = Field(default_factory=dict, description="Catalog additions and overrides")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    sim: SimSettings = Field(default_factory=SimSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    simulate: bool = Field(default=False, description="Run every stage on its simulated twin")
    on_retired: Literal["fail", "successor"] = Field(
        default="fail", description="A retired model: fail naming the successor, or run the successor"
    )
    registry_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in the workspace")
    concurrency: int = Field(default=1, ge=1, le=64, description="Briefs run at once (threads)")
    name: str | None = Field(default=None, description="Pipeline name shown in reports")

    @model_validator(mode="after")
    def _stages(self) -> Config:
        names = []
        for i, spec in enumerate(self.pipeline.stages):
            name, _, model = spec.partition(":")
            name, model = name.strip(), model.strip()
            if not name:
                raise ValueError(f"pipeline.stages[{i}]: expected 'name:model', got {spec!r}")
            if name in names:
                raise ValueError(f"pipeline.stages[{i}]: stage {name!r} is listed twice")
            names.append(name)
            if not model and not (self.stage.get(name) and self.stage[name].model):
                raise ValueError(f"pipeline.stages[{i}]: stage {name!r} has no model")
        for name, st in self.stage.items():
            if self.pipeline.stages and name not in names:
                raise ValueError(f"stage.{name}: no stage named {name!r} in pipeline.stages ({', '.join(names)})")
            if not self.pipeline.stages and self.pipeline.model == STAGED and not st.model:
                raise ValueError(f"stage.{name}: stage has no model")
        if self.pipeline.model == STAGED and not self.pipeline.stages and not self.stage:
            raise ValueError("pipeline.stages: staged-selection needs at least one stage")
        return self

    def stage_specs(self) -> list[tuple[str, StageSettings]]:
        """The stages in order, each with its settings merged over the pipeline defaults."""
        defaults = self.pipeline.model_dump(exclude={"model", "stages"}, exclude_none=True)
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


def _normalise(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Turn the flat per-stage form ({"model": ..., "steps": ...}) into the full schema."""
    data = dict(raw)
    if "pipeline" not in data and "stage" not in data and "model" in data:
        stage_keys = {k: v for k, v in data.items() if k in STAGE_FIELDS}
        rest = {k: v for k, v in data.items() if k not in STAGE_FIELDS}
        name = rest.pop("stage_name", None) or ("final" if "upscale" in stage_keys or "adapters" in stage_keys
                                               else "main")
        return {**rest, "pipeline": {"model": stage_keys["model"]}, "stage": {name: stage_keys}}
    return data


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (not in the schema; check the spelling)"
        inp = err.get("input")
        got = f" (got {inp!r})" if err["type"] != "extra_forbidden" and not isinstance(inp, dict | list) else ""
        parts.append(f"{loc}: {msg}{got}" if loc else f"{msg}{got}")
    return "; ".join(parts)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    try:
        cfg = Config.model_validate(_normalise(data))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), file=source) from None
    _check_models(cfg, source)
    return cfg


def _check_models(cfg: Config, source: str) -> None:
    from image_gen.catalog import Catalog, UnknownModel

    try:
        catalog = Catalog.load({k: v.model_dump(exclude_none=True) for k, v in cfg.models.items()})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), file=source, field="models") from None
    for name, st in cfg.stage_specs():
        for fld in ("model", "escalate_to", "fallback_model"):
            value = getattr(st, fld)
            if value is None or value == LARGEST:
                continue
            try:
                catalog.resolve(value)
            except UnknownModel as exc:
                prefix = f"stage.{name}" if name in cfg.stage or cfg.pipeline.stages else "pipeline"
                raise ConfigError(str(exc), file=source, field=f"{prefix}.{fld}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", file=str(path))
    text = p.read_text(encoding="utf-8")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError("expected a .toml, .yaml, .yml or .json file", file=str(path))
    except ConfigError:
        raise
    except Exception as exc:  # tomllib, yaml and json each raise their own parse error
        raise ConfigError(f"cannot parse: {exc}", file=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a table/mapping at the top level", file=str(path))
    return data


def load_config(source: str | Path | Mapping[str, Any]) -> Config:
    """Load and validate a config from a file path or a mapping; raises ``ConfigError``."""
    if isinstance(source, Mapping):
        return parse_config(source)
    return parse_config(read_config_file(source), source=str(source))


def config_schema() -> dict[str, Any]:
    return Config.model_json_schema()
