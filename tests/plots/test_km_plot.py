"""Kaplan-Meier figure: curves, censoring marks, numbers at risk, labels (artists by gid)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # test process: never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ckmodel.data import read_outcomes  # noqa: E402
from ckmodel.plots import plot_km  # noqa: E402
from ckmodel.plots.km import OKABE_ITO  # noqa: E402

TRIAL = Path(__file__).resolve().parents[2] / "data" / "example_trial"


@pytest.fixture(scope="module")
def outcomes():
    return read_outcomes(TRIAL / "outcomes.csv")


def _by_gid(fig, prefix):
    return [a for ax in fig.axes for a in ax.get_children()
            if (a.get_gid() or "").startswith(prefix)]


def test_curves_marks_and_numbers_at_risk(outcomes):
    fig = plot_km(outcomes, "EFS", conf_int=True)
    try:
        (curve,) = _by_gid(fig, "km:EFS:ALL")
        x, y = curve.get_data()
        assert x[0] == 0 and y[0] == 1 and np.all(np.diff(y) <= 0)
        (marks,) = _by_gid(fig, "censor:EFS:ALL")
        censored = outcomes.EFS_TIME[outcomes.EFS_EVENT == 0]
        assert sorted(marks.get_xdata()) == sorted(set(censored))  # one mark per distinct time
        assert _by_gid(fig, "band:EFS:ALL")
        risk = _by_gid(fig, "risk:EFS:ALL")
        at0 = [t for t in risk if t.get_position()[0] == 0]
        assert at0 and at0[0].get_text() == "30"
        main = [a for a in fig.axes if a.get_title()]
        assert main[0].get_title() == "EFS (censored at allo-HSCT)"
        assert "time since infusion (days)" in [a.get_xlabel() for a in fig.axes]
        assert matplotlib.colors.to_hex(curve.get_color()) == OKABE_ITO[0].lower()
    finally:
        plt.close(fig)


def test_groups_get_distinct_colours_and_dor_starts_at_response(outcomes):
    fig = plot_km(outcomes, ["OS", "DOR"], by="ADA", time_unit="day")
    try:
        curves = _by_gid(fig, "km:OS:")
        assert [c.get_gid() for c in curves] == ["km:OS:ADA=0", "km:OS:ADA=1"]
        assert len({c.get_color() for c in curves}) == 2
        assert "time since response (days)" in [a.get_xlabel() for a in fig.axes]
    finally:
        plt.close(fig)


def test_refusals(outcomes):
    with pytest.raises(ValueError, match="unknown endpoint"):
        plot_km(outcomes, "PFS")
    with pytest.raises(ValueError, match="no time-to-event columns"):
        plot_km(outcomes[["DLT"]])
