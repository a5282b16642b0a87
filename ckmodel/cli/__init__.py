"""The ``ckmodel`` command line: parse, call the public functions a notebook calls, print.

One module per group of commands: :mod:`~ckmodel.cli.data_commands` (check, nca),
:mod:`~ckmodel.cli.model_commands` (models, simulate), :mod:`~ckmodel.cli.fit_commands`
(fit, summary, demo); :mod:`~ckmodel.cli.common` holds the app, option types and printing.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ckmodel.cli import (  # noqa: F401 (commands)
    data_commands,
    design_commands,
    diagnostics_commands,
    er_commands,
    exposure_commands,
    fit_commands,
    model_commands,
    report_commands,
    response_commands,
    select_commands,
)
from ckmodel.cli.common import app, setup_logging
from ckmodel.errors import use_cli_hints

__all__ = ["app", "main"]


@app.callback()
def _main(verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                               help="More log output (-v info, -vv debug)")] = 1
          ) -> None:
    use_cli_hints()
    setup_logging(verbose)


def main() -> None:
    """Entry point of the ``ckmodel`` console script."""
    app()
