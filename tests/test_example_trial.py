"""The bundled example trial (data/example_trial): reproducible, clean, and true to its design."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from ckmodel.data import check_ck, read_ck
from ckmodel.design import (
    PHASE_3PLUS3,
    PHASE_ATD,
    AcceleratedTitration,
    Cohort,
    Decision,
    ThreePlusThree,
    ToxicityTrigger,
    next_decision,
)
from ckmodel.errors import DataWarning
from ckmodel.spec import load_model

DIR = Path(__file__).resolve().parents[1] / "data" / "example_trial"
FILES = ("ck.csv", "outcomes.csv", "truth.json")
N_LEVELS = 5
MAX_PATIENTS = 37
# the protocol's rule, written out independently of the generator
RULE = AcceleratedTitration(
    then=ThreePlusThree(), trigger=ToxicityTrigger(min_grade=2, n_events=1, on_dlt=True)
)


@pytest.fixture(scope="module")
def generator() -> Iterator[ModuleType]:
    """The generator script, imported as a module (data/ is not a package)."""
    name = "_make_example_trial"
    spec = importlib.util.spec_from_file_location(name, DIR / "make_example_trial.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def ck() -> pd.DataFrame:
    return pd.read_csv(DIR / "ck.csv", dtype={"ID": str, "PART": str}, na_values=["."],
                       keep_default_na=False)


@pytest.fixture(scope="module")
def outcomes() -> pd.DataFrame:
    return pd.read_csv(DIR / "outcomes.csv", dtype={"ID": str, "BOR": str}, na_values=["."],
                       keep_default_na=False).set_index("ID")


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((DIR / "truth.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def subjects(ck: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    """One row per patient in enrolment (ID) order with design columns and outcomes."""
    base = ck.groupby("ID", sort=False)[["DOSE_LEVEL", "DOSE", "COHORT", "PART"]].first()
    return base.join(outcomes, how="left")


def test_regenerates_byte_for_byte(generator: ModuleType, tmp_path: Path) -> None:
    generator.main(tmp_path)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DIR / name).read_bytes(), name
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"


def test_check_ck_reports_only_the_documented_after_hsct_record(truth: dict) -> None:
    problems = check_ck(DIR / "ck.csv", outcomes=DIR / "outcomes.csv")
    assert [p.rule for p in problems] == ["after_hsct"]
    assert problems[0].severity == "warning"
    assert problems[0].subject == truth["sampling"]["after_hsct_example_id"]


def test_size_and_dose_levels(subjects: pd.DataFrame, truth: dict) -> None:
    assert 25 <= len(subjects) <= 37
    assert 3 <= subjects["DOSE_LEVEL"].nunique() <= 5
    levels = {int(k): v for k, v in truth["dose_levels"].items()}
    assert sorted(levels) == list(range(1, N_LEVELS + 1))
    assert (subjects["DOSE"] == subjects["DOSE_LEVEL"].map(levels)).all()


def _cohorts(subjects: pd.DataFrame) -> list[tuple[str, int, pd.DataFrame]]:
    """(part, 0-based level, patients) per recorded cohort, in enrolment order."""
    out = []
    for _, g in subjects.groupby("COHORT", sort=True):
        assert g["PART"].nunique() == 1 and g["DOSE_LEVEL"].nunique() == 1
        out.append((g["PART"].iat[0], int(g["DOSE_LEVEL"].iat[0]) - 1, g))
    return out


def test_escalation_follows_the_rules_given_the_dlts(subjects: pd.DataFrame, truth: dict,
                                                     generator: ModuleType) -> None:
    assert generator.RULE == RULE
    cohorts = _cohorts(subjects)
    assert list(subjects["COHORT"]) == sorted(subjects["COHORT"]), "cohorts enrol in ID order"
    escalation = [c for c in cohorts if c[0] in (PHASE_ATD, PHASE_3PLUS3)]
    expansion = [c for c in cohorts if c[0] not in (PHASE_ATD, PHASE_3PLUS3)]
    assert [c[0] for c in cohorts] == [c[0] for c in escalation + expansion]
    history: list[Cohort] = []
    for phase, level, g in escalation:
        step = next_decision(history, RULE, n_levels=N_LEVELS, max_patients=MAX_PATIENTS)
        assert not step.is_stop
        assert (step.next_level, step.cohort_size, step.phase) == (level, len(g), phase)
        grades = np.maximum(g["CRS_GRADE"], g["ICANS_GRADE"]).astype(int)
        history.append(Cohort(level, len(g), int(g["DLT"].sum()), phase, tuple(grades)))
    final = next_decision(history, RULE, n_levels=N_LEVELS, max_patients=MAX_PATIENTS)
    assert final.decision is Decision.STOP_MTD_FOUND
    assert truth["design"]["mtd_dose_level"] == final.mtd + 1
    recorded = [(c["phase"], c["dose_level"] - 1, c["n"], c["n_dlt"])
                for c in truth["design"]["cohorts"]]
    assert recorded == [(c.phase, c.level, c.n, c.n_dlt) for c in history]
    # the expansion cohort (only when the escalation enrolled fewer than 25) sits at the MTD
    n_escalation = sum(c.n for c in history)
    if n_escalation < 25:
        assert len(expansion) == 1 and expansion[0][1] == final.mtd
    else:
        assert not expansion


def test_every_patient_has_a_dose_at_zero_and_blood_qpcr(ck: pd.DataFrame,
                                                         subjects: pd.DataFrame) -> None:
    doses = ck[ck["EVID"] == 1]
    assert doses["ID"].is_unique and set(doses["ID"]) == set(subjects.index)
    assert (doses["TIME"] == 0).all()
    assert (doses.set_index("ID")["AMT"] == subjects["DOSE"]).all()
    obs = ck[ck["EVID"] == 0]
    assert set(obs.loc[obs["ANALYTE"] == "PB_QPCR", "ID"]) == set(subjects.index)
    assert set(obs["ANALYTE"]) == {"PB_QPCR", "BM_QPCR", "PB_FLOW"}


def test_blq_convention(ck: pd.DataFrame, truth: dict) -> None:
    obs = ck[ck["EVID"] == 0]
    assert (obs["LLOQ"] == obs["ANALYTE"].map(truth["lloq"])).all()
    blq = obs["BLQ"] == 1
    assert obs.loc[blq, "DV"].isna().all()
    assert (obs.loc[~blq, "DV"] >= obs.loc[~blq, "LLOQ"]).all()
    assert 0 < blq.mean() < 0.5


def test_records_stop_at_hsct_except_the_documented_one(ck: pd.DataFrame,
                                                        subjects: pd.DataFrame,
                                                        truth: dict) -> None:
    hsct = subjects["HSCT_TIME"].dropna()
    assert len(hsct) >= 2
    responders = subjects["BOR"].isin(["CR", "CRh", "CRi", "MLFS"])
    assert responders[hsct.index].all()
    assert 0.3 <= len(hsct) / responders.sum() <= 0.4
    obs = ck[ck["EVID"] == 0]
    after = obs[obs["TIME"] > obs["ID"].map(hsct)]
    assert len(after) == 1
    row = after.iloc[0]
    assert row["ID"] == truth["sampling"]["after_hsct_example_id"]
    assert row["ANALYTE"] == "PB_QPCR" and row["BLQ"] == 1


def test_follow_up_and_outcome_consistency(ck: pd.DataFrame, subjects: pd.DataFrame) -> None:
    last = ck[ck["EVID"] == 0].groupby("ID")["TIME"].max()
    s = subjects
    hsct = s["HSCT_TIME"].fillna(np.inf)
    # nothing is sampled after death or last follow-up (the after-HSCT example included)
    assert (last <= s["OS_TIME"]).all()
    assert (s["EFS_TIME"] <= s["OS_TIME"]).all()
    assert (s.loc[hsct < np.inf, "EFS_EVENT"] == 0).all()
    responders = s["BOR"].isin(["CR", "CRh", "CRi", "MLFS"])
    assert s.loc[responders, "DOR_TIME"].notna().all()
    assert s.loc[~responders, "DOR_TIME"].isna().all()
    assert (s.loc[~s["BOR"].isin(["CR", "CRh", "CRi"]), "MRD_NEG"] == 0).all()
    ada = s["ADA"] == 1
    assert 0.10 <= ada.mean() <= 0.15
    assert s.loc[ada, "ADA_TIME"].notna().all() and s.loc[~ada, "ADA_TIME"].isna().all()


def test_truth_uses_the_blood_marrow_parameter_names(truth: dict) -> None:
    from ckmodel.population.covariates import parse_covariates

    spec = load_model(truth["model"])
    assert truth["model"] == "blood_marrow"
    assert list(truth["typical"]) == list(spec.param_names)
    assert list(truth["omega"]) == list(spec.param_names)
    assert set(truth["sigma"]) == set(spec.output_names) == set(truth["lloq"])
    effects = parse_covariates([c["formula"] for c in truth["covariates"]])
    for effect, entry in zip(effects, truth["covariates"], strict=True):
        assert effect.parameter == entry["parameter"] in spec.param_names
        assert effect.covariate == entry["covariate"]
        assert effect.kind == entry["kind"]
    assert set(truth["subjects"]) == {str(i) for i in range(101, 101 + len(truth["subjects"]))}
    for values in truth["subjects"].values():
        assert set(spec.param_names) <= set(values)


def test_nca_sanity() -> None:
    from ckmodel.nca import nca

    with pytest.warns(DataWarning, match="after"):
        data = read_ck(DIR / "ck.csv", outcomes=DIR / "outcomes.csv")
    table = nca(data, analytes="PB_QPCR")
    # CLL1 CAR-T in AML: peak of order 1e3-1e5 copies/ug gDNA within two weeks (Jin 2022)
    assert 1e3 <= table["CMAX"].median() <= 1e5
    assert 7 <= table["TMAX"].median() <= 14
