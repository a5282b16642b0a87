"""Property tests: malformed input reads or raises DatasetError; valid data round-trips."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckmodel.data import CKData, check_ck, read_ck
from ckmodel.errors import DatasetError, DataWarning, Problem

# CKDATA_EXAMPLES raises the example count for a local stress run.
PROPS = settings(max_examples=int(os.environ.get("CKDATA_EXAMPLES", "50")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

STANDARD = ["ID", "TIME", "EVID", "AMT", "CMT", "ANALYTE", "DV", "LLOQ", "BLQ", "MDV",
            "MDV_REASON", "HSCT_TIME", "ADDL", "WT"]
cells = st.one_of(
    st.sampled_from(["", ".", "0", "1", "2", "-1", "1e3", "nan", "inf", "PB_QPCR", "BM_FLOW",
                     "x", "#", "@", '"', "1,2", " 7 ", "1.5"]),
    st.integers(-5, 200).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)


@st.composite
def csv_texts(draw):
    names = draw(st.lists(st.one_of(st.sampled_from(STANDARD), st.text(max_size=5)),
                          min_size=1, max_size=9))
    names = draw(st.permutations(names))
    n_rows = draw(st.integers(0, 8))
    rows = []
    for _ in range(n_rows):
        width = draw(st.sampled_from([len(names), len(names), max(1, len(names) - 1),
                                      len(names) + 1]))
        rows.append(",".join(draw(st.lists(cells, min_size=width, max_size=width))))
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    return sep.join([",".join(names), *rows]) + sep


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


def _read_or_dataset_error(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            ck = read_ck(path, **kw)
        except DatasetError as exc:
            assert exc.problems and all(isinstance(p, Problem) for p in exc.problems)
            return None
    assert isinstance(ck, CKData)
    return ck


@PROPS
@given(text=csv_texts())
def test_garbage_csv_reads_or_raises_dataset_error(scratch, text):
    path = scratch / "garbage.csv"
    path.write_text(text, encoding="utf-8")
    ck = _read_or_dataset_error(path)
    try:
        found = check_ck(path)
    except DatasetError:
        assert ck is None
        return
    assert all(isinstance(p, Problem) for p in found)
    assert (ck is not None) == (not any(p.severity == "error" for p in found))
    if ck is not None:
        ck.summary()
        ck.to_xarray()
        assert len(ck.hash()) == 64


@PROPS
@given(data=st.binary(max_size=200))
def test_random_bytes_read_or_raise(scratch, data):
    path = scratch / "bytes.csv"
    path.write_bytes(data)
    _read_or_dataset_error(path)


@PROPS
@given(text=csv_texts(), mapping=st.sampled_from([None, "cdisc", {"x": "ID", "a": "DV"}]))
def test_column_maps_and_outcomes_never_crash(scratch, text, mapping):
    path, out = scratch / "m.csv", scratch / "o.csv"
    path.write_text(text, encoding="utf-8")
    out.write_text(text.replace("TIME", "EFS_TIME").replace("DV", "BOR"), encoding="utf-8")
    _read_or_dataset_error(path, column_map=mapping, outcomes=out)


@st.composite
def valid_frames(draw):
    n = draw(st.integers(1, 4))
    obs, doses = [], []
    for i in range(n):
        sid = draw(st.sampled_from([f"S{i}", str(i + 1), f"0{i}"]))
        if any(d["ID"] == sid for d in doses):
            sid = f"X{i}"
        doses.append({"ID": sid, "TIME": 0.0, "AMT": draw(st.floats(0.01, 10))})
        times = draw(st.lists(st.floats(0.1, 400, allow_subnormal=False), min_size=1,
                              max_size=6, unique=True))
        for t in times:
            blq = draw(st.booleans())
            dv = draw(st.floats(1e-3, 1e6))
            obs.append({"ID": sid, "TIME": t, "ANALYTE": draw(st.sampled_from(
                ["PB_QPCR", "PB_FLOW"])), "DV": np.nan if blq else dv, "LLOQ": 50.0,
                "BLQ": int(blq), "MDV": 0})
    obs_df = pd.DataFrame(obs).drop_duplicates(["ID", "TIME", "ANALYTE"])
    cov = pd.DataFrame({"ID": [d["ID"] for d in doses],
                        "WT": draw(st.lists(st.floats(30, 150), min_size=n, max_size=n))})
    return obs_df, pd.DataFrame(doses), cov


@settings(PROPS, max_examples=min(PROPS.max_examples, 25))  # each example writes and reads
@given(frames=valid_frames())
def test_roundtrip_property(scratch, frames):
    obs, doses, cov = frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        ck = CKData.from_frames(obs, doses, cov)
        ck.to_csv(scratch / "rt.csv")
        back = read_ck(scratch / "rt.csv")
    assert back == ck and back.hash() == ck.hash()
    assert back.subjects == ck.subjects
    ds = back.to_xarray()
    assert ds["DV"].dims == ("subject", "time", "analyte")
