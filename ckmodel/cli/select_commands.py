"""``ckmodel select`` and ``ckmodel simulate --fit``: virtual patients and dose selection.

Options are checked before any file is read, the E-R models and covariates against the fit
before any simulation, and every output is written atomically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from ckmodel.cli.common import (
    app,
    bad_option,
    check_analytes_and_metrics,
    check_file,
    console,
    err_console,
    fail,
    load_fit_file,
    parse_assignments,
    parse_numbers,
    say,
    shown_warnings,
)
from ckmodel.cli.diagnostics_commands import FitArg
from ckmodel.errors import CKModelError

WorkersOpt = Annotated[int, typer.Option(
    "--workers", min=1, help="Local Dask workers (more than 1 starts a local cluster); "
                             "results do not depend on it")]
SchedulerOpt = Annotated[str | None, typer.Option(
    "--scheduler", metavar="ADDRESS", help="Dask scheduler to run on (tcp://host:8786)")]
CovariateOpt = Annotated[list[str] | None, typer.Option(
    "--covariate", metavar="NAME=VALUE",
    help="Give every virtual patient this covariate value (repeatable); default: each patient "
         "takes the covariates of a fitted subject drawn at random")]
PoolOpt = Annotated[Path | None, typer.Option(
    "--covariates-file", help="CSV of covariate rows (one per patient profile) to draw the "
                              "virtual patients' covariates from")]


def _increasing(value: str, option: str, *, what: str, example: str, positive: bool
                ) -> list[float]:
    out = []
    for part in value.split(","):
        try:
            v = float(part)
        except ValueError:
            bad_option(option, f"{part.strip()!r} is not a number (e.g. {example})")
        if not (v > 0 if positive else v >= 0):
            bad_option(option, f"{part.strip()}: {what} must be " +
                       ("positive" if positive else ">= 0 (since the dose)"))
        out.append(v)
    if any(b <= a for a, b in zip(out, out[1:], strict=False)):
        bad_option(option, f"the {what} must increase, got {value}")
    return out


def parse_doses(value: str, option: str = "--doses") -> list[float]:
    """``0.5,1,2,4`` -> increasing positive doses; refuses anything else naming ``option``."""
    return _increasing(value, option, what="doses", example="0.5,1,2,4,8", positive=True)


def parse_times(value: str, option: str = "--times") -> list[float]:
    """``7,14,28`` -> increasing times >= 0 since the dose."""
    return _increasing(value, option, what="times", example="7,14,28", positive=False)


def _covariate_pool(path: Path | None) -> Any:
    if path is None:
        return None
    import pandas as pd

    check_file(path, "--covariates-file")
    try:
        pool = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        fail(f"--covariates-file {path}: {exc}")
    if pool.empty:
        bad_option("--covariates-file", f"{path}: no rows")
    return pool.drop(columns=[c for c in ("ID",) if c in pool.columns])


def _patient_covariates(fit: Any, covariate: list[str] | None, pool_file: Path | None,
                        dose_covariate: str | None) -> Any:
    covs = parse_numbers(parse_assignments(covariate, "--covariate", "NUMBER"), "--covariate")
    if covs and pool_file is not None:
        bad_option("--covariate", "give either --covariate or --covariates-file, not both")
    pool = _covariate_pool(pool_file)
    known = set(fit.data.covariates.columns) if fit.data is not None else set()
    names = list(covs) + (list(pool.columns) if pool is not None else [])
    unknown = [c for c in names if c not in known]
    if unknown:
        opt = "--covariate" if covs else "--covariates-file"
        bad_option(opt, f"{', '.join(unknown)}: not a covariate of the fitted data "
                        f"({', '.join(sorted(known)) or 'none'})")
    if dose_covariate is not None:
        formulas = " ".join(fit.meta.get("covariate_formulas", []) or [])
        if dose_covariate not in formulas:
            bad_option("--dose-covariate", f"{dose_covariate} is not in the fit's covariate "
                       f"model ({formulas or 'no covariate effects'}): the dose already "
                       "enters as the amount infused")
    return pool if pool is not None else (covs or None)


def _progress_bar(total_label: str) -> tuple[Any, Any]:
    """A rich progress bar on a terminal (stderr), else nothing."""
    if not sys.stderr.isatty():
        return None, None
    bar = Progress(console=err_console, transient=True)
    task = bar.add_task(total_label, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def simulate_from_fit(fit_file: Path, *, doses: list[float], n_patients: int, n_draws: int,
                      seed: int, times: str | None, metric: list[str] | None,
                      analyte: list[str] | None, covariate: list[str] | None,
                      pool_file: Path | None, dose_covariate: str | None, residual: bool,
                      solver: str, workers: int, scheduler: str | None, output: Path,
                      csv: Path | None, dose_times: list[float] | None = None) -> None:
    """``ckmodel simulate --fit FIT``: virtual patients from the posterior to NetCDF (+ CSV)."""
    from ckmodel.files import atomic_write
    from ckmodel.virtual_patients import SOLVERS, simulate_patients

    if output.suffix.lower() != ".nc":
        bad_option("--output", f"{output.name}: virtual patients are written as NetCDF (.nc)")
    if csv is not None and csv.suffix.lower() != ".csv":
        bad_option("--csv", f"{csv.name}: the exposure summary is a .csv file")
    if solver not in SOLVERS:
        bad_option("--solver", f"{solver!r}: use one of {', '.join(SOLVERS)}")
    keep = None
    if times is not None:
        keep = parse_times(times) if times.strip() else None
    if residual and keep is None:
        bad_option("--residual", "observations are kept at --times: give --times too")
    fit = load_fit_file(fit_file)
    check_analytes_and_metrics(fit, analyte, metric)
    covs = _patient_covariates(fit, covariate, pool_file, dose_covariate)
    t0 = time.perf_counter()
    bar, update = _progress_bar("virtual patients")
    try:
        with shown_warnings():
            if bar is not None:
                bar.start()
            ds = simulate_patients(fit, doses, n_patients=n_patients, n_draws=n_draws,
                                   seed=seed, times=keep, metrics=metric or None,
                                   analytes=analyte or None, covariates=covs,
                                   dose_covariate=dose_covariate, dose_times=dose_times,
                                   residual=residual,
                                   solver=solver, workers=workers, scheduler=scheduler,
                                   progress=update)
    except (CKModelError, ValueError) as exc:
        fail(exc)
    finally:
        if bar is not None:
            bar.stop()
    atomic_write(output, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    n = len(doses) * ds.sizes["draw"] * ds.sizes["patient"]
    say(f"{ds.sizes['patient']} virtual patients x {ds.sizes['draw']} posterior draws x "
        f"{len(doses)} dose(s) of {fit.spec.name} ({n:,} solves, "
        f"{time.perf_counter() - t0:.1f} s) -> {output}")
    if csv is not None:
        table = exposure_by_dose(ds)
        atomic_write(csv, lambda p: table.to_csv(p, index=False, float_format="%.6g"))
        say(f"exposure per dose (patients x draws: 5th, 50th, 95th percentiles) -> {csv}")


def exposure_by_dose(ds: Any) -> Any:
    """Per dose and metric: unit and the 5th, 50th, 95th percentiles over patients and draws."""
    import numpy as np
    import pandas as pd

    rows = []
    for name, var in ds.data_vars.items():
        if var.dims != ("dose", "draw", "patient"):
            continue
        for k, dose in enumerate(ds["dose"].values):
            q = np.nanquantile(var.isel(dose=k).values, [0.05, 0.5, 0.95])
            rows.append({"DOSE": float(dose), "ANALYTE": var.attrs.get("analyte", ""),
                         "METRIC": var.attrs.get("metric", name), "UNIT": var.attrs.get("unit"),
                         "P05": q[0], "P50": q[1], "P95": q[2]})
    return pd.DataFrame(rows)


@app.command("select")
def select_command(
    fit_file: FitArg,
    er: Annotated[list[Path], typer.Option(
        "--er", help="Exposure-response fit from 'ckmodel response' (repeat: DLT, CRS3, CRc, "
                     "CRS_GRADE, EFS ...)")],
    doses: Annotated[str, typer.Option(
        "--doses", metavar="D1,D2,...", help="Candidate doses in the model's amount unit, "
                                              "increasing")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Per-dose table (CSV)")] = Path("select.csv"),
    target: Annotated[float, typer.Option(
        "--target", help="Target toxicity rate of the overdose control")] = 0.3,
    overdose_limit: Annotated[float, typer.Option(
        "--overdose-limit", help="Largest admissible P(toxicity rate > target) (EWOC)")] = 0.25,
    toxicity: Annotated[str, typer.Option(
        "--toxicity", help="Endpoint under overdose control (e.g. DLT, CRS3, CRS_GRADE_GE3) "
                           "or 'none'")] = "DLT",
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", metavar="ENDPOINT=W", help="Utility weight (repeatable); default +1 "
                                               "response, -1 toxicity")] = None,
    threshold: Annotated[list[str] | None, typer.Option(
        "--threshold", metavar="ENDPOINT=VALUE", help="Ordinal endpoints: P(grade >= VALUE) "
                       "(default 3 for CRS/ICANS grades); time to event: P(event by time "
                       "VALUE), data time unit (default the model's reference time)")] = None,
    n_patients: Annotated[int, typer.Option("--n-patients", min=1,
                                            help="Virtual patients per dose")] = 200,
    n_draws: Annotated[int, typer.Option("--n-draws", min=1,
                                         help="About this many posterior draws")] = 200,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed")] = 1,
    level: Annotated[float, typer.Option("--level", help="Credible level")] = 0.95,
    covariate: CovariateOpt = None,
    pool_file: PoolOpt = None,
    workers: WorkersOpt = 1,
    scheduler: SchedulerOpt = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Figure (PNG, PDF or SVG)")] = None,
    netcdf: Annotated[Path | None, typer.Option(
        "--nc", help="Also save the selection (draws, table, settings) for 'ckmodel report "
                     "--selection'")] = None,
) -> None:
    """Dose selection: per dose exposure, P(DLT), P(CRS >= 3), P(CRc), utility; EWOC dose."""
    from ckmodel.response import load_response
    from ckmodel.select import endpoint_label, select_dose

    dose_list = parse_doses(doses)
    if output.suffix.lower() != ".csv":
        bad_option("--output", f"{output.name}: the selection table is a .csv file")
    if netcdf is not None and netcdf.suffix.lower() != ".nc":
        bad_option("--nc", f"{netcdf.name}: the selection is saved as NetCDF (.nc)")
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        bad_option("--plot", f"{plot.name}: use a .png, .pdf or .svg file")
    for opt, v in (("--target", target), ("--overdose-limit", overdose_limit),
                   ("--level", level)):
        if not 0.0 < v < 1.0:
            bad_option(opt, f"{v:g} must be between 0 and 1")
    weights = parse_numbers(parse_assignments(weight, "--weight", "NUMBER"), "--weight")
    thresholds = parse_numbers(parse_assignments(threshold, "--threshold", "VALUE"),
                               "--threshold")
    for path in er:
        check_file(path, "--er")
    fit = load_fit_file(fit_file)
    ers = []
    for path in er:
        try:
            ers.append(load_response(path))
        except (OSError, ValueError, KeyError) as exc:
            bad_option("--er", f"{path}: not an exposure-response fit ({exc})")
    th = {k.upper(): v for k, v in thresholds.items()}
    labels = [endpoint_label(r, None if r.kind == "binary" else th.get(
        r.endpoint.upper(), 3.0 if r.endpoint.upper() in ("CRS_GRADE", "ICANS_GRADE")
        else None)) for r in ers]
    if len(set(labels)) != len(labels):
        bad_option("--er", f"two models of the same endpoint ({', '.join(labels)})")
    known = set(labels) | {r.endpoint.upper() for r in ers}
    for opt, given in (("--weight", weights), ("--threshold", thresholds)):
        bad = [k for k in given if k.upper() not in known]
        if bad:
            bad_option(opt, f"{', '.join(bad)}: no --er model of that endpoint "
                            f"({', '.join(labels)})")
    tox = None if toxicity.strip().lower() == "none" else toxicity.strip().upper()
    if tox is not None and tox not in labels:
        if toxicity == "DLT":
            say("no DLT model among --er: no overdose control (give --toxicity to choose one)",
                "yellow")
            tox = None
        else:
            bad_option("--toxicity", f"{toxicity} is none of the --er endpoints "
                                     f"({', '.join(labels)}), or 'none'")
    covs = _patient_covariates(fit, covariate, pool_file, None)
    t0 = time.perf_counter()
    bar, update = _progress_bar("virtual patients")
    try:
        with shown_warnings():
            if bar is not None:
                bar.start()
            sel = select_dose(fit, ers, dose_list, target=target, overdose_limit=overdose_limit,
                              toxicity=tox, weights=weights, thresholds=thresholds,
                              n_patients=n_patients, n_draws=n_draws, seed=seed, level=level,
                              covariates=covs, workers=workers, scheduler=scheduler,
                              progress=update)
    except (CKModelError, ValueError) as exc:
        fail(exc)
    finally:
        if bar is not None:
            bar.stop()
    sel.to_csv(output)
    _print_selection(sel)
    say(sel.summary())
    say(f"dose selection ({time.perf_counter() - t0:.1f} s) -> {output}")
    if netcdf is not None:
        sel.save(netcdf)
        say(f"selection saved -> {netcdf} (ckmodel report FIT --selection {netcdf})")
    if plot is not None:
        from ckmodel.files import atomic_write

        fig = sel.plot()
        atomic_write(plot, lambda p: fig.savefig(p, dpi=150, format=plot.suffix[1:]))
        say(f"figure -> {plot}")


def _print_selection(sel: Any) -> None:
    t = sel.table
    unit = sel.settings.get("amount_unit", "")
    table = Table(title=f"Dose selection (posterior mean, {sel.settings['level']:.0%} CrI)")
    table.add_column(f"dose ({unit})")
    labels = sel.settings["endpoints"]
    for lab in labels:
        table.add_column(f"P({lab})")
    extra = [c for c in ("P_OVERDOSE", "P_MTD") if c in t.columns]
    for c in extra:
        table.add_column(c)
    table.add_column("utility")
    table.add_column("P(best)")
    table.add_column("")
    for _, row in t.iterrows():
        cells = [f"{row['DOSE']:g}"]
        cells += [f"{row[f'P_{lab}']:.3f} ({row[f'P_{lab}_LOWER']:.3f}-"
                  f"{row[f'P_{lab}_UPPER']:.3f})" for lab in labels]
        cells += [f"{row[c]:.3f}" for c in extra]
        cells += [f"{row['UTILITY']:.3f}", f"{row['P_BEST']:.2f}"]
        mark = []
        if row.get("RECOMMENDED", 0) == 1:
            mark.append("overdose-controlled")
        if row.get("BEST", 0) == 1:
            mark.append("best utility")
        if row.get("ADMISSIBLE", 1) == 0:
            mark.append("excluded")
        cells.append(", ".join(mark))
        table.add_row(*cells)
    console.print(table)
