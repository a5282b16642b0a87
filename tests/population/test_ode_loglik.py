"""The fused ODE likelihood (solve, records, one adjoint in one compiled call) against the
pointwise PyTensor likelihood on the states of the RK4 Op, for every fusable error model."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from ckmodel.population import pointwise_loglik, prepare
from ckmodel.population.ode import ODEOptions, ode_outputs
from ckmodel.population.ode_loglik import ODELogLik, ode_loglik
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata

TIMES = (1.0, 4.0, 7.0, 10.0, 14.0, 21.0, 28.0, 56.0, 84.0)


# the residual-error functions themselves are shared with the closed-form fused likelihood and
# tested there for every model; here: the default, the one with a second SD, and M1
CASES = [("log_normal", "M3"), ("combined", "M3"), ("log_normal", "M1")]


def _pair(spec, pdata, th, error, blq_method):
    """Fused and pointwise log-likelihood graphs, and the SD inputs per analyte."""
    s1 = {a: pt.dscalar(f"s_{a}") for a in pdata.analytes}
    s2 = {a: pt.dscalar(f"p_{a}") for a in pdata.analytes}
    comb = error == "combined"
    fused = ode_loglik(spec, pdata, th, {a: (s1[a], s2[a] if comb else None)
                                         for a in pdata.analytes},
                       {a: error for a in pdata.analytes})
    preds = ode_outputs(spec, pdata, th, {}, ODEOptions.for_spec(spec))  # as the fused side
    ref = 0.0
    for i, a in enumerate(pdata.analytes):
        sel = pdata.analyte_index == i
        blq = pdata.blq[sel]
        value = np.where(blq, pdata.lloq[sel], pdata.dv[sel])
        pred = preds[a] if error in ("additive", "combined") else pt.maximum(preds[a], 1e-300)
        ref = ref + pointwise_loglik(error, pred, value, blq, s1[a],
                                     sigma_prop=s2[a] if comb else None,
                                     blq_method=blq_method).sum()
    return fused, ref, [*s1.values(), *(s2.values() if comb else ())], [*s1.values(),
                                                                      *s2.values()]


def test_fused_ode_loglik_equals_pointwise_graph():
    """Same value (rtol 1e-12) and gradients in theta and every residual SD (rtol 1e-9), for
    the log-normal and combined error models with M3 and for M1: both sides run the same RK4
    steps, so they agree to rounding. blood_marrow has three analytes, one of them (PB_FLOW)
    with a parameter in its output expression, and BLQ records (dropped under M1). Follow-up
    differs between the subjects (84, 28 and 10 days): the fused side solves each subject to
    its last record only (the kernel's ``upto``), the pointwise side every subject to day 84."""
    from ckmodel.data import CKData

    spec = load_model("blood_marrow")
    data, truth = simulate_ckdata(spec, n=3, dose=[1.0], seed=4, times=TIMES,
                                  lloq={"PB_QPCR": 50.0, "BM_QPCR": 50.0, "PB_FLOW": 0.2})
    obs = data.observations
    last = obs["ID"].map(dict(zip(data.subjects, (84.0, 28.0, 10.0), strict=True)))
    data = CKData.from_frames(obs[obs["TIME"] <= last].drop(columns="ROW"), data.doses,
                              data.covariates, analytes=data.analyte_units)
    th = pt.dmatrix("theta")
    outputs, inputs, n_wrt = [], [th], []
    for error, blq_method in CASES:
        pdata = prepare(data, spec, blq_method=blq_method)
        assert len(pdata.analytes) == 3
        assert pdata.blq.any() == (blq_method == "M3")
        fused, ref, wrt, sds = _pair(spec, pdata, th, error, blq_method)
        wrt = [th, *wrt]
        outputs += [fused, ref, *pytensor.grad(fused, wrt), *pytensor.grad(ref, wrt)]
        n_wrt.append(len(wrt))
        inputs += sds
    theta = truth["params"].loc[list(pdata.subjects), list(spec.param_names)].to_numpy()
    f = pytensor.function(inputs, outputs, on_unused_input="ignore", mode="FAST_COMPILE")
    values = []
    for error, _ in CASES:
        values += ([50.0, 80.0, 2.0, 0.1, 0.2, 0.3] if error == "additive"
                   else [0.4, 0.5, 0.6, 0.1, 0.2, 0.3])
    out = f(theta, *values)
    k = 0
    for n in n_wrt:
        assert np.isfinite(out[k]) and out[k] == pytest.approx(out[k + 1], rel=1e-12)
        for a, b in zip(out[k + 2:k + 2 + n], out[k + 2 + n:k + 2 + 2 * n], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert np.all(np.asarray(out[k + 2]) != 0)  # every subject and parameter informed
        k += 2 + 2 * n


def test_fused_ode_loglik_rejects_bad_inputs():
    spec = load_model("blood_marrow")
    data, _ = simulate_ckdata(spec, n=2, dose=[1.0], seed=1, times=TIMES)
    pdata = prepare(data, spec)
    th = pt.dmatrix("theta")
    sig = {a: (pt.dscalar(), None) for a in pdata.analytes}
    with pytest.raises(ValueError, match="no fused likelihood for error model 'student_t'"):
        ode_loglik(spec, pdata, th, sig, {a: "student_t" for a in pdata.analytes})
    with pytest.raises(ValueError, match="solver='kernel'"):
        ode_loglik(spec, pdata, th, sig, {a: "log_normal" for a in pdata.analytes},
                   ODEOptions(solver="scan"))
    with pytest.raises(ValueError, match="blq_method"):
        ODELogLik.__init__(object.__new__(ODELogLik), None, np.zeros(2), np.zeros(1),
                           np.zeros((1, 0)), (), {}, {}, blq_method="M2")
