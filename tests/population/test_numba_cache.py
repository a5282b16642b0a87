"""ckmodel's Ops give PyTensor's numba cache a key that changes with the data and the code."""

from __future__ import annotations

import numpy as np
from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

from ckmodel.population import prepare
from ckmodel.population.closed_loglik import ClosedFormLogLik, ClosedFormLogLikOp
from ckmodel.population.numba_cache import CODE_VERSION
from ckmodel.population.predict import closed_kernels
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata


def _op(seed: int, error: str = "log_normal") -> ClosedFormLogLikOp:
    spec = load_model("expansion_biphasic")
    data, _ = simulate_ckdata(spec, n=3, seed=seed)
    pdata = prepare(data, spec)
    kernel = closed_kernels(spec, pdata)["PB_QPCR"]
    sel = pdata.analyte_index == 0
    value = np.where(pdata.blq[sel], pdata.lloq[sel], pdata.dv[sel])
    return ClosedFormLogLikOp(ClosedFormLogLik(kernel, error, value, pdata.blq[sel]))


def test_cache_key_tracks_data_error_model_and_code_version():
    keys = {}
    for name, op in {"a": _op(1), "a_again": _op(1), "other_data": _op(2),
                     "other_error": _op(1, "proportional")}.items():
        fn, key = numba_funcify_and_cache_key(op)
        assert callable(fn) and key is not None  # None would turn caching off for the graph
        keys[name] = key
    assert keys["a"] == keys["a_again"]
    assert len({keys["a"], keys["other_data"], keys["other_error"]}) == 3
    assert isinstance(CODE_VERSION, int) and CODE_VERSION > 0
    # the code version is part of the key
    from pytensor.link.numba.dispatch.basic import default_hash_key_from_props

    op = _op(1)
    assert keys["a"] == default_hash_key_from_props(op, cache_version=str(CODE_VERSION))
    assert keys["a"] != default_hash_key_from_props(op, cache_version=str(CODE_VERSION + 1))
    assert np.all([len(k) == 64 for k in keys.values()])
