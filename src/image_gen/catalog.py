"""The model catalog: every model image-gen knows, as data (``catalog.toml``), plus the user's additions."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Capability = Literal["txt2img", "img2img", "upscale", "typography", "large-format"]
CAPABILITIES: tuple[str, ...] = ("txt2img", "img2img", "upscale", "typography", "large-format")
CLASS_PREFIX = "class:"
"""``model = "class:<capability>"``: the runner picks a model of that capability class (``pipeline/routing.py``)."""

SIM_PREFIX = "sim:"
LOCAL_PREFIX = "local:"
SIZE_SLACK = 1.05
"""An output up to 5% over a priced size still counts as that size (rounding to the vendor's multiples)."""


class SizePrice(BaseModel):
    """One priced output size of a model billed by size: the largest output (megapixels) it covers and its price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The vendor's name for the size (Gemini's 1K/2K/4K) or a label (\"2MP\")")
    megapixels: float = Field(gt=0, description="The largest output this size covers, in megapixels")
    usd: float = Field(ge=0, description="USD per output image of this size")


HOSTED_PREFIXES = {"fal:": "fal", "replicate:": "replicate"}
"""Model ids served by a hosting platform, resolved without a catalog entry: ``fal:<endpoint id>`` and
``replicate:<owner>/<model>[:version]``. Their price comes from the user's ``[models."<id>"]`` entry."""


class ModelEntry(BaseModel):
    """One catalog entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Catalog id, e.g. ideogram-v2a")
    provider: str = Field(description="Provider that serves it: ideogram, google, stability, local, sim, ...")
    vendor_model: str = Field(description="The vendor's own model name")
    aliases: tuple[str, ...] = ()
    capabilities: tuple[Capability, ...] = ("txt2img",)
    price_per_image: float | None = Field(default=None, ge=0, description="USD per output image")
    price_per_megapixel: float | None = Field(default=None, ge=0, description="USD per output megapixel")
    size_prices: tuple[SizePrice, ...] = Field(
        default=(), description="Prices by output size, smallest first (wins over the flat prices when set)"
    )
    price_read_on: str | None = Field(default=None, description="Date the price was read (YYYY-MM-DD)")
    price_note: str | None = None
    latency_s: float = Field(default=5.0, ge=0, description="Typical latency per call, seconds")
    default_steps: int | None = None
    native_megapixels: float = 1.0
    aspect_ratios: tuple[str, ...] = ()
    fidelity: int = Field(default=50, ge=0, le=100, description="Rank used by largest-available")
    lifecycle: Literal["active", "retired"] = "active"
    retired_on: str | None = None
    successor: str | None = None
    version: str = "1"
    options: dict[str, Any] = Field(default_factory=dict)
    local_repo: str | None = None
    native_upscaler: str | None = Field(
        default=None, description="Catalog id of the upscaler used when no tiling is asked"
    )
    sim_soft_rate: float = Field(default=0.1, ge=0, le=1)
    sim_typo_rate: float = Field(default=0.1, ge=0, le=1)
    sim_fail_rate: float = Field(default=0.02, ge=0, le=1)

    @property
    def retired(self) -> bool:
        return self.lifecycle == "retired"

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def size_for(self, width: int | None, height: int | None) -> SizePrice | None:
        """The priced size an output of ``width`` x ``height`` falls in: the smallest covering it (within 5%), the
        largest when none does; None for a model not priced by size or an unknown size."""
        if not self.size_prices or not (width and height):
            return None
        mp = width * height / 1e6
        for size in sorted(self.size_prices, key=lambda s: s.megapixels):
            if mp <= size.megapixels * SIZE_SLACK:
                return size
        return max(self.size_prices, key=lambda s: s.megapixels)

    @property
    def priced(self) -> bool:
        return self.price_per_image is not None or self.price_per_megapixel is not None or bool(self.size_prices)

    def price_for(self, width: int | None, height: int | None, num_images: int = 1) -> float:
        """The catalog price of one call producing ``num_images`` images of the given size."""
        size = self.size_for(width, height)
        if size is not None:
            return round(size.usd * num_images, 6)
        if self.price_per_megapixel is not None and width and height:
            return round(self.price_per_megapixel * width * height / 1e6 * num_images, 6)
        return round((self.price_per_image or 0.0) * num_images, 6)


def hosted_fields(model_id: str) -> dict[str, Any] | None:
    """The catalog fields of a hosted model id (``fal:<endpoint>``, ``replicate:<owner>/<model>[:version]``), or
    None for any other id. No price: that comes from the user's config (``Catalog.load`` overrides)."""
    for prefix, provider in HOSTED_PREFIXES.items():
        if model_id.startswith(prefix):
            target = model_id[len(prefix) :]
            owner, _, rest = target.partition("/")
            if not owner or not rest or rest.startswith("/") or any(c.isspace() for c in target):
                return None
            return {
                "provider": provider,
                "vendor_model": target,
                "capabilities": ("txt2img", "img2img"),
                "latency_s": 10.0,
                "fidelity": 50,
            }
    return None


def missing_price(entry: ModelEntry) -> str | None:
    """For a hosted model with no price: the config field to set (``models."fal:...".price_per_image``)."""
    if entry.priced or hosted_fields(entry.id.removeprefix(SIM_PREFIX)) is None:
        return None
    return f'models."{entry.id.removeprefix(SIM_PREFIX)}".price_per_image'


class UnknownModel(KeyError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f"unknown model {name!r}{hint}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])


@cache
def _builtin_raw() -> dict[str, dict[str, Any]]:
    text = files("image_gen").joinpath("catalog.toml").read_text(encoding="utf-8")
    return dict(tomllib.loads(text)["models"])


class Catalog:
    """Lookup by id or alias; ``sim:<id>`` names the simulated twin, ``local:<repo or folder>`` a local model."""

    def __init__(self, entries: Mapping[str, ModelEntry]) -> None:
        self.entries = dict(entries)
        self._alias: dict[str, str] = {}
        for e in self.entries.values():
            self._alias[e.id.lower()] = e.id
            for a in e.aliases:
                self._alias[a.lower()] = e.id

    @classmethod
    def load(cls, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Catalog:
        raw = {k: dict(v) for k, v in _builtin_raw().items()}
        for mid, fields in (overrides or {}).items():
            base = raw.get(mid) or hosted_fields(mid) or {}
            given = {k: v for k, v in fields.items() if v is not None}
            merged = {**base, **given}
            if ("price_per_image" in given or "price_per_megapixel" in given) and "size_prices" not in given:
                merged.pop("size_prices", None)  # the user's flat price replaces the catalog's prices by size
            raw[mid] = merged
        entries = {mid: ModelEntry(id=mid, **{k: v for k, v in f.items() if k != "id"}) for mid, f in raw.items()}
        return cls(entries)

    def ids(self) -> list[str]:
        return sorted(self.entries)

    def names(self) -> list[str]:
        return sorted(self._alias)

    def resolve(self, name: str) -> ModelEntry:
        """Return the entry for an id, alias, ``sim:<id>`` or ``local:<repo>``."""
        if name.startswith(SIM_PREFIX):
            base = self.resolve(name[len(SIM_PREFIX) :])
            return self.simulated(base)
        if name.startswith(LOCAL_PREFIX):
            target = name[len(LOCAL_PREFIX) :]
            if not target:
                raise UnknownModel(name, self.names())
            return ModelEntry(
                id=name,
                provider="local",
                vendor_model=target,
                capabilities=("txt2img", "img2img"),
                price_per_image=None,
                latency_s=10.0,
                fidelity=50,
            )
        key = self._alias.get(name.lower())
        if key is None:
            fields = hosted_fields(name)
            if fields is None:
                raise UnknownModel(name, self.names())
            return ModelEntry(id=name, **fields)
        return self.entries[key]

    def simulated(self, entry: ModelEntry) -> ModelEntry:
        if entry.provider == "sim":
            return entry
        return entry.model_copy(update={"id": SIM_PREFIX + entry.id, "provider": "sim", "aliases": ()})

    def largest_available(self, available_providers: Iterable[str]) -> ModelEntry:
        """The highest-fidelity active text-to-image model whose provider is available."""
        avail = set(available_providers)
        candidates = [
            e
            for e in self.entries.values()
            if not e.retired and e.can("txt2img") and (e.provider in avail or "sim" in avail)
        ]
        if not candidates:
            raise UnknownModel("largest-available", [])
        return max(candidates, key=lambda e: (e.fidelity, e.price_per_image or 0.0))

    def of_class(self, capability: str) -> list[ModelEntry]:
        """The active models that render (txt2img or img2img) and have ``capability``, by id."""
        return sorted((e for e in self.entries.values()
                       if not e.retired and e.can(capability) and (e.can("txt2img") or e.can("img2img"))),
                      key=lambda e: e.id)

    def successor_of(self, entry: ModelEntry) -> ModelEntry | None:
        return self.resolve(entry.successor) if entry.successor else None
