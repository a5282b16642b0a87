"""Read and validate model files into :class:`~ckmodel.spec.model.ModelSpec`.

TOML is read with :mod:`tomllib` (data only) and every expression goes through the restricted
grammar of :mod:`ckmodel.spec.expr`; reading a model file never executes code from it.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sympy as sp

from ckmodel.errors import ModelSpecError
from ckmodel.resources import catalog_dir
from ckmodel.spec.expr import FUNCTIONS, parse_expr, parse_number
from ckmodel.spec.model import ERROR_MODELS, SCALES, ModelSpec, Output, Parameter, State, Switch
from ckmodel.spec.prior import Prior

__all__ = ["load_model", "spec_from_dict", "catalog_dirs", "list_models", "RESERVED"]

#: Names with a fixed meaning in every model: time since first dose and the dose amount.
RESERVED = ("t", "AMT")

_TOP_KEYS = {
    "name", "description", "reference", "time_unit", "amount_unit", "covariates", "states",
    "parameters", "constants", "derived", "initial", "odes", "dosing", "solution", "outputs",
    "switches", "solver",
}
_PARAM_KEYS = {"unit", "description", "prior", "iiv", "scale", "value", "lower", "upper"}
_OUTPUT_KEYS = {"value", "unit", "error", "sigma", "sigma_prop", "nu", "description"}
_SWITCH_KEYS = {"onset", "parameter", "factor", "width", "description"}
_SOLVER_KEYS = {"max_step"}


def _solver_max_step(raw: Mapping[str, Any], file: str | None
                     ) -> tuple[tuple[float, float], ...] | None:
    """``[solver] max_step = [[until, h], ...]``: the fitted RK4 grid the model's rates need."""
    table = _table(raw, "solver", file)
    _check_keys(table, _SOLVER_KEYS, file, "solver")
    if "max_step" not in table:
        return None
    key = "solver.max_step"
    rows = table["max_step"]
    if not isinstance(rows, list) or not rows:
        raise ModelSpecError("max_step is a list of [until, h] pairs, e.g. [[14, 0.25], "
                             "[inf, 5.0]]", file=file, key=key)
    out = []
    for i, row in enumerate(rows):
        if (not isinstance(row, list) or len(row) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row)):
            raise ModelSpecError(f"entry {i + 1} must be a pair of numbers [until, h], got "
                                 f"{row!r}", file=file, key=key)
        until, h = float(row[0]), float(row[1])
        if not (h > 0 and np.isfinite(h)) or not until > 0:
            raise ModelSpecError(f"entry {i + 1}: until and h must be > 0 (h finite), got "
                                 f"{row!r}", file=file, key=key)
        if out and until <= out[-1][0]:
            raise ModelSpecError(f"entry {i + 1}: 'until' values must increase", file=file,
                                 key=key)
        out.append((until, h))
    return tuple(out)


def catalog_dirs() -> list[Path]:
    """Folders searched for catalog models, in order (the existing ones).

    ``$CKMODEL_MODELS_PATH`` (``os.pathsep``-separated), then the bundled catalog of
    :func:`ckmodel.resources.catalog_dir`: the repository's ``models/`` in a source checkout or
    editable install, the package data ``ckmodel/_bundled/models`` in an installed wheel.
    """
    dirs = [Path(p) for p in os.environ.get("CKMODEL_MODELS_PATH", "").split(os.pathsep) if p]
    try:
        dirs.append(catalog_dir())
    except FileNotFoundError:
        pass
    return [d for d in dirs if d.is_dir()]


def list_models() -> dict[str, Path]:
    """Catalog model names mapped to their files (first folder wins)."""
    out: dict[str, Path] = {}
    for d in catalog_dirs():
        for f in sorted(d.glob("*.toml")):
            out.setdefault(f.stem, f)
    return out


