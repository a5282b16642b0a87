"""CKData: immutability, round trips, xarray, hash, subset, from_frames."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pandas as pd
import pytest
from ckdata_helpers import CLEAN, EXAMPLE, quiet_read

from ckmodel.data import CKData, read_ck
from ckmodel.errors import DatasetError, DataWarning


def test_frozen_and_copies(example):
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.time_unit = "hour"
    obs = example.observations
    obs.loc[:, "DV"] = -1.0
    obs["NEW"] = 1
    assert (example.observations["DV"].dropna() > 0).all()
    assert "NEW" not in example.observations
    cov = example.covariates
    cov.iloc[0, 0] = 99
    assert example.covariates.iloc[0, 0] != 99


def test_roundtrip_csv(example, tmp_path):
    example.to_csv(tmp_path / "ck.csv", outcomes_path=tmp_path / "o.csv")
    with pytest.warns(DataWarning):
        back = read_ck(tmp_path / "ck.csv", outcomes=tmp_path / "o.csv")
    assert back == example
    pd.testing.assert_frame_equal(back.observations.drop(columns="ROW"),
                                  example.observations.drop(columns="ROW"))
    assert back.subjects == example.subjects
    assert not list(tmp_path.glob("*.tmp"))


def test_roundtrip_time_varying_and_cmt(write, tmp_path):
    text = CLEAN.replace(",WT\n", ",WT,CRP,CMT\n", 1)
    rows = text.splitlines()
    crp = ["1", "5", "7.5", "2", "3", "4"]
    cmt = ["E", ".", ".", ".", ".", "."]
    rows[1:] = [f"{r},{c},{m}" for r, c, m in zip(rows[1:], crp, cmt, strict=True)]
    ck = read_ck(write("\n".join(rows) + "\n"))
    assert "CRP" in ck.time_varying and "CRP" not in ck.covariates
    assert ck.doses["CMT"].tolist()[0] == "E" and pd.isna(ck.doses["CMT"].tolist()[1])
    assert ck.time_varying["CRP"].tolist() == [1.0, 5.0, 7.5, 2.0, 3.0, 4.0]
    ck.to_csv(tmp_path / "rt.csv")
    assert read_ck(tmp_path / "rt.csv") == ck


def test_to_xarray(example):
    ds = example.to_xarray()
    assert ds["DV"].dims == ("subject", "time", "analyte")
    assert ds.sizes == {"subject": 8, "time": 11, "analyte": 3}
    assert set(ds.data_vars) >= {"DV", "LLOQ", "BLQ", "MDV"}
    assert list(ds["analyte"].values) == ["PB_QPCR", "BM_QPCR", "PB_FLOW"]
    assert ds["DOSE_LEVEL"].dims == ("subject",)
    assert ds.attrs["time_unit"] == "day" and ds.attrs["source"].endswith("ck.csv")
    obs = example.observations
    r = obs[(obs["BLQ"] == 0)].iloc[5]
    assert ds["DV"].sel(subject=r["ID"], time=r["TIME"], analyte=r["ANALYTE"]).item() == r["DV"]
    n_cells = int(np.isfinite(ds["BLQ"].values).sum())
    assert n_cells == len(obs)
    assert np.isnan(ds["DV"].sel(subject="101", time=1.0, analyte="PB_FLOW").item())


def test_hash_stable_and_content_sensitive(example, example_dir, tmp_path):
    with pytest.warns(DataWarning):
        again = read_ck(example_dir / "ck.csv", outcomes=example_dir / "outcomes.csv")
    assert again.hash() == example.hash() and len(example.hash()) == 64
    assert hash(again) == hash(example)
    # same content from another path: same hash
    (tmp_path / "copy.csv").write_bytes((example_dir / "ck.csv").read_bytes())
    with pytest.warns(DataWarning):
        copy = read_ck(tmp_path / "copy.csv", outcomes=example_dir / "outcomes.csv")
    assert copy.hash() == example.hash()
    # one changed value, unit, or outcome: different hash
    text = (example_dir / "ck.csv").read_text().replace("563.7", "563.8")
    (tmp_path / "changed.csv").write_text(text)
    with pytest.warns(DataWarning):
        changed = read_ck(tmp_path / "changed.csv", outcomes=example_dir / "outcomes.csv")
    assert changed.hash() != example.hash()
    with pytest.warns(DataWarning):
        hours = read_ck(example_dir / "ck.csv", outcomes=example_dir / "outcomes.csv",
                        time_unit="hour")
    assert hours.hash() != example.hash()
    assert quiet_read(example_dir / "ck.csv").hash() != example.hash()


def test_hash_known_value_is_stable(example):
    # Pinned digest: changes only if the example or the canonical serialisation changes
    # (then update CANON_VERSION in _export.py and this value together).
    assert example.hash() == EXPECTED_EXAMPLE_HASH


EXPECTED_EXAMPLE_HASH = "0030c85fc08ea05f2d81b3e4124f3ff44967d308fea3eb6270f7b4d430255337"


def test_subset_and_without_flagged(example):
    sub = example.subset(["105", 101])
    assert sub.subjects == ("101", "105")
    assert set(sub.observations["ID"]) == {"101", "105"}
    assert sub.outcomes.index.tolist() == ["101", "105"]
    assert [p.subject for p in sub.problems] == ["105"]
    assert sub.hsct_time.to_dict() == {"105": 60.0}
    with pytest.raises(KeyError):
        example.subset(["999"])
    clean = example.without_flagged()
    assert not clean.observations["AFTER_HSCT"].any()
    assert len(clean.observations) == len(example.observations) - 1
    assert clean.problems == () and clean.subjects == example.subjects
    assert len(example.observations) == 165  # original untouched


def test_from_frames_equals_read(example):
    with pytest.warns(DataWarning, match="after_hsct"):
        built = CKData.from_frames(example.observations, example.doses, example.covariates,
                                   example.outcomes)
    assert built == example
    assert built.subjects == example.subjects


def test_from_frames_runs_the_checks():
    obs = pd.DataFrame({"id": [1, 1, 2], "time": [7.0, -1.0, 7.0], "ANALYTE": "PB_QPCR",
                        "DV": [5000.0, 10.0, 0.0]})
    doses = pd.DataFrame({"ID": [1], "TIME": [0.0], "AMT": [1.0]})
    with pytest.raises(DatasetError) as info:
        CKData.from_frames(obs, doses)
    got = [(p.file, p.row, p.rule, p.subject) for p in info.value.problems]
    assert got == [("<observations>", 2, "negative_time", "1"),
                   ("<observations>", 3, "dv_not_positive", "2"),
                   ("<observations>", 3, "no_dose", "2")]


def test_from_frames_minimal_and_ids():
    obs = pd.DataFrame({"ID": [7, 7], "TIME": [7.0, 14.0], "ANALYTE": "PB_FLOW",
                        "DV": [50.0, 8.0]})
    doses = pd.DataFrame({"ID": [7.0], "TIME": [0.0], "AMT": [2.0], "CMT": ["E"]})
    cov = pd.DataFrame({"ID": [7], "WT": [70.5]})
    ck = CKData.from_frames(obs, doses, cov, source="simulated")
    assert ck.subjects == ("7",) and ck.covariates.loc["7", "WT"] == 70.5
    assert ck.doses["CMT"].tolist() == ["E"] and ck.source == "simulated"
    assert "simulated" in repr(ck) and "1 subjects" in repr(ck)


def test_from_frames_rejects_wrong_evid():
    obs = pd.DataFrame({"ID": [1], "TIME": [7.0], "ANALYTE": "PB_FLOW", "DV": [5.0],
                        "EVID": [1]})
    doses = pd.DataFrame({"ID": [1], "TIME": [0.0], "AMT": [2.0]})
    with pytest.raises(DatasetError, match="EVID"):
        CKData.from_frames(obs, doses)


def test_summary_mentions_everything(example):
    text = example.summary()
    for part in ("8 subjects", "PB_QPCR", "copies/ug gDNA", "BLQ %", "after allo-HSCT",
                 "DOSE_LEVEL", "outcomes: 8 subjects", "AMT 0.3 to 3"):
        assert part in text, part


def test_time_varying_empty_when_none(example):
    tv = example.time_varying
    assert len(tv) == 0 and list(tv.columns) == ["ID", "TIME", "EVID", "ANALYTE"]


def test_example_generator_is_deterministic(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_example_small",
                                                  EXAMPLE / "make_example_small.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "HERE", tmp_path)
    mod.main()
    for name in ("ck.csv", "outcomes.csv"):
        assert (tmp_path / name).read_text() == (EXAMPLE / name).read_text()
