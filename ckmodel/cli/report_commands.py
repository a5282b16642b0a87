"""``ckmodel report``: the scripted posterior report of a saved fit (HTML or Markdown).

Every option is checked before the fit is read, the stratification column and the outcomes
file before any simulation, and the report is written atomically (a failed run leaves no
file, and no figure folder for Markdown).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ckmodel.cli.common import (
    MapOpt,
    app,
    bad_option,
    check_file,
    column_map,
    err_console,
    fail,
    load_fit_file,
    say,
    shown_warnings,
)
from ckmodel.cli.diagnostics_commands import FitArg, SeedOpt, parse_bins
from ckmodel.errors import CKModelError

FORMATS = ("html", "md")


def _format(output: Path, fmt: str | None) -> str:
    from ckmodel.report import REPORT_FORMATS

    if fmt is not None:
        if fmt not in FORMATS:
            bad_option("--format", f"{fmt!r}: use html or md")
        if REPORT_FORMATS.get(output.suffix.lower()) != fmt:
            want = ".md" if fmt == "md" else ".html"
            bad_option("--output", f"{output.name}: a {fmt} report is written to a {want} file")
        return fmt
    found = REPORT_FORMATS.get(output.suffix.lower())
    if found is None:
        bad_option("--output", f"{output.name}: the report is a .html file (or .md with "
                               "--format md)")
    return found


def _outcomes(path: Path | None, cmap: str | None, fit: Any) -> Any:
    if path is None:
        return None
    from ckmodel.data import read_outcomes
    from ckmodel.errors import DatasetError

    try:
        with shown_warnings():
            table = read_outcomes(path, column_map=column_map(cmap))
    except (DatasetError, ValueError) as exc:
        fail(exc)
    ids = {str(s) for s in fit.data.subjects}
    if not ids & set(table.index.astype(str)):
        bad_option("--outcomes", f"{path}: none of its IDs is a subject of the fit "
                                 f"(fit subjects e.g. {', '.join(sorted(ids)[:3])})")
    return table


@app.command()
def report(
    fit_file: FitArg,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Report file: .html (one self-contained file) or .md (figures "
                               "in <name>_files/ beside it)")] = Path("report.html"),
    fmt: Annotated[str | None, typer.Option(
        "--format", help="html or md (default from the suffix of --output)")] = None,
    stratify: Annotated[str | None, typer.Option(
        "--stratify", metavar="COLUMN",
        help="Subject column splitting NCA, VPC and endpoints (default DOSE_LEVEL, else "
             "DOSE, when it varies; 'none' pools everyone)")] = None,
    bins: Annotated[str | None, typer.Option(
        "--bins", metavar="K|EDGES",
        help="VPC bins: a number of quantile bins, or comma-separated edges in the model's "
             "time unit; default one bin per nominal time")] = None,
    n_sim: Annotated[int, typer.Option(
        "--n-sim", min=20, help="Replicates of the trial (new subjects) for NPDE and VPC")
    ] = 200,
    outcomes: Annotated[Path | None, typer.Option(
        "--outcomes", help="Outcomes CSV for the endpoints section (default: the outcomes "
                           "saved with the fit's data, if any)")] = None,
    column_map_value: MapOpt = None,
    exposure: Annotated[bool, typer.Option(
        "--exposure/--no-exposure", help="Add the model-based exposure section (Cmax, AUC0-28d "
                                        "... per subject, against NCA)")] = False,
    er: Annotated[list[Path] | None, typer.Option(
        "--er", help="Exposure-response fit written by 'ckmodel response' (repeat)")] = None,
    selection: Annotated[Path | None, typer.Option(
        "--selection", help="Dose selection saved by 'ckmodel select --nc' (its section: "
                            "table, decision, figure)")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Report title")] = None,
    seed: SeedOpt = 1,
    draw_workers: Annotated[int | None, typer.Option(
        "--draw-workers", min=1, help="Processes that draw the figures while the report is "
                                     "built (default 2 on a multi-core machine; 1: draw them "
                                     "here). The file is the same either way")] = None,
) -> None:
    """Posterior report of a saved fit: verdict, data, NCA, model, estimates, GOF, VPC, fits."""
    from ckmodel.report import resolve_stratify, write_report

    kind = _format(output, fmt)
    edges = parse_bins(bins)
    if outcomes is not None:
        check_file(outcomes, "--outcomes")
    fit = load_fit_file(fit_file)
    if fit.data is None:
        fail("this fit holds no data; a report needs the data it was fitted to")
    strat: str | None = "auto" if stratify is None else (
        None if stratify.lower() == "none" else stratify)
    try:
        resolve_stratify(fit, strat)
    except ValueError as exc:
        bad_option("--stratify", str(exc).removeprefix("stratify: "))
    table = _outcomes(outcomes, column_map_value, fit)
    responses = []
    for path in er or []:
        from ckmodel.response.models import load_response

        check_file(path, "--er")
        try:
            responses.append(load_response(path))
        except (OSError, ValueError) as exc:
            bad_option("--er", str(exc))
    chosen = None
    if selection is not None:
        from ckmodel.select import load_selection

        check_file(selection, "--selection")
        try:
            chosen = load_selection(selection)
        except (OSError, ValueError, KeyError) as exc:
            bad_option("--selection", f"{selection}: {exc}")

    import matplotlib

    matplotlib.use("Agg")
    t0 = time.perf_counter()

    def progress(name: str) -> None:
        err_console.print(f"report: {name} ({time.perf_counter() - t0:.0f} s)")

    try:
        with shown_warnings():
            draws = None
            if exposure:
                from ckmodel.exposure import exposure_draws

                progress("model-based exposure")
                draws = exposure_draws(fit)
            path = write_report(fit, output, format=kind, seed=seed, n_sim=n_sim, bins=edges,
                                outcomes=table, exposure=draws, responses=responses,
                                selection=chosen, stratify=strat, title=title, progress=progress,
                                workers=draw_workers)
    except (CKModelError, ValueError, KeyError) as exc:
        fail(exc)
    size = path.stat().st_size / 1e6
    extra = f" (figures in {path.stem}_files/)" if kind == "md" else ""
    say(f"report: {path} ({size:.1f} MB{extra}) in {time.perf_counter() - t0:.0f} s")
