"""Read and check NONMEM-style CK files (plain CSV parsing; nothing in a file is evaluated).

File conventions
----------------
* Comma-separated, UTF-8 (a byte-order mark is accepted), one record per line.
* ``.`` or an empty cell means missing.
* Lines whose first non-blank character is ``#`` or ``@`` are comments and skipped (NONMEM
  ``IGNORE=#`` / ``IGNORE=@``); blank lines are skipped too. Line numbers in problems are the
  physical lines of the file, header included (a header on the first line is line 1).
* The header is the first non-blank, non-comment line. A first line such as ``#ID,TIME,DV`` (a
  NONMEM header commented out) is taken as the header when one of its fields is ``ID`` (after
  ``column_map``).
* Trailing empty cells beyond the header (as spreadsheets write) are ignored; a line with more
  non-empty cells than the header, or fewer cells, is an error.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ckmodel.data import _pipeline as P
from ckmodel.data import schema as S
from ckmodel.data.ckdata import CKData
from ckmodel.errors import DatasetError, Problem

__all__ = ["read_ck", "check_ck"]

PathLike = str | os.PathLike[str]
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


def _read_text(path: PathLike) -> tuple[str, str]:
    file = os.fspath(path)
    p = Path(file)
    if not p.exists():
        raise DatasetError(f"file not found: {file}", file=file)
    if not p.is_file():
        raise DatasetError(f"not a file: {file}", file=file)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read the file: {exc}", file=file) from exc
    if b"\x00" in data:
        raise DatasetError("the file holds binary data (NUL bytes), not CSV text; export the "
                           "data as a comma-separated text file", file=file)
    try:
        return data.decode("utf-8-sig"), file
    except UnicodeDecodeError as exc:
        raise DatasetError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "save it as UTF-8 CSV", file=file) from exc


def _strip(s: pd.Series) -> pd.Series:
    return s.str.strip()


def _split_fields(line: str) -> list[str]:
    return next(csv.reader([line]), [])


def _fast_columns(data: list[str], n: int) -> list | None:
    """Columns via pandas' C parser when every line is plain (no quotes, n cells), else None."""
    if not data or any('"' in line for line in data) or \
            any(line.count(",") != n - 1 for line in data):
        return None
    df = pd.read_csv(io.StringIO("\n".join(data)), header=None, names=range(n), dtype=str,
                     na_filter=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False,
                     engine="c")
    if len(df) != len(data):
        return None
    return [df[j].reset_index(drop=True) for j in range(n)]


def _csv_columns(data: list[str], names: list[str], lines: np.ndarray, file: str | None,
                 problems: list[Problem]) -> list:
    """Columns via the csv module; ragged lines are reported, padded or cut (data kept)."""
    try:
        records = list(csv.reader(data))
    except csv.Error as exc:
        raise DatasetError(f"the file is not readable as CSV: {exc}", file=file) from exc
    if len(records) != len(lines):  # a quoted field spanning lines; csv joined them
        raise DatasetError("a quoted cell spans several lines (unbalanced quote \"); each "
                           "record must be on one line", file=file)
    n = len(names)
    lens = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    for i in np.flatnonzero(lens != n):
        rec = records[i]
        if len(rec) < n or any(c.strip() for c in rec[n:]):
            problems.append(Problem(
                f"line has {len(rec)} cells but the header has {n}; check for a missing or "
                "extra comma (text with commas must be quoted)", file=file, row=int(lines[i]),
                rule="ragged_line"))
        records[i] = (rec + [""] * n)[:n]
    return list(zip(*records, strict=True)) if records else [()] * n


