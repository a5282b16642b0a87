"""``ckmodel vpc``, ``gof`` and ``compare`` on saved fits (in-process through typer)."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from ckmodel.cli import app
from ckmodel.diagnostics import VPC_COLUMNS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_vpc_writes_the_csv_with_exact_columns_and_the_figure(small_fit_file, tmp_path):
    csv, png = tmp_path / "vpc.csv", tmp_path / "vpc.png"
    res = invoke("vpc", small_fit_file, "--pc", "--stratify", "DOSE", "--bins", "6",
                 "--n-sim", "50", "--seed", "2", "-o", png, "--csv", csv)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(csv)
    assert list(table.columns) == list(VPC_COLUMNS)
    assert set(table["STRATUM"]) == {1, 3} and table["BIN"].max() <= 6
    assert png.read_bytes()[:4] == b"\x89PNG"
    again = tmp_path / "again.csv"
    assert invoke("vpc", small_fit_file, "--pc", "--stratify", "DOSE", "--bins", "6",
                  "--n-sim", "50", "--seed", "2", "--csv", again).exit_code == 0
    assert again.read_text() == csv.read_text()  # seeded


def test_vpc_refuses_bad_options_before_work_and_writes_nothing(small_fit_file, tmp_path):
    csv = tmp_path / "vpc.csv"
    for args, words in (
        (["--bins", "7,3"], "--bins"),
        (["--bins", "x"], "--bins"),
        (["--stratify", "ARM"], "'ARM' is not a subject-level column"),
        (["-o", tmp_path / "vpc.jpg"], ".png"),
    ):
        res = invoke("vpc", small_fit_file, "--csv", csv, *args)
        assert res.exit_code == 2, res.output
        assert words in res.output
    assert invoke("vpc", small_fit_file).exit_code == 2  # no output asked for
    assert invoke("vpc", tmp_path / "missing.nc", "--csv", csv).exit_code == 2
    assert not csv.exists()


def test_gof_and_compare(small_fit_file, wrong_fit, tmp_path):
    png, gcsv = tmp_path / "gof.png", tmp_path / "gof.csv"
    res = invoke("gof", small_fit_file, "-o", png, "--csv", gcsv, "--n-sim", "100")
    assert res.exit_code == 0, res.output
    assert png.exists() and {"PRED", "IPRED", "NPDE"} <= set(pd.read_csv(gcsv).columns)
    wrong = wrong_fit.save(tmp_path / "wrong.nc")
    out = tmp_path / "loo.csv"
    res = invoke("compare", small_fit_file, wrong, "--csv", out)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert list(table["fit"]) == ["small", "wrong"]
    assert invoke("compare", small_fit_file).exit_code == 2
    assert invoke("compare", small_fit_file, wrong, "--by", "visit").exit_code == 2
