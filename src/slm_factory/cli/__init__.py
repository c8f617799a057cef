"""The `slm-factory` command. Each module registers its commands on `app`; nothing heavy is
imported here, so `slm-factory --help` answers at once."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="slm-factory",
    help="Turn a folder of domain documents into a small language model that knows them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

from slm_factory.cli import dashboard, demo, export, project, review, stages, update, wizard  # noqa: E402,F401  (registers commands)


def main() -> None:
    app()
