"""A workspace: a folder with ``image-gen.toml`` and ``.image-gen/`` (registry database, artifacts, settings, log).

Which registry a command uses, first match wins: ``--registry-url`` (or an explicit ``registry_url`` argument),
``IMAGE_GEN_REGISTRY_URL``, a config's ``registry_url`` (a run's config), the workspace's settings file
``.image-gen/settings.json`` (written by the run that chose a registry), else SQLite in ``.image-gen/registry.db``.
So after a run on PostgreSQL, ``runs``, ``approve``, ``resume`` and ``report`` in that workspace find it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from image_gen.store.artifacts import ArtifactStore
    from image_gen.store.registry import Registry

SETTINGS = "settings.json"
LOG_FILE = "image-gen.log"


@dataclass
class Workspace:
    root: Path
    registry_url: str | None = None
    registry_source: str | None = None
    """Where ``registry_url`` came from (a flag, the environment, a config, the settings file)."""
    remember: bool = False
    """Write ``registry_url`` to the settings file once the registry opened (a run's config chose it)."""
    _registry: Registry | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None, registry_url: str | None = None, *,
                config_url: str | None = None, config_file: str | None = None) -> Workspace:
        root = Path(path or os.environ.get("IMAGE_GEN_HOME") or ".").resolve()
        ws = cls(root)
        env = os.environ.get("IMAGE_GEN_REGISTRY_URL")
        if registry_url:
            ws.registry_url, ws.registry_source = registry_url, "--registry-url"
        elif env:
            ws.registry_url, ws.registry_source = env, "IMAGE_GEN_REGISTRY_URL"
        elif config_url:
            ws.registry_url, ws.registry_source = config_url, (f"{config_file}: registry_url" if config_file
                                                               else "registry_url")
            ws.remember = True
        else:
            saved = ws.saved_registry_url()
            if saved:
                ws.registry_url, ws.registry_source = saved, f"{ws.state_dir / SETTINGS}: registry_url"
        return ws

    @property
    def state_dir(self) -> Path:
        return self.root / ".image-gen"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "registry.db"

    def saved_registry_url(self) -> str | None:
        p = self.state_dir / SETTINGS
        if not p.is_file():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        url = data.get("registry_url") if isinstance(data, dict) else None
        return url if isinstance(url, str) and url else None

    def _remember_registry(self) -> None:
        if not (self.remember and self.registry_url) or self.saved_registry_url() == self.registry_url:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        p = self.state_dir / SETTINGS
        tmp = p.with_name(f".{SETTINGS}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a database password
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"registry_url": self.registry_url}, fh)
        os.replace(tmp, p)

    def registry(self) -> Registry:
        if self._registry is None:
            from image_gen.store.registry import Registry

            if self.registry_url:
                self._registry = Registry(self.registry_url, source=self.registry_source)
                self._remember_registry()
            else:
                self._registry = Registry.for_path(self.db_path)
        return self._registry

    def existing_registry(self) -> Registry:
        """The registry for read-only commands: bad input (exit 2), creating nothing, when there is none yet."""
        from image_gen.errors import InputError

        if not self.root.is_dir():
            raise InputError(f"no such workspace folder {self.root}", field="--workspace")
        if self._registry is None and not self.registry_url and not self.db_path.is_file():
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


def attach_log_file(ws: Workspace) -> Path:
    """Send image-gen's log records (tracebacks included) to ``.image-gen/image-gen.log`` in ``ws``."""
    path = ws.state_dir / LOG_FILE
    logger = logging.getLogger("image_gen")
    for h in logger.handlers:
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s "
                                           "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    return path
