"""``ckmodel report`` from the command line, and the report opened in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ckmodel.cli import app

runner = CliRunner()
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"

# Appended to a copy of the report only: the report itself runs no script. After the page has
# loaded, it writes onto <body> how many images decoded and which did not, and how many
# MathML equations were typeset (laid out with a width).
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.id || i.alt);
  document.body.dataset.images = `${imgs.length - bad.length}/${imgs.length}`;
  document.body.dataset.broken = bad.join("|");
  const maths = Array.from(document.getElementsByTagName("math"));
  const laid = maths.filter(m => m.getBoundingClientRect().width > 20);
  document.body.dataset.math = `${laid.length}/${maths.length}`;
});</script>"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def html_report(small_fit_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    res = invoke("report", small_fit_file, "-o", out, "--n-sim", "20", "--seed", "3",
                 "--title", "Small fit")
    assert res.exit_code == 0, res.output
    assert f"report: {out}" in res.output
    return out


def _chrome(browser, tmp_path, *args, timeout=180):
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
           # any request that leaves the file would fail (and be logged)
           "--host-resolver-rules=MAP * ~NOTFOUND", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_report_renders_in_chromium_with_every_figure_and_no_console_message(
        html_report, chromium, tmp_path):
    text = html_report.read_text()
    n_img = text.count("<img")
    assert n_img > 5 and "Small fit" in text   # figures (the equations are MathML)
    plain = _chrome(chromium, tmp_path, "--dump-dom", html_report.as_uri())
    assert plain.returncode == 0, plain.stderr[-2000:]
    console = [ln for ln in plain.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    assert plain.stdout.count("<img") == n_img and "Convergence verdict" in plain.stdout

    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chrome(chromium, tmp_path, "--dump-dom", probed.as_uri()).stdout
    loaded = re.search(r'data-images="(\d+)/(\d+)"', dom)
    assert loaded, "the page did not finish loading"
    assert loaded.group(1) == loaded.group(2) == str(n_img), re.search(
        r'data-broken="([^"]*)"', dom).group(1)
    maths = re.search(r'data-math="(\d+)/(\d+)"', dom)
    n_math = text.count("<math ")
    assert n_math > 3 and maths.group(1) == maths.group(2) == str(n_math)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    done = _chrome(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
                   html_report.as_uri())
    assert done.returncode == 0 and shot.read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    assert (pixels < 100).mean() > 0.01  # dark ink: text was drawn


def test_report_command_writes_markdown_with_its_figure_folder(small_fit_file, tmp_path):
    out = tmp_path / "rep.md"
    res = invoke("report", small_fit_file, "-o", out, "--format", "md", "--n-sim", "20",
                 "--stratify", "none", "--draw-workers", "1")  # every figure drawn here
    assert res.exit_code == 0, res.output
    refs = re.findall(r"\]\((rep_files/[^)]+)\)", out.read_text())
    assert refs and all((tmp_path / r).is_file() for r in refs)
    assert "figures in rep_files/" in res.output


@pytest.mark.parametrize("args, words", [
    (["--format", "pdf"], "option --format: 'pdf': use html or md"),
    (["-o", "{tmp}/r.txt"], "the report is a .html file"),
    (["--format", "md", "-o", "{tmp}/r.html"], "a md report is written to a .md file"),
    (["--stratify", "ARM", "-o", "{tmp}/r.html"], "option --stratify: 'ARM' is not a "
                                                   "subject-level column"),
    (["--bins", "7,3", "-o", "{tmp}/r.html"], "option --bins"),
    (["--outcomes", "{tmp}/none.csv", "-o", "{tmp}/r.html"], "option --outcomes"),
    (["--n-sim", "5", "-o", "{tmp}/r.html"], "--n-sim"),
])
def test_report_command_refuses_bad_options_and_writes_nothing(small_fit_file, tmp_path, args,
                                                               words):
    args = [a.format(tmp=tmp_path) for a in args]
    res = invoke("report", small_fit_file, *args)
    assert res.exit_code == 2, res.output
    assert words in " ".join(res.output.split())
    assert list(tmp_path.iterdir()) == []


def test_report_command_names_a_missing_fit(tmp_path):
    res = invoke("report", tmp_path / "nofit.nc", "-o", tmp_path / "r.html")
    text = "".join(res.output.split())  # the console wraps long paths anywhere
    assert res.exit_code == 2 and "nofit.nc:nosuchfile" in text
    assert list(tmp_path.iterdir()) == []
