"""What every command shares: the app, consoles, option types, parsing and error printing.

This package is the only place that configures logging and the terminal; the library only
creates loggers and raises. Messages are printed literally (never read as rich markup), the
package's own warnings reach the terminal once each, formatted, and every option is checked
before any work starts. Heavy libraries (PyMC, PyTensor, numba, matplotlib) are imported
inside the commands that need them, so ``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Cellular kinetics of CAR-T therapies: check, NCA, simulate, fit, "
                       "summarise.")
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160, highlight=False,
                  markup=False)
# piped or logged, stderr lines are not wrapped: a message naming a long path stays one line
# that grep finds (rich would break it at 80 columns)
err_console = Console(stderr=True, highlight=False, markup=False,
                      soft_wrap=not sys.stderr.isatty())
log = logging.getLogger("ckmodel")

#: Time units a data file's TIME may be in (``--time-unit``).
TIME_UNIT_CHOICES = ("minute", "hour", "day", "week", "month", "year")


def setup_logging(verbose: int) -> None:
    """Send ckmodel's log records to stderr, at INFO with ``-v`` (the default) or DEBUG."""
    from rich.logging import RichHandler

    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    root.handlers[:] = [RichHandler(console=err_console, show_path=False, show_time=False,
                                    markup=False, highlighter=None)]
    root.setLevel(logging.WARNING)
    logging.getLogger("ckmodel").setLevel(level)


def say(text: str, style: str | None = None) -> None:
    """Print ``text`` literally (brackets stay brackets) on stdout."""
    console.print(Text(str(text), style=style or ""))


def fail(exc: BaseException | str, code: int = 1) -> NoReturn:
    """Print ``error: <message>`` literally on stderr and exit with ``code``."""
    err_console.print(Text("error: ", style="bold red") + Text(str(exc)))
    raise typer.Exit(code)


def bad_option(option: str, message: str) -> NoReturn:
    """Refuse the value of ``option`` (exit 2, as for any usage error)."""
    fail(f"option {option}: {message}", code=2)


@contextmanager
def shown_warnings(stated: tuple[type[Warning], ...] = ()) -> Iterator[None]:
    """Collect warnings raised inside, then print each distinct one once, formatted.

    ``stated``: warning classes the command states itself (e.g. the convergence verdict of
    the fit summary), so they are not printed twice.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        msg = str(w.message)
        if msg in seen or issubclass(w.category, (DeprecationWarning, FutureWarning, *stated)):
            continue
        seen.add(msg)
        kind = w.category.__name__
        err_console.print(Text(f"warning ({kind}): ", style="bold yellow") + Text(msg))


def parse_assignments(values: list[str] | None, option: str, what: str = "VALUE"
                      ) -> dict[str, str]:
    """``["A=x", "B=y"]`` to ``{"A": "x", "B": "y"}``; refuses anything else naming ``option``."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, value = v.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            bad_option(option, f"{v!r} must be NAME={what} (e.g. {option} {_example(option)})")
        if name in out:
            bad_option(option, f"{name} is given twice")
        out[name] = value
    return out


def _example(option: str) -> str:
    return {"--units": "CP=mg/L", "--fix": "F=1", "--error": "CP=additive",
            "--prior": "'CL=LogNormal(log(2), 0.5)'", "--covariate": "WT=70"
            }.get(option, "NAME=VALUE")


def parse_numbers(values: dict[str, str], option: str) -> dict[str, float]:
    """Values of NAME=NUMBER pairs as floats; refuses non-numbers naming ``option``."""
    out = {}
    for k, v in values.items():
        try:
            out[k] = float(v)
        except ValueError:
            bad_option(option, f"{k}={v}: {v!r} is not a number")
    return out


def column_map(value: str | None) -> dict[str, str] | str | None:
    """``--column-map``: ``cdisc``, a JSON object, or ``SRC=DST,SRC=DST``."""
    import json

    if value is None or value == "cdisc":
        return value
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError:
        mapping = parse_assignments(value.split(","), "--column-map", "STANDARD_NAME")
    if not isinstance(mapping, dict) or not mapping:
        bad_option("--column-map", "use 'cdisc', a JSON object or SRC=DST,SRC=DST")
    return mapping


def check_time_unit(value: str) -> str:
    """``--time-unit``: one of :data:`TIME_UNIT_CHOICES`."""
    if value not in TIME_UNIT_CHOICES:
        bad_option("--time-unit", f"{value!r} is not a time unit; use one of "
                   f"{', '.join(TIME_UNIT_CHOICES)}")
    return value


