"""``ckmodel fit``, ``ckmodel summary`` and ``ckmodel demo``: fits from the command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ckmodel.cli.common import (
    AfterHSCTOpt,
    DataArg,
    MapOpt,
    OutcomesOpt,
    TimeUnitOpt,
    UnitsOpt,
    app,
    bad_option,
    bundled_example,
    check_file,
    check_time_unit,
    console,
    err_console,
    fail,
    load_fit_file,
    parse_assignments,
    parse_numbers,
    read_data,
    say,
    shown_warnings,
)
from ckmodel.cli.model_commands import ModelOpt, load_spec
from ckmodel.errors import (
    CKModelError,
    ConvergenceWarning,
    DatasetError,
    ModelSpecError,
)

SAMPLER_CHOICES = ("nutpie", "pymc", "numpyro", "blackjax", "pathfinder", "advi", "map")
ERROR_CHOICES = ("log_normal", "proportional", "additive", "combined", "student_t")
#: ``--iiv-sd`` values for the help text: ckmodel.population.model.IIV_SD_FORMS, written out so
#: that ``--help`` starts without importing PyMC (tests/test_cli.py checks that they agree);
#: PopulationOptions.check refuses any other value
IIV_SD_CHOICES = ("auto", "signed", "log")
#: ``--centered`` modes: ckmodel.population.options.CENTRING_MODES, written out for the same
#: reason (tests/test_cli.py checks that they agree)
CENTRING_MODES = ("auto", "whitened", "shrinkage")
#: ``--until-converged`` default: ckmodel.fitting.UNTIL_CONVERGED, written out so that the
#: command line starts without importing PyMC (tests/test_cli.py checks that they agree)
UNTIL_CONVERGED = 600.0


def _fmt(v: Any) -> str:
    return "" if v != v or v is None else f"{v:.4g}"


def print_summary(result: Any) -> None:
    """Records used and left out, the convergence verdict, then the parameter table."""
    s = result.summary()
    rec = Table(title=f"{s.model}: records used and left out (observations)")
    for col in s.records.columns:
        rec.add_column(str(col), overflow="fold")
    for _, row in s.records.iterrows():
        rec.add_row(*[str(v) for v in row])
    console.print(rec)
    ok = s.convergence.get("ok", True)
    say(s.verdict(), style="green" if ok else "bold red")
    for p in s.convergence.get("problems", []):
        say(f"  - {p}", style="red")
    for n in s.notes:
        say(f"note: {n}")
    out = Table(title=f"{s.model}: posterior summary (95% CrI)")
    for col in ("parameter", "kind", "unit", "median", "2.5%", "97.5%", "CV%", "R-hat",
                "ESS bulk"):
        out.add_column(col)
    for name, row in s.parameters.iterrows():
        cv = row["cv_percent"]
        out.add_row(str(name), row["kind"], row["unit"], _fmt(row["median"]), _fmt(row["lower"]),
                    _fmt(row["upper"]), "" if cv != cv else f"{cv:.0f}",
                    "" if row["r_hat"] != row["r_hat"] else f"{row['r_hat']:.3f}",
                    "" if row["ess_bulk"] != row["ess_bulk"] else f"{row['ess_bulk']:.0f}")
    console.print(out)


def _left_out_analytes(ck: Any, spec: Any, selected: list[str] | None) -> None:
    obs = ck.observations
    counts = obs["ANALYTE"].value_counts()
    for a, k in counts.items():
        if a not in spec.output_names:
            say(f"left out: {k} {a} record(s): model '{spec.name}' does not predict {a} "
                f"(its outputs: {', '.join(spec.output_names)})", style="yellow")
        elif selected and a not in selected:
            say(f"left out: {k} {a} record(s): not among --analyte {', '.join(selected)}",
                style="yellow")


def _centering_option(values: list[str] | None) -> Any:
    """``--centered``: auto (default), none, whitened, shrinkage, NAME or NAME=WEIGHT."""
    if not values:
        return "auto"
    if values == ["none"]:
        return ()
    if len(values) == 1 and values[0] in CENTRING_MODES:
        return values[0]
    if any(v in (*CENTRING_MODES, "none") for v in values):
        bad_option("--centered", f"{', '.join(repr(m) for m in (*CENTRING_MODES, 'none'))} "
                                 "stand alone; give one of them once, without parameter names")
    if any("=" in v for v in values):
        weights = {}
        for v in values:
            name, _, w = v.partition("=")
            weights[name] = w or "1"
        return parse_numbers(weights, "--centered")
    return tuple(values)


def _max_step(values: list[str], spec: Any) -> Any:
    """``--max-step UNTIL:STEP`` (repeatable) as the spec's RK4 step schedule."""
    rows = []
    for v in values:
        until, sep, h = v.partition(":")
        try:
            rows.append((float(until), float(h)))
        except ValueError:
            sep = ""
        if not sep:
            bad_option("--max-step", f"{v!r} must be UNTIL:STEP in the model's time unit "
                                     "(e.g. --max-step 14:0.25 --max-step inf:3)")
    try:
        return spec.with_max_step(rows)
    except ModelSpecError as exc:
        bad_option("--max-step", str(exc))


