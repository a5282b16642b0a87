"""``ckmodel response``: an exposure-response model of one endpoint, with or without a CK fit.

Every option, the endpoint, the exposure and the covariate columns are checked before any
sampling; outputs are written atomically. ``--uncertainty both`` fits the plug-in and the
propagated model and prints how far their coefficients differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ckmodel.cli.common import (
    MapOpt,
    TimeUnitOpt,
    UnitsOpt,
    app,
    bad_option,
    check_file,
    column_map,
    console,
    fail,
    load_fit_file,
    parse_assignments,
    read_data,
    say,
    shown_warnings,
)
from ckmodel.errors import CKModelError, DatasetError

UNCERTAINTIES = ("plugin", "propagate", "both")


def _source(outcomes: Path, data: Path | None, fit: Any, cmap: str | None, units: list[str],
            time_unit: str) -> tuple[Any, Any, list[str]]:
    """What the model reads: the outcomes (a frame, or CK data with its covariates)."""
    from ckmodel.data import read_outcomes

    try:
        if data is not None:
            ck = read_data(data, outcomes=outcomes, column_map_value=cmap,
                           units=parse_assignments(units, "--units", "UNIT"),
                           time_unit=time_unit)
            return ck, ck.outcomes, list(ck.outcomes.columns) + list(ck.covariates.columns)
        with shown_warnings():
            table = read_outcomes(outcomes, column_map=column_map(cmap))
    except (DatasetError, ValueError) as exc:
        fail(exc)
    have = list(table.columns)
    if fit is not None and fit.data is not None:
        have += list(fit.data.covariates.columns)
    return table, table, have


@app.command()
def response(
    fit_file: Annotated[Path | None, typer.Argument(
        help="CK fit for a model-based exposure (optional: without it the exposure is an "
             "outcomes column)")] = None,
    outcomes: Annotated[Path, typer.Option("--outcomes", help="Subject-level outcomes CSV")
                        ] = Path("outcomes.csv"),
    endpoint: Annotated[str, typer.Option(
        "--endpoint", help="CRc, ORR, MRD_NEG, DLT, CRS3, ICANS3, CRS_GRADE, ICANS_GRADE, "
                           "EFS, OS, DOR, MRD_DUR, or any 0/1, grade or X_TIME/X_EVENT column")
    ] = "DLT",
    exposure: Annotated[str | None, typer.Option(
        "--exposure", help="With FIT: a model-based metric (AUC0_28, CMAX, BM_QPCR_CMAX ...); "
                           "without: an outcomes column")] = None,
    exposure_sd: Annotated[str | None, typer.Option(
        "--exposure-sd", help="Without FIT: column with each exposure's standard error (of "
                              "its log on the log scale), for --uncertainty propagate")] = None,
    exposure_scale: Annotated[str, typer.Option(
        "--exposure-scale", help="log (default) or linear")] = "log",
    covariate: Annotated[list[str] | None, typer.Option(
        "--covariate", help="Baseline covariate beside the exposure (repeat), e.g. "
                            "BM_BLAST_PCT or log(BM_BLAST_PCT)")] = None,
    model: Annotated[str | None, typer.Option(
        "--model", help="logistic|probit (binary), ordinal, weibull|piecewise (time to "
                        "event); default by the endpoint's kind")] = None,
    hsct: Annotated[str, typer.Option(
        "--hsct", help="Allo-HSCT in time-to-event models: censor, or competing "
                       "(cause-specific hazards)")] = "censor",
    uncertainty: Annotated[str, typer.Option(
        "--uncertainty", help="plugin (posterior median exposure), propagate (CK posterior "
                              "carried through) or both")] = "plugin",
    data: Annotated[Path | None, typer.Option(
        "--data", help="CK data (CSV) of the same subjects, for covariates such as "
                       "BM_BLAST_PCT when no FIT is given")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Posterior (NetCDF)")
                      ] = Path("er.nc"),
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Coefficients: term, median, mean, sd, lower, upper")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Figure: model against observed proportions (or KM by tertile)")] = None,
    draws: Annotated[int, typer.Option(min=50)] = 1000,
    tune: Annotated[int, typer.Option(min=50)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option(min=0)] = 1,
    column_map_value: MapOpt = None,
    units: UnitsOpt = None,
    time_unit: TimeUnitOpt = "day",
) -> None:
    """Exposure-response model of one endpoint: logistic, ordinal or survival, in PyMC."""
    from ckmodel.response.analysis import covariate_column, endpoint_kind
    from ckmodel.response.fit import fit_response
    from ckmodel.response.models import MODELS

    if exposure_scale not in ("log", "linear"):
        bad_option("--exposure-scale", f"{exposure_scale!r}: use log or linear")
    if hsct not in ("censor", "competing", "ignore"):
        bad_option("--hsct", f"{hsct!r}: use censor, competing or ignore")
    if uncertainty not in UNCERTAINTIES:
        bad_option("--uncertainty", f"{uncertainty!r}: use {', '.join(UNCERTAINTIES)}")
    if uncertainty != "plugin" and (exposure is None or (fit_file is None and not exposure_sd)):
        bad_option("--uncertainty", f"{uncertainty} needs --exposure with its uncertainty: a "
                                    "FIT, or --exposure-sd COLUMN")
    if output.suffix.lower() != ".nc":
        bad_option("--output", f"{output.name}: the posterior is written as NetCDF (.nc)")
    if csv is not None and csv.suffix.lower() != ".csv":
        bad_option("--csv", f"{csv.name}: the coefficients are a .csv file")
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        bad_option("--plot", f"{plot.name}: the figure must end in .png, .pdf or .svg")
    if plot is not None and exposure is None:
        bad_option("--plot", "the figure draws the endpoint against --exposure; give one")
    check_file(outcomes, "--outcomes")
    if data is not None:
        check_file(data, "--data")
    fit = load_fit_file(fit_file) if fit_file is not None else None
    source, table, have = _source(outcomes, data, fit, column_map_value, units or [], time_unit)
    try:
        kind = endpoint_kind(table, endpoint)
    except ValueError as exc:
        bad_option("--endpoint", str(exc))
    if model is not None and model not in MODELS[kind]:
        bad_option("--model", f"{model!r} does not fit the {kind} endpoint {endpoint}; use "
                              f"{' or '.join(MODELS[kind])}")
    missing = [c for c in covariate or [] if covariate_column(c) not in have]
    if missing:
        bad_option("--covariate", f"{', '.join(missing)}: not a column of the outcomes"
                   + ("" if data is not None or fit is not None else
                      " (a CK-file covariate needs --data or FIT)") + f"; columns: "
                   f"{', '.join(map(str, have))}")
    if exposure is not None and fit is None and exposure not in have:
        bad_option("--exposure", f"{exposure!r} is not a column of the outcomes; without FIT "
                                 "the exposure is a column (with FIT, a model metric)")
    if fit is not None and exposure is not None:
        from ckmodel.exposure import resolve_metric

        try:
            resolve_metric(exposure, list(fit.spec.output_names), fit.spec.time_unit)
        except ValueError as exc:
            bad_option("--exposure", str(exc))
    kinds = ["plugin", "propagate"] if uncertainty == "both" else [uncertainty]
    fits = {}
    for u in kinds:
        say(f"fitting {endpoint} ({kind}) with {u} exposure ...")
        try:
            with shown_warnings():
                fits[u] = fit_response(source, endpoint, exposure=exposure, fit=fit,
                                       exposure_sd=exposure_sd, exposure_scale=exposure_scale,
                                       covariates=covariate or [], model=model, hsct=hsct,
                                       uncertainty=u, draws=draws, tune=tune, chains=chains,
                                       seed=seed)
        except (CKModelError, ValueError) as exc:
            fail(exc)
    _write(fits, output, csv, plot)


def _write(fits: dict[str, Any], output: Path, csv: Path | None, plot: Path | None) -> None:
    import pandas as pd

    from ckmodel.files import atomic_write

    main_kind = "propagate" if "propagate" in fits else next(iter(fits))
    main = fits[main_kind]
    main.save(output)
    paths = [str(output)]
    if len(fits) > 1:
        other = output.with_name(f"{output.stem}_plugin{output.suffix}")
        fits["plugin"].save(other)
        paths.append(str(other))
    coef = pd.concat([f.coefficients().assign(uncertainty=u) for u, f in fits.items()],
                     ignore_index=True)
    if csv is not None:
        cols = ["term", "median", "mean", "sd", "lower", "upper"]
        if len(fits) > 1:
            cols.append("uncertainty")
        atomic_write(csv, lambda p: coef[cols].to_csv(p, index=False, float_format="%.6g"))
        paths.append(str(csv))
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        fig = main.plot()
        atomic_write(plot, lambda p: fig.savefig(p, dpi=130, format=plot.suffix[1:].lower()))
        paths.append(str(plot))
    scale = ("log odds ratio" if main.kind != "tte" else "log hazard ratio")
    out = Table(title=f"{main.endpoint} ({main.kind}, {main.model}): coefficients, "
                      f"{scale} per unit entered (95 % CrI)")
    for c in ("term", *fits):
        out.add_column(c)
    for term in coef["term"].unique():
        cells = []
        for u in fits:
            r = coef[(coef["term"] == term) & (coef["uncertainty"] == u)].iloc[0]
            cells.append(f"{r['median']:.3g} ({r['lower']:.3g}, {r['upper']:.3g})")
        out.add_row(term, *cells)
    console.print(out)
    m = main.meta
    say(f"{m['n']} subjects, {m.get('events', '?')} events; {m['rule']}"
        + (f"; left out: {m['left_out']}" if m["left_out"] else ""))
    conv = m["convergence"]
    say(("converged: " if conv.get("ok") else "NOT CONVERGED: ")
        + f"worst R-hat {conv.get('max_rhat', float('nan')):.3f}, lowest bulk ESS "
          f"{conv.get('min_ess_bulk', float('nan')):.0f}, {conv.get('divergences', 0)} "
          "divergences")
    if len(fits) > 1 and main.exposure_metric is not None:
        term = main.term_names()[0]
        a = fits["plugin"].coefficients().set_index("term").loc[term]
        b = main.coefficients().set_index("term").loc[term]
        say(f"{a.name}: plug-in {a['median']:.3g} (width {a['upper'] - a['lower']:.3g}) vs "
            f"propagated {b['median']:.3g} (width {b['upper'] - b['lower']:.3g})")
    say(f"written: {', '.join(paths)}")
