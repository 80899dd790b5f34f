"""The ``nae`` command line. Each command parses arguments, calls one library function and
prints a summary; heavy imports happen inside the commands so ``nae serve`` needs no torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from training.errors import NaeError

app = typer.Typer(
    help="Normalized-autoencoder anomaly trigger: generate data, train, export and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Generate, convert and inspect data shards.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_state = {"debug": False}


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def serve(
    models: Annotated[
        Path, typer.Option("--models", help="Directory of bundles: models/<name>/<version>/.")
    ] = Path("models"),
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to bind.")] = 8000,
) -> None:
    """Start the scoring service (FastAPI + ONNX Runtime) on the bundles under --models."""
    raise NaeError("the scoring service is not implemented yet")


def main() -> None:
    """Entry point: a ``NaeError`` becomes one line on stderr and exit code 1 (``--debug``
    keeps the traceback); usage errors keep click's message and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except NaeError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
