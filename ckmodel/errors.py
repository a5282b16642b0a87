"""Exceptions and warnings raised by ckmodel.

Every error carries enough context (file, row, column, subject, key) for the user to act on it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "CKModelError",
    "Problem",
    "DatasetError",
    "ModelSpecError",
    "SolverError",
    "FitMismatchError",
    "ConvergenceWarning",
    "DataWarning",
    "SolverWarning",
    "hint",
    "use_cli_hints",
]

#: "python" or "cli": which form fix-it hints in messages take (the command line sets "cli").
_HINT_STYLE: ContextVar[str] = ContextVar("ckmodel_hint_style", default="python")


def use_cli_hints(on: bool = True) -> None:
    """Make fix-it hints in messages name command-line options instead of Python arguments.

    The ``ckmodel`` command line calls this once at start-up.
    """
    _HINT_STYLE.set("cli" if on else "python")


def hint(*, python: str, cli: str) -> str:
    """The fix-it text for the audience at hand: ``python`` in Python, ``cli`` on the CLI.

    Examples
    --------
    >>> hint(python="analytes={'CP': 'mg/L'}", cli="--units CP=mg/L")
    "analytes={'CP': 'mg/L'}"
    """
    return cli if _HINT_STYLE.get() == "cli" else python


class CKModelError(Exception):
    """Base class of all ckmodel errors."""


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file.

    Parameters
    ----------
    message : str
        What is wrong and what to do about it.
    file : str, optional
        File the problem was found in.
    row : int, optional
        1-based line number in the file (header is line 1), when the problem is about one record.
    column : str, optional
        Column name involved.
    subject : str, optional
        Subject identifier involved.
    rule : str
        Short machine-readable name of the rule that found the problem.
    severity : str
        ``"error"`` (blocks use of the data) or ``"warning"`` (flagged, data kept).
    """

    message: str
    file: str | None = None
    row: int | None = None
    column: str | None = None
    subject: str | None = None
    rule: str = "generic"
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.row is not None:
            where.append(f"line {self.row}")
        if self.column:
            where.append(f"column {self.column}")
        if self.subject is not None:
            where.append(f"subject {self.subject}")
        loc = ", ".join(where)
        head = f"[{self.severity}] {loc}: " if loc else f"[{self.severity}] "
        return head + self.message


class DatasetError(CKModelError, ValueError):
    """A data file failed its checks; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str, *, file: str | None = None):
        if isinstance(problems, str):
            problems = [Problem(problems, file=file)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        head = f"{len(errors)} problem(s) found in the data"
        if file:
            head += f" ({file})"
        lines = [head + ":"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class ModelSpecError(CKModelError, ValueError):
    """A model specification file is malformed; the message names the file and key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ", ".join(x for x in (file, f"key '{key}'" if key else None) if x)
        super().__init__(f"{where}: {message}" if where else message)


class SolverError(CKModelError, RuntimeError):
    """An ODE solve failed; the message says for which subject and what to try."""


class FitMismatchError(CKModelError, ValueError):
    """A saved fit does not match the model spec or data it is loaded with."""


class ConvergenceWarning(UserWarning):
    """Sampler diagnostics (divergences, R-hat, ESS) indicate an unreliable posterior."""


class SolverWarning(UserWarning):
    """A numerical solve is unreliable for parameters a fit reaches, e.g. an unstable step."""


class DataWarning(UserWarning):
    """Data were flagged (kept, not dropped), e.g. records after allo-HSCT."""
