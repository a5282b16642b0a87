"""NCA time units, unit columns, record counts and summary statistics, against hand-computed values.

Tolerances: the oracles are closed-form trapezoid sums in double precision, so results agree to
rel 1e-9; changing the time unit multiplies times by an exact integer, so AUCs and times scale to
rel 1e-12.
"""

from __future__ import annotations

import doctest
import io
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import ckmodel._nca_summary as summary_module
from ckmodel._nca_kernel import UNIT_SUFFIX, window_name
from ckmodel.data import CKData
from ckmodel.data.schema import TIME_UNITS
from ckmodel.nca import COUNT_COLUMNS, NCA_COLUMNS, TIME_METRICS, nca, nca_summary

REL = 1e-9
T_DAY, C = [0.0, 1, 2, 4, 8, 12], [0.0, 20, 50, 40, 10, 5]


def table(t, c, blq=None, *, sid="1", analyte="PB_QPCR", **extra):
    t = np.asarray(t, float)
    blq = np.zeros(len(t), int) if blq is None else np.asarray(blq, int)
    df = pd.DataFrame({"ID": sid, "ANALYTE": analyte, "TIME": t,
                       "DV": np.where(blq == 1, np.nan, np.asarray(c, float)), "BLQ": blq})
    for k, v in extra.items():
        df[k] = v
    return df


def lin_trap(t1, t2, c1, c2):
    return (t2 - t1) * (c1 + c2) / 2.0


def log_trap(t1, t2, c1, c2):
    return (t2 - t1) * (c1 - c2) / math.log(c1 / c2)


# --- time units and window names -----------------------------------------------------------


def test_every_data_time_unit_has_a_suffix():
    assert set(UNIT_SUFFIX) == set(TIME_UNITS) and UNIT_SUFFIX["day"] == ""


@pytest.mark.parametrize(("bounds", "unit", "name"), [
    ((0, 28), "day", "AUC0_28"), ((0, 24), "hour", "AUC0_24H"), ((2, 4), "week", "AUC2_4W"),
    ((0, 30), "minute", "AUC0_30MIN"), ((0, 3), "month", "AUC0_3MO"), ((0, 1), "year", "AUC0_1Y"),
    ((5, np.inf), "hour", "AUC5H_inf"), ((0, np.inf), "hour", "AUC0_inf"),
    ((0.5, 1.5), "day", "AUC0.5_1.5"),
])  # fmt: skip
def test_window_names_carry_the_unit(bounds, unit, name):
    assert window_name(*bounds, unit) == name


def test_hour_data_with_a_user_window():
    hours = [24 * t for t in T_DAY]  # 0, 24, 48, 96, 192, 288 h
    r = nca(table(hours, C), time_unit="hour", windows=[(0, 24), (0, 72)]).iloc[0]
    assert r.AUC0_24H == pytest.approx(lin_trap(0, 24, 0, 20), rel=REL)  # 240
    c72 = 50 * (40 / 50) ** 0.5  # log-linear at 72 h on the 50 -> 40 (down) segment 48-96 h
    assert r.AUC0_72H == pytest.approx(
        lin_trap(0, 24, 0, 20) + lin_trap(24, 48, 20, 50) + log_trap(48, 72, 50, c72), rel=REL)
    assert (r.TMAX, r.TLST, r.TIME_UNIT) == (48.0, 288.0, "hour")
    day = nca(table(T_DAY, C)).iloc[0]
    assert r.AUCLST == pytest.approx(24 * day.AUCLST, rel=1e-12)
    assert r.LAMZ == pytest.approx(day.LAMZ / 24, rel=1e-12)
    assert r.LAMZHL == pytest.approx(24 * day.LAMZHL, rel=1e-12)
    assert not any(c.startswith("AUC0_28") or c == "AUC0_24" for c in r.index)


