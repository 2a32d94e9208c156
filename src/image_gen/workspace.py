"""A workspace: a folder with ``image-gen.toml`` and ``.image-gen/`` (registry database and artifacts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from image_gen.store.artifacts import ArtifactStore
    from image_gen.store.registry import Registry


@dataclass
class Workspace:
    root: Path
    registry_url: str | None = None
    _registry: Registry | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None, registry_url: str | None = None) -> Workspace:
        root = Path(path or os.environ.get("IMAGE_GEN_HOME") or ".").resolve()
        return cls(root, registry_url or os.environ.get("IMAGE_GEN_REGISTRY_URL"))

    @property
    def state_dir(self) -> Path:
        return self.root / ".image-gen"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "registry.db"

    def registry(self) -> Registry:
        if self._registry is None:
            from image_gen.store.registry import Registry

            if self.registry_url:
                self._registry = Registry(self.registry_url)
            else:
                self._registry = Registry.for_path(self.db_path)
        return self._registry

    def existing_registry(self) -> Registry:
        """The registry for read-only commands: bad input (exit 2), creating nothing, when there is none yet."""
        if self._registry is None and not self.registry_url and not self.db_path.is_file():
            from image_gen.errors import InputError

            raise InputError(f"no image-gen registry in {self.root} (run something there first)", field="--workspace")
        return self.registry()

    def artifacts(self) -> ArtifactStore:
        from image_gen.store.artifacts import ArtifactStore

        return ArtifactStore(self.state_dir / "artifacts")

    def default_config(self) -> Path | None:
        for name in ("image-gen.toml", "image-gen.yaml", "image-gen.yml", "image-gen.json"):
            p = self.root / name
            if p.is_file():
                return p
        return None

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None
