"""`cotsearch export`, `report`, `dashboard`: reading a search's run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cotsearch.cli.app import (
    app,
    check_model_output,
    console,
    err_console,
)
from cotsearch.errors import CotsearchError
from cotsearch.files import check_writable, opens_with


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model file (.safetensors), or .yaml for the spec only")],
    trial: Annotated[Optional[str], typer.Option(help="trial number, or a confirmation run (confirm-N-sSEED, "
                                                      "ref-NAME-sSEED); default: the chosen trial")] = None,
):
    """Export a trial's spec and trained weights from a search."""
    from cotsearch.search.records import export_trial

    if output.suffix not in (".safetensors", ".yaml", ".yml"):
        raise CotsearchError(f"-o {output}: expected a .safetensors model file or a .yaml spec "
                             "(for ONNX, export the model file with `cotsearch export-onnx`)")
    if output.suffix == ".safetensors":
        check_model_output(output)
    else:
        from cotsearch.arch.load import is_written_spec

        check_writable(output, "-o", is_written_spec, "a spec file cotsearch wrote")

    record = export_trial(run_dir, trial, output)
    what = f"trial {record.trial} ({record.state}, val top-1 {record.val_top1:.2%})" if record and record.val_top1 is not None else f"trial {trial}"
    console.print(f"wrote {output}: {what}")



@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`, finished or still running")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="the HTML file (default: RUN_DIR/report.html); its PNGs go beside it")] = None,
):
    """Write a search's report: one self-contained HTML file (plots embedded) and its PNGs."""
    if output is not None:  # a report of ours is replaced: its title says so (as report/report.py writes it)
        check_writable(output, "-o", lambda page: opens_with(page, b"<title>cotsearch report: ", 200),
                       "a cotsearch report")
    import optuna

    from cotsearch.report.report import write_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console.print(f"wrote {write_report(run_dir, output)}")



@app.command()
def dashboard(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`, finished or still running")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="the port on 127.0.0.1")] = 8080,
):
    """Browse a search's study in optuna-dashboard, on 127.0.0.1 only (Ctrl-C stops it)."""
    from cotsearch.search.records import open_study, study_storage

    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise CotsearchError('optuna-dashboard is not installed: pip install -e ".[dashboard]"') from None
    open_study(run_dir, must_exist=True)
    err_console.print(f"optuna-dashboard for {run_dir}: http://127.0.0.1:{port}/dashboard/ (Ctrl-C stops it)")
    try:
        run_server(study_storage(run_dir), host="127.0.0.1", port=port)
    except OSError as e:
        raise CotsearchError(f"--port {port}: cannot serve on 127.0.0.1 ({e.strerror})") from None