def fit_settings(spec: Any, *, fix: list[str] | None, error: list[str] | None,
                 centered: list[str] | None, correlated: bool, prior: list[str] | None,
                 iiv: list[str] | None, blq_method: str, iiv_sd: str = "auto",
                 max_step: list[str] | None = None) -> tuple[Any, Any]:
    """The spec with ``--prior``, ``--iiv``, ``--max-step`` applied; the options, checked."""
    from ckmodel.population.model import PopulationOptions

    if max_step:
        spec = _max_step(max_step, spec)

    fixed = parse_numbers(parse_assignments(fix, "--fix", "NUMBER"), "--fix")
    errors = parse_assignments(error, "--error", "MODEL")
    for a, e in errors.items():
        if e not in ERROR_CHOICES:
            bad_option("--error", f"{a}={e}: unknown error model; use one of "
                                  f"{', '.join(ERROR_CHOICES)}")
    for option, values, key in (("--prior", prior, "prior"), ("--iiv", iiv, "iiv")):
        for name, text in parse_assignments(values, option, "PRIOR").items():
            if name not in spec.param_names:
                bad_option(option, f"'{name}' is not a parameter of model '{spec.name}' "
                                   f"(parameters: {', '.join(spec.param_names)})")
            value: Any = False if key == "iiv" and text.lower() == "none" else text
            try:
                spec = spec.with_parameter(name, **{key: value})
            except ModelSpecError as exc:
                bad_option(option, f"{name}={text}: {exc}")
    if blq_method not in ("M3", "M1"):
        bad_option("--blq-method", f"{blq_method!r}: use M3 (censored) or M1 (drop)")
    opts = PopulationOptions(centered=_centering_option(centered), correlated=correlated,
                             error=errors, blq_method=blq_method, fixed=fixed, iiv_sd=iiv_sd)
    try:
        opts.check(spec)
    except ModelSpecError as exc:
        fail(exc, code=2)
    return spec, opts


