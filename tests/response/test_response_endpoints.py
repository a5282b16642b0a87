"""The endpoint table on the example trial (against direct pandas counts) and the HSCT rule."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ckmodel.data import read_ck, read_outcomes
from ckmodel.errors import DatasetError
from ckmodel.response import (
    ENDPOINT_COLUMNS,
    clopper_pearson,
    endpoint_table,
    kaplan_meier,
    km_by_group,
    km_median,
    time_to_event,
)

TRIAL = Path(__file__).resolve().parents[2] / "data" / "example_trial"


@pytest.fixture(scope="module")
def outcomes():
    return read_outcomes(TRIAL / "outcomes.csv")


@pytest.fixture(scope="module")
def ck():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one documented after-HSCT record
        return read_ck(TRIAL / "ck.csv", outcomes=TRIAL / "outcomes.csv")


@pytest.fixture(scope="module")
def table(outcomes):
    return endpoint_table(outcomes)


def _row(table, endpoint, statistic="rate", group="ALL"):
    r = table[(table.GROUP == group) & (table.ENDPOINT == endpoint)
              & (table.STATISTIC == statistic)]
    assert len(r) == 1, (endpoint, statistic, group)
    return r.iloc[0]


def test_columns_and_groups(table):
    assert tuple(table.columns) == ENDPOINT_COLUMNS
    assert set(table.GROUP) == {"ALL"}
    assert table.N.dtype == np.int64 and table.EVENTS.dtype == np.int64


def test_rates_match_direct_counts(table):
    raw = pd.read_csv(TRIAL / "outcomes.csv", na_values=".")
    bor = raw.BOR
    expected = {
        "DLT": (raw.DLT == 1).sum(), "CRS_ANY": (raw.CRS_GRADE >= 1).sum(),
        "CRS_GRADE_GE3": (raw.CRS_GRADE >= 3).sum(), "ICANS_ANY": (raw.ICANS_GRADE >= 1).sum(),
        "CRc": bor.isin(["CR", "CRh", "CRi"]).sum(),
        "ORR": bor.isin(["CR", "CRi", "CRh", "MLFS", "PR"]).sum(),
        "MRD_NEG": (raw.MRD_NEG == 1).sum(), "ADA": (raw.ADA == 1).sum(),
    }
    for endpoint, x in expected.items():
        r = _row(table, endpoint)
        lo, hi = clopper_pearson(int(x), 30)
        assert (r.N, r.EVENTS) == (30, x), endpoint
        assert r.ESTIMATE == pytest.approx(x / 30, abs=1e-12)
        assert (r.LOWER, r.UPPER) == pytest.approx((lo, hi), abs=1e-12)
    # the numbers the example trial's README states
    got = {k: _row(table, k).EVENTS for k in expected}
    assert got == {"DLT": 3, "CRS_ANY": 22, "CRS_GRADE_GE3": 6, "ICANS_ANY": 4, "CRc": 13,
                   "ORR": 18, "MRD_NEG": 12, "ADA": 4}
    for grade, n in raw.CRS_GRADE.value_counts().items():
        assert _row(table, f"CRS_GRADE_{int(grade)}").EVENTS == n
    for cat, n in bor.value_counts().items():
        assert _row(table, f"BOR_{cat}").EVENTS == n
    r = _row(table, "MRD_NEG_IN_CRc")
    assert (r.N, r.EVENTS) == (13, 12)
    assert _row(table, "ICANS_GRADE_GE3").UPPER == pytest.approx(1 - 0.025 ** (1 / 30))


def test_time_to_event_rows(table, outcomes):
    efs = _row(table, "EFS", "median")
    assert (efs.N, efs.EVENTS) == (30, 22)
    km = kaplan_meier(outcomes.EFS_TIME, outcomes.EFS_EVENT)  # EFS is already cut at HSCT
    assert (efs.ESTIMATE, efs.LOWER, efs.UPPER) == km_median(km)
    assert _row(table, "OS", "median").EVENTS == 23
    dor = _row(table, "DOR", "median")
    assert (dor.N, dor.EVENTS) == (16, 8)
    risk = _row(table, "OS", "n_at_risk_at_180")
    assert risk.ESTIMATE == (outcomes.OS_TIME >= 180).sum()
    s = _row(table, "OS", "survival_at_365")
    assert s.LOWER < s.ESTIMATE < s.UPPER
    assert _row(table, "EFS", "censored_at_hsct").ESTIMATE == 6  # 113 114 115 117 125 130
    assert "MRD_DUR" not in set(table.ENDPOINT)  # no columns, no rows
    notes = " | ".join(table.attrs["notes"])
    assert "EFS: censored at allo-HSCT (6 subject(s))" in notes
    assert "OS: not censored at HSCT" in notes and "DOR_START" in notes


def test_by_dose_level_from_the_ck_covariates(ck):
    t = endpoint_table(ck, by="DOSE_LEVEL")
    assert list(dict.fromkeys(t.GROUP)) == ["ALL"] + [f"DOSE_LEVEL={k}" for k in (1, 2, 3, 4)]
    dlt = t[(t.ENDPOINT == "DLT")].set_index("GROUP")
    # README: 1 patient at 0.5 (0 DLT), 6 at 1 (1), 17 at 2 (0), 6 at 4 (2)
    assert dlt.loc[:, ["N", "EVENTS"]].values.tolist() == [[30, 3], [1, 0], [6, 1], [17, 0],
                                                           [6, 2]]
    assert t.attrs["by"] == "DOSE_LEVEL" and t.attrs["time_unit"] == "day"
    groups = km_by_group(ck, "OS", by="DOSE_LEVEL")
    assert sum(g.attrs["n"] for k, g in groups.items() if k != "ALL") == 30


def test_by_an_outcomes_column_and_unknown_columns(outcomes):
    t = endpoint_table(outcomes, by="ADA")
    assert set(t.GROUP) == {"ALL", "ADA=0", "ADA=1"}
    assert _row(t, "DLT", group="ADA=1").N == 4
    with pytest.raises(ValueError, match="DOSE_LEVEL.*not a column"):
        endpoint_table(outcomes, by="DOSE_LEVEL")


def _frame(**cols):
    return pd.DataFrame(cols, index=pd.Index([str(i) for i in range(len(
        next(iter(cols.values()))))], name="ID"))


def test_hsct_censors_efs_and_durations_but_not_os():
    nan = np.nan
    o = _frame(EFS_TIME=[100.0, 50.0, 80.0], EFS_EVENT=[1.0, 1.0, 1.0],
               OS_TIME=[300.0, 60.0, 90.0], OS_EVENT=[1.0, 1.0, 1.0],
               DOR_TIME=[70.0, 20.0, nan], DOR_EVENT=[1.0, 1.0, nan],
               DOR_START=[30.0, 30.0, nan], HSCT_TIME=[40.0, nan, 80.0])
    efs = time_to_event(o, "EFS")
    assert efs.TIME.tolist() == [40.0, 50.0, 80.0] and efs.EVENT.tolist() == [0, 1, 1]
    assert efs.HSCT_CENSORED.tolist() == [True, False, False]  # 2: event on the HSCT day
    dor = time_to_event(o, "DOR")  # HSCT at day 40 is day 10 of the response
    assert dor.TIME.tolist() == [10.0, 20.0] and dor.EVENT.tolist() == [0, 1]
    os_ = time_to_event(o, "OS")
    assert os_.TIME.tolist() == [300.0, 60.0, 90.0] and os_.EVENT.sum() == 3
    same = time_to_event(o, "EFS", hsct="ignore")
    assert same.TIME.tolist() == [100.0, 50.0, 80.0] and "as given" in same.attrs["hsct_rule"]
    t = endpoint_table(o)
    assert _row(t, "EFS", "median").EVENTS == 2 and _row(t, "DOR", "censored_at_hsct").ESTIMATE == 1
    assert _row(endpoint_table(o, hsct="ignore"), "EFS", "median").EVENTS == 3


def test_mrd_duration_columns_are_part_of_the_contract(tmp_path):
    f = tmp_path / "out.csv"
    f.write_text("ID,BOR,MRD_NEG,MRD_DUR_TIME,MRD_DUR_EVENT\n1,CR,1,120,1\n2,CRi,1,200,0\n"
                 "3,CR,1,60,1\n4,PD,0,.,.\n")
    t = endpoint_table(read_outcomes(f), times=[100])
    r = _row(t, "MRD_DUR", "median")
    assert (r.N, r.EVENTS, r.ESTIMATE) == (3, 2, 120.0)
    assert _row(t, "MRD_DUR", "n_at_risk_at_100").ESTIMATE == 2
    f.write_text("ID,MRD_DUR_TIME,MRD_DUR_EVENT\n1,120,.\n2,-5,1\n")
    with pytest.raises(DatasetError) as err:
        read_outcomes(f)
    assert {p.rule for p in err.value.problems} == {"time_without_event", "negative_time"}


def test_empty_group_and_missing_values():
    o = _frame(DLT=[1.0, np.nan, 0.0], BOR=["CR", None, "PD"], G=["a", "a", "b"])
    t = endpoint_table(o, by="G")
    assert (_row(t, "DLT", group="G=a").N, _row(t, "DLT", group="G=a").EVENTS) == (1, 1)
    assert _row(t, "CRc").N == 2  # missing BOR is not evaluable


def test_argument_errors(outcomes):
    with pytest.raises(ValueError, match="hsct must be one of censor, ignore.*competing"):
        endpoint_table(outcomes, hsct="competing")
    with pytest.raises(ValueError, match="conf_level"):
        endpoint_table(outcomes, conf_level=1.5)
    with pytest.raises(ValueError, match="times must be"):
        endpoint_table(outcomes, times=[-1])
    with pytest.raises(ValueError, match="unknown time-to-event endpoint"):
        time_to_event(outcomes, "PFS")