def parse_csv(
    text: str, file: str | None, column_map: Mapping[str, str] | str | None,
    standard: tuple[str, ...],
) -> tuple[pd.DataFrame, np.ndarray, tuple[str, ...], int, list[Problem]]:
    """Split CSV text into a frame of stripped text cells with standard column names.

    Returns
    -------
    raw : pandas.DataFrame
        Text columns (pandas ``str`` dtype) of stripped cells.
    lines : numpy.ndarray
        1-based physical line of each record.
    header : tuple of str
        Header fields as written.
    header_line : int
        Physical line of the header.
    problems : list of Problem
        Header problems and ragged lines.
    """
    physical = text.split("\n") if "\r" not in text else _LINE_SPLIT.split(text)
    header_i = None
    data_idx: list[int] = []
    for i, line in enumerate(physical):
        s = line.strip()
        if not s:
            continue
        if header_i is None:
            if s[0] in "#@":
                try:
                    names, _ = S.standardize_header(_split_fields(s[1:]), column_map,
                                                    standard=standard)
                except csv.Error:
                    names = []
                if S.ID not in names:
                    continue
            header_i = i
            continue
        if s[0] not in "#@":
            data_idx.append(i)
    if header_i is None:
        raise DatasetError("the file has no header line (it is empty or only comments)",
                           file=file)
    hline = physical[header_i].strip()
    try:
        header = [h.strip() for h in _split_fields(hline[1:] if hline[0] in "#@" else hline)]
    except csv.Error as exc:
        raise DatasetError(f"the header is not readable as CSV: {exc}", file=file) from exc
    while len(header) > 1 and not header[-1]:  # spreadsheet trailing commas; cells checked below
        header.pop()
    names, problems = S.standardize_header(header, column_map, standard=standard, file=file,
                                           line=header_i + 1)
    lines = np.asarray(data_idx, dtype=np.int64) + 1
    data = [physical[i] for i in data_idx]
    cols = _fast_columns(data, len(names))
    if cols is None:
        cols = _csv_columns(data, names, lines, file, problems)
    raw = pd.DataFrame({name: _strip(pd.Series(c, dtype="str", index=range(len(lines))))
                        for name, c in zip(names, cols, strict=True)},
                       index=pd.RangeIndex(len(lines)))
    return raw, lines, tuple(header), header_i + 1, problems


def _outcomes_table(outcomes: PathLike | pd.DataFrame, column_map: Mapping[str, str] | str | None
                    ) -> tuple[P.Table, int | None, list[Problem]]:
    if isinstance(outcomes, pd.DataFrame):
        t, probs = P.outcomes_from_frame(outcomes, column_map)
        return t, None, probs
    text, ofile = _read_text(outcomes)
    raw, lines, _, hl, probs = parse_csv(text, ofile, column_map, S.OUTCOME_COLUMNS)
    t, p2 = P.coerce_outcomes(raw, lines, ofile)
    return t, hl, probs + p2


def _check(path: PathLike, outcomes: PathLike | pd.DataFrame | None,
           column_map: Mapping[str, str] | str | None,
           analytes: Mapping[str, str] | Iterable[str] | None,
           baseline_covariates: Iterable[str], time_unit: str,
           ) -> tuple[list[Problem], P.Parts | None, str]:
    if time_unit not in S.TIME_UNITS:
        raise ValueError(f"time_unit must be one of {S.TIME_UNITS}, got {time_unit!r}")
    text, file = _read_text(path)
    raw, lines, header, hl, problems = parse_csv(text, file, column_map, S.CK_STANDARD_NAMES)
    table, p2 = P.coerce_ck(raw, lines, file)
    out_t, ohl, p3 = None, None, []
    if outcomes is not None:
        out_t, ohl, p3 = _outcomes_table(outcomes, column_map)
    found, parts = P.process(table, outcomes=out_t, analytes=analytes,
                             baseline=tuple(baseline_covariates), header=header,
                             header_line=hl, outcome_header_line=ohl, time_unit=time_unit,
                             pre_ck=problems + p2, pre_outcomes=p3)
    return found, parts, file


