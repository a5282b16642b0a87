"""Read and check the subject-level outcomes table on its own (no CK file).

The same parsing and rules as :func:`~ckmodel.data.read_ck` applies to its ``outcomes=``
argument (:mod:`ckmodel.data.outcome_checks`), without the cross-check of IDs against CK data.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import pandas as pd

from ckmodel.data import _pipeline as P
from ckmodel.data import schema as S
from ckmodel.data._records import ROW
from ckmodel.data.outcome_checks import check_outcomes
from ckmodel.errors import DatasetError, DataWarning

__all__ = ["read_outcomes"]


def read_outcomes(
    path: str | os.PathLike[str] | pd.DataFrame,
    *,
    column_map: Mapping[str, str] | str | None = None,
) -> pd.DataFrame:
    """Read and check a subject-level outcomes table (DESIGN.md section 3).

    Parameters
    ----------
    path : str, os.PathLike or pandas.DataFrame
        Outcomes CSV (``.`` or empty = missing; ``#`` comment lines skipped) or an in-memory
        frame with an ID column (or ID index). Times are in the unit of the CK data (days
        since infusion by default; DOR_TIME and MRD_DUR_TIME from the start of the duration).
    column_map : dict or str, optional
        ``{source_name: standard_name}`` renaming, as for :func:`~ckmodel.data.read_ck`.

    Returns
    -------
    pandas.DataFrame
        One row per subject, indexed by ID (str): numbers as float (NaN = missing), BOR as
        str; other columns kept as written.

    Raises
    ------
    DatasetError
        Listing every error at once (grades outside 0-5, flags not 0/1, unknown BOR, negative
        times, an event flag without its time, duplicate IDs, unreadable cells...).

    Warns
    -----
    DataWarning
        Once, summarising warnings, when any were found.

    Examples
    --------
    >>> from ckmodel.resources import example_data
    >>> _, outcomes_file = example_data("example_trial")
    >>> out = read_outcomes(outcomes_file)
    >>> len(out), out.index.name, int(out["DLT"].sum())
    (30, 'ID', 3)
    """
    from ckmodel.data.read import _outcomes_table

    table, header_line, problems = _outcomes_table(path, column_map)
    file = None if isinstance(path, pd.DataFrame) else os.fspath(path)
    problems = list(problems) + check_outcomes(table, (), header_line)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DatasetError(problems, file=file)
    warns = [p for p in problems if p.severity != "error"]
    if warns:
        warnings.warn(f"{len(warns)} warning(s) in the outcomes table: {warns[0]}"
                      + (" ..." if len(warns) > 1 else ""), DataWarning, stacklevel=2)
    frame = table.frame.drop(columns=ROW)
    frame.index = pd.Index(frame.pop(S.ID).to_numpy(), dtype="str", name=S.ID)
    return P._text_to_str(frame)
