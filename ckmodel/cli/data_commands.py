"""``ckmodel check`` and ``ckmodel nca``: the commands that read data and describe them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
    check_file,
    check_time_unit,
    column_map,
    console,
    fail,
    parse_assignments,
    read_data,
    say,
)
from ckmodel.errors import DatasetError


def problems_table(problems: list, title: str) -> Table:
    """Every problem of a data check as one table (severity, file, line, column, subject)."""
    table = Table(title=title)
    for col in ("severity", "file", "line", "column", "subject", "problem"):
        table.add_column(col, overflow="fold")
    for p in problems:
        table.add_row(p.severity, Path(p.file).name if p.file else "",
                      "" if p.row is None else str(p.row), p.column or "",
                      "" if p.subject is None else str(p.subject), p.message)
    return table


@app.command()
def check(data: DataArg, outcomes: OutcomesOpt = None, column_map_value: MapOpt = None,
          units: UnitsOpt = None, time_unit: TimeUnitOpt = "day") -> None:
    """Check a data file; list every problem. Exit 0 when clean, 1 otherwise."""
    from ckmodel.data import check_ck

    check_time_unit(time_unit)
    declared = parse_assignments(units, "--units", "UNIT")
    try:
        problems = check_ck(data, outcomes=outcomes, column_map=column_map(column_map_value),
                            analytes=declared or None, time_unit=time_unit)
    except DatasetError as exc:
        fail(exc)
    errors = [p for p in problems if p.severity == "error"]
    if problems:
        console.print(problems_table(
            problems, f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)"))
    if errors:
        raise typer.Exit(1)
    say(f"OK: {data} passed all checks (TIME in {time_unit}s)"
        + (f" ({len(problems)} warning(s))" if problems else ""), style="green")


def parse_windows(values: list[str] | None) -> tuple[tuple[float, float], ...] | None:
    """``--window a,b`` (repeatable) to ``((a, b), ...)``; None when none was given."""
    if not values:
        return None
    out = []
    for v in values:
        try:
            a, b = (float(x) for x in v.split(","))
        except ValueError:
            bad_option("--window", f"{v!r} must be 'start,end' in the data's time unit "
                                   "(e.g. 0,28)")
        if not 0 <= a < b:
            bad_option("--window", f"{v!r}: start must be >= 0 and below end")
        out.append((a, b))
    return tuple(out)


@app.command()
def nca(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="NCA table (CSV)")] = Path(
        "nca.csv"),
    outcomes: OutcomesOpt = None,
    column_map_value: MapOpt = None,
    units: UnitsOpt = None,
    time_unit: TimeUnitOpt = "day",
    by: Annotated[str | None, typer.Option(help="Subject-level column to summarise by, e.g. "
                                                "DOSE_LEVEL")] = None,
    auc_method: Annotated[str, typer.Option(help="lin-up/log-down or linear")] =
    "lin-up/log-down",
    window: Annotated[list[str] | None, typer.Option(
        help="Partial AUC window 'a,b' in the data's time unit; repeatable. Default: 0-28 "
             "and 0-84 days (AUC0_28, AUC0_84) for day data; names carry the unit otherwise "
             "(e.g. AUC0_24H)")] = None,
    blq_rule: Annotated[str, typer.Option(help="BLQ handling rule")] = "first-zero-rest-drop",
    after_hsct: AfterHSCTOpt = "keep",
    summary_output: Annotated[Path | None, typer.Option("--summary-output",
                                                        help="Group summary CSV")] = None,
) -> None:
    """Non-compartmental analysis per subject and analyte (Cmax, Tmax, AUCs, half-life)."""
    from ckmodel.files import atomic_write
    from ckmodel.nca import nca as run_nca
    from ckmodel.nca import nca_summary

    check_time_unit(time_unit)
    if auc_method not in ("lin-up/log-down", "linear"):
        bad_option("--auc-method", f"{auc_method!r}: use lin-up/log-down or linear")
    windows = parse_windows(window)
    declared = parse_assignments(units, "--units", "UNIT")
    check_file(data, "DATA")
    try:
        ck = read_data(data, outcomes=outcomes, column_map_value=column_map_value,
                       units=declared, time_unit=time_unit,
                       after_hsct=after_hsct)
        if by is not None:
            have = list(ck.covariates.columns) + (
                list(ck.outcomes.columns) if ck.outcomes is not None else [])
            if by not in have:
                bad_option("--by", f"{by!r} is not a subject-level column of the data "
                                   f"(columns: {', '.join(have) or 'none'})")
        kw = {} if windows is None else {"windows": windows}
        table = run_nca(ck, auc_method=auc_method, blq_rule=blq_rule, **kw)
        summ = nca_summary(table, ck, by=by) if (by or summary_output) else None
    except (DatasetError, ValueError) as exc:
        fail(exc)
    atomic_write(output, lambda p: table.to_csv(p, index=False))
    say(f"NCA of {table['ID'].nunique()} subjects x {table['ANALYTE'].nunique()} analytes "
        f"(TIME in {time_unit}s) written to {output}")
    if summ is not None:
        target = summary_output or output.with_name(output.stem + "_summary.csv")
        atomic_write(target, lambda p: summ.to_csv(p, index=False))
        say(f"group summary written to {target}")
