import numpy as np
import pandas as pd
import pytest

from ckmodel.errors import DatasetError, ModelSpecError
from ckmodel.population.covariates import covariate_design, parse_covariates


def test_parse_forms():
    effs = parse_covariates(["rho ~ log(DOSE) + cat(LD)", "f0 ~ BLAST", "alpha ~ log(WT / 70)"])
    assert [(e.parameter, e.covariate, e.kind, e.reference) for e in effs] == [
        ("rho", "DOSE", "power", None), ("rho", "LD", "categorical", None),
        ("f0", "BLAST", "linear", None), ("alpha", "WT", "power", 70.0)]


@pytest.mark.parametrize("bad", ["rho", "rho ~ exp(DOSE)", "rho ~ DOSE * 2",
                                 "rho ~ __import__('os')", "1x ~ DOSE", "rho ~ log(DOSE/-1)"])
def test_bad_formulas_raise(bad):
    with pytest.raises(ModelSpecError):
        parse_covariates([bad])


def test_design_columns():
    vals = pd.Series([1.0, 2.0, 4.0], index=["a", "b", "c"])
    (eff,) = parse_covariates(["rho ~ log(DOSE)"])
    x, labels, prior, ref = covariate_design(eff, vals)
    assert ref == 2.0
    np.testing.assert_allclose(x[:, 0], np.log([0.5, 1.0, 2.0]))
    assert labels == ["rho~log(DOSE)"] and prior.dist == "Normal"
    (cat,) = parse_covariates(["rho ~ cat(LD)"])
    x, labels, _, ref = covariate_design(cat, pd.Series(["1", "1", "0"], index=list("abc")))
    assert ref == "1" and labels == ["rho~cat(LD)[0]"]
    np.testing.assert_array_equal(x[:, 0], [0, 0, 1])


def test_missing_covariate_names_subject():
    (eff,) = parse_covariates(["rho ~ log(DOSE)"])
    with pytest.raises(DatasetError, match="subject b"):
        covariate_design(eff, pd.Series([1.0, np.nan], index=["a", "b"]))
    with pytest.raises(DatasetError, match="<= 0"):
        covariate_design(eff, pd.Series([1.0, 0.0], index=["a", "b"]))
