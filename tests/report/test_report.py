"""The posterior report: sections in reading order, determinism, self-containment, formats."""

from __future__ import annotations

import base64
import dataclasses
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from ckmodel.report import build_report, save_report, write_report
from ckmodel.report.document import Equation, FigureBlock, Table, Text, is_safe_mathml
from ckmodel.report.figures import equation_rows
from ckmodel.report.html import to_html
from ckmodel.report.sections import verdict_section

MATHML = "{http://www.w3.org/1998/Math/MathML}"
N_SIM = 20  # the smallest replicate count the report accepts: structure, not band accuracy

SECTIONS = ["verdict", "data", "nca", "model", "estimates", "priors", "sampler", "gof", "vpc",
            "individual"]


@pytest.fixture(scope="module")
def report(small_fit):
    return build_report(small_fit, seed=3, n_sim=N_SIM)


def _with_convergence(fit, ok):
    meta = dict(fit.meta)
    conv = dict(meta["convergence"], ok=ok)
    if ok:
        conv.update(problems=[], weak_iiv=[])
    meta["convergence"] = conv
    return dataclasses.replace(fit, meta=meta)


def test_sections_come_in_reading_order_verdict_first_provenance_last(report, small_fit):
    keys = [s.key for s in report.sections]
    assert keys == SECTIONS + ["provenance"]  # no outcomes: no endpoints section
    first = report.sections[0].blocks[0]
    assert isinstance(first, Text)
    assert first.kind == ("ok" if small_fit.meta["convergence"]["ok"] else "alert")
    names = [f.name for f in report.figures]
    assert len(names) == len(set(names))
    for f in report.figures:
        magic = b"\x89PNG" if f.mime == "image/png" else b"<?xml"
        assert f.data.startswith(magic), f.name


def test_a_fit_with_problems_says_so_before_anything_else(small_fit):
    bad = verdict_section(_with_convergence(small_fit, False))
    good = verdict_section(_with_convergence(small_fit, True))
    assert bad.blocks[0].kind == "alert" and "problems" in bad.blocks[0].text
    assert good.blocks[0].kind == "ok" and "problems" not in good.blocks[0].text
    checks = next(b for b in good.blocks if isinstance(b, Table)).frame
    assert {"max R-hat", "divergences", "min E-BFMI"} <= set(checks["check"])


def test_estimates_and_model_carry_units_and_every_parameter(report, small_fit):
    est = report.section("estimates").blocks[0].frame
    pops = [p.name for p in small_fit.spec.parameters if f"{p.name}_pop" in small_fit.posterior]
    assert set(pops) <= set(est["parameter"])
    assert {"unit", "median", "2.5%", "97.5%", "R-hat", "CV %"} <= set(est.columns)
    shrink = report.section("estimates").blocks[1].frame
    assert shrink["shrinkage %"].between(-100, 100).all()
    eqs = [b for b in report.section("model").blocks if isinstance(b, Equation)]
    assert len(eqs) == len(equation_rows(small_fit.spec))   # every equation converted
    for e in eqs:
        root = ET.fromstring(e.mathml)
        assert is_safe_mathml(e.mathml) and root.get("displaystyle") == "true"
        assert "=" in [m.text for m in root.iter(f"{MATHML}mo")]
        if e.tex.startswith("\\frac{d"):   # an ODE: dX/dt typeset as a fraction
            assert root.find(f".//{MATHML}mfrac") is not None
    nca = [b for b in report.section("nca").blocks if isinstance(b, Table)]
    assert nca and "DOSE" in nca[0].frame.columns  # stratified by the varying dose
    assert any("(copies/ug gDNA)" in c for c in nca[0].frame.columns)


def test_same_fit_and_seed_give_the_same_bytes(report, small_fit, tmp_path):
    """Built again with every figure drawn here rather than in worker processes (the
    fixture's default on a multi-core machine): the same file, byte for byte."""
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    save_report(report, a)
    write_report(small_fit, b, seed=3, n_sim=N_SIM, workers=1)
    assert a.read_bytes() == b.read_bytes()


def test_html_is_self_contained_escaped_and_has_no_script(report, small_fit):
    text = to_html(report)
    assert "<script" not in text.lower()
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert links and all(u.startswith(("data:", "#")) for u in links)
    uris = re.findall(r'<img[^>]*src="data:([^;]+);base64,([^"]+)"', text)
    assert len(uris) == len(report.figures)
    for (mime, b64), fig in zip(uris, report.figures, strict=True):
        assert mime == fig.mime and base64.b64decode(b64) == fig.data
    hostile = dataclasses.replace(report, title="<script>alert(1)</script>")
    out = to_html(hostile)
    assert "<script>alert" not in out and "&lt;script&gt;alert(1)" in out


