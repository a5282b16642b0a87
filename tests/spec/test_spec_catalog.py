"""Every catalog model loads, renders, round-trips through TOML and copies-with-changes."""

from __future__ import annotations

import tomllib

import pytest

from ckmodel.spec import ModelSpec, list_models, load_model, spec_from_dict
from ckmodel.spec.render import _symbol_names

CATALOG = sorted(list_models())
EXPECTED = {"antigen_driven", "blood_marrow", "expansion_biphasic", "expansion_lag_biphasic",
            "one_cmt_oral", "qpcr_flow_link"}


def test_catalog_lists_the_six_models():
    assert EXPECTED <= set(CATALOG)


@pytest.fixture(scope="module", params=CATALOG)
def spec(request) -> ModelSpec:
    return load_model(request.param)


def test_load_by_name_and_path_agree(spec):
    again = load_model(spec.file)
    assert again.hash() == spec.hash()
    assert load_model(spec) is spec
    assert spec.name in repr(spec)


def test_every_state_has_an_ode_and_outputs_use_declared_names(spec):
    assert set(spec.odes) == set(spec.state_names)
    declared = {*spec.state_names, *spec.param_names, *spec.constants, *spec.covariates, "t"}
    for o in spec.outputs:
        assert {s.name for s in o.value.free_symbols} <= declared, o.name
    for s in spec.state_names:
        assert {x.name for x in spec.odes[s].free_symbols} <= declared, s
    if spec.solution is not None:
        assert set(spec.solution) == set(spec.state_names)


def test_markdown_contains_equations_and_parameter_table(spec):
    md = spec.to_markdown()
    assert md.startswith(f"## {spec.name}\n")
    assert "### Equations" in md and "$$\n\\begin{aligned}" in md
    assert "| parameter | unit | scale | value | prior | IIV SD prior |" in md
    for s in spec.states:
        assert f"- `{s.name}`:" in md
    for p in spec.parameters:
        row = next(line for line in md.splitlines() if line.startswith(f"| `{p.name}` |"))
        assert str(p.prior) in row and p.scale in row
    for o in spec.outputs:
        assert f"| {o.name} |" in md
    # the LaTeX block of the Markdown is the one to_latex() gives
    assert spec.to_latex() in md


def test_latex_has_one_derivative_per_state(spec):
    tex = spec.to_latex()
    names = _symbol_names(spec)
    for sym in (s for s in names if s.name in spec.state_names):
        assert tex.count(rf"\frac{{d{names[sym]}}}{{dt}} &=") == 1, sym.name
    for o in spec.outputs:
        assert r"\mathrm{" + o.name.replace("_", r"\_") + "} &=" in tex
    assert tex.startswith("\\begin{aligned}") and tex.endswith("\\end{aligned}")


def test_parameter_table(spec):
    tab = spec.parameter_table()
    assert list(tab.index) == list(spec.param_names)
    assert {"unit", "scale", "value", "prior", "iiv_prior", "description"} <= set(tab.columns)
    for p in spec.parameters:
        assert tab.loc[p.name, "value"] == p.value
        assert tab.loc[p.name, "prior"] == str(p.prior)


def test_to_toml_round_trips_with_same_hash(spec):
    text = spec.to_toml()
    again = spec_from_dict(tomllib.loads(text))
    assert again.hash() == spec.hash()
    assert again.to_toml() == text
    assert again.state_names == spec.state_names
    assert again.param_names == spec.param_names
    assert again.typical_values() == spec.typical_values()
    for s in spec.state_names:
        assert again.odes[s] == spec.odes[s]


def test_hash_ignores_comments_and_formatting(spec):
    text = "# a comment\n\n" + spec.to_toml().replace(" = ", "   =   ")
    assert spec_from_dict(tomllib.loads(text)).hash() == spec.hash()
    assert len(spec.hash()) == 64