@app.command()
def fit(
    data: DataArg,
    model: ModelOpt = "expansion_biphasic",
    output: Annotated[Path, typer.Option("--output", "-o", help="Fit file (NetCDF)")] = Path(
        "fit.nc"),
    outcomes: OutcomesOpt = None,
    column_map_value: MapOpt = None,
    units: UnitsOpt = None,
    time_unit: TimeUnitOpt = "day",
    sampler: Annotated[str, typer.Option(help=", ".join(SAMPLER_CHOICES))] = "nutpie",
    draws: Annotated[int, typer.Option(min=1, help="Posterior draws per chain")] = 500,
    tune: Annotated[int, typer.Option(min=0, help="Tuning (warm-up) steps per chain")] = 500,
    chains: Annotated[int, typer.Option(min=1, help="Number of chains")] = 4,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (stored with the fit)")] = 1,
    covariate: Annotated[list[str] | None, typer.Option(
        help="Covariate effect, e.g. 'rho ~ log(DOSE)' or 'd_e ~ after(ADA_TIME)'; "
             "repeatable")] = None,
    analyte: Annotated[list[str] | None, typer.Option(
        help="Fit only this analyte; repeatable (default: every analyte the model predicts)")
    ] = None,
    fix: Annotated[list[str] | None, typer.Option(
        metavar="NAME=VALUE", help="Hold a parameter at a value (model units), e.g. --fix F=1; "
                                   "repeatable")] = None,
    error: Annotated[list[str] | None, typer.Option(
        metavar="ANALYTE=MODEL", help="Residual error model of an analyte: "
                                      + "|".join(ERROR_CHOICES) + "; repeatable")] = None,
    centered: Annotated[list[str] | None, typer.Option(
        metavar="auto|none|whitened|shrinkage|NAME[=WEIGHT]",
        help="Parametrisation of the random effects: auto (default: closed forms "
             "non-centred, then whitened if that run diverges or its E-BFMI is low; models "
             "solved as ODEs whitened after a pilot run), none (all non-centred), "
             "whitened (each subject's effects whitened by their conditional posterior, from "
             "a pilot run), shrinkage (centring weights per subject and effect from a pilot "
             "run: 1 - eta shrinkage), or the parameters to centre (NAME, or NAME=WEIGHT with "
             "a weight in [0, 1] for partial centring); repeatable")] = None,
    correlated: Annotated[bool, typer.Option(
        help="Correlated random effects (LKJ prior)")] = False,
    iiv_sd: Annotated[str, typer.Option(
        "--iiv-sd", metavar="|".join(IIV_SD_CHOICES),
        help="How the IIV SDs are sampled: signed (omega = |v|, v from the symmetric parent "
             "of the half-distribution prior: the same model, faster mixing when an SD is "
             "weakly informed), log (log omega), or auto (default: signed where it applies, "
             "i.e. non-centred uncorrelated effects with HalfNormal/HalfCauchy/HalfStudentT "
             "priors and an MCMC sampler)")] = "auto",
    prior: Annotated[list[str] | None, typer.Option(
        metavar="NAME=PRIOR", help="Typical-value prior, e.g. --prior 'rho=LogNormal(log(2), "
                                   "0.5)'; repeatable")] = None,
    iiv: Annotated[list[str] | None, typer.Option(
        metavar="NAME=PRIOR", help="Prior of a random effect's SD, e.g. --iiv "
                                   "'rho=HalfNormal(0.3)', or NAME=none for no random "
                                   "effect; repeatable")] = None,
    target_accept: Annotated[float, typer.Option(min=0.5, max=0.999,
                                                 help="NUTS target acceptance")] = 0.9,
    blq_method: Annotated[str, typer.Option(help="M3 (censored) or M1 (drop)")] = "M3",
    after_hsct: AfterHSCTOpt = "keep",
    max_step: Annotated[list[str] | None, typer.Option(
        "--max-step", metavar="UNTIL:STEP",
        help="RK4 step schedule of an ODE fit, replacing the model's [solver] max_step: steps "
             "of at most STEP up to time UNTIL (model time unit; UNTIL may be inf), e.g. "
             "--max-step 14:0.25 --max-step 100:2 --max-step inf:3; repeatable")] = None,
    until_converged: Annotated[float, typer.Option(
        "--until-converged", metavar="SECONDS", min=0,
        help="When the convergence checks fail, run again with more draws (and warm-up after "
             "divergences) while the next run fits in this time budget (seconds; 0: one run "
             "only); each run is recorded")] = UNTIL_CONVERGED,
) -> None:
    """Fit a model hierarchically (PyMC) and save the fit; every setting is stored in it."""
    check_time_unit(time_unit)
    if sampler not in SAMPLER_CHOICES:
        bad_option("--sampler", f"{sampler!r}: use one of {', '.join(SAMPLER_CHOICES)}")
    declared = parse_assignments(units, "--units", "UNIT")
    check_file(data, "DATA")
    if outcomes is not None:
        check_file(outcomes, "--outcomes")
    spec = load_spec(model)
    spec, opts = fit_settings(spec, fix=fix, error=error, centered=centered,
                              correlated=correlated, prior=prior, iiv=iiv,
                              blq_method=blq_method, iiv_sd=iiv_sd, max_step=max_step)
    from ckmodel.fitting import fit as run_fit

    try:
        ck = read_data(data, outcomes=outcomes, column_map_value=column_map_value,
                       units=declared, time_unit=time_unit, model_units=spec.output_units,
                       after_hsct=after_hsct)
        _left_out_analytes(ck, spec, analyte)
        t0 = time.perf_counter()
        with shown_warnings(stated=(ConvergenceWarning,)):
            result = run_fit(ck, spec, sampler=sampler, draws=draws, tune=tune, chains=chains,
                             seed=seed, covariates=covariate or (), analytes=analyte,
                             target_accept=target_accept, options=opts,
                             progressbar=sys.stderr.isatty(), until_converged=until_converged)
        result.save(output)
    except (CKModelError, ValueError, ImportError) as exc:
        fail(exc)
    say(f"fit of {result.spec.name} ({sampler}, {chains} x {draws} draws) saved to {output} "
        f"in {time.perf_counter() - t0:.1f} s")
    print_summary(result)


