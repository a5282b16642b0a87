"""CK data layer: read and check NONMEM-style CAR-T cellular-kinetics data into CKData.

The data contract is in DESIGN.md section 3; column roles are in :mod:`ckmodel.data.schema`,
the rules in :mod:`ckmodel.data.checks` and :mod:`ckmodel.data.outcome_checks`.
"""

from __future__ import annotations

from ckmodel.data._outcomes_read import read_outcomes
from ckmodel.data.ckdata import CKData
from ckmodel.data.read import check_ck, read_ck
from ckmodel.data.schema import (
    AMT,
    ANALYTE,
    BLQ,
    BOR_CATEGORIES,
    CDISC_COLUMN_MAP,
    CMT,
    DEFAULT_ANALYTES,
    DV,
    EVENT_TIME_PAIRS,
    EVID,
    FLAG_COLUMNS,
    GRADE_COLUMNS,
    HSCT_TIME,
    ID,
    LLOQ,
    MDV,
    MDV_REASON,
    OUTCOME_COLUMNS,
    OUTCOME_TIME_COLUMNS,
    REQUIRED_COLUMNS,
    ROLE_COLUMNS,
    TIME,
    Analyte,
)

__all__ = [
    "read_ck",
    "read_outcomes",
    "check_ck",
    "CKData",
    "Analyte",
    "ID",
    "TIME",
    "EVID",
    "AMT",
    "CMT",
    "ANALYTE",
    "DV",
    "LLOQ",
    "BLQ",
    "MDV",
    "MDV_REASON",
    "HSCT_TIME",
    "ROLE_COLUMNS",
    "REQUIRED_COLUMNS",
    "OUTCOME_COLUMNS",
    "GRADE_COLUMNS",
    "FLAG_COLUMNS",
    "OUTCOME_TIME_COLUMNS",
    "EVENT_TIME_PAIRS",
    "BOR_CATEGORIES",
    "DEFAULT_ANALYTES",
    "CDISC_COLUMN_MAP",
]
