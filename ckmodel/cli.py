"""The ``ckmodel`` command line.

This is the only module that configures logging; the library only creates loggers. Commands
write their outputs atomically (temporary file, then rename), so an interrupted run never
leaves a half-written file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ckmodel.errors import CKModelError, DatasetError, FitMismatchError, ModelSpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Cellular kinetics of CAR-T therapies: check, NCA, simulate, fit, "
                       "summarise.")
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)
log = logging.getLogger("ckmodel")

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def _setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    root.handlers[:] = [RichHandler(console=err_console, show_path=False, show_time=False)]
    root.setLevel(logging.WARNING)
    logging.getLogger("ckmodel").setLevel(level)


@app.callback()
def _main(verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                               help="More log output (-v info, -vv debug)")] = 1
          ) -> None:
    _setup_logging(verbose)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fail(exc: Exception, code: int = 1) -> None:
    err_console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code)


def _column_map(value: str | None) -> dict[str, str] | str | None:
    if value is None or value == "cdisc":
        return value
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError:
        mapping = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    if not isinstance(mapping, dict) or not mapping:
        raise typer.BadParameter("use 'cdisc', a JSON object or SRC=DST,SRC=DST")
    return mapping


def _read(data: Path, outcomes: Path | None, column_map: str | None):  # noqa: ANN202
    import warnings

    from ckmodel.data import read_ck

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck = read_ck(data, outcomes=outcomes, column_map=_column_map(column_map))
    for w in caught:
        log.warning("%s", w.message)
    return ck


DataArg = Annotated[Path, typer.Argument(help="Long-format NONMEM-style CK data (CSV)")]
OutcomesOpt = Annotated[Path | None, typer.Option("--outcomes", help="Subject-level outcomes CSV")]
MapOpt = Annotated[str | None, typer.Option("--column-map",
                                            help="'cdisc' or SRC=DST,... to rename columns")]


@app.command()
def check(data: DataArg, outcomes: OutcomesOpt = None, column_map: MapOpt = None) -> None:
    """Check a data file; list every problem. Exit 0 when clean, 1 otherwise."""
    from ckmodel.data import check_ck

    try:
        problems = check_ck(data, outcomes=outcomes, column_map=_column_map(column_map))
    except DatasetError as exc:
        _fail(exc)
    errors = [p for p in problems if p.severity == "error"]
    if problems:
        table = Table(title=f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
        for col in ("severity", "file", "line", "column", "subject", "problem"):
            table.add_column(col, overflow="fold")
        for p in problems:
            table.add_row(p.severity, Path(p.file).name if p.file else "",
                          "" if p.row is None else str(p.row), p.column or "",
                          "" if p.subject is None else str(p.subject), p.message)
        console.print(table)
    if errors:
        raise typer.Exit(1)
    console.print(f"[green]OK[/]: {data} passed all checks"
                  + (f" ({len(problems)} warning(s))" if problems else ""))


def _windows(values: list[str] | None) -> tuple[tuple[float, float], ...]:
    if not values:
        return ((0.0, 28.0), (0.0, 84.0))
    out = []
    for v in values:
        try:
            a, b = (float(x) for x in v.split(","))
        except ValueError:
            raise typer.BadParameter(f"window {v!r} must be 'start,end' (e.g. 0,28)") from None
        out.append((a, b))
    return tuple(out)


@app.command()
def nca(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="NCA table (CSV)")] = Path(
        "nca.csv"),
    outcomes: OutcomesOpt = None,
    column_map: MapOpt = None,
    by: Annotated[str | None, typer.Option(help="Subject column to summarise by")] = None,
    auc_method: Annotated[str, typer.Option(help="lin-up/log-down or linear")] =
    "lin-up/log-down",
    window: Annotated[list[str] | None, typer.Option(help="Partial AUC window 'a,b' (days); "
                                                         "repeatable")] = None,
    blq_rule: Annotated[str, typer.Option(help="BLQ handling rule")] = "first-zero-rest-drop",
    summary_output: Annotated[Path | None, typer.Option("--summary-output",
                                                        help="Group summary CSV")] = None,
) -> None:
    """Non-compartmental analysis per subject and analyte (Cmax, Tmax, AUCs, half-life)."""
    from ckmodel.nca import nca as run_nca
    from ckmodel.nca import nca_summary

    try:
        ck = _read(data, outcomes, column_map)
        table = run_nca(ck, auc_method=auc_method, windows=_windows(window), blq_rule=blq_rule)
    except (DatasetError, ValueError) as exc:
        _fail(exc)
    _atomic_write(output, lambda p: table.to_csv(p, index=False))
    console.print(f"NCA of {table['ID'].nunique()} subjects x {table['ANALYTE'].nunique()} "
                  f"analytes written to {output}")
    if by or summary_output:
        summ = nca_summary(table, ck, by=by)
        target = summary_output or output.with_name(output.stem + "_summary.csv")
        _atomic_write(target, lambda p: summ.to_csv(p, index=False))
        console.print(f"group summary written to {target}")


@app.command()
def models(name: Annotated[str | None, typer.Argument(help="Show one model in full")] = None
           ) -> None:
    """List the model catalog, or show one model's equations and parameters."""
    from ckmodel.spec import list_models, load_model

    try:
        if name:
            console.print(load_model(name).to_markdown(), markup=False, highlight=False)
            return
        table = Table(title="ckmodel model catalog")
        for col in ("model", "closed form", "outputs", "description"):
            table.add_column(col, overflow="fold")
        for n in list_models():
            spec = load_model(n)
            table.add_row(n, "yes" if spec.has_solution else "ODE", ", ".join(spec.output_names),
                          spec.description)
        console.print(table)
    except ModelSpecError as exc:
        _fail(exc)


