"""``ckmodel endpoints``: the trial's endpoint summaries as the protocol reports them.

A thin layer over :func:`ckmodel.response.endpoint_table` (and
:func:`ckmodel.plots.plot_km` for ``--plot``): every option is checked before any file is read,
nothing is written when something fails, and the main endpoints are printed as a table (one
column per group) under which the HSCT rule and the methods are stated.
"""

from __future__ import annotations

import math
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
    check_time_unit,
    column_map,
    console,
    fail,
    parse_assignments,
    read_data,
    say,
    shown_warnings,
)
from ckmodel.errors import DatasetError

#: Endpoints printed on the terminal (the CSV has every row).
PRINTED = ("DLT", "CRS_ANY", "CRS_GRADE_GE3", "ICANS_ANY", "ICANS_GRADE_GE3", "CRc", "ORR",
           "MRD_NEG", "ADA", "EFS", "OS", "DOR", "MRD_DUR")
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def parse_times(value: str | None) -> tuple[float, ...] | None:
    """``--times 180,365`` to ``(180.0, 365.0)``; None when not given."""
    if value is None:
        return None
    try:
        times = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        bad_option("--times", f"{value!r} must be comma-separated numbers in the data's time "
                              "unit (e.g. 180,365)")
    if not times or any(not math.isfinite(t) or t < 0 for t in times):
        bad_option("--times", f"{value!r}: give one or more times >= 0 (e.g. 180,365)")
    return times


def _ci(lo: float, hi: float, fmt: str) -> str:
    def one(v: float) -> str:
        return "NA" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    return f"({one(lo)}, {one(hi)})"


def _cell(row: Any) -> str:
    if row.STATISTIC == "rate":
        if row.N == 0:
            return "0/0"
        return (f"{row.EVENTS}/{row.N} {100 * row.ESTIMATE:.0f}% "
                + _ci(100 * row.LOWER, 100 * row.UPPER, "{:.0f}"))
    med = "NA" if math.isnan(row.ESTIMATE) else f"{row.ESTIMATE:.1f}"
    return f"{med} {_ci(row.LOWER, row.UPPER, '{:.1f}')} [{row.EVENTS}/{row.N}]"


def endpoints_table(table: Any, title: str, pct: str = "95") -> Table:
    """The printed summary: main endpoints as rows, groups as columns."""
    main = table[(table["STATISTIC"].isin(["rate", "median"]))
                 & table["ENDPOINT"].isin(PRINTED)]
    groups = list(dict.fromkeys(main["GROUP"]))
    out = Table(title=title)
    out.add_column("endpoint")
    out.add_column("statistic")
    for g in groups:
        out.add_column(g, overflow="fold")
    for ep in [e for e in PRINTED if e in set(main["ENDPOINT"])]:
        rows = {r.GROUP: r for r in main[main["ENDPOINT"] == ep].itertuples(index=False)}
        stat = next(iter(rows.values())).STATISTIC
        label = (f"n/N % ({pct}% CI)" if stat == "rate"
                 else f"median ({pct}% CI) [events/N]")
        out.add_row(ep, label, *[_cell(rows[g]) if g in rows else "" for g in groups])
    return out


@app.command()
def endpoints(
    outcomes: Annotated[Path, typer.Option("--outcomes", help="Subject-level outcomes CSV")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Endpoint table (CSV)")] = Path(
        "endpoints.csv"),
    by: Annotated[str | None, typer.Option(
        help="Column to summarise by: an outcomes column, or a subject covariate of the CK "
             "file given with --data (e.g. DOSE_LEVEL)")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="CK data (CSV) of the same subjects: its covariates for --by and its "
                       "HSCT_TIME")] = None,
    hsct: Annotated[str, typer.Option(
        help="censor (EFS, DOR and MRD-negative duration censored at allo-HSCT; OS never) or "
             "ignore (times as given)")] = "censor",
    times: Annotated[str | None, typer.Option(
        help="Times of the survival and number-at-risk rows, comma-separated, in the data's "
             "time unit (default 6 and 12 months: 180,365 for days)")] = None,
    conf_level: Annotated[float, typer.Option(help="Level of the intervals")] = 0.95,
    plot: Annotated[Path | None, typer.Option(
        help="Kaplan-Meier figure (.png, .pdf or .svg) with censoring marks and numbers at "
             "risk")] = None,
    column_map_value: MapOpt = None,
    units: UnitsOpt = None,
    time_unit: TimeUnitOpt = "day",
) -> None:
    """Endpoint summaries: DLT, CRS/ICANS grades, CRc, ORR, MRD, ADA rates; EFS, OS, DOR medians."""
    from ckmodel.files import atomic_write
    from ckmodel.response import HSCT_RULES, endpoint_table

    check_time_unit(time_unit)
    if hsct not in HSCT_RULES:
        bad_option("--hsct", f"{hsct!r}: use {' or '.join(HSCT_RULES)}"
                   + (" (competing events belong to the response models)"
                      if hsct == "competing" else ""))
    if not 0.0 < conf_level < 1.0:
        bad_option("--conf-level", f"{conf_level:g} must be between 0 and 1 (e.g. 0.95)")
    landmarks = parse_times(times)
    if plot is not None and plot.suffix.lower() not in PLOT_SUFFIXES:
        bad_option("--plot", f"{plot.name}: the figure must end in "
                             f"{', '.join(PLOT_SUFFIXES)}")
    if output.suffix.lower() != ".csv":
        bad_option("--output", f"{output.name}: the endpoint table is a .csv file")
    declared = parse_assignments(units, "--units", "UNIT")
    check_file(outcomes, "--outcomes")
    if data is not None:
        check_file(data, "--data")
    cmap = column_map(column_map_value)
    try:
        if data is not None:
            source: Any = read_data(data, outcomes=outcomes, column_map_value=column_map_value,
                                    units=declared, time_unit=time_unit)
            have = list(source.outcomes.columns) + list(source.covariates.columns)
        else:
            from ckmodel.data import read_outcomes

            with shown_warnings():
                source = read_outcomes(outcomes, column_map=cmap)
            have = list(source.columns)
        if by is not None and by not in have:
            bad_option("--by", f"{by!r} is not a column of the outcomes table"
                       + ("" if data is not None else " (a CK-file covariate needs --data)")
                       + f"; columns: {', '.join(map(str, have))}")
        table = endpoint_table(source, by=by, hsct=hsct, times=landmarks,
                               conf_level=conf_level, time_unit=time_unit)
        fig = None
        if plot is not None:
            from ckmodel.plots import plot_km

            fig = plot_km(source, by=by, hsct=hsct, time_unit=time_unit)
    except (DatasetError, ValueError) as exc:
        fail(exc)
    atomic_write(output, lambda p: table.to_csv(p, index=False))
    if fig is not None:
        atomic_write(plot, lambda p: fig.savefig(p, dpi=150, format=plot.suffix[1:].lower()))
    pct = f"{100 * conf_level:g}"
    console.print(endpoints_table(table, f"Endpoints (times in {time_unit}s)", pct))
    for note in table.attrs["notes"]:
        say(f"note: {note}")
    say(f"{len(table)} rows ({table['GROUP'].nunique()} group(s)) written to {output}"
        + (f"; Kaplan-Meier figure written to {plot}" if fig is not None else ""))
