"""``ckmodel vpc``, ``ckmodel gof`` and ``ckmodel compare``: diagnostics of saved fits.

Options are checked before the fit is read; the stratification column is checked against the
fit's data before any simulation; every output goes through :func:`ckmodel.files.atomic_write`,
so a failed command leaves no file behind.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ckmodel.cli.common import (
    app,
    bad_option,
    check_file,
    console,
    fail,
    load_fit_file,
    say,
    shown_warnings,
)
from ckmodel.errors import CKModelError

FIGURE_SUFFIXES = (".png", ".pdf", ".svg")

FitArg = Annotated[Path, typer.Argument(help="Fit file written by 'ckmodel fit'")]
StratifyOpt = Annotated[str | None, typer.Option(
    "--stratify", metavar="COLUMN",
    help="Subject-level column whose levels get their own panels and rows (DOSE_LEVEL, "
         "DOSE, COHORT ...)")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Seed of the simulations")]


def parse_bins(value: str | None) -> int | list[float] | None:
    """``--bins``: a number of quantile bins (``8``) or increasing edges (``0,3,7,14,28``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if "," not in text:
            k = int(text)
            if k < 1:
                bad_option("--bins", f"{value!r}: the number of bins must be >= 1")
            return k
        edges = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        bad_option("--bins", f"{value!r}: give a number of bins (e.g. 8) or increasing edges "
                             "in the model's time unit (e.g. 0,3,7,14,28,90,365)")
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        bad_option("--bins", f"{value!r}: edges must be two or more increasing times")
    return edges


def _figure_path(path: Path | None, option: str) -> None:
    if path is not None and path.suffix.lower() not in FIGURE_SUFFIXES:
        bad_option(option, f"{path}: the figure must end in {', '.join(FIGURE_SUFFIXES)}")


def _csv_path(path: Path | None, option: str) -> None:
    if path is not None and path.suffix.lower() != ".csv":
        bad_option(option, f"{path}: the table must end in .csv")


def _check_stratify(fit: Any, column: str | None) -> None:
    from ckmodel.diagnostics import subject_strata

    if column is None:
        return
    if fit.data is None:
        bad_option("--stratify", "this fit holds no data to stratify")
    if column in fit.data.observations.columns:
        return
    try:
        subject_strata(fit.data, column, list(fit.data.subjects))
    except KeyError as exc:
        bad_option("--stratify", str(exc.args[0]))


def _save_figure(fig: Any, path: Path) -> None:
    from ckmodel.files import atomic_write

    fmt = path.suffix.lower().lstrip(".")
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format=fmt))


@app.command()
def vpc(
    fit_file: FitArg,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="VPC figure (.png, .pdf or .svg)")] = None,
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="VPC table: one row per analyte, stratum and bin")] = None,
    pc: Annotated[bool, typer.Option("--pc", help="Prediction-corrected VPC")] = False,
    stratify: StratifyOpt = None,
    bins: Annotated[str | None, typer.Option(
        "--bins", metavar="K|EDGES",
        help="Number of quantile bins, or comma-separated edges in the model's time unit; "
             "default one bin per nominal time")] = None,
    n_sim: Annotated[int, typer.Option("--n-sim", min=1,
                                       help="Replicates of the trial")] = 200,
    seed: SeedOpt = 1,
) -> None:
    """VPC (or pcVPC) of a saved fit from new virtual subjects: figure and table."""
    if output is None and csv is None:
        bad_option("--output", "give -o FIGURE (.png/.pdf/.svg) and/or --csv TABLE.csv")
    _figure_path(output, "--output")
    _csv_path(csv, "--csv")
    edges = parse_bins(bins)
    fit = load_fit_file(fit_file)
    if fit.data is None:
        fail("this fit holds no data; a VPC needs the design and the observations")
    _check_stratify(fit, stratify)
    from ckmodel.diagnostics import vpc as run_vpc

    t0 = time.perf_counter()
    try:
        with shown_warnings():
            result = run_vpc(fit, pc=pc, stratify=stratify, bins=edges, n_sim=n_sim, seed=seed)
    except (CKModelError, ValueError, KeyError) as exc:
        fail(exc)
    t_sim = time.perf_counter() - t0
    kind = "pcVPC" if pc else "VPC"
    say(f"{kind}: {n_sim} replicates, {len(result.table)} rows "
        f"({', '.join(result.edges)}; strata: {', '.join(result.labels.values())}) "
        f"in {t_sim:.1f} s")
    if csv is not None:
        result.to_csv(csv)
        say(f"table: {csv}")
    if output is not None:
        import matplotlib

        matplotlib.use("Agg")
        from ckmodel.plots import plot_vpc

        fig = plot_vpc(result)
        _save_figure(fig, output)
        say(f"figure: {output}")


