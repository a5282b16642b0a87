"""``ckmodel models`` and ``ckmodel simulate``: the catalog and virtual patients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ckmodel.cli.common import (
    app,
    bad_option,
    console,
    fail,
    parse_assignments,
    parse_numbers,
    say,
    shown_warnings,
)
from ckmodel.errors import CKModelError, ModelSpecError

ModelOpt = Annotated[str, typer.Option("--model", "-m",
                                       help="Catalog name (see 'ckmodel models') or TOML path")]


def load_spec(model: str, option: str = "--model"):  # noqa: ANN201
    """The model named by ``option`` (catalog name or TOML file), or a clear exit."""
    from ckmodel.spec import load_model

    try:
        return load_model(model)
    except (ModelSpecError, FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        bad_option(option, str(msg))


@app.command()
def models(name: Annotated[str | None, typer.Argument(help="Show one model in full")] = None
           ) -> None:
    """List the model catalog, or show one model's equations and parameters."""
    from ckmodel.spec import list_models

    if name:
        spec = load_spec(name, "NAME")
        text = spec.to_text() if hasattr(spec, "to_text") else spec.to_markdown()
        console.print(text, markup=False, highlight=False)
        return
    table = Table(title="ckmodel model catalog")
    for col in ("model", "closed form", "time unit", "outputs (unit)", "description"):
        table.add_column(col, overflow="fold")
    try:
        for n in list_models():
            spec = load_spec(n)
            table.add_row(n, "yes" if spec.has_solution else "ODE", spec.time_unit,
                          ", ".join(f"{o.name} ({o.unit})" if o.unit else o.name
                                    for o in spec.outputs), spec.description)
    except ModelSpecError as exc:
        fail(exc)
    console.print(table)


