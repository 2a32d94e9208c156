"""The ``image-gen`` command: a thin shell over the library. One module per command group.

Commands are listed in ``COMMANDS`` as ``name -> "module:attribute"`` and imported only when used, so
``image-gen --help`` stays fast. ``generate`` is the default command: options given without a command go to it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import click

from image_gen.cli._common import group_global_options

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:attribute", one-line help shown by --help without importing the module)
    "generate": ("image_gen.cli.generate_cmd:generate", "Render prompts with one model (the default command)."),
    "run": ("image_gen.cli.run_cmd:run", "Run a pipeline config on one or more briefs."),
    "approve": ("image_gen.cli.run_cmd:approve", "Approve a gated stage and continue the run."),
    "reject": ("image_gen.cli.run_cmd:reject", "Reject a run waiting at a gate."),
    "cancel": ("image_gen.cli.run_cmd:cancel", "Stop a run for good (a live process stops before its next call)."),
    "resume": ("image_gen.cli.run_cmd:resume", "Finish an interrupted run without repeating finished stages."),
    "batch": ("image_gen.cli.batch_cmd:batch", "Submit a prompt file as a batch; status, list, cancel, resume."),
    "runs": ("image_gen.cli.runs_cmd:runs", "List, show, search and compare recorded runs."),
    "models": ("image_gen.cli.models_cmd:models", "List the model catalog."),
    "config": ("image_gen.cli.config_cmd:config", "Check a config file or print its JSON Schema."),
    "providers": ("image_gen.cli.providers_cmd:providers", "Say which providers are configured (never a key)."),
    "finish": ("image_gen.cli.finish_cmd:finish", "Run a finishing config (upscale, adapters, QA) on an image."),
    "upscale": ("image_gen.cli.finish_cmd:upscale", "Upscale an image 2x/4x in blended tiles through a model."),
    "deliver": ("image_gen.cli.deliver_cmd:deliver", "Channel renditions of a run: crop, format, byte budget, "
                "provenance, QA."),
    "qa": ("image_gen.cli.qa_cmd:qa", "Check image files: label text (OCR), softness, size; exit 1 on a fail."),
    "export": ("image_gen.cli.export_cmd:export", "Export runs or batches: a zip (manifest, contact sheet) or MLflow."),
    "report": ("image_gen.cli.report_cmd:report", "Compare two pipelines on the same briefs: Markdown/HTML report."),
    "keys": ("image_gen.cli.keys_cmd:keys", "Store API keys in the user's keys file (0600); list names, never values."),
    "serve": ("image_gen.cli.serve_cmd:serve", "Open the review studio (web): browse, approve, re-run, compare."),
}

# options of the group itself, accepted before the command name as well as after it
_GLOBAL_FLAGS = ("--json",)
_GLOBAL_VALUED = ("--workspace", "--registry-url", "--artifacts-url")


def _first_command_index(args: list[str]) -> int:
    """Index of the first argument that is not a global option (or its value)."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in _GLOBAL_FLAGS or any(a.startswith(v + "=") for v in _GLOBAL_VALUED):
            i += 1
        elif a in _GLOBAL_VALUED:
            i += 2
        else:
            break
    return i


class ImageGenGroup(click.Group):
    """A group whose commands load lazily and whose default command is ``generate``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if ctx.resilient_parsing or ctx.meta.get("image_gen.listing"):
            # Listing help: show the short help without importing the command module.
            return click.Command(cmd_name, help=COMMANDS[cmd_name][1], short_help=COMMANDS[cmd_name][1])
        module, _, attr = COMMANDS[cmd_name][0].partition(":")
        cmd: click.Command = getattr(import_module(module), attr)
        return cmd

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # the group's own help lists the commands without importing them
        i = _first_command_index(args)
        rest = args[i:]
        ctx.meta["image_gen.listing"] = not rest or rest[0] in ("--help", "-h")
        if rest and rest[0] not in COMMANDS and rest[0].startswith("-") and rest[0] not in ("--help", "-h",
                                                                                             "--version"):
            args = [*args[:i], "generate", *rest]
        return super().parse_args(ctx, args)


@click.group(cls=ImageGenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="image-gen")
@group_global_options
def cli(**_globals: Any) -> None:
    """image-gen: staged, QA-checked, budgeted image generation with an experiment registry.

    --workspace, --registry-url, --artifacts-url and --json are accepted by every command, before or after its
    name.
    Exit codes: 0 ok, 1 failed work, 2 bad input, 130 interrupted (Ctrl-C; finish with `image-gen resume RUN`).
    """


def main(argv: list[str] | None = None) -> Any:
    from image_gen.cli._common import run_cli

    return run_cli(cli, argv)
