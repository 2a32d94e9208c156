"""Errors of the library above the providers. Each maps to a CLI exit code: 2 for bad input, 1 for failed work."""

from __future__ import annotations


class ImageGenError(Exception):
    exit_code = 1


class InputError(ImageGenError):
    """Bad input: a config, prompt file, image or flag. Nothing was changed."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.file = file
        self.field = field
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(InputError):
    """A config file that does not validate."""


class WorkFailed(ImageGenError):
    """A run or call failed for a recorded reason."""


class BudgetExceeded(WorkFailed):
    """The next call would pass a budget cap; it was not made."""


class RunNotFound(InputError):
    pass


class RunsInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during runs: each live run was marked ``interrupted``; ``image-gen resume RUN`` finishes it."""

    def __init__(self, run_ids: list[str]) -> None:
        super().__init__(", ".join(run_ids))
        self.run_ids = list(run_ids)