def test_with_parameter_returns_new_spec(spec):
    name = spec.param_names[0]
    before_hash, before_value = spec.hash(), spec.parameter(name).value
    new = spec.with_parameter(name, value=before_value * 1.5)
    assert isinstance(new, ModelSpec) and new is not spec
    assert new.parameter(name).value == pytest.approx(before_value * 1.5, rel=1e-15)
    assert new.hash() != before_hash
    # the original is untouched
    assert spec.hash() == before_hash
    assert spec.parameter(name).value == before_value
    assert spec.raw["parameters"][name].get("value") != before_value * 1.5


def test_with_parameter_iiv_off_and_prior(spec):
    name = next((p.name for p in spec.parameters if p.iiv is not None), None)
    if name is None:
        pytest.skip("no parameter with a random effect")
    new = spec.with_parameter(name, iiv=False)
    assert new.parameter(name).iiv is None and spec.parameter(name).iiv is not None
    assert new.hash() != spec.hash()


def test_with_constants(spec):
    if not spec.constants:
        with pytest.raises(KeyError, match="no constant"):
            spec.with_constants(w=1e-3)
        return
    (k, v), *_ = spec.constants.items()
    before = spec.hash()
    new = spec.with_constants(**{k: v / 10})
    assert new.constants[k] == pytest.approx(v / 10, rel=1e-15)
    assert spec.constants[k] == v and spec.hash() == before
    assert new.hash() != before
    # the unit and description of a table-valued constant survive the change
    entry = spec.raw["constants"][k]
    if isinstance(entry, dict):
        assert {kk: vv for kk, vv in new.raw["constants"][k].items() if kk != "value"} == {
            kk: vv for kk, vv in entry.items() if kk != "value"}


def test_with_unknown_names_raise(spec):
    with pytest.raises(KeyError, match="no parameter 'nope'"):
        spec.with_parameter("nope", value=1.0)
    with pytest.raises(KeyError, match="no constant 'nope'"):
        spec.with_constants(nope=1.0)


def test_expansion_biphasic_structure():
    spec = load_model("expansion_biphasic")
    assert spec.state_names == ("E", "M")
    assert spec.param_names == ("f0", "rho", "tmax", "alpha", "beta", "fb")
    assert spec.output_names == ("PB_QPCR",)
    assert spec.constants == {"w": 0.25}
    assert spec.parameter("fb").scale == "logit"
    assert spec.parameter("rho").scale == "log"
    assert spec.time_unit == "day"


def test_spec_does_not_share_state_with_input_dict():
    raw = tomllib.loads(load_model("expansion_biphasic").to_toml())
    spec = spec_from_dict(raw)
    before = spec.hash()
    raw["constants"]["w"]["value"] = 1.0
    raw["parameters"]["rho"]["value"] = 2.0
    assert spec.constants["w"] == 0.25 and spec.parameter("rho").value == 0.889
    assert spec.hash() == before


def test_to_toml_round_trips_unicode_names():
    raw = tomllib.loads(load_model("expansion_biphasic").to_toml())
    for table in ("states", "odes", "dosing", "solution"):
        raw[table]["Ε"] = raw[table].pop("E")
    raw["odes"]["Ε"] = raw["odes"]["Ε"].replace("* E", "* Ε")
    raw["outputs"]["PB_QPCR"]["value"] = "Ε + M"
    spec = spec_from_dict(raw)
    assert "Ε" in spec.state_names
    assert spec_from_dict(tomllib.loads(spec.to_toml())).hash() == spec.hash()


def test_solver_max_step_reaches_the_fit_options():
    """antigen_driven declares its RK4 schedule; fits use it unless options are passed."""
    import math

    from ckmodel.population.ode import ODEOptions

    spec = load_model("antigen_driven")
    assert spec.max_step is not None and math.isinf(spec.max_step[-1][0])
    assert ODEOptions.for_spec(spec).max_step == spec.max_step
    assert ODEOptions.for_spec(load_model("expansion_biphasic")) == ODEOptions()
    # part of the spec's content hash (a saved fit records it)
    raw = dict(spec.raw)
    raw["solver"] = {"max_step": [[14, 0.25], [math.inf, 5.0]]}
    assert spec_from_dict(raw).hash() != spec.hash()
