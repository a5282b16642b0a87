"""The escalation meeting: trial files read and checked, replayed through each design, and
the decision table; the next-dose and design commands."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ckmodel.cli import app
from ckmodel.design import BOIN, CRM, design_from_name, next_dose, read_trial
from ckmodel.errors import DatasetError

runner = CliRunner()


def trial(levels, dlts):
    return pd.DataFrame({"DOSE_LEVEL": levels, "DLT": dlts})


def test_read_trial_checks_every_value(tmp_path):
    path = tmp_path / "trial.csv"
    path.write_text("ID,DOSE_LEVEL,DLT\n1,1,0\n2,1.5,0\n3,7,1\n4,2,yes\n")
    with pytest.raises(DatasetError) as err:
        read_trial(path, 5)
    text = str(err.value)
    assert f"{path}, line 3, column DOSE_LEVEL: '1.5' is not a dose level 1..5" in text
    assert "line 4, column DOSE_LEVEL: '7'" in text
    assert "line 5, column DLT: 'yes' is not 0 or 1" in text
    path.write_text("LEVEL,DLT\n1,0\n")
    with pytest.raises(DatasetError, match="missing column.*DOSE_LEVEL"):
        read_trial(path, 5)


@pytest.mark.parametrize("design, levels, dlts, rec, go_on", [
    ("3+3", [1, 1, 1], [0, 0, 0], 2, True),
    ("3+3", [1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 0], 2, True),          # 1/3: expand
    ("3+3", [1, 1, 1, 1, 1, 1, 2, 2, 2], [0, 1, 0, 0, 0, 0, 1, 1, 0], 1, False),  # MTD 1
    ("3+3", [1, 1, 1], [1, 1, 0], None, False),                        # too toxic
    ("boin", [1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1], 1, True),
    ("boin", [1, 1, 1], [1, 1, 1], None, False),                       # lowest eliminated
    ("crm", [1, 1, 1], [0, 0, 0], 2, True),
    ("atd", [1, 2, 3], [0, 0, 1], 3, True),                            # switch at level 3
])
def test_decisions(design, levels, dlts, rec, go_on):
    rule = design_from_name(design, 5)
    decision = next_dose(rule, trial(levels, dlts), 5)
    assert decision.recommended == rec
    assert decision.go_on is go_on
    table = decision.table
    assert table.columns[:6].tolist() == ["DOSE_LEVEL", "N", "N_DLT", "P_DLT", "RECOMMENDED",
                                          "CONTINUE"]
    assert table["N"].sum() == len(levels)
    assert set(table["CONTINUE"]) == {int(go_on)}
    assert table["RECOMMENDED"].sum() == (0 if rec is None else 1)


def test_incomplete_cohort_and_deviation():
    decision = next_dose(BOIN(target=0.3), trial([1, 1, 1, 2], [0, 0, 0, 1]), 5)
    assert decision.pending == 2 and decision.recommended == 2 and decision.go_on
    assert "complete the cohort at dose level 2 (treat 2 more)" in decision.text()
    dev = next_dose(BOIN(target=0.3), trial([1, 1, 1, 3, 3, 3], [0, 0, 0, 0, 0, 0]), 5)
    assert dev.deviations and "line 5: dose level 3" in dev.deviations[0]


def test_crm_table_holds_posterior_means():
    rule = CRM(skeleton=(0.05, 0.12, 0.25, 0.4, 0.55), target=0.25)
    decision = next_dose(rule, trial([1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 0]), 5)
    post = rule.posterior([3, 3, 0, 0, 0], [0, 1, 0, 0, 0])
    assert decision.table["P_DLT"].tolist() == pytest.approx(post.p_mean.tolist())


def test_patients_after_a_stop_are_refused():
    with pytest.raises(DatasetError, match="stopped after the patient on line 4"):
        next_dose(design_from_name("3+3", 3), trial([1, 1, 1, 1], [1, 1, 0, 0]), 3)


def write(path, levels, dlts):
    trial(levels, dlts).to_csv(path, index=False)
    return path


def test_cli_next_dose(tmp_path):
    path = write(tmp_path / "t.csv", [1, 1, 1, 2, 2, 2], [0, 0, 0, 0, 1, 1])
    out = tmp_path / "decision.csv"
    res = runner.invoke(app, ["next-dose", "--design", "boin", "--trial", str(path),
                              "--n-doses", "4", "--target", "0.3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "de-escalate to dose level 1" in res.output
    table = pd.read_csv(out)
    assert table["RECOMMENDED"].tolist() == [1, 0, 0, 0]
    res = runner.invoke(app, ["next-dose", "--design", "crm", "--trial", str(path),
                              "--n-doses", "4", "--skeleton", "0.1,0.2,0.3,0.4"])
    assert res.exit_code == 0, res.output and "CRM" in res.output


@pytest.mark.parametrize("args, message", [
    (["--design", "boinn"], "option --design: 'boinn' is not a design"),
    (["--design", "crm", "--skeleton", "0.1,0.2"], "option --skeleton: 2 values for 4"),
    (["--design", "crm", "--skeleton", "0.3,0.2,0.4,0.5"], "must increase"),
    (["--design", "boin", "--target", "1.3"], "option --target"),
    (["--design", "3+3", "--cohort-size", "2"], "option --cohort-size"),
])
def test_cli_next_dose_refuses_bad_options(tmp_path, args, message):
    path = write(tmp_path / "t.csv", [1, 1, 1], [0, 0, 0])
    out = tmp_path / "d.csv"
    res = runner.invoke(app, ["next-dose", "--trial", str(path), "--n-doses", "4", *args,
                              "-o", str(out)])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert not out.exists()


def test_cli_next_dose_names_bad_trial_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("DOSE_LEVEL,DLT\n1,0\n9,0\n")
    out = tmp_path / "d.csv"
    res = runner.invoke(app, ["next-dose", "--design", "3+3", "--trial", str(path),
                              "--n-doses", "4", "-o", str(out)])
    assert res.exit_code == 1
    assert "line 3, column DOSE_LEVEL: '9' is not a dose level 1..4" in res.output
    assert not out.exists()


def test_cli_design_tox_and_scenarios(tmp_path):
    out = tmp_path / "oc.csv"
    res = runner.invoke(app, ["design", "--design", "3+3", "--tox", "0.05,0.1,0.2,0.35,0.5",
                              "--n-trials", "500", "--seed", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    oc = pd.read_csv(out)
    assert oc["DOSE_LEVEL"].tolist() == [0, 1, 2, 3, 4, 5]
    assert oc["P_SELECT"].sum() == pytest.approx(1.0)
    scen = tmp_path / "s.csv"
    scen.write_text("SCENARIO,D1,D2,D3\nA,0.1,0.3,0.5\nB,0.3,0.5,0.6\n")
    out2 = tmp_path / "cmp.csv"
    res = runner.invoke(app, ["design", "--design", "3+3,boin,crm", "--scenarios", str(scen),
                              "--target", "0.3", "--n-trials", "300", "--cohort-interval",
                              "21", "-o", str(out2)])
    assert res.exit_code == 0, res.output
    cmp = pd.read_csv(out2)
    assert len(cmp) == 6 and set(cmp["DESIGN"]) == {"3+3", "boin", "crm"}


@pytest.mark.parametrize("args, message", [
    (["--design", "boin", "--tox", "0.1,0.5,0.3"], "option --tox: the probabilities must not"),
    (["--design", "boin", "--tox", "0.1,1.5"], "option --tox: 1.5 is not a probability"),
    (["--design", "boin"], "give either --tox or --scenarios"),
    (["--design", "boin,crm", "--tox", "0.1,0.2"], "--tox takes one design"),
    (["--design", "boin", "--tox", "0.1,0.2", "--workers", "0"], "option --workers"),
])
def test_cli_design_refuses_bad_options(tmp_path, args, message):
    out = tmp_path / "oc.csv"
    res = runner.invoke(app, ["design", *args, "-o", str(out)])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())
    assert not out.exists()