@app.command()
def simulate(
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Catalog name (see 'ckmodel models') or TOML path [default: "
                              "expansion_biphasic]; not with --fit")] = None,
    dose: Annotated[list[float] | None, typer.Option(
        help="Dose level in the model's amount unit; repeatable (one group per level)")] = None,
    doses: Annotated[str | None, typer.Option(
        "--doses", metavar="D1,D2,...", help="Dose levels as one list (instead of --dose)")
    ] = None,
    dose_time: Annotated[list[float] | None, typer.Option(
        "--dose-time", help="Regimen: every subject is dosed at each of these times (model "
                            "time unit); repeatable; default 0")] = None,
    dose_state: Annotated[str | None, typer.Option(
        "--dose-state", help="State every dose goes into, amount unchanged (NONMEM CMT), e.g. "
                             "A_c for IV; default: the model's [dosing]")] = None,
    n: Annotated[int, typer.Option(min=1, help="Subjects (patients) per dose level")] = 100,
    seed: Annotated[int, typer.Option(min=0, help="Random seed")] = 1,
    covariate: Annotated[list[str] | None, typer.Option(
        metavar="NAME=VALUE", help="Value of a covariate the model uses; repeatable")] = None,
    prior: Annotated[bool, typer.Option(help="Draw typical values from the priors too")] = False,
    output: Annotated[Path, typer.Option("--output", "-o", help="NetCDF output")] = Path(
        "sims.nc"),
    fit_file: Annotated[Path | None, typer.Option(
        "--fit", help="Simulate from this fit's posterior: new patients x posterior draws x "
                      "doses, with exposure metrics")] = None,
    n_draws: Annotated[int, typer.Option(
        "--n-draws", min=1, help="With --fit: about this many posterior draws")] = 100,
    times: Annotated[str | None, typer.Option(
        "--times", metavar="T1,T2,...", help="With --fit: keep trajectories at these times "
                                             "(model time unit); default metrics only")] = None,
    metric: Annotated[list[str] | None, typer.Option(
        "--metric", help="With --fit: CMAX, TMAX, AUC0_28, AUC0_84, T_ABOVE_LLOQ (repeat; "
                         "default all)")] = None,
    analyte: Annotated[list[str] | None, typer.Option(
        "--analyte", help="With --fit: model output (repeat; default all)")] = None,
    pool_file: Annotated[Path | None, typer.Option(
        "--covariates-file", help="With --fit: CSV of covariate rows to draw patients' "
                                  "covariates from (default: fitted subjects')")] = None,
    dose_covariate: Annotated[str | None, typer.Option(
        "--dose-covariate", help="With --fit: a covariate of the fit's covariate model that is "
                                 "the dose (it takes each dose's value)")] = None,
    residual: Annotated[bool, typer.Option(
        "--residual", help="With --fit and --times: also observations with residual error")
    ] = False,
    solver: Annotated[str, typer.Option(
        "--solver", help="With --fit: auto (closed form, else compiled RK4), kernel or scipy")
    ] = "auto",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="With --fit: local Dask workers (results do not depend on "
                                 "it)")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", metavar="ADDRESS", help="With --fit: Dask scheduler address")] = None,
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="With --fit: exposure per dose (5th, 50th, 95th percentiles) as CSV")
    ] = None,
) -> None:
    """Simulate virtual patients to NetCDF: from a model, or from a fit's posterior (--fit)."""
    if doses is not None and dose:
        bad_option("--doses", "give --dose (repeatable) or --doses D1,D2,..., not both")
    if doses is not None:
        from ckmodel.cli.select_commands import parse_doses

        dose = parse_doses(doses)
    if fit_file is not None:
        from ckmodel.cli.select_commands import simulate_from_fit

        for opt, given in (("--model", model is not None), ("--prior", prior),
                           ("--dose-state", dose_state)):
            if given:
                bad_option(opt, "not with --fit: the fit's model, posterior and dosing "
                                "state are used")
        if dose_time and dose_time[0] != 0:
            bad_option("--dose-time", "with --fit the regimen starts at 0 (the first "
                                      "infusion), e.g. --dose-time 0 --dose-time 14")
        if not dose:
            bad_option("--doses", "give the candidate doses (e.g. --doses 0.5,1,2,4,8)")
        simulate_from_fit(fit_file, doses=list(dose), n_patients=n, n_draws=n_draws, seed=seed,
                          times=times, metric=metric, analyte=analyte, covariate=covariate,
                          pool_file=pool_file, dose_covariate=dose_covariate,
                          residual=residual, solver=solver, workers=workers,
                          scheduler=scheduler, output=output, csv=csv,
                          dose_times=dose_time or None)
        return
    fit_only = {"--times": times is not None, "--metric": bool(metric),
                "--analyte": bool(analyte), "--covariates-file": pool_file is not None,
                "--dose-covariate": dose_covariate is not None, "--residual": residual,
                "--solver": solver != "auto", "--workers": workers != 1,
                "--scheduler": scheduler is not None, "--csv": csv is not None}
    for opt, given in fit_only.items():
        if given:
            bad_option(opt, "only with --fit FIT (simulation from a posterior)")
    model = model or "expansion_biphasic"
    from ckmodel.files import atomic_write
    from ckmodel.simulate import simulate as run

    doses = dose or [1.0]
    bad = [d for d in doses if not d > 0]
    if bad:
        bad_option("--dose", f"{bad[0]:g}: a dose must be a positive amount")
    if dose_time and any(b < a for a, b in zip(dose_time, dose_time[1:], strict=False)):
        bad_option("--dose-time", "times must be given in increasing order")
    covs = parse_numbers(parse_assignments(covariate, "--covariate", "NUMBER"), "--covariate")
    spec = load_spec(model)
    missing = [c for c in spec.covariates if c not in covs]
    if missing:
        bad_option("--covariate", f"model '{spec.name}' needs a value for "
                   f"{', '.join(missing)} (e.g. --covariate {missing[0]}=40)")
    unknown = [c for c in covs if c not in spec.covariates]
    if unknown:
        bad_option("--covariate", f"model '{spec.name}' uses no covariate {unknown[0]!r} "
                   f"(its covariates: {', '.join(spec.covariates) or 'none'})")
    if dose_state is not None and dose_state not in spec.state_names:
        bad_option("--dose-state", f"{dose_state!r} is not a state of model '{spec.name}' "
                                   f"(states: {', '.join(spec.state_names)})")
    try:
        with shown_warnings():
            ds = run(spec, n=n, dose=doses, seed=seed, covariates=covs, draw_typical=prior,
                     dose_times=dose_time, dose_state=dose_state)
    except (CKModelError, ValueError) as exc:
        fail(exc)
    atomic_write(output, lambda p: ds.to_netcdf(p, engine="h5netcdf"))
    say(f"{ds.sizes['subject']} subjects of {ds.attrs['model']} ({len(doses)} dose level(s), "
        f"times in {spec.time_unit}s) written to {output}")
