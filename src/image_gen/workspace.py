"""A workspace: a folder with ``image-gen.toml`` and ``.image-gen/`` (registry database, artifacts, settings, log).

Which registry a command uses, first match wins: ``--registry-url`` (or an explicit ``registry_url`` argument),
``IMAGE_GEN_REGISTRY_URL``, a config's ``registry_url`` (a run's config), the workspace's settings file
``.image-gen/settings.json`` (written by the run that chose a registry), else SQLite in ``.image-gen/registry.db``.
So after a run on PostgreSQL, ``runs``, ``approve``, ``resume`` and ``report`` in that workspace find it.

Where artifacts are stored is chosen the same way: ``--artifacts-url`` (or an ``artifacts_url`` argument),
``IMAGE_GEN_ARTIFACTS_URL``, a config's ``artifacts_url``, the settings file, else the workspace's own folder
``.image-gen/artifacts`` (``file://<workspace>/.image-gen/artifacts``). The settings file never holds an object
store's credentials: they come from the environment (``AWS_ACCESS_KEY_ID``, ...).
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
    artifacts_url: str | None = None
    """Where artifacts are stored (an fsspec URL); None: the workspace's folder ``.image-gen/artifacts``."""
    artifacts_source: str | None = None
    remember_artifacts: bool = False
    _registry: Registry | None = field(default=None, repr=False)
    _artifacts: ArtifactStore | None = field(default=None, repr=False)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None, registry_url: str | None = None, *,
                config_url: str | None = None, config_file: str | None = None, artifacts_url: str | None = None,
                config_artifacts_url: str | None = None) -> Workspace:
        """The workspace at ``path`` with its registry and artifact store chosen (see the module's docstring); an
        unusable artifacts URL is bad input naming where it came from, before anything is written."""
        root = Path(path or os.environ.get("IMAGE_GEN_HOME") or ".").resolve()
        ws = cls(root)
        ws._choose_artifacts(artifacts_url, config_artifacts_url, config_file)
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

    def _choose_artifacts(self, flag: str | None, config_url: str | None, config_file: str | None) -> None:
        from image_gen.errors import InputError
        from image_gen.store.artifacts import check_artifacts_url

        env = os.environ.get("IMAGE_GEN_ARTIFACTS_URL")
        saved = self._saved("artifacts_url")
        if flag:
            url, source = flag, "--artifacts-url"
        elif env:
            url, source = env, "IMAGE_GEN_ARTIFACTS_URL"
        elif config_url:
            url, source = config_url, f"{config_file}: artifacts_url" if config_file else "artifacts_url"
            self.remember_artifacts = True
        elif saved:
            url, source = saved, f"{self.state_dir / SETTINGS}: artifacts_url"
        else:
            return
        try:
            self.artifacts_url = check_artifacts_url(url)
        except ValueError as exc:
            from image_gen.store.artifacts import redact_artifacts_url

            raise InputError(f"{exc} (got {redact_artifacts_url(url)!r})", field=source) from None
        self.artifacts_source = source

    def adopt_artifacts_url(self, url: str, source: str) -> bool:
        """Use ``url`` for artifacts when nothing chose a store and none is open yet (a run's recorded URL)."""
        from image_gen.store.artifacts import check_artifacts_url

        if self.artifacts_url or self._artifacts is not None:
            return False
        try:
            self.artifacts_url = check_artifacts_url(url)
        except ValueError:
            return False
        self.artifacts_source = source
        return True

    def _settings(self) -> dict[str, object]:
        p = self.state_dir / SETTINGS
        if not p.is_file():
            return {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _saved(self, key: str) -> str | None:
        url = self._settings().get(key)
        return url if isinstance(url, str) and url else None

    def saved_registry_url(self) -> str | None:
        return self._saved("registry_url")

    def _remember(self, key: str, value: str) -> None:
        """Record ``key = value`` in the settings file (other keys kept), written atomically, owner-only."""
        data = self._settings()
        if data.get(key) == value:
            return
        data[key] = value
        self.state_dir.mkdir(parents=True, exist_ok=True)
        p = self.state_dir / SETTINGS
        tmp = p.with_name(f".{SETTINGS}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a database password
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, p)

    def _remember_registry(self) -> None:
        if self.remember and self.registry_url:
            self._remember("registry_url", self.registry_url)

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

    @property
    def artifacts_dir(self) -> Path:
        """The workspace's own artifact folder (the default store; read as a fallback when another is chosen)."""
        return self.state_dir / "artifacts"

    def artifacts(self) -> ArtifactStore:
        """The artifact store (opened once per workspace object): ``artifacts_url``, else the workspace's folder.
        A store elsewhere falls back to the workspace's folder for artifacts recorded before it was chosen."""
        if self._artifacts is None:
            from image_gen.store.artifacts import ArtifactStore, strip_credentials

            local = ArtifactStore(self.artifacts_dir, relative_to=self.root)
            if not self.artifacts_url:
                self._artifacts = local
            else:
                store = ArtifactStore(self.artifacts_url, relative_to=self.root, source=self.artifacts_source,
                                      cache_dir=self.state_dir / "cache" / "artifacts")
                if store.root != local.root and self.artifacts_dir.is_dir():
                    store.fallback = local
                if self.remember_artifacts:
                    self._remember("artifacts_url", strip_credentials(self.artifacts_url))
                self._artifacts = store
        return self._artifacts

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