def load_model(model: str | os.PathLike[str] | ModelSpec) -> ModelSpec:
    """Load a model by catalog name (``"expansion_biphasic"``) or from a TOML file path.

    Parameters
    ----------
    model : str, path or ModelSpec
        Catalog name, path to a ``.toml`` file, or an already loaded spec (returned as is).

    Returns
    -------
    ModelSpec

    Raises
    ------
    ModelSpecError
        When the name is not in the catalog, the file cannot be read, or it fails validation.

    Examples
    --------
    >>> spec = load_model("expansion_biphasic")
    >>> spec.state_names
    ('E', 'M')
    """
    if isinstance(model, ModelSpec):
        return model
    path = Path(model)
    if path.suffix != ".toml" and not path.exists():
        catalog = list_models()
        if str(model) not in catalog:
            raise ModelSpecError(f"no catalog model named '{model}' (catalog: "
                                 f"{', '.join(catalog) or 'empty'}); give a path to a .toml file "
                                 "to use your own model")
        path = catalog[str(model)]
    if not path.is_file():
        raise ModelSpecError(f"model file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"not valid TOML: {exc}", file=str(path)) from None
    return spec_from_dict(raw, file=str(path))


def _table(raw: Mapping[str, Any], key: str, file: str | None, required: bool = False
           ) -> dict[str, Any]:
    val = raw.get(key)
    if val is None:
        if required:
            raise ModelSpecError(f"missing required table [{key}]", file=file, key=key)
        return {}
    if not isinstance(val, dict):
        raise ModelSpecError(f"[{key}] must be a table", file=file, key=key)
    return val


def _check_keys(entry: Mapping[str, Any], allowed: set[str], file: str | None, key: str) -> None:
    extra = set(entry) - allowed
    if extra:
        raise ModelSpecError(f"unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}",
                             file=file, key=key)


def _str(val: Any, file: str | None, key: str) -> str:
    if not isinstance(val, str):
        raise ModelSpecError(f"expected a string, got {type(val).__name__}", file=file, key=key)
    return val


def _name_ok(name: str, file: str | None, key: str) -> None:
    if not name.isidentifier() or name.startswith("_"):
        raise ModelSpecError(f"'{name}' is not a valid name (letters, digits, underscore; "
                             "not starting with a digit or underscore)", file=file, key=key)
    if name in RESERVED:
        raise ModelSpecError(f"'{name}' is reserved ({', '.join(RESERVED)} have a fixed meaning)",
                             file=file, key=key)
    if name in FUNCTIONS:
        raise ModelSpecError(f"'{name}' is a function name and cannot be a symbol", file=file,
                             key=key)


def _parameter(name: str, entry: Any, file: str | None) -> Parameter:
    key = f"parameters.{name}"
    if not isinstance(entry, dict):
        raise ModelSpecError("a parameter must be a table with at least 'prior'", file=file,
                             key=key)
    _check_keys(entry, _PARAM_KEYS, file, key)
    if "prior" not in entry:
        raise ModelSpecError("missing 'prior' (prior of the typical value)", file=file, key=key)
    prior = Prior.parse(entry["prior"], file=file, key=key + ".prior")
    iiv_raw = entry.get("iiv", False)
    iiv = None if iiv_raw is False else Prior.parse(iiv_raw, file=file, key=key + ".iiv")
    if iiv is not None and iiv.support != "positive":
        raise ModelSpecError(f"iiv prior {iiv} must be on positive values (an SD)", file=file,
                             key=key + ".iiv")
    default_scale = {"positive": "log", "unit": "logit"}.get(prior.support, "linear")
    scale = entry.get("scale", default_scale)
    if scale not in SCALES:
        raise ModelSpecError(f"scale must be one of {SCALES}, got {scale!r}", file=file,
                             key=key + ".scale")
    lower = entry.get("lower")
    upper = entry.get("upper")
    lower = None if lower is None else parse_number(lower, file=file, key=key + ".lower")
    upper = None if upper is None else parse_number(upper, file=file, key=key + ".upper")
    if lower is not None and upper is not None and not lower < upper:
        raise ModelSpecError(f"lower bound {lower} must be below upper bound {upper}", file=file,
                             key=key)
    if scale == "log" and (upper is not None and upper <= 0 or lower is not None and lower < 0):
        raise ModelSpecError("non-positive bound on a log-scale (positive) parameter", file=file,
                             key=key)
    if scale == "log" and prior.support not in ("positive",):
        raise ModelSpecError(f"prior {prior} allows non-positive values but the parameter is on "
                             "the log scale; use LogNormal/HalfNormal/Gamma or scale='linear'",
                             file=file, key=key)
    if scale == "logit" and prior.support != "unit":
        raise ModelSpecError(f"prior {prior} is not on (0, 1) but the parameter is on the logit "
                             "scale; use LogitNormal or Beta", file=file, key=key)
    value = entry.get("value")
    value = prior.median() if value is None else parse_number(value, file=file, key=key)
    if scale == "log" and value <= 0 or scale == "logit" and not 0 < value < 1:
        raise ModelSpecError(f"value {value} is outside the parameter's support", file=file,
                             key=key + ".value")
    return Parameter(name=name, unit=str(entry.get("unit", "")), prior=prior, iiv=iiv,
                     scale=scale, value=float(value), lower=lower, upper=upper,
                     description=str(entry.get("description", "")))


def spec_from_dict(raw: Mapping[str, Any], *, file: str | None = None) -> ModelSpec:
    """Validate a model dictionary (as read from TOML) and build the :class:`ModelSpec`.

    Every problem is reported with the file and the key; see ``models/README.md`` for the format.
    """
    if not isinstance(raw, Mapping):
        raise ModelSpecError("a model file must be a TOML table", file=file)
    _check_keys(raw, _TOP_KEYS, file, "<top level>")
    name = _str(raw.get("name", ""), file, "name")
    if not name:
        raise ModelSpecError("missing 'name'", file=file, key="name")

    # -- states
    states_raw = _table(raw, "states", file, required=True)
    if not states_raw:
        raise ModelSpecError("[states] must declare at least one state", file=file, key="states")
    states = []
    for s, v in states_raw.items():
        _name_ok(s, file, f"states.{s}")
        if isinstance(v, str):
            states.append(State(s, v))
        elif isinstance(v, dict):
            _check_keys(v, {"description", "unit"}, file, f"states.{s}")
            states.append(State(s, str(v.get("description", "")), str(v.get("unit", ""))))
        else:
            raise ModelSpecError("a state is a description string or a table", file=file,
                                 key=f"states.{s}")

    # -- parameters, constants, covariates
    params_raw = _table(raw, "parameters", file, required=True)
    parameters = []
    for p, v in params_raw.items():
        _name_ok(p, file, f"parameters.{p}")
        parameters.append(_parameter(p, v, file))
    constants: dict[str, float] = {}
    for c, v in _table(raw, "constants", file).items():
        _name_ok(c, file, f"constants.{c}")
        val = v.get("value") if isinstance(v, dict) else v
        if val is None:
            raise ModelSpecError("a constant needs a value", file=file, key=f"constants.{c}")
        constants[c] = parse_number(val, file=file, key=f"constants.{c}")
    covs = raw.get("covariates", [])
    if not isinstance(covs, list) or not all(isinstance(c, str) for c in covs):
        raise ModelSpecError("'covariates' must be a list of column names", file=file,
                             key="covariates")
    for c in covs:
        _name_ok(c, file, "covariates")

    declared: dict[str, str] = {}
    for kind, names in (("state", [s.name for s in states]), ("parameter", list(params_raw)),
                        ("constant", list(constants)), ("covariate", list(covs))):
        for n in names:
            if n in declared:
                raise ModelSpecError(f"'{n}' is declared as both {declared[n]} and {kind}",
                                     file=file, key=n)
            declared[n] = kind
    state_set = {s.name for s in states}
    base = set(params_raw) | set(constants) | set(covs)

    # -- derived (substituted into everything that uses them)
    derived: dict[str, sp.Expr] = {}
    subs: dict[sp.Symbol, sp.Expr] = {}
    for d, text in _table(raw, "derived", file).items():
        _name_ok(d, file, f"derived.{d}")
        if d in declared:
            raise ModelSpecError(f"'{d}' is already declared as {declared[d]}", file=file,
                                 key=f"derived.{d}")
        e = parse_expr(_str(text, file, f"derived.{d}"),
                       base | state_set | {"t", "AMT"} | set(derived),
                       file=file, key=f"derived.{d}")
        derived[d] = e.xreplace(subs)
        subs[sp.Symbol(d, real=True)] = derived[d]
        declared[d] = "derived"

    def expr(text: Any, allowed: set[str], key: str) -> sp.Expr:
        e = parse_expr(_str(text, file, key), allowed | set(derived), file=file, key=key)
        e = e.xreplace(subs)
        bad = {s.name for s in e.free_symbols} - allowed
        if bad:
            raise ModelSpecError(f"uses {sorted(bad)} through a derived quantity, which is not "
                                 f"allowed here (allowed: {sorted(allowed)})", file=file, key=key)
        return e

    def uses_state(e: sp.Expr) -> set[str]:
        return {s.name for s in e.free_symbols} & state_set

    # -- ODEs
    odes_raw = _table(raw, "odes", file, required=True)
    for s in odes_raw:
        if s not in state_set:
            raise ModelSpecError(f"ODE given for unknown state '{s}' (states: "
                                 f"{', '.join(state_set)})", file=file, key=f"odes.{s}")
    odes = {}
    for s in states:
        if s.name not in odes_raw:
            raise ModelSpecError(f"state '{s.name}' has no ODE", file=file, key=f"odes.{s.name}")
        odes[s.name] = expr(odes_raw[s.name], base | state_set | {"t"}, f"odes.{s.name}")

    # -- dosing
    dosing_raw = _table(raw, "dosing", file, required=True)
    if not dosing_raw:
        raise ModelSpecError("[dosing] must say which state(s) a dose enters", file=file,
                             key="dosing")
    dosing = {}
    for s, text in dosing_raw.items():
        if s not in state_set:
            raise ModelSpecError(f"dose into unknown state '{s}'", file=file, key=f"dosing.{s}")
        e = expr(text, base | {"AMT"}, f"dosing.{s}")
        if uses_state(e):
            raise ModelSpecError("a dose expression cannot use states", file=file,
                                 key=f"dosing.{s}")
        dosing[s] = e

    # -- initial (pre-dose baseline) values; states not listed start at 0
    initial = {}
    for s, text in _table(raw, "initial", file).items():
        if s not in state_set:
            raise ModelSpecError(f"initial value for unknown state '{s}'", file=file,
                                 key=f"initial.{s}")
        e = expr(text, base, f"initial.{s}")
        initial[s] = e

    # -- closed-form solution
    sol_raw = dict(_table(raw, "solution", file))
    superposition = sol_raw.pop("superposition", False)
    if not isinstance(superposition, bool):
        raise ModelSpecError("solution.superposition must be true or false", file=file,
                             key="solution.superposition")
    solution = None
    if sol_raw:
        missing = state_set - set(sol_raw)
        extra = set(sol_raw) - state_set
        if missing or extra:
            raise ModelSpecError(f"[solution] must give every state exactly once (missing: "
                                 f"{sorted(missing)}, unknown: {sorted(extra)})", file=file,
                                 key="solution")
        solution = {}
        for s in states:
            e = expr(sol_raw[s.name], base | {"t", "AMT"}, f"solution.{s.name}")
            if uses_state(e):
                raise ModelSpecError("a closed-form solution cannot use states", file=file,
                                     key=f"solution.{s.name}")
            solution[s.name] = e

    # -- outputs
    outputs_raw = _table(raw, "outputs", file, required=True)
    if not outputs_raw:
        raise ModelSpecError("[outputs] must map at least one analyte", file=file, key="outputs")
    outputs = []
    for o, v in outputs_raw.items():
        key = f"outputs.{o}"
        if isinstance(v, str):
            v = {"value": v}
        if not isinstance(v, dict) or "value" not in v:
            raise ModelSpecError("an output needs a 'value' expression", file=file, key=key)
        _check_keys(v, _OUTPUT_KEYS, file, key)
        err = v.get("error", "log_normal")
        if err not in ERROR_MODELS:
            raise ModelSpecError(f"unknown error model {err!r} (choose from {ERROR_MODELS})",
                                 file=file, key=key + ".error")
        sigma = Prior.parse(v.get("sigma", "HalfNormal(1)"), file=file, key=key + ".sigma")
        sigma_prop = v.get("sigma_prop")
        if err == "combined":
            sigma_prop = Prior.parse(sigma_prop or "HalfNormal(0.5)", file=file,
                                     key=key + ".sigma_prop")
        elif sigma_prop is not None:
            raise ModelSpecError("sigma_prop is only used by error = 'combined'", file=file,
                                 key=key)
        nu = parse_number(v.get("nu", 4.0), file=file, key=key + ".nu")
        if nu <= 0:
            raise ModelSpecError("nu must be > 0", file=file, key=key + ".nu")
        outputs.append(Output(name=o, value=expr(v["value"], base | state_set | {"t"}, key),
                              unit=str(v.get("unit", "")), error=err, sigma=sigma,
                              sigma_prop=sigma_prop, nu=nu,
                              description=str(v.get("description", ""))))

    # -- switches
    switches = []
    pnames = set(params_raw)
    for sw, v in _table(raw, "switches", file).items():
        key = f"switches.{sw}"
        if not isinstance(v, dict):
            raise ModelSpecError("a switch is a table", file=file, key=key)
        _check_keys(v, _SWITCH_KEYS, file, key)
        for need in ("onset", "parameter", "factor"):
            if need not in v:
                raise ModelSpecError(f"missing '{need}'", file=file, key=key)
        for need in ("parameter", "factor"):
            if v[need] not in pnames:
                raise ModelSpecError(f"{need} '{v[need]}' is not a parameter", file=file, key=key)
        width = parse_number(v.get("width", 0.25), file=file, key=key + ".width")
        if width <= 0:
            raise ModelSpecError("width must be > 0", file=file, key=key + ".width")
        switches.append(Switch(sw, _str(v["onset"], file, key), v["parameter"], v["factor"],
                               width, str(v.get("description", ""))))

    return ModelSpec(
        name=name,
        description=str(raw.get("description", "")),
        reference=str(raw.get("reference", "")),
        time_unit=str(raw.get("time_unit", "day")),
        amount_unit=str(raw.get("amount_unit", "")),
        states=tuple(states),
        parameters=tuple(parameters),
        constants=constants,
        covariates=tuple(covs),
        derived=derived,
        odes=odes,
        dosing=dosing,
        initial=initial,
        solution=solution,
        superposition=superposition,
        outputs=tuple(outputs),
        switches=tuple(switches),
        max_step=_solver_max_step(raw, file),
        raw=copy.deepcopy(dict(raw)),
        file=file,
    )
