"""Design simulation: the 3+3 against its exact enumeration, reproducibility across chunking
and worker counts (Dask), tables, scenario comparison and scenario files."""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel.design import (
    BOIN,
    CRM,
    AcceleratedTitration,
    ThreePlusThree,
    TrialBatch,
    compare_designs,
    exact_operating_characteristics,
    read_scenarios,
    simulate_design,
    true_mtd,
)
from ckmodel.errors import DatasetError

TOX = [0.05, 0.1, 0.2, 0.35, 0.5]


def same(a, b):
    return all(np.array_equal(getattr(a.trials, f), getattr(b.trials, f))
               for f in TrialBatch.FIELDS)


@pytest.mark.parametrize("rule", [ThreePlusThree(), ThreePlusThree(six_at_top=True),
                                  AcceleratedTitration()])
def test_rule_based_simulation_matches_exact_enumeration(rule):
    exact = exact_operating_characteristics(rule, TOX)
    sim = simulate_design(rule, TOX, 20000, seed=2)
    se = np.sqrt(exact.p_select * (1 - exact.p_select) / sim.n_trials)
    # Monte-Carlo error: 4 standard errors per level
    assert np.all(np.abs(sim.p_select - exact.p_select) < 4 * se + 1e-12)
    sd = sim.trials.n.std(0) / np.sqrt(sim.n_trials)
    assert np.all(np.abs(sim.trials.n.mean(0) - exact.mean_patients_per_level) < 4 * sd + 1e-9)


def test_results_depend_on_seed_and_chunking_not_on_workers():
    rule = BOIN(target=0.3)
    a = simulate_design(rule, TOX, 1200, seed=4, chunk_size=200)
    b = simulate_design(rule, TOX, 1200, seed=4, chunk_size=200, workers=2, processes=False)
    assert same(a, b)
    c = simulate_design(rule, TOX, 1200, seed=5, chunk_size=200)
    assert not same(a, c)
    # the first chunk's trials do not depend on how many trials follow
    d = simulate_design(rule, TOX, 400, seed=4, chunk_size=200)
    assert np.array_equal(d.trials.n, a.trials.n[:400])


def test_crm_reproducible_on_a_dask_client():
    from dask.distributed import Client, LocalCluster

    rule = CRM(target=0.3)
    one = simulate_design(rule, TOX, 600, seed=1, chunk_size=150)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        two = simulate_design(rule, TOX, 600, seed=1, chunk_size=150, client=client)
    assert same(one, two)


def test_table_rows_and_summary():
    sim = simulate_design(ThreePlusThree(), TOX, 500, seed=1)
    frame = sim.to_frame()
    assert frame.columns.tolist() == ["DOSE_LEVEL", "TRUE_P_DLT", "P_SELECT", "EXPECTED_N",
                                      "EXPECTED_DLT"]
    assert frame["DOSE_LEVEL"].tolist() == [0, 1, 2, 3, 4, 5]
    assert frame["P_SELECT"].sum() == pytest.approx(1.0)
    assert frame["EXPECTED_N"].sum() == pytest.approx(sim.summary()["EXPECTED_N"])
    summ = sim.summary(0.3, cohort_interval=21)
    assert summ["TRUE_MTD"] == 4
    assert summ["EXPECTED_DURATION"] == pytest.approx(21 * summ["EXPECTED_COHORTS"])
    assert summ["N_ABOVE_MTD"] == pytest.approx(sim.trials.n[:, 4:].sum(1).mean())


def test_true_mtd_closest_with_ties_low():
    assert true_mtd(TOX, 0.3) == 3
    assert true_mtd([0.1, 0.2, 0.4], 0.3) == 1


def test_compare_designs_side_by_side():
    table = compare_designs({"3+3": ThreePlusThree(), "boin": BOIN(target=0.3)},
                            {"A": TOX, "B": [0.3, 0.45, 0.5, 0.6, 0.7]}, 300, seed=1,
                            target=0.3)
    assert len(table) == 4
    assert table["SCENARIO"].tolist() == ["A", "A", "B", "B"]
    for col in ("P_CORRECT", "N_ABOVE_MTD", "EXPECTED_N", "EXPECTED_DURATION", "P_SELECT_5"):
        assert col in table.columns
    sel = table[[f"P_SELECT_{k}" for k in range(1, 6)]].sum(axis=1) + table["P_NONE"]
    np.testing.assert_allclose(sel, 1.0)


def test_read_scenarios_rows_and_columns(tmp_path):
    rows = tmp_path / "rows.csv"
    rows.write_text("SCENARIO,D1,D2,D3\nlow,0.05,0.1,0.2\nhigh,0.3,0.4,0.5\n")
    got = read_scenarios(rows)
    assert list(got) == ["low", "high"]
    np.testing.assert_allclose(got["high"], [0.3, 0.4, 0.5])
    cols = tmp_path / "cols.csv"
    cols.write_text("DOSE_LEVEL,low,high\n1,0.05,0.3\n2,0.1,0.4\n3,0.2,0.5\n")
    got2 = read_scenarios(cols)
    np.testing.assert_allclose(got2["low"], got["low"])


def test_read_scenarios_reports_every_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("SCENARIO,D1,D2\na,0.2,x\nb,0.5,0.1\nc,1.5,0.6\n")
    with pytest.raises(DatasetError) as err:
        read_scenarios(bad)
    text = str(err.value)
    assert "line 2, column D2: 'x' is not a probability" in text
    assert "line 3" in text and "decrease" in text
    assert "line 4, column D1: '1.5'" in text
