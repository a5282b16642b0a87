"""``ckmodel endpoints`` through the installed entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ckmodel.cli import app

ROOT = Path(__file__).resolve().parents[2]
TRIAL = ROOT / "data" / "example_trial"
OUTCOMES = str(TRIAL / "outcomes.csv")


def run(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ckmodel")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "ckmodel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_endpoints_by_dose_level_with_plot(tmp_path):
    out, fig = tmp_path / "endpoints.csv", tmp_path / "km.png"
    res = run("endpoints", "--outcomes", OUTCOMES, "--data", str(TRIAL / "ck.csv"),
              "--by", "DOSE_LEVEL", "-o", str(out), "--plot", str(fig), "--times", "90,365")
    assert res.returncode == 0, res.stdout + res.stderr
    t = pd.read_csv(out)
    assert list(t.columns) == ["GROUP", "ENDPOINT", "N", "EVENTS", "ESTIMATE", "LOWER",
                               "UPPER", "STATISTIC"]
    assert "DOSE_LEVEL=4" in set(t.GROUP) and "n_at_risk_at_90" in set(t.STATISTIC)
    crc = t[(t.GROUP == "ALL") & (t.ENDPOINT == "CRc")].iloc[0]
    assert (crc.N, crc.EVENTS) == (30, 13)
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "13/30 43%" in res.stdout and "DOSE_LEVEL=3" in res.stdout
    assert "EFS: censored at allo-HSCT (6 subject(s))" in res.stdout
    assert "after_hsct" in res.stderr and "Traceback" not in res.stderr  # warning, once


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "DOSE_LEVEL"], "option --by: 'DOSE_LEVEL' is not a column of the outcomes table "
                             "(a CK-file covariate needs --data)"),
    (["--hsct", "competing"], "option --hsct: 'competing': use censor or ignore"),
    (["--times", "a,b"], "option --times: 'a,b' must be comma-separated numbers"),
    (["--conf-level", "95"], "option --conf-level: 95 must be between 0 and 1"),
    (["--plot", "km.jpeg"], "option --plot: km.jpeg: the figure must end in .png, .pdf, .svg"),
    (["--time-unit", "days"], "option --time-unit: 'days' is not a time unit"),
    (["--data", "nope.csv"], "option --data: nope.csv: no such file"),
])
def test_bad_options_are_refused_before_any_output(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "endpoints.csv"
    res = CliRunner().invoke(app, ["endpoints", "--outcomes", OUTCOMES, "-o", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split())
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_outcomes_file_lists_its_problems(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,DLT,BOR,EFS_TIME,EFS_EVENT\n1,2,CRR,10,1\n2,0,CR,-1,0\n")
    out = tmp_path / "e.csv"
    res = CliRunner().invoke(app, ["endpoints", "--outcomes", str(bad), "-o", str(out)])
    assert res.exit_code == 1
    err = " ".join(res.output.split())
    assert "DLT=2 must be 0 or 1" in err and "did you mean CR?" in err and "negative" in err
    assert not out.exists()