def check_ck(
    path: PathLike,
    *,
    outcomes: PathLike | pd.DataFrame | None = None,
    column_map: Mapping[str, str] | str | None = None,
    analytes: Mapping[str, str] | Iterable[str] | None = None,
    baseline_covariates: Iterable[str] = (),
    time_unit: str = "day",
) -> list[Problem]:
    """Check a CK file (and its outcomes table) and return every problem found.

    Parameters
    ----------
    path : str or os.PathLike
        CK data file: long-format CSV, one record per line (see ``ckmodel.data.read``).
    outcomes : str, os.PathLike or pandas.DataFrame, optional
        Subject-level outcomes table (CSV path or frame with an ID column).
    column_map : dict or str, optional
        ``{source_name: standard_name}`` or a preset name (``"cdisc"``), applied to both files.
    analytes : dict or list of str, optional
        Analytes accepted besides PB_QPCR, BM_QPCR, PB_FLOW, BM_FLOW, as ``{name: unit}`` or
        names. With exactly one name and no ANALYTE column, all observations measure it.
    baseline_covariates : iterable of str
        Covariates that must be constant within each subject (an error otherwise).
    time_unit : str
        Unit of TIME and of the outcome times (as for :func:`read_ck`).

    Returns
    -------
    list of Problem
        Errors and warnings (``Problem.severity``), CK file first, then outcomes, by line.
        Empty when the data are clean.

    Raises
    ------
    DatasetError
        Only when a file cannot be read at all (missing, binary, not UTF-8, no header).

    Examples
    --------
    >>> from ckmodel.resources import example_data
    >>> ck_file, outcomes_file = example_data("example_small")
    >>> [x.rule for x in check_ck(ck_file, outcomes=outcomes_file)]
    ['after_hsct']
    """
    problems, _, _ = _check(path, outcomes, column_map, analytes, baseline_covariates,
                            time_unit)
    return problems


def read_ck(
    path: PathLike,
    *,
    outcomes: PathLike | pd.DataFrame | None = None,
    column_map: Mapping[str, str] | str | None = None,
    analytes: Mapping[str, str] | Iterable[str] | None = None,
    time_unit: str = "day",
    baseline_covariates: Iterable[str] = (),
) -> CKData:
    """Read a NONMEM-style CK file into a checked, immutable :class:`CKData`.

    Parameters
    ----------
    path : str or os.PathLike
        CK data file (ID, TIME in ``time_unit`` since infusion, EVID, AMT, CMT, ANALYTE, DV in
        the analyte's unit, e.g. copies/ug gDNA or CAR+ cells/uL, LLOQ, BLQ, MDV, covariates).
    outcomes : str, os.PathLike or pandas.DataFrame, optional
        Subject-level outcomes table; its times are in ``time_unit`` too.
    column_map : dict or str, optional
        ``{source_name: standard_name}`` or a preset name (``"cdisc"``).
    analytes : dict or list of str, optional
        Extra analytes, as ``{name: unit}`` or names.
    time_unit : str
        Unit of TIME and of the outcome times: one of ``minute, hour, day, week, month, year``.
        It is recorded, not converted.
    baseline_covariates : iterable of str
        Covariates that must be constant within each subject.

    Returns
    -------
    CKData
        Warnings (e.g. records after HSCT, flagged and kept) are in ``CKData.problems``.

    Raises
    ------
    DatasetError
        Listing every error-severity problem at once (``.problems`` holds all of them).

    Warns
    -----
    DataWarning
        Once, summarising the warnings, when any were found.

    Examples
    --------
    >>> import warnings
    >>> from ckmodel.resources import example_data
    >>> ck_file, outcomes_file = example_data("example_small")
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     ck = read_ck(ck_file, outcomes=outcomes_file)
    >>> ck.analytes
    ('PB_QPCR', 'BM_QPCR', 'PB_FLOW')
    """
    problems, parts, file = _check(path, outcomes, column_map, analytes, baseline_covariates,
                                   time_unit)
    parts, warns = P.finish(problems, parts, file, stacklevel=3)
    return CKData._from_parts(parts, source=file, time_unit=time_unit, problems=warns)