@pytest.mark.parametrize(("unit", "per_day", "names"), [
    ("day", 1, ["AUC0_28", "AUC0_84"]),
    ("hour", 24, ["AUC0_672H", "AUC0_2016H"]),
    ("week", 1 / 7, ["AUC0_4W", "AUC0_12W"]),
    ("minute", 1440, ["AUC0_40320MIN", "AUC0_120960MIN"]),
])  # fmt: skip
def test_default_windows_are_28_and_84_days_in_the_data_unit(unit, per_day, names):
    t_day = [0.0, 7, 14, 28, 56, 84, 112]
    c = [0.0, 1000, 400, 100, 20, 8, 4]
    day = nca(table(t_day, c)).iloc[0]
    res = nca(table([t * per_day for t in t_day], c), time_unit=unit)
    assert [n for n in res.columns if n.startswith("AUC") and n not in NCA_COLUMNS] == names
    assert res.attrs["nca"]["windows"] == [(0.0, 28 * per_day), (0.0, 84 * per_day)]
    for name, day_name in zip(names, ("AUC0_28", "AUC0_84"), strict=True):
        assert res[name].iloc[0] == pytest.approx(per_day * day[day_name], rel=1e-12)


@pytest.mark.parametrize("unit", ["month", "year"])
def test_month_and_year_data_get_no_default_window(unit):
    res = nca(table([0.0, 1, 2, 4, 8], [0.0, 50, 40, 10, 5]), time_unit=unit)
    assert [n for n in res.columns if n.startswith("AUC")] == ["AUCLST", "AUCIFO"]
    assert "AUC0_3MO" in nca(table([0.0, 1, 2, 4], [0.0, 50, 40, 10]), time_unit="month",
                             windows=[(0, 3)]).columns


def test_time_unit_is_checked_and_never_converted():
    df = table(T_DAY, C)
    with pytest.raises(ValueError, match="unknown time_unit"):
        nca(df, time_unit="days")
    data = SimpleNamespace(observations=df, time_unit="hour", analyte_units={})
    assert nca(data, windows=[(0, 24)]).TIME_UNIT.iloc[0] == "hour"
    with pytest.raises(ValueError, match="never converted"):
        nca(data, time_unit="day")


# --- units -------------------------------------------------------------------------------------


def test_units_columns_and_attrs_from_ckdata():
    obs = pd.DataFrame({"ID": ["A"] * 4 + ["B"] * 3, "TIME": [0.0, 24, 48, 96, 24, 48, 96],
                        "ANALYTE": ["PB_QPCR"] * 4 + ["PB_FLOW"] * 3,
                        "DV": [np.nan, 20.0, 50, 40, 30, 10, 8], "LLOQ": 5.0,
                        "BLQ": [1, 0, 0, 0, 0, 0, 0]})  # fmt: skip
    ck = CKData.from_frames(obs, pd.DataFrame({"ID": ["A", "B"], "TIME": 0.0, "AMT": 1.0}),
                            time_unit="hour",
                            analytes={"PB_QPCR": "copies/ug gDNA", "PB_FLOW": "cells/uL"})
    res = nca(ck, windows=[(0, 24)]).set_index("ANALYTE")
    assert res.loc["PB_QPCR", "DV_UNIT"] == "copies/ug gDNA"
    assert res.loc["PB_FLOW", "DV_UNIT"] == "cells/uL"
    assert set(res.TIME_UNIT) == {"hour"} and res.attrs["time_unit"] == "hour"
    assert res.loc["PB_QPCR", "AUC0_24H"] == pytest.approx(lin_trap(0, 24, 0, 20), rel=REL)
    u = res.attrs["units"]
    assert u["PB_QPCR"] == {
        "CMAX": "copies/ug gDNA", "TMAX": "hour", "CLST": "copies/ug gDNA", "TLST": "hour",
        "AUCLST": "hour*copies/ug gDNA", "AUCIFO": "hour*copies/ug gDNA", "LAMZ": "1/hour",
        "LAMZHL": "hour", "LAMZNPT": "count", "R2ADJ": "-", "LAMZLL": "hour", "LAMZUL": "hour",
        "AUC0_24H": "hour*copies/ug gDNA", **dict.fromkeys(COUNT_COLUMNS[:-1], "count"),
        "ZERO_ADDED": "-",
    }  # fmt: skip
    assert u["PB_FLOW"]["AUC0_24H"] == "hour*cells/uL" and u["PB_FLOW"]["CMAX"] == "cells/uL"
    with pytest.raises(ValueError, match="never converted"):
        nca(ck, analyte_units={"PB_FLOW": "cells/mL"})


def test_dataframe_units_given_or_unknown():
    df = table(T_DAY, C)
    res = nca(df, analyte_units={"PB_QPCR": "copies/ug gDNA"})
    assert res.DV_UNIT.iloc[0] == "copies/ug gDNA" and res.TIME_UNIT.iloc[0] == "day"
    assert res.attrs["units"]["PB_QPCR"]["AUC0_28"] == "day*copies/ug gDNA"
    unknown = nca(df)
    assert unknown.DV_UNIT.iloc[0] == ""
    assert unknown.attrs["units"]["PB_QPCR"]["AUC0_84"] == "day*DV unit"