def test_markdown_writes_its_figures_beside_it_and_replaces_stale_ones(report, tmp_path):
    path = tmp_path / "rep.md"
    folder = tmp_path / "rep_files"
    folder.mkdir()
    (folder / "stale.png").write_bytes(b"old")
    save_report(report, path)
    text = path.read_text()
    refs = re.findall(r"\]\((rep_files/[^)]+)\)", text)
    assert refs and all((tmp_path / r).is_file() for r in refs)
    assert not (folder / "stale.png").exists()
    assert text.startswith("# Posterior report") and "## 1. Convergence verdict" in text


def test_bad_requests_are_refused_before_work_and_leave_no_file(report, small_fit, tmp_path,
                                                              monkeypatch):
    with pytest.raises(ValueError, match=r"\.html or \.md"):
        write_report(small_fit, tmp_path / "r.pdf")
    with pytest.raises(ValueError, match="n_sim"):
        write_report(small_fit, tmp_path / "r.html", n_sim=5)
    with pytest.raises(ValueError, match="'ARM' is not a subject-level column.*DOSE"):
        write_report(small_fit, tmp_path / "r.html", stratify="ARM")
    assert list(tmp_path.iterdir()) == []
    # a failure while writing leaves the old report as it was, and no partial file
    old = tmp_path / "r.html"
    old.write_text("old report")
    import ckmodel.report.html as H

    def broken(_report):
        raise RuntimeError("disk full")

    monkeypatch.setattr(H, "to_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        save_report(report, old)
    assert old.read_text() == "old report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_outcomes_extra_sections_and_pooled_strata(small_fit):
    ids = list(small_fit.data.subjects)
    rng = np.random.default_rng(0)
    outcomes = pd.DataFrame({
        "DLT": rng.integers(0, 2, len(ids)).astype(float),
        "EFS_TIME": rng.uniform(30, 300, len(ids)), "EFS_EVENT": rng.integers(0, 2, len(ids)),
    }, index=pd.Index(ids, name="ID"))
    from ckmodel.exposure import exposure_draws

    exposure = exposure_draws(small_fit, n_draws=20, metrics=["CMAX", "AUC0_28"])
    rep = build_report(small_fit, n_sim=N_SIM, outcomes=outcomes, stratify=None,
                       exposure=exposure,
                       extra={"Team notes": ["Reviewed 2026-12-03.", outcomes.head(3)]})
    keys = [s.key for s in rep.sections]
    assert keys[-4:] == ["endpoints", "exposure", "extra-1", "provenance"]
    tables = [b.frame for b in rep.section("exposure").blocks if isinstance(b, Table)]
    assert set(tables[0]["METRIC"]) == {"CMAX", "AUC0_28"}  # the trial's spread
    assert "MEDIAN_RATIO" in tables[1].columns  # against NCA
    assert len(tables[-1]) == 2 * len(ids)  # per subject and metric
    ends = next(b for b in rep.section("endpoints").blocks if isinstance(b, Table)).frame
    dlt = ends[ends["ENDPOINT"] == "DLT"].iloc[0]
    assert dlt["N"] == len(ids) and dlt["EVENTS"] == outcomes["DLT"].sum()
    assert any(isinstance(b, FigureBlock) and b.name == "km"
               for b in rep.section("endpoints").blocks)
    nca = next(b for b in rep.section("nca").blocks if isinstance(b, Table)).frame
    assert "DOSE" not in nca.columns  # pooled
    assert rep.section("extra-1").title == "Team notes"


@pytest.mark.parametrize("hostile", [
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>a</mi><script>alert(1)</script></math>',
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi onclick="alert(1)">a</mi></math>',
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mtext><b>a</b></mtext></math>',
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi href="http://x">a</mi></math>',
    '<math><mi>a</mi></math>',                      # not in the MathML namespace
    '<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>a</mi>',   # not well-formed
    '<div>a</div>',
])
def test_an_equation_block_refuses_anything_but_plain_mathml(hostile):
    assert not is_safe_mathml(hostile)
    with pytest.raises(ValueError, match="eq-1: not one well-formed MathML"):
        Equation(name="eq-1", tex="a", mathml=hostile)


def test_html_writes_the_equations_as_mathml_and_markdown_as_a_math_block(report, tmp_path):
    eqs = [b for b in report.section("model").blocks if isinstance(b, Equation)]
    html = to_html(report)
    assert html.count("<math ") == len(eqs) and all(e.mathml in html for e in eqs)
    path = tmp_path / "rep.md"
    save_report(report, path)
    text = path.read_text()
    block = text.split("```math\n", 1)[1].split("```", 1)[0]
    assert all(e.tex in block for e in eqs)
    assert not list((tmp_path / "rep_files").glob("eq-*"))   # no equation images
