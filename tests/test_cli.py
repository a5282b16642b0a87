"""The command line through its real entry point (the installed ``ckmodel`` script)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
TRIAL = ROOT / "data" / "example_trial"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("ckmodel")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "ckmodel", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


def test_check_clean_file_exits_0():
    res = run("check", str(TRIAL / "ck.csv"), "--outcomes", str(TRIAL / "outcomes.csv"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK" in res.stdout and "1 warning" in res.stdout


def test_check_broken_file_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("ID,TIME,EVID,AMT,ANALYTE,DV,LLOQ,BLQ\n"
                   "1,0,1,1,.,.,.,0\n"
                   "1,-2,0,.,PB_QPCR,100,50,0\n"       # line 3: negative time
                   "1,7,0,.,PB_QPCR,abc,50,0\n"        # line 4: non-numeric DV
                   "1,14,0,.,PB_QPCR,.,.,1\n"          # line 5: BLQ without LLOQ
                   "2,7,0,.,XX_QPCR,100,50,0\n")       # line 6: unknown analyte, no dose
    res = run("check", str(bad))
    assert res.returncode == 1
    out = res.stdout
    for line in ("3", "4", "5", "6"):
        assert f"│ {line} " in out or f"| {line} " in out or f" {line} " in out
    assert "XX_QPCR" in out and "TIME" in out and "LLOQ" in out
    assert "Traceback" not in res.stderr


def test_nca_writes_table_and_summary(tmp_path):
    out = tmp_path / "nca.csv"
    res = run("nca", str(TRIAL / "ck.csv"), "-o", str(out), "--by", "DOSE_LEVEL",
              "--window", "0,28", "--window", "0,84")
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(out)
    assert {"CMAX", "TMAX", "AUC0_28", "AUC0_84", "LAMZHL"} <= set(table.columns)
    summ = pd.read_csv(tmp_path / "nca_summary.csv")
    assert "GEOMEAN" in summ.columns and "DOSE_LEVEL" in summ.columns


def test_models_lists_catalog_and_shows_one():
    res = run("models")
    assert res.returncode == 0
    for name in ("expansion_biphasic", "blood_marrow", "antigen_driven", "qpcr_flow_link",
                 "one_cmt_oral"):
        assert name in res.stdout
    res = run("models", "expansion_biphasic")
    assert res.returncode == 0 and "dE/dt" in res.stdout and "\\frac" not in res.stdout
    res = run("models", "no_such_model")
    assert res.returncode == 2 and "no catalog model" in res.stderr


def test_simulate_writes_netcdf(tmp_path):
    out = tmp_path / "sims.nc"
    res = run("simulate", "--model", "expansion_biphasic", "--dose", "1", "--dose", "3",
              "--n", "5", "--seed", "4", "-o", str(out))
    assert res.returncode == 0, res.stderr
    with xr.open_dataset(out) as ds:
        assert ds.sizes["subject"] == 10 and ds.attrs["seed"] == 4
        assert set(ds.dims) >= {"subject", "time", "analyte"}


def test_summary_of_saved_fit(small_fit, tmp_path):
    path = small_fit.save(tmp_path / "fit.nc")
    res = run("summary", str(path), "--csv", str(tmp_path / "s.csv"))
    assert res.returncode == 0, res.stderr
    assert "rho" in res.stdout and "omega_rho" in res.stdout
    table = pd.read_csv(tmp_path / "s.csv", index_col=0)
    assert table.loc["tmax", "unit"] == "day"
    res = run("summary", str(tmp_path / "missing.nc"))
    # a missing file is a usage error (exit 2), named, as for every command that reads a fit
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "missing.nc: no such file" in " ".join(res.stderr.split())


def test_fit_command_quick_advi(tmp_path):
    out = tmp_path / "fit.nc"
    res = run("fit", str(TRIAL / "ck.csv"), "--model", "expansion_biphasic", "-o", str(out),
              "--sampler", "advi", "--draws", "50", "--tune", "50", "--chains", "1",
              "--seed", "3", "--covariate", "f0 ~ log(BM_BLAST_PCT)", "--centered", "tmax=0.5")
    assert res.returncode == 0, res.stdout + res.stderr
    assert out.exists() and "f0~log(BM_BLAST_PCT)" in res.stdout
    assert "centring weights: tmax 0.50" in res.stdout


@pytest.mark.parametrize("args", [["fit", "nope.csv"], ["nca", "nope.csv"],
                                  ["simulate", "--model", "nope"]])
def test_bad_inputs_give_clear_errors(args, tmp_path):
    res = run(*args, cwd=tmp_path)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr and "error" in (res.stderr + res.stdout).lower()


def test_demo_without_fit(tmp_path):
    res = run("demo", "--out", str(tmp_path / "demo"), "--no-fit")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "demo" / "profiles.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "demo" / "nca.csv")) > 30


@pytest.mark.parametrize("args, option", [
    (["fit", "{ck}", "--draws", "-5"], "--draws"),
    (["fit", "{ck}", "--chains", "0"], "--chains"),
    (["fit", "{ck}", "--sampler", "gibbs"], "--sampler"),
    (["fit", "{ck}", "--fix", "nope=1"], "nope"),
    (["fit", "{ck}", "--fix", "rho"], "--fix"),
    (["fit", "{ck}", "--error", "PB_QPCR=cauchy"], "--error"),
    (["fit", "{ck}", "--prior", "rho=LogNormal(log(2)"], "--prior"),
    (["fit", "{ck}", "--time-unit", "fortnight"], "--time-unit"),
    (["fit", "{ck}", "--centered", "rho=2"], "rho=2"),
    (["fit", "{ck}", "--centered", "rho=half"], "--centered"),
    (["fit", "{ck}", "--centered", "none", "--centered", "rho"], "--centered"),
    (["fit", "{ck}", "--centered", "whitened", "--centered", "rho"], "--centered"),
    (["fit", "{ck}", "--centered", "whitened", "--correlated"], "--correlated"),
    (["fit", "{ck}", "--iiv-sd", "folded"], "--iiv-sd"),
    (["fit", "{ck}", "--iiv-sd", "signed", "--centered", "rho"], "--iiv-sd log"),
    (["fit", "{ck}", "--iiv-sd", "signed", "--iiv", "rho=Exponential(5)"], "--iiv-sd auto"),
    (["fit", "{ck}", "--max-step", "14"], "--max-step"),
    (["fit", "{ck}", "--max-step", "14:0.25", "--max-step", "10:1"], "increase"),
    (["fit", "{ck}", "--max-step", "inf:0"], "--max-step"),
    (["nca", "{ck}", "--after-hsct", "censor"], "--after-hsct"),
    (["nca", "{ck}", "--by", "DOSE_LVL"], "--by"),
    (["nca", "{ck}", "--window", "28,0"], "--window"),
    (["simulate", "--dose", "-1"], "--dose"),
    (["simulate", "--n", "0"], "--n"),
    (["simulate", "--covariate", "BM_BLAST_PCT=40"], "--covariate"),
])
def test_bad_options_are_refused_before_any_work(args, option, tmp_path):
    out = tmp_path / "out.file"
    args = [a.format(ck=TRIAL / "ck.csv") for a in args] + ["-o", str(out)]
    res = run(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert option in res.stderr and "Traceback" not in res.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_centered_modes_map_to_the_options():
    from ckmodel.cli.fit_commands import _centering_option

    assert _centering_option(None) == "auto"
    assert _centering_option(["none"]) == ()
    assert _centering_option(["whitened"]) == "whitened"
    assert _centering_option(["auto"]) == "auto"
    assert _centering_option(["rho", "tmax"]) == ("rho", "tmax")


def test_messages_are_printed_literally(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text("ID,TIME,EVID,AMT,ANALYTE,DV\n1,0,1,1,.,.\n1,7,0,.,[jax]_QPCR,5\n")
    res = run("check", str(bad))
    assert res.returncode == 1 and "[jax]_QPCR" in res.stdout


def test_summary_of_a_file_that_is_not_a_fit(tmp_path):
    res = run("summary", str(TRIAL / "ck.csv"))
    assert res.returncode == 1 and "not a ckmodel fit" in res.stderr
    assert "Traceback" not in res.stderr and "h5py" not in res.stderr


def test_an_error_naming_a_long_path_stays_on_one_line(tmp_path):
    # piped stderr is not wrapped at 80 columns: the message can be grepped whole
    deep = tmp_path / ("a" * 60) / ("b" * 60)
    deep.mkdir(parents=True)
    bad = deep / "ck.csv"
    bad.write_bytes((TRIAL / "ck.csv").read_bytes())
    res = run("summary", str(bad))
    assert res.returncode == 1
    assert (f"error: {bad} is not a ckmodel fit (not a NetCDF-4 file); fits are written by "
            "'ckmodel fit' or Fit.save") in res.stderr.splitlines()


def test_help_answers_at_once():
    import time

    t0 = time.perf_counter()
    res = run("--help")
    assert res.returncode == 0 and "fit" in res.stdout
    # generous bound (the heavy libraries are not imported for help); measured 0.26 s
    assert time.perf_counter() - t0 < 5


def test_command_line_defaults_agree_with_the_python_api():
    # written out in the CLI so that it starts without PyMC; one value for both doors
    from ckmodel.cli import fit_commands
    from ckmodel.fitting import SAMPLERS
    from ckmodel.fitting import run_length as run
    from ckmodel.population.model import CENTRING_MODES, IIV_SD_FORMS
    from ckmodel.spec.model import ERROR_MODELS

    assert fit_commands.UNTIL_CONVERGED == run.UNTIL_CONVERGED
    assert set(fit_commands.SAMPLER_CHOICES) == set(SAMPLERS)
    assert set(fit_commands.ERROR_CHOICES) == set(ERROR_MODELS)
    assert fit_commands.IIV_SD_CHOICES == IIV_SD_FORMS
    assert fit_commands.CENTRING_MODES == CENTRING_MODES


def test_records_after_hsct_kept_flagged_or_dropped(tmp_path):
    """The warning names the command-line option, not Python; --after-hsct drop leaves the
    flagged records out and says how many."""
    args = ["nca", str(TRIAL / "ck.csv"), "--outcomes", str(TRIAL / "outcomes.csv")]
    kept = run(*args, "-o", str(tmp_path / "kept.csv"))
    assert kept.returncode == 0, kept.stderr
    assert "--after-hsct drop" in kept.stderr and "without_flagged" not in kept.stderr
    dropped = run(*args, "--after-hsct", "drop", "-o", str(tmp_path / "dropped.csv"))
    assert dropped.returncode == 0, dropped.stderr
    out = dropped.stdout + dropped.stderr
    assert re.search(r"--after-hsct drop: [1-9]\d* record\(s\) after allo-HSCT left out", out)
    assert "after allo-HSCT at" not in dropped.stderr      # no warning left to give
    a, b = pd.read_csv(tmp_path / "kept.csv"), pd.read_csv(tmp_path / "dropped.csv")
    assert len(a) == len(b) and not a.equals(b)            # same subjects, shorter records