# --- record counts -----------------------------------------------------------------------------


def _counted():
    """One profile whose records meet every fate (see the comments)."""
    rows = [  # TIME, DV, BLQ, MDV, AFTER_HSCT
        (-1.0, 5.0, 0, 0, False),  # before the infusion
        (0.0, np.nan, 1, 0, False),  # BLQ, first
        (1.0, 40.0, 0, 0, False),
        (2.0, np.nan, 1, 0, False),  # BLQ, middle
        (3.0, 20.0, 0, 1, False),  # MDV=1
        (4.0, 10.0, 0, 0, False),
        (4.5, np.nan, 0, 0, False),  # DV missing, not BLQ
        (5.0, np.nan, 1, 0, False),  # BLQ, last
        (6.0, 900.0, 0, 0, True),  # after allo-HSCT
        (np.nan, 3.0, 0, 0, False),  # TIME missing
    ]
    t, dv, blq, mdv, hsct = (list(x) for x in zip(*rows, strict=True))
    df = pd.DataFrame({"ID": "1", "ANALYTE": "PB_QPCR", "TIME": t, "DV": dv, "BLQ": blq,
                       "MDV": mdv, "AFTER_HSCT": hsct, "LLOQ": 2.0})
    return df


@pytest.mark.parametrize(("kw", "expected"), [
    # N_USED, N_BLQ, N_BLQ_ZERO, N_BLQ_HALF, N_BLQ_DROP, N_HSCT, ZERO_ADDED
    ({}, (3, 3, 1, 0, 2, 1, 0)),
    ({"blq_rule": "all-zero"}, (5, 3, 3, 0, 0, 1, 0)),
    ({"blq_rule": "drop"}, (2, 3, 0, 0, 3, 1, 1)),
    ({"blq_rule": "lloq-half"}, (5, 3, 0, 3, 0, 1, 0)),
    ({"exclude_after_hsct": False}, (4, 3, 1, 0, 2, 0, 0)),
])  # fmt: skip
def test_record_counts_by_fate(kw, expected):
    r = nca(_counted(), **kw).iloc[0]
    got = (r.N_USED, r.N_BLQ, r.N_BLQ_ZERO, r.N_BLQ_HALF, r.N_BLQ_DROP, r.N_HSCT, r.ZERO_ADDED)
    assert got == expected
    assert (r.N_OBS, r.N_MDV, r.N_PREDOSE, r.N_MISSING) == (10, 1, 1, 2)
    assert r.N_OBS == r.N_USED + r.N_BLQ_DROP + r.N_MDV + r.N_HSCT + r.N_PREDOSE + r.N_MISSING
    assert r.N_BLQ == r.N_BLQ_ZERO + r.N_BLQ_HALF + r.N_BLQ_DROP
    assert r.CMAX == (900.0 if kw.get("exclude_after_hsct") is False else 40.0)


def test_lloq_half_without_lloq_is_counted_as_dropped():
    r = nca(_counted().assign(LLOQ=np.nan), blq_rule="lloq-half").iloc[0]
    assert (r.N_BLQ_HALF, r.N_BLQ_DROP, r.N_USED, r.ZERO_ADDED) == (0, 3, 2, 1)


def test_blq_rule_column_names_the_rule():
    mapping = {"first": "zero", "middle": "drop", "last": "zero"}  # PKNCA's default
    assert nca(_counted(), blq_rule=mapping).BLQ_RULE.iloc[0] == "first=zero,middle=drop,last=zero"
    same = {"first": "zero", "middle": "drop", "last": "drop"}
    assert nca(_counted(), blq_rule=same).BLQ_RULE.iloc[0] == "first-zero-rest-drop"


def test_profile_with_every_record_left_out_is_kept():
    df = pd.concat([table(T_DAY, C), table([1.0, 2], [5.0, 4], sid="2", MDV=1)],
                   ignore_index=True)  # fmt: skip
    res = nca(df).set_index("ID")
    assert list(res.index) == ["1", "2"]
    r = res.loc["2"]
    assert (r.N_OBS, r.N_MDV, r.N_USED, r.ZERO_ADDED) == (2, 2, 0, 0)  # no lone (0, 0)
    assert np.isnan([r[c] for c in NCA_COLUMNS]).all()


