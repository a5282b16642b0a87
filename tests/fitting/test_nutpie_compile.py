"""nutpie's C callbacks built by ckmodel and cached on disk (ckmodel.fitting.nutpie_compile).

Oracle: PyMC's own log density and gradient of the same model, compiled by PyTensor's C
backend, at random unconstrained points; and nutpie's own callbacks for the stored draws.
"""

from __future__ import annotations

import ctypes
from dataclasses import replace

import numpy as np
import pytest

from ckmodel.fitting.nutpie_compile import compile_nutpie


@pytest.fixture(scope="module")
def model(sim_data):
    from ckmodel.population.model import build_model
    from ckmodel.population.prepare import prepare
    from ckmodel.spec import load_model

    data, _ = sim_data
    spec = load_model("expansion_biphasic")
    return build_model(spec, prepare(data, spec), fused=True)


def _call_logp(compiled, x):
    n = compiled.n_dim
    grad, logp = np.zeros(n), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    rc = compiled.compiled_logp_func.ctypes(
        n, x.ctypes.data_as(ptr), grad.ctypes.data_as(ptr), logp.ctypes.data_as(ptr), None)
    return rc, logp[0], grad


def _call_expand(compiled, x):
    out = np.zeros(compiled.n_expanded)
    ptr = ctypes.POINTER(ctypes.c_double)
    rc = compiled.compiled_expand_func.ctypes(
        compiled.n_dim, compiled.n_expanded, x.ctypes.data_as(ptr), out.ctypes.data_as(ptr),
        None)
    return rc, out


def _point(model, compiled, x):
    """The flat unconstrained point as PyMC's dict of value variables."""
    names, slices, shapes = compiled.shape_info
    by_name = {v.name: v for v in model.value_vars}
    return {name: x[sl].reshape(shape) for name, sl, shape in
            zip(names, slices, shapes, strict=True)
            if name in by_name}


def test_callbacks_match_pymc_and_nutpie(model):
    import nutpie

    compiled = compile_nutpie(model)
    assert "ckmodel_nutpie_logp" in compiled.compiled_logp_func.__qualname__   # own path
    logp_fn = model.compile_logp(jacobian=True)
    dlogp_fn = model.compile_dlogp(jacobian=True)
    theirs = nutpie.compile_pymc_model(model)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.normal(0.0, 0.5, compiled.n_dim)
        rc, logp, grad = _call_logp(compiled, x)
        point = _point(model, compiled, x)
        assert rc == 0
        np.testing.assert_allclose(logp, logp_fn(point), rtol=1e-10)
        np.testing.assert_allclose(grad, dlogp_fn(point), rtol=1e-8, atol=1e-10)
        rc, values = _call_expand(compiled, x)
        assert rc == 0
        np.testing.assert_array_equal(values[:compiled.n_dim], x)
        rc_theirs, values_theirs = _call_expand(theirs, x)
        assert rc_theirs == 0
        np.testing.assert_allclose(values, values_theirs, rtol=1e-12)
    assert compiled.shapes == theirs.shapes and compiled.n_expanded == theirs.n_expanded
    assert list(compiled.coords) == list(theirs.coords) and compiled.dims == theirs.dims
    # the same jittered initial points for the same seed
    np.testing.assert_array_equal(compiled.initial_point_func(7), theirs.initial_point_func(7))


def test_non_finite_and_wrong_size_are_reported_not_raised(model):
    compiled = compile_nutpie(model)
    assert "ckmodel_nutpie_logp" in compiled.compiled_logp_func.__qualname__
    x = np.full(compiled.n_dim, np.nan)
    rc, _, _ = _call_logp(compiled, x)
    assert rc in (3, 4)                       # nutpie: a non-finite density, a divergence
    ptr = ctypes.POINTER(ctypes.c_double)
    buf = np.zeros(compiled.n_dim)
    assert compiled.compiled_logp_func.ctypes(
        compiled.n_dim + 1, buf.ctypes.data_as(ptr), buf.ctypes.data_as(ptr),
        buf.ctypes.data_as(ptr), None) == -1


def test_second_compile_loads_the_callbacks_from_the_cache(model):
    first = compile_nutpie(model)             # writes the cache if this is its first time
    again = compile_nutpie(model)
    assert again.compiled_logp_func.cache_hits == 1
    assert again.compiled_expand_func.cache_hits == 1
    x = np.random.default_rng(4).normal(0.0, 0.5, first.n_dim)
    rc, logp, grad = _call_logp(again, x)     # the loaded code computes what was compiled
    rc0, logp0, grad0 = _call_logp(first, x)
    assert rc == rc0 == 0 and logp == logp0
    np.testing.assert_array_equal(grad, grad0)


def test_the_cache_tells_data_sets_apart(sim_data):
    """Two data sets of the same shape: each model's callback computes its own density."""
    from ckmodel.population.model import build_model
    from ckmodel.population.prepare import prepare
    from ckmodel.spec import load_model

    data, _ = sim_data
    spec = load_model("expansion_biphasic")
    pdata = prepare(data, spec)
    shifted = replace(pdata, dv=pdata.dv * 1.5)
    models = [build_model(spec, p, fused=True) for p in (pdata, shifted)]
    compiled = [compile_nutpie(m) for m in models]
    assert compiled[0].n_dim == compiled[1].n_dim
    x = np.random.default_rng(5).normal(0.0, 0.5, compiled[0].n_dim)
    values = []
    for m, c in zip(models, compiled, strict=True):
        rc, logp, _ = _call_logp(c, x)
        assert rc == 0
        np.testing.assert_allclose(logp, m.compile_logp(jacobian=True)(_point(m, c, x)),
                                   rtol=1e-10)
        values.append(logp)
    assert values[0] != values[1]


def test_model_with_data_containers_is_compiled_by_nutpie():
    import pymc as pm

    with pm.Model() as m:
        y = pm.Data("y", np.array([0.1, -0.3, 0.2]))
        mu = pm.Normal("mu")
        pm.Normal("obs", mu, 1.0, observed=y)
    compiled = compile_nutpie(m)
    assert "ckmodel_nutpie" not in compiled.compiled_logp_func.__qualname__
    updated = compiled.with_data(y=np.array([1.0, 2.0, 3.0]))   # still swaps data at run time
    assert updated.shared_data["y"][1] == 2.0