@app.command()
def simulate(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog name or TOML path")] =
    "expansion_biphasic",
    dose: Annotated[list[float] | None, typer.Option(help="Dose (AMT units); repeatable")] = None,
    n: Annotated[int, typer.Option(help="Subjects per dose")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed")] = 1,
    covariate: Annotated[list[str] | None, typer.Option(
        help="NAME=VALUE for covariates the model uses; repeatable")] = None,
    prior: Annotated[bool, typer.Option(help="Draw typical values from the priors too")] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="NetCDF output")] = Path(
        "sims.nc"),
) -> None:
    """Simulate virtual patients (typical values + random effects) to a NetCDF file."""
    from ckmodel.simulate import simulate as run

    covs = {}
    for c in covariate or []:
        k, _, v = c.partition("=")
        try:
            covs[k] = float(v)
        except ValueError:
            raise typer.BadParameter(f"covariate {c!r} must be NAME=NUMBER") from None
    try:
        ds = run(model, n=n, dose=dose or [1.0], seed=seed, covariates=covs, draw_typical=prior)
    except (CKModelError, KeyError) as exc:
        _fail(exc)
    _atomic_write(output, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    console.print(f"{ds.sizes['subject']} subjects of {ds.attrs['model']} written to {output}")


@app.command()
def fit(
    data: DataArg,
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog name or TOML path")] =
    "expansion_biphasic",
    output: Annotated[Path, typer.Option("--output", "-o", help="Fit file (NetCDF)")] = Path(
        "fit.nc"),
    outcomes: OutcomesOpt = None,
    column_map: MapOpt = None,
    sampler: Annotated[str, typer.Option(
        help="nutpie, pymc, numpyro, blackjax, pathfinder, advi, map")] = "nutpie",
    draws: int = 500,
    tune: int = 500,
    chains: int = 4,
    seed: int = 1,
    covariate: Annotated[list[str] | None, typer.Option(
        help="Covariate effect, e.g. 'rho ~ log(DOSE)'; repeatable")] = None,
    analyte: Annotated[list[str] | None, typer.Option(help="Analyte to fit; repeatable")] = None,
    target_accept: float = 0.9,
    blq_method: Annotated[str, typer.Option(help="M3 (censored) or M1 (drop)")] = "M3",
) -> None:
    """Fit a model hierarchically (PyMC) and save the fit."""
    from ckmodel.fitting import fit as run_fit
    from ckmodel.population.model import PopulationOptions

    try:
        ck = _read(data, outcomes, column_map)
        t0 = time.perf_counter()
        result = run_fit(ck, model, sampler=sampler, draws=draws, tune=tune, chains=chains,
                         seed=seed, covariates=covariate or (), analytes=analyte,
                         target_accept=target_accept,
                         options=PopulationOptions(blq_method=blq_method),
                         progressbar=sys.stderr.isatty())
        result.save(output)
    except (CKModelError, ValueError, ImportError) as exc:
        _fail(exc)
    console.print(f"fit of {result.spec.name} ({sampler}, {chains} x {draws} draws) saved to "
                  f"{output} in {time.perf_counter() - t0:.1f} s")
    _print_summary(result)


def _print_summary(result) -> None:  # noqa: ANN001
    table = result.summary()
    out = Table(title=f"{result.spec.name}: posterior summary (95% CrI)")
    for col in ("parameter", "kind", "unit", "median", "2.5%", "97.5%", "CV%", "R-hat",
                "ESS bulk"):
        out.add_column(col)
    for name, row in table.iterrows():
        out.add_row(str(name), row["kind"], row["unit"], f"{row['median']:.4g}",
                    f"{row['lower']:.4g}", f"{row['upper']:.4g}",
                    "" if row["cv_percent"] != row["cv_percent"] else f"{row['cv_percent']:.0f}",
                    "" if row["r_hat"] != row["r_hat"] else f"{row['r_hat']:.3f}",
                    "" if row["ess_bulk"] != row["ess_bulk"] else f"{row['ess_bulk']:.0f}")
    console.print(out)


@app.command()
def summary(
    fit_file: Annotated[Path, typer.Argument(help="Fit file written by 'ckmodel fit'")],
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV")] =
    None,
) -> None:
    """Parameter table of a saved fit: typical values, IIV (CV%), residual errors, R-hat, ESS."""
    from ckmodel.fitting import load_fit

    try:
        result = load_fit(fit_file)
    except (FitMismatchError, FileNotFoundError, OSError, CKModelError) as exc:
        _fail(exc)
    _print_summary(result)
    if csv:
        _atomic_write(csv, lambda p: result.summary().to_csv(p))
        console.print(f"summary written to {csv}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder")] = Path("ckmodel_demo"),
    data: Annotated[Path | None, typer.Option(help="CK data (default: bundled example)")] = None,
    outcomes: OutcomesOpt = None,
    draws: int = 500,
    tune: int = 500,
    chains: int = 4,
    seed: int = 1,
    fit_model: Annotated[bool, typer.Option("--fit/--no-fit", help="Run the fit step")] = True,
) -> None:
    """The main job on the bundled example trial: check, NCA, profile plots, fit, summary."""
    from ckmodel.data import check_ck
    from ckmodel.nca import nca as run_nca
    from ckmodel.nca import nca_summary
    from ckmodel.plots import plot_profiles

    if data is None:
        data, outcomes = _bundled()
    console.rule(f"ckmodel demo on {data}")
    problems = check_ck(data, outcomes=outcomes)
    errors = [p for p in problems if p.severity == "error"]
    console.print(f"check: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    for p in problems:
        console.print(f"  {p}")
    if errors:
        raise typer.Exit(1)
    ck = _read(data, outcomes, None)
    console.print(ck.summary(), markup=False, highlight=False)
    table = run_nca(ck)
    _atomic_write(out / "nca.csv", lambda p: table.to_csv(p, index=False))
    by = "DOSE_LEVEL" if "DOSE_LEVEL" in ck.covariates.columns else None
    summ = nca_summary(table, ck, by=by)
    _atomic_write(out / "nca_summary.csv", lambda p: summ.to_csv(p, index=False))
    console.print(f"NCA: {len(table)} profiles -> {out / 'nca.csv'}")
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_profiles(ck, by=by)
    _atomic_write(out / "profiles.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    console.print(f"plots: {out / 'profiles.png'}")
    if not fit_model:
        return
    from ckmodel.fitting import fit as run_fit

    t0 = time.perf_counter()
    result = run_fit(ck, "expansion_biphasic", draws=draws, tune=tune, chains=chains, seed=seed,
                     progressbar=sys.stderr.isatty())
    result.save(out / "fit.nc")
    console.print(f"fit: expansion_biphasic, {time.perf_counter() - t0:.1f} s -> "
                  f"{out / 'fit.nc'}")
    _print_summary(result)


def _bundled() -> tuple[Path, Path | None]:
    for sub in ("example_trial", "example_small"):
        d = REPO_DATA / sub
        if (d / "ck.csv").is_file():
            oc = d / "outcomes.csv"
            return d / "ck.csv", oc if oc.is_file() else None
    _fail(FileNotFoundError(f"no bundled example data under {REPO_DATA}; pass --data"))
    raise AssertionError


def main() -> None:
    """Entry point of the ``ckmodel`` console script."""
    app()


if __name__ == "__main__":
    main()
