"""``ckmodel exposure``: each subject's model-based exposure from a saved fit.

Options are checked before the fit is read, the analytes and metrics against the fit's model
before any solve, and every output is written atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ckmodel.cli.common import (
    app,
    bad_option,
    check_analytes_and_metrics,
    console,
    fail,
    load_fit_file,
    say,
    shown_warnings,
)
from ckmodel.cli.diagnostics_commands import FitArg
from ckmodel.errors import CKModelError


@app.command()
def exposure(
    fit_file: FitArg,
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Table (CSV): ID, ANALYTE, METRIC, UNIT, MEDIAN, LOWER, UPPER")
    ] = Path("exposure.csv"),
    netcdf: Annotated[Path | None, typer.Option(
        "--nc", help="Also write the posterior draws (NetCDF; chain, draw, subject)")] = None,
    analyte: Annotated[list[str] | None, typer.Option(
        "--analyte", help="Model output to summarise (repeat; default all, marrow included)")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="CMAX, TMAX, AUC0_28, AUC0_84 or T_ABOVE_LLOQ (repeat; default all)")
    ] = None,
    n_draws: Annotated[int, typer.Option(
        "--n-draws", min=1, help="About this many posterior draws (the same of every chain)")
    ] = 200,
    level: Annotated[float, typer.Option("--level", help="Interval level")] = 0.95,
    nca_csv: Annotated[Path | None, typer.Option(
        "--compare-nca", help="Also write model-based against NCA exposure per subject (CSV)")
    ] = None,
) -> None:
    """Model-based exposure per subject: Cmax, Tmax, AUC0-28d, AUC0-84d, time above LLOQ."""
    from ckmodel.exposure import (
        compare_with_nca,
        exposure_draws,
        exposure_table,
    )
    from ckmodel.files import atomic_write

    if output.suffix.lower() != ".csv":
        bad_option("--output", f"{output.name}: the exposure table is a .csv file")
    if nca_csv is not None and nca_csv.suffix.lower() != ".csv":
        bad_option("--compare-nca", f"{nca_csv.name}: the comparison is a .csv file")
    if netcdf is not None and netcdf.suffix.lower() != ".nc":
        bad_option("--nc", f"{netcdf.name}: the draws are written as NetCDF (.nc)")
    if not 0.0 < level < 1.0:
        bad_option("--level", f"{level:g} must be between 0 and 1 (e.g. 0.95)")
    fit = load_fit_file(fit_file)
    if fit.data is None:
        fail("this fit holds no data: exposure needs each subject's dosing history")
    check_analytes_and_metrics(fit, analyte, metric)
    t0 = time.perf_counter()
    try:
        with shown_warnings():
            ds = exposure_draws(fit, analytes=analyte or None, metrics=metric or None,
                                n_draws=n_draws)
            table = exposure_table(ds, level=level)
            compared = compare_with_nca(fit, ds) if nca_csv is not None else None
    except (CKModelError, ValueError) as exc:
        fail(exc)
    atomic_write(output, lambda p: table.to_csv(p, index=False, float_format="%.6g"))
    if netcdf is not None:
        atomic_write(netcdf, lambda p: ds.to_netcdf(p))
    if compared is not None:
        atomic_write(nca_csv, lambda p: compared.to_csv(p, index=False, float_format="%.6g"))
    pct = f"{100 * level:g}"
    out = Table(title=f"Model-based exposure: median across subjects of the posterior "
                      f"medians ({ds.attrs['n_draws']} draws)")
    for col in ("analyte", "metric", "unit", "subjects", "median", "range"):
        out.add_column(col)
    for (a, m, u), g in table.groupby(["ANALYTE", "METRIC", "UNIT"], sort=False):
        out.add_row(a, m, u, str(len(g)), f"{g['MEDIAN'].median():.4g}",
                    f"{g['MEDIAN'].min():.3g} - {g['MEDIAN'].max():.3g}")
    console.print(out)
    for note in str(ds.attrs.get("notes", "")).split("; "):
        if note:
            say(f"note: {note}")
    say(f"{len(table)} rows (median, {pct}% interval per subject and metric) in "
        f"{time.perf_counter() - t0:.1f} s -> {output}"
        + (f"; draws -> {netcdf}" if netcdf else "")
        + (f"; NCA comparison -> {nca_csv}" if nca_csv else ""))
