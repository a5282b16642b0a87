"""Terminal rendering: priors print as written in the model file, to_text shows the file's text."""

from __future__ import annotations

import pytest

from ckmodel.spec import Prior, list_models, load_model


@pytest.fixture(params=sorted(list_models()))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.mark.parametrize("text", ["LogNormal(log(2), 0.5)", "LogNormal(mu=log(2), sigma=0.5)",
                                  "LogitNormal(logit(0.0079), 1.0)", "HalfNormal(1.0)",
                                  "Normal(-1e-3, 2 * 0.5)"])
def test_prior_prints_as_written_and_round_trips(text):
    p = Prior.parse(text)
    assert str(p) == text
    assert Prior.parse(str(p)) == p
    # the canonical form holds the evaluated numbers and reads back exactly
    assert Prior.parse(p.canonical()) == p and "log(" not in p.canonical()


def test_prior_text_is_stripped_and_not_part_of_identity():
    a, b = Prior.parse("  LogNormal(log(2), 0.5) "), Prior("LogNormal", {"mu": 0.0, "sigma": 0.5})
    assert str(a) == "LogNormal(log(2), 0.5)"
    assert a == Prior.parse(a.canonical()) and hash(a) == hash(Prior.parse(a.canonical()))
    assert str(b) == "LogNormal(0, 0.5)" and "text" not in repr(b)


def test_catalog_priors_print_as_in_the_file(name, catalog_raw):
    spec, raw = load_model(name), catalog_raw(name)
    for p in spec.parameters:
        entry = raw["parameters"][p.name]
        assert str(p.prior) == entry["prior"].strip()
        if p.iiv is not None:
            assert str(p.iiv) == entry["iiv"].strip()
        assert Prior.parse(str(p.prior)) == p.prior
    tab = spec.parameter_table()
    assert all(tab.loc[p.name, "prior"] == raw["parameters"][p.name]["prior"]
               for p in spec.parameters)


def test_with_parameter_prints_the_new_prior_as_written():
    spec = load_model("expansion_biphasic").with_parameter("rho", prior="LogNormal(log(1), 0.3)")
    assert str(spec.parameter("rho").prior) == "LogNormal(log(1), 0.3)"
    assert "LogNormal(log(1), 0.3)" in spec.to_text()


def test_to_text_shows_the_model_file_text(name, catalog_raw):
    spec, raw = load_model(name), catalog_raw(name)
    text = spec.to_text()
    assert text.startswith(spec.name) and text.endswith("\n")
    for s, ode in raw["odes"].items():
        assert f"d{s}/dt" in text and " ".join(ode.split()) in text
    for d, expr in raw.get("derived", {}).items():
        assert " ".join(expr.split()) in text, d
    for o in spec.outputs:
        assert o.name in text and str(o.sigma) in text
    for p in spec.parameters:
        assert str(p.prior) in text
    assert "log(" in text
    # terminal form: no LaTeX and no evaluated prior numbers
    assert "\\frac" not in text and "\\mathrm" not in text and "mu=" not in text
    assert f"({spec.time_unit})" in text


def test_to_text_of_expansion_biphasic():
    text = load_model("expansion_biphasic").to_text()
    assert "dE/dt  =  (rho - (rho + alpha) * gate(t, tmax, w)) * E" in text
    assert "E  +=  (1 - fb) * f0 * AMT" in text
    assert "w  =  0.25 day" in text
    assert "LogNormal(log(0.889), 0.5)" in text and "0.6931471805599453" not in text
    assert "E(t)  =  (1 - fb) * f0 * AMT * exp(rho * t - (rho + alpha) * G)" in text


def test_markdown_and_latex_are_kept_for_reports():
    spec = load_model("expansion_biphasic")
    assert "\\frac{dE}{dt}" in spec.to_latex()
    md = spec.to_markdown()
    assert spec.to_latex() in md and "LogNormal(log(0.889), 0.5)" in md