@app.command()
def summary(
    fit_file: Annotated[Path, typer.Argument(help="Fit file written by 'ckmodel fit'")],
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the parameter table "
                                                           "as CSV")] = None,
) -> None:
    """Records used, convergence verdict and parameter table of a saved fit."""
    from ckmodel.files import atomic_write

    result = load_fit_file(fit_file)
    print_summary(result)
    if csv:
        atomic_write(csv, lambda p: result.summary().parameters.to_csv(p))
        say(f"summary written to {csv}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Output folder")] = Path("ckmodel_demo"),
    data: Annotated[Path | None, typer.Option(help="CK data (default: bundled example)")] = None,
    outcomes: OutcomesOpt = None,
    model: ModelOpt = "blood_marrow",
    draws: Annotated[int, typer.Option(min=1)] = 500,
    tune: Annotated[int, typer.Option(min=0)] = 500,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option(min=0)] = 1,
    fit_model: Annotated[bool, typer.Option("--fit/--no-fit", help="Run the fit step")] = True,
    until_converged: Annotated[float, typer.Option(
        "--until-converged", metavar="SECONDS", min=0,
        help="Run the fit longer until it converges, within this budget (seconds; 0: one "
             "run only)")] = UNTIL_CONVERGED,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="End with the HTML report of the fit")] = True,
) -> None:
    """The main job on the bundled example trial: check, NCA, plots, fit, summary, report."""
    from ckmodel.data import check_ck
    from ckmodel.files import atomic_write
    from ckmodel.nca import nca as run_nca
    from ckmodel.nca import nca_summary

    if data is None:
        data, outcomes = bundled_example()
    check_file(data, "--data")
    spec = load_spec(model)
    console.rule(f"ckmodel demo on {data}")
    problems = check_ck(data, outcomes=outcomes, analytes=spec.output_units)
    errors = [p for p in problems if p.severity == "error"]
    say(f"check: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    for p in problems:
        say(f"  {p}")
    if errors:
        raise typer.Exit(1)
    try:
        ck = read_data(data, outcomes=outcomes, column_map_value=None, units={},
                       time_unit="day", model_units=spec.output_units)
    except DatasetError as exc:
        fail(exc)
    say(ck.summary())
    table = run_nca(ck)
    atomic_write(out / "nca.csv", lambda p: table.to_csv(p, index=False))
    by = "DOSE_LEVEL" if "DOSE_LEVEL" in ck.covariates.columns else None
    summ = nca_summary(table, ck, by=by)
    atomic_write(out / "nca_summary.csv", lambda p: summ.to_csv(p, index=False))
    say(f"NCA: {len(table)} profiles -> {out / 'nca.csv'}")
    import matplotlib

    matplotlib.use("Agg")
    from ckmodel.plots import plot_profiles

    fig = plot_profiles(ck, by=by)
    atomic_write(out / "profiles.png", lambda p: fig.savefig(p, dpi=110, format="png"))
    say(f"plots: {out / 'profiles.png'}")
    if not fit_model:
        return
    from ckmodel.fitting import fit as run_fit

    _left_out_analytes(ck, spec, None)
    t0 = time.perf_counter()
    try:
        with shown_warnings(stated=(ConvergenceWarning,)):
            result = run_fit(ck, spec, draws=draws, tune=tune, chains=chains, seed=seed,
                             progressbar=sys.stderr.isatty(), until_converged=until_converged)
        result.save(out / "fit.nc")
    except (CKModelError, ValueError) as exc:
        fail(exc)
    say(f"fit: {spec.name}, {time.perf_counter() - t0:.1f} s -> {out / 'fit.nc'}")
    print_summary(result)
    if not report:
        return
    from ckmodel.exposure import exposure_draws, exposure_table
    from ckmodel.report import write_report

    t0 = time.perf_counter()
    try:
        with shown_warnings():
            draws = exposure_draws(result)
            atomic_write(out / "exposure.csv",
                         lambda p: exposure_table(draws).to_csv(p, index=False,
                                                                float_format="%.6g"))
            say(f"exposure: model-based Cmax, AUC0-28d ... per subject -> "
                f"{out / 'exposure.csv'}")
            path = write_report(result, out / "report.html", seed=seed, exposure=draws,
                                progress=lambda name: err_console.print(f"report: {name}"))
    except (CKModelError, ValueError) as exc:
        fail(exc)
    say(f"report: {path} ({time.perf_counter() - t0:.0f} s): open it in a browser; it is one "
        "self-contained file")