def test_counts_add_up_on_a_cohort():
    rng = np.random.default_rng(3)
    frames = []
    for i in range(6):
        m = int(rng.integers(3, 9))
        t = np.sort(rng.choice(np.arange(-2.0, 60.0, 0.5), m, replace=False))
        b = (rng.random(m) < 0.3).astype(int)
        frames.append(table(t, np.exp(rng.normal(4, 2, m)), b, sid=f"S{i}",
                            MDV=(rng.random(m) < 0.1).astype(int), LLOQ=10.0))
    df = pd.concat(frames, ignore_index=True)
    for rule in ("first-zero-rest-drop", "all-zero", "drop", "lloq-half"):
        res = nca(df, blq_rule=rule)
        assert (res.N_OBS == res.N_USED + res.N_BLQ_DROP + res.N_MDV + res.N_HSCT
                + res.N_PREDOSE + res.N_MISSING).all()  # fmt: skip
        assert res.N_OBS.sum() == len(df) and res.N_MDV.sum() == df.MDV.sum()
        assert (res.N_BLQ == res.N_BLQ_ZERO + res.N_BLQ_HALF + res.N_BLQ_DROP).all()


# --- summary -----------------------------------------------------------------------------------


def test_summary_tmax_by_median_and_range_exposure_by_geometric_mean():
    tab = pd.DataFrame({
        "ID": list("12345"), "ANALYTE": "PB_QPCR", "DV_UNIT": "copies/ug gDNA",
        "TIME_UNIT": "day", "CMAX": [10.0, 100, 1000, 10, np.nan],
        "TMAX": [7.0, 14, 10, 21, np.nan], "TLST": [28.0, 28, 84, 56, np.nan],
        "LAMZHL": [10.0, 20, 30, np.nan, np.nan], "N_OBS": 5, "N_USED": 4,
    })  # fmt: skip
    s = nca_summary(tab).set_index("METRIC")
    assert list(s.index) == ["CMAX", "TMAX", "TLST", "LAMZHL"]  # counts are not summarised
    tmax = s.loc["TMAX"]
    assert (tmax.STATISTIC, tmax.UNIT, tmax.N, tmax.N_GEO) == ("median (range)", "day", 4, 0)
    assert (tmax.MEDIAN, tmax.MIN, tmax.MAX) == (12.0, 7.0, 21.0)  # median of 7, 10, 14, 21
    assert np.isnan(tmax.GEOMEAN) and np.isnan(tmax.GEOCV)
    assert s.loc["TLST", "STATISTIC"] == "median (range)" and s.loc["TLST", "MEDIAN"] == 42.0
    cmax = s.loc["CMAX"]
    assert (cmax.STATISTIC, cmax.UNIT) == ("geometric mean (CV%)", "copies/ug gDNA")
    assert cmax.GEOMEAN == pytest.approx(10**1.75, rel=REL)  # (10 * 100 * 1000 * 10) ** (1/4)
    lz = s.loc["LAMZHL"]
    assert (lz.STATISTIC, lz.UNIT, lz.MEAN, lz.SD) == ("mean (SD)", "day", 20.0, 10.0)
    assert set(TIME_METRICS) == {"TMAX", "TLST", "LAMZLL", "LAMZUL"}


def test_summary_units_survive_a_csv_round_trip():
    df = table([24 * t for t in T_DAY], C)
    res = nca(df, time_unit="hour", analyte_units={"PB_QPCR": "copies/ug gDNA"},
              windows=[(0, 24)])
    direct = nca_summary(res)
    assert list(direct.columns[:4]) == ["ANALYTE", "METRIC", "UNIT", "STATISTIC"]
    units = dict(zip(direct.METRIC, direct.UNIT, strict=True))
    assert units["AUC0_24H"] == "hour*copies/ug gDNA" and units["LAMZ"] == "1/hour"
    assert units["TMAX"] == "hour" and units["CMAX"] == "copies/ug gDNA"
    buf = io.StringIO()
    res.to_csv(buf, index=False)
    again = nca_summary(pd.read_csv(io.StringIO(buf.getvalue()), dtype={"ID": str}))
    assert again.attrs == {} or "units" not in again.attrs
    assert dict(zip(again.METRIC, again.UNIT, strict=True)) == units


def test_summary_doctests_run():
    result = doctest.testmod(summary_module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