@app.command()
def gof(
    fit_file: FitArg,
    output: Annotated[Path, typer.Option("--output", "-o",
                                         help="GOF figure (.png, .pdf or .svg)")] = Path(
        "gof.png"),
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Also write PRED, IPRED, NPDE of every record")] = None,
    stratify: StratifyOpt = None,
    n_sim: Annotated[int, typer.Option("--n-sim", min=10,
                                       help="Replicates of the trial for NPDE")] = 1000,
    seed: SeedOpt = 1,
) -> None:
    """Goodness-of-fit panels of a saved fit: DV vs PRED/IPRED, NPDE vs time and PRED."""
    _figure_path(output, "--output")
    _csv_path(csv, "--csv")
    fit = load_fit_file(fit_file)
    if fit.data is None:
        fail("this fit holds no data; GOF needs the design and the observations")
    _check_stratify(fit, stratify)
    from ckmodel.diagnostics import gof_table
    from ckmodel.files import atomic_write

    try:
        with shown_warnings():
            table = gof_table(fit, n_sim=n_sim, seed=seed, stratify=stratify)
    except (CKModelError, ValueError, KeyError) as exc:
        fail(exc)
    if csv is not None:
        atomic_write(csv, lambda p: table.to_csv(p, index=False, float_format="%.6g"))
        say(f"table: {csv}")
    import matplotlib

    matplotlib.use("Agg")
    from ckmodel.plots import plot_gof

    _save_figure(plot_gof(table), output)
    say(f"figure: {output}")


@app.command()
def compare(
    fit_files: Annotated[list[Path], typer.Argument(help="Two or more fits of the same data")],
    by: Annotated[str, typer.Option(
        "--by", help="Unit left out by PSIS-LOO: subject (all its records) or record")
    ] = "subject",
    csv: Annotated[Path | None, typer.Option("--csv", help="Also write the table")] = None,
) -> None:
    """Rank fits of the same data by PSIS-LOO expected log predictive density (ArviZ)."""
    if by not in ("subject", "record"):
        bad_option("--by", f"{by!r}: use subject or record")
    if len(fit_files) < 2:
        bad_option("FIT_FILES", "give two or more fit files")
    _csv_path(csv, "--csv")
    if len({p.resolve() for p in fit_files}) != len(fit_files):
        bad_option("FIT_FILES", "a fit file is given twice")
    for p in fit_files:
        check_file(p, "FIT_FILES")
    fits = {}
    for p in fit_files:
        name = p.stem if p.stem not in fits else str(p)
        fits[name] = load_fit_file(p)
    from ckmodel.diagnostics import compare_fits

    try:
        table = compare_fits(fits, by=by)
    except (ValueError, CKModelError) as exc:
        fail(exc)
    out = Table(title=f"PSIS-LOO comparison (leave one {by} out), best first")
    for col in ("fit", "model", "rank", "elpd_loo", "se", "elpd_diff", "dse", "p_loo",
                "weight", "Pareto k > 0.7"):
        out.add_column(col)
    for name, row in table.iterrows():
        out.add_row(str(name), str(row["model"]), str(int(row["rank"])),
                    f"{row['elpd_loo']:.1f}", f"{row['se']:.1f}", f"{row['elpd_diff']:.1f}",
                    f"{row['dse']:.1f}", f"{row['p_loo']:.1f}", f"{row['weight']:.2f}",
                    str(int(row["n_high_k"])))
    console.print(out)
    if (table["n_high_k"] > 0).any():
        say(f"note: some {by}s have Pareto k > 0.7, where PSIS-LOO is unreliable; read "
            "differences smaller than a few dse with care", style="yellow")
    if csv is not None:
        from ckmodel.files import atomic_write

        atomic_write(csv, lambda p: table.to_csv(p))
        say(f"table: {csv}")