def check_file(path: Path, option: str) -> Path:
    """An input file must exist and be a file."""
    if not path.exists():
        bad_option(option, f"{path}: no such file")
    if not path.is_file():
        bad_option(option, f"{path} is not a file")
    return path


def check_analytes_and_metrics(fit: Any, analyte: list[str] | None,
                               metric: list[str] | None) -> None:
    """``--analyte`` among the fit's outputs and ``--metric`` among the exposure metrics."""
    from ckmodel.exposure import metric_names

    outputs = list(fit.spec.output_names)
    bad = [a for a in analyte or [] if a not in outputs]
    if bad:
        bad_option("--analyte", f"{', '.join(bad)}: not an output of {fit.spec.name} "
                                f"({', '.join(outputs)})")
    names = metric_names(fit.spec.time_unit)
    bad = [m for m in metric or [] if m.upper() not in names]
    if bad:
        bad_option("--metric", f"{', '.join(bad)}: use {', '.join(names)}")


def load_fit_file(path: Path) -> Any:
    """Read a saved fit for a command: a missing or unreadable file is a clear error."""
    from ckmodel.errors import CKModelError, FitMismatchError
    from ckmodel.fitting import load_fit

    check_file(path, "FIT")
    try:
        with shown_warnings():
            return load_fit(path)
    except (FitMismatchError, OSError, CKModelError, ValueError) as exc:
        fail(exc)


def read_data(data: Path, *, outcomes: Path | None, column_map_value: str | None,
              units: dict[str, str], time_unit: str, model_units: dict[str, str] | None = None,
              after_hsct: str = "keep") -> Any:
    """Read a CK file for a command; model outputs and ``--units`` declare the analytes.

    ``--after-hsct drop`` leaves out the records after allo-HSCT, saying how many.
    """
    from ckmodel.data import read_ck
    from ckmodel.errors import DataWarning

    if after_hsct not in ("keep", "drop"):
        bad_option("--after-hsct", f"{after_hsct!r}: use keep (flagged) or drop")

    analytes = dict(model_units or {})
    analytes.update(units)
    with shown_warnings():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ck = read_ck(data, outcomes=outcomes, column_map=column_map(column_map_value),
                         analytes=analytes or None, time_unit=time_unit)
        if after_hsct == "drop":
            n = int(ck.observations["AFTER_HSCT"].sum())
            ck = ck.without_flagged()
            say(f"--after-hsct drop: {n} record(s) after allo-HSCT left out")
        left = any(p.severity != "error" for p in ck.problems)
        for w in caught:   # the data warning is moot when the dropped records were its subject
            if not (after_hsct == "drop" and issubclass(w.category, DataWarning) and not left):
                warnings.warn(w.message, w.category, stacklevel=2)
    return ck


def bundled_example(name: str = "example_trial") -> tuple[Path, Path | None]:
    """The bundled example data set (ck.csv, outcomes.csv or None)."""
    from ckmodel.resources import example_data

    try:
        return example_data(name)
    except (FileNotFoundError, LookupError, ValueError) as exc:
        fail(f"{exc}; pass --data")


# --- option types shared by commands --------------------------------------------------------
DataArg = Annotated[Path, typer.Argument(help="Long-format NONMEM-style CK data (CSV)")]
OutcomesOpt = Annotated[Path | None, typer.Option("--outcomes", help="Subject-level outcomes CSV")]
MapOpt = Annotated[str | None, typer.Option("--column-map",
                                            help="'cdisc' or SRC=DST,... to rename columns")]
UnitsOpt = Annotated[list[str] | None, typer.Option(
    "--units", metavar="NAME=UNIT",
    help="Declare an ANALYTE code beyond PB_QPCR, BM_QPCR, PB_FLOW, BM_FLOW with the unit of "
         "its DV and LLOQ, e.g. --units CONC=mg/L; repeatable. A fitted model's own outputs "
         "need no --units.")]
AfterHSCTOpt = Annotated[str, typer.Option(
    "--after-hsct", metavar="keep|drop",
    help="Records after allo-HSCT (HSCT_TIME): keep them, flagged AFTER_HSCT (default), or "
         "drop them, so that each patient's CAR-T record ends at the transplant")]
TimeUnitOpt = Annotated[str, typer.Option(
    "--time-unit", metavar="UNIT",
    help="Unit of TIME (and outcome times) in the data: minute, hour, day, week, month or "
         "year. A fit converts to the model's unit (saying so) when exact, else refuses.")]
