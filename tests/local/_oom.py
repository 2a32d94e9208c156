"""Test-only out-of-memory injection for the local provider (not shipped).

:class:`OomInjectingProvider` is the shipped :class:`DiffusersLocalProvider` plus one option, ``oom_inject``: a
real ``torch.OutOfMemoryError`` is raised from inside the denoiser's forward pass at the named ladder rungs, so
the memory ladder runs on the real engine without needing a small GPU. Register it under ``local`` (see
:func:`registered_as_local`) to reach it through the runner and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from image_gen.providers import register_provider
from image_gen.providers.base import NotConfigured, ProviderSettings
from image_gen.providers.diffusers_local import DiffusersLocalProvider, LadderStep


class OomInjection(BaseModel):
    """Raise an out-of-memory error from inside the denoiser at these rungs."""

    model_config = ConfigDict(extra="forbid")

    steps: list[LadderStep] = Field(description="Ladder rungs at which a forward pass runs out of memory")
    batch_above: int = Field(default=0, ge=0, description="Only when a forward pass carries more than this many images")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"steps": v} if isinstance(v, list | tuple) else v


class OomInjectingProvider(DiffusersLocalProvider):
    """The local provider with an ``oom_inject`` option (a list of rungs, or ``{steps, batch_above}``)."""

    def __init__(self, settings: ProviderSettings | None = None) -> None:
        settings = settings or ProviderSettings()
        options = dict(settings.options or {})
        raw = options.pop("oom_inject", None)
        try:
            self.oom_inject = None if raw is None else OomInjection.model_validate(raw)
        except ValidationError as exc:
            raise NotConfigured(f"invalid oom_inject: {exc}") from exc
        super().__init__(replace(settings, options=options))

    def _before_forward(self, step: str) -> Any:
        inj = self.oom_inject
        if inj is None or step not in inj.steps:
            return None

        def hook(plan: Any, batch: int) -> None:
            import torch

            if batch > inj.batch_above:
                raise torch.OutOfMemoryError(
                    f"CUDA out of memory (injected by the test at {step}: {plan}, {batch} image(s) per forward)"
                )

        return hook


@contextmanager
def registered_as_local() -> Iterator[None]:
    """Route the ``local`` provider name to :class:`OomInjectingProvider` while the block runs."""
    register_provider("local", OomInjectingProvider)
    try:
        yield
    finally:
        register_provider("local", None)
