"""Shared helpers of the data-layer tests (imported by the test modules)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ckmodel.data import read_ck
from ckmodel.errors import DataWarning

EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "example_small"

CLEAN = """\
ID,TIME,EVID,AMT,ANALYTE,DV,LLOQ,BLQ,MDV,WT
1,0,1,1,.,.,.,0,0,70
1,7,0,.,PB_QPCR,5000,50,0,0,70
1,28,0,.,PB_QPCR,.,50,1,0,70
2,0,1,3,.,.,.,0,0,80
2,7,0,.,PB_QPCR,8000,50,0,0,80
2,14,0,.,PB_FLOW,30,1,0,0,80
"""

CLEAN_OUTCOMES = """\
ID,DLT,CRS_GRADE,ICANS_GRADE,BOR,MRD_NEG,EFS_TIME,EFS_EVENT,HSCT_TIME
1,0,1,0,CR,1,200,0,.
2,1,3,2,PD,0,40,1,.
"""


def edit(text: str, line: int, column: str, value: str) -> str:
    """Set one cell (line is the 1-based file line, header = 1)."""
    rows = text.splitlines()
    header = rows[0].split(",")
    cells = rows[line - 1].split(",")
    cells[header.index(column)] = value
    rows[line - 1] = ",".join(cells)
    return "\n".join(rows) + "\n"


def quiet_read(*args, **kwargs):
    """read_ck with DataWarning silenced (for tests about something else)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return read_ck(*args, **kwargs)


def rules(problems) -> list[str]:
    return [p.rule for p in problems]
