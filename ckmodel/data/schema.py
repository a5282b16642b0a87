"""Column roles of the CK data contract (DESIGN.md section 3) and of the outcomes table.

The CK file is long format, one row per record, NONMEM style. Every column has a role from a
closed vocabulary; any other column is a covariate (baseline when constant within each subject,
time-varying otherwise). Header names of the standard columns are matched case-insensitively;
other headers keep their spelling.

Column mapping
--------------
``column_map`` renames source columns to standard names before anything else happens. It is
either a dict ``{source_name: standard_name}`` (source names matched case-insensitively; a
mapping onto a name that already exists is reported as a duplicate column) or the name of a
preset. The ``"cdisc"`` preset (:data:`CDISC_COLUMN_MAP`) follows ADaM ADPC/ADPPK names:

=========  ==========  ===========================================================
source     standard    note
=========  ==========  ===========================================================
USUBJID    ID          unique subject identifier
AFRLT      TIME        actual relative time from first dose; must already be in
                       ``time_unit`` (no conversion is done; ADaM often uses hours)
AVAL       DV          analysis value
PARAMCD    ANALYTE     parameter code, e.g. PB_QPCR
ALLOQ      LLOQ        analysis lower limit of quantitation
BLQFN      BLQ         numeric BLQ flag (1/0)
=========  ==========  ===========================================================

EVID, AMT, CMT and MDV keep their names in ADPPK. A preset entry is skipped when the file
already has a column with the target name (so an ADPPK file with both ``USUBJID`` and ``ID``
uses ``ID``, and ``USUBJID`` stays a covariate). Unit columns such as ``AVALU`` or ``RRLTU`` are
not mapped: they stay covariate columns, nothing is dropped. ATPTN/NFRLT (nominal times) are
deliberately not mapped: the model needs actual times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ckmodel.errors import Problem

__all__ = [
    "ID", "TIME", "EVID", "AMT", "CMT", "ANALYTE", "DV", "LLOQ", "BLQ", "MDV", "MDV_REASON",
    "HSCT_TIME", "ROLE_COLUMNS", "REQUIRED_COLUMNS", "NUMERIC_COLUMNS", "TEXT_COLUMNS",
    "UNSUPPORTED_COLUMNS", "DLT", "CRS_GRADE", "ICANS_GRADE", "BOR", "MRD_NEG", "EFS_TIME",
    "EFS_EVENT", "OS_TIME", "OS_EVENT", "DOR_TIME", "DOR_EVENT", "ADA", "ADA_TIME",
    "MRD_DUR_TIME", "MRD_DUR_EVENT", "DOR_START", "MRD_DUR_START",
    "OUTCOME_COLUMNS", "GRADE_COLUMNS", "FLAG_COLUMNS", "OUTCOME_TIME_COLUMNS",
    "EVENT_TIME_PAIRS", "BOR_CATEGORIES", "Analyte", "DEFAULT_ANALYTES", "CDISC_COLUMN_MAP",
    "COLUMN_MAP_PRESETS", "MISSING_TOKENS", "TIME_UNITS", "DAYS_PER_UNIT", "time_factor",
    "analyte_registry",
    "standardize_header",
]

# --- CK file roles -------------------------------------------------------------------------
ID = "ID"  #: subject identifier, kept as the string written in the file
TIME = "TIME"  #: time since CAR-T infusion, in ``time_unit`` (default days)
EVID = "EVID"  #: 0 observation, 1 dose (default 0)
AMT = "AMT"  #: dose amount on EVID=1 rows (e.g. 1e6 CAR+ T cells/kg)
CMT = "CMT"  #: model state receiving the dose (optional, text)
ANALYTE = "ANALYTE"  #: what was measured, e.g. PB_QPCR
DV = "DV"  #: measured value on the natural scale
LLOQ = "LLOQ"  #: lower limit of quantification of the record, same unit as DV
BLQ = "BLQ"  #: 1 when below LLOQ (DV ignored, likelihood censored), default 0
MDV = "MDV"  #: 1 to exclude an observation (kept, never dropped), default 0
MDV_REASON = "MDV_REASON"  #: free-text reason for MDV=1 (optional)
HSCT_TIME = "HSCT_TIME"  #: time of allo-HSCT (subject level; CK file or outcomes table)

ROLE_COLUMNS = (ID, TIME, EVID, AMT, CMT, ANALYTE, DV, LLOQ, BLQ, MDV, MDV_REASON)
REQUIRED_COLUMNS = (ID, TIME, DV)
NUMERIC_COLUMNS = (TIME, EVID, AMT, DV, LLOQ, BLQ, MDV)
TEXT_COLUMNS = (ID, CMT, ANALYTE, MDV_REASON)
#: NONMEM dosing columns not supported yet: an error when they hold anything but 0/missing.
UNSUPPORTED_COLUMNS = ("RATE", "II", "ADDL", "SS")
#: Standard names recognised (case-insensitively) in a CK file header.
CK_STANDARD_NAMES = ROLE_COLUMNS + (HSCT_TIME,) + UNSUPPORTED_COLUMNS
#: Cell values that mean "missing" (NONMEM uses ``.``).
MISSING_TOKENS = ("", ".")
TIME_UNITS = ("minute", "hour", "day", "week", "month", "year")
#: Length of each exactly convertible time unit in days (months and years are not: their
#: length in days depends on the calendar, so data in them must meet a model in the same unit).
DAYS_PER_UNIT = MappingProxyType({"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0, "week": 7.0})


def time_factor(data_unit: str, model_unit: str) -> float:
    """Factor that turns a time in ``data_unit`` into ``model_unit`` (e.g. hour to day: 1/24).

    Parameters
    ----------
    data_unit, model_unit : str
        Units among :data:`TIME_UNITS`.

    Returns
    -------
    float
        1.0 when the units agree.

    Raises
    ------
    ValueError
        Naming both units, when one is not a time unit or the two cannot be converted exactly
        (months, years).

    Examples
    --------
    >>> time_factor("hour", "day")
    0.041666666666666664
    >>> time_factor("week", "day")
    7.0
    """
    for u in (data_unit, model_unit):
        if u not in TIME_UNITS:
            raise ValueError(f"unknown time unit {u!r}; use one of {', '.join(TIME_UNITS)}")
    if data_unit == model_unit:
        return 1.0
    if data_unit not in DAYS_PER_UNIT or model_unit not in DAYS_PER_UNIT:
        raise ValueError(f"data times are in {data_unit}s but the model's time unit is "
                         f"{model_unit}; {data_unit}s and {model_unit}s cannot be converted "
                         f"exactly: give the data in {model_unit}s")
    return DAYS_PER_UNIT[data_unit] / DAYS_PER_UNIT[model_unit]

# --- outcomes table ------------------------------------------------------------------------
DLT = "DLT"  #: dose-limiting toxicity, 0/1
CRS_GRADE = "CRS_GRADE"  #: worst cytokine release syndrome grade, integer 0-5
ICANS_GRADE = "ICANS_GRADE"  #: worst ICANS grade, integer 0-5
BOR = "BOR"  #: best overall response, one of BOR_CATEGORIES
MRD_NEG = "MRD_NEG"  #: MRD-negative response, 0/1
EFS_TIME, EFS_EVENT = "EFS_TIME", "EFS_EVENT"  #: event-free survival time and event flag
OS_TIME, OS_EVENT = "OS_TIME", "OS_EVENT"  #: overall survival time and event flag
DOR_TIME, DOR_EVENT = "DOR_TIME", "DOR_EVENT"  #: duration of response and event flag
ADA, ADA_TIME = "ADA", "ADA_TIME"  #: anti-drug antibodies 0/1 and onset time
#: MRD-negative duration: time from first MRD negativity to MRD/morphologic relapse or death,
#: and its event flag (like DOR_TIME/DOR_EVENT, measured from the start of the duration)
MRD_DUR_TIME, MRD_DUR_EVENT = "MRD_DUR_TIME", "MRD_DUR_EVENT"
#: optional: time since infusion at which DOR / MRD-negative duration starts (first response,
#: first MRD negativity); places HSCT_TIME on the duration's clock for censoring at HSCT
DOR_START, MRD_DUR_START = "DOR_START", "MRD_DUR_START"

OUTCOME_COLUMNS = (ID, DLT, CRS_GRADE, ICANS_GRADE, BOR, MRD_NEG, EFS_TIME, EFS_EVENT, OS_TIME,
                   OS_EVENT, DOR_TIME, DOR_EVENT, HSCT_TIME, ADA, ADA_TIME, MRD_DUR_TIME,
                   MRD_DUR_EVENT, DOR_START, MRD_DUR_START)
GRADE_COLUMNS = (CRS_GRADE, ICANS_GRADE)
FLAG_COLUMNS = (DLT, MRD_NEG, EFS_EVENT, OS_EVENT, DOR_EVENT, ADA, MRD_DUR_EVENT)
OUTCOME_TIME_COLUMNS = (EFS_TIME, OS_TIME, DOR_TIME, HSCT_TIME, ADA_TIME, MRD_DUR_TIME,
                        DOR_START, MRD_DUR_START)
EVENT_TIME_PAIRS = ((EFS_TIME, EFS_EVENT), (OS_TIME, OS_EVENT), (DOR_TIME, DOR_EVENT),
                    (MRD_DUR_TIME, MRD_DUR_EVENT))
BOR_CATEGORIES = ("CR", "CRh", "CRi", "MLFS", "PR", "SD", "PD", "NR")


# --- analytes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Analyte:
    """A measured quantity that may appear in the ANALYTE column.

    Parameters
    ----------
    name : str
        Code used in the ANALYTE column, e.g. ``"PB_QPCR"``.
    unit : str
        Unit of DV and LLOQ, e.g. ``"copies/ug gDNA"``.
    description : str
        One line for reports.
    """

    name: str
    unit: str = ""
    description: str = ""


DEFAULT_ANALYTES: Mapping[str, Analyte] = MappingProxyType({
    "PB_QPCR": Analyte("PB_QPCR", "copies/ug gDNA", "transgene qPCR in peripheral blood"),
    "BM_QPCR": Analyte("BM_QPCR", "copies/ug gDNA", "transgene qPCR in bone marrow"),
    "PB_FLOW": Analyte("PB_FLOW", "CAR+ cells/uL", "CAR+ T cells by flow cytometry, blood"),
    "BM_FLOW": Analyte("BM_FLOW", "CAR+ cells/uL", "CAR+ T cells by flow cytometry, marrow"),
})


def analyte_registry(
    analytes: Mapping[str, str] | Iterable[str] | None = None,
) -> dict[str, Analyte]:
    """Known analytes: the defaults plus the caller's additions.

    Parameters
    ----------
    analytes : mapping of str to str, or iterable of str, optional
        Extra analyte codes, as ``{name: unit}`` or a list of names (unit left blank). A name
        already in :data:`DEFAULT_ANALYTES` with a new unit overrides the unit.

    Returns
    -------
    dict of str to Analyte
        Ordered: defaults first, then additions in the order given.

    Examples
    --------
    >>> list(analyte_registry({"PB_DDPCR": "copies/ug gDNA"}))[-1]
    'PB_DDPCR'
    """
    reg = dict(DEFAULT_ANALYTES)
    if analytes is None:
        return reg
    if isinstance(analytes, str):
        analytes = [analytes]
    items = analytes.items() if isinstance(analytes, Mapping) else ((a, "") for a in analytes)
    for name, unit in items:
        name = str(name).strip()
        if not name:
            raise ValueError("analytes: empty analyte name")
        old = reg.get(name)
        reg[name] = Analyte(name, str(unit) or (old.unit if old else ""),
                            old.description if old else "")
    return reg


# --- column mapping ------------------------------------------------------------------------
CDISC_COLUMN_MAP: Mapping[str, str] = MappingProxyType({
    "USUBJID": ID, "AFRLT": TIME, "AVAL": DV, "PARAMCD": ANALYTE, "ALLOQ": LLOQ, "BLQFN": BLQ,
})
COLUMN_MAP_PRESETS: Mapping[str, Mapping[str, str]] = MappingProxyType({"cdisc": CDISC_COLUMN_MAP})


def _resolve_map(column_map: Mapping[str, str] | str | None) -> tuple[dict[str, str], bool]:
    """Return ``({SOURCE_UPPER: target}, soft)``; presets are soft (skip existing targets)."""
    if column_map is None:
        return {}, False
    if isinstance(column_map, str):
        key = column_map.strip().lower()
        if key not in COLUMN_MAP_PRESETS:
            raise ValueError(f"column_map: unknown preset {column_map!r}; presets are "
                             f"{sorted(COLUMN_MAP_PRESETS)} or pass a dict {{source: standard}}")
        return {k.upper(): v for k, v in COLUMN_MAP_PRESETS[key].items()}, True
    if not isinstance(column_map, Mapping):
        raise TypeError("column_map must be a dict {source_name: standard_name} or a preset name")
    return {str(k).strip().upper(): str(v).strip() for k, v in column_map.items()}, False


def standardize_header(
    names: list[str],
    column_map: Mapping[str, str] | str | None = None,
    *,
    standard: tuple[str, ...] = CK_STANDARD_NAMES,
    file: str | None = None,
    line: int | None = 1,
) -> tuple[list[str], list[Problem]]:
    """Map raw header names to standard names.

    Parameters
    ----------
    names : list of str
        Header fields as read.
    column_map : dict or str, optional
        ``{source: standard}`` mapping or preset name (``"cdisc"``).
    standard : tuple of str
        Standard names matched case-insensitively.
    file : str, optional
        File name used in problems.
    line : int, optional
        Line number of the header in the file.

    Returns
    -------
    names : list of str
        Unique column names: standard ones upper-cased, others as written.
    problems : list of Problem
        Empty or duplicate column names (errors).
    """
    mapping, soft = _resolve_map(column_map)
    std_upper = {s.upper(): s for s in standard}
    cleaned = [str(n).strip() for n in names]
    direct = {std_upper[n.upper()] for n in cleaned if n.upper() in std_upper}
    out: list[str] = []
    problems: list[Problem] = []
    for pos, name in enumerate(cleaned, start=1):
        new = name
        target = mapping.get(name.upper())
        if target is not None and not (soft and std_upper.get(target.upper(), target) in direct):
            new = std_upper.get(target.upper(), target)
        elif name.upper() in std_upper:
            new = std_upper[name.upper()]
        if not new:
            new = f"UNNAMED_{pos}"
            problems.append(Problem(
                f"column {pos} of the header has no name; give it a name or delete the column",
                file=file, row=line, column=new, rule="empty_column_name"))
        if new in out:
            dup, k = new, 2
            while f"{dup}__{k}" in out:
                k += 1
            new = f"{dup}__{k}"
            problems.append(Problem(
                f"column {pos} ({name!r}) is a second {dup!r} column (names are matched "
                f"case-insensitively and after column_map); rename or delete one of them",
                file=file, row=line, column=dup, rule="duplicate_column"))
        out.append(new)
    return out, problems
