"""read_ck / check_ck: files, NONMEM conventions, column mapping, warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from ckdata_helpers import CLEAN, CLEAN_OUTCOMES, edit, rules

from ckmodel.data import CKData, check_ck, read_ck
from ckmodel.errors import DatasetError, DataWarning


def test_example_reads(example, example_dir):
    assert isinstance(example, CKData)
    assert example.subjects == tuple(str(i) for i in range(101, 109))
    assert example.analytes == ("PB_QPCR", "BM_QPCR", "PB_FLOW")
    assert [p.rule for p in example.problems] == ["after_hsct"]
    obs = example.observations
    assert list(obs.columns) == ["ID", "TIME", "ANALYTE", "DV", "LLOQ", "BLQ", "MDV",
                                 "MDV_REASON", "AFTER_HSCT", "ROW"]
    assert obs["AFTER_HSCT"].sum() == 1
    flagged = obs[obs["AFTER_HSCT"]]
    assert flagged["ID"].tolist() == ["105"] and flagged["TIME"].tolist() == [84.0]
    assert obs.loc[obs["BLQ"] == 1, "DV"].isna().all()
    assert (obs.loc[obs["BLQ"] == 0, "DV"] > 0).all()
    assert obs["MDV"].sum() == 1
    assert set(example.covariates.columns) == {"DOSE_LEVEL", "BM_BLAST_PCT", "LD", "AGE"}
    assert example.covariates.index.tolist() == list(example.subjects)
    assert sorted(example.doses["AMT"].unique()) == [0.3, 1.0, 3.0]
    assert example.outcomes.loc["105", "HSCT_TIME"] == 60
    assert check_ck(example_dir / "ck.csv", outcomes=example_dir / "outcomes.csv") == \
        list(example.problems)


def test_example_sorted_and_rows_are_file_lines(example, example_dir):
    obs = example.observations
    code = obs["ID"].map({s: i for i, s in enumerate(example.subjects)})
    assert (np.diff(code) >= 0).all()
    lines = (example_dir / "ck.csv").read_text().splitlines()
    for _, r in obs.sample(10, random_state=1).iterrows():
        cells = lines[r["ROW"] - 1].split(",")
        assert cells[0] == r["ID"] and float(cells[1]) == r["TIME"] and cells[4] == r["ANALYTE"]


def test_comment_lines_keep_physical_line_numbers(write):
    def with_comments(text):
        lines = text.splitlines()
        return "\n".join(["# study X, units: days", lines[0], "@ skipped", *lines[1:3], "",
                          "  # indented comment", *lines[3:]]) + "\n"

    found = check_ck(write(with_comments(edit(CLEAN, 3, "DV", "oops"))))
    assert [(p.rule, p.row, p.column) for p in found] == [("non_numeric", 5, "DV")]
    ck = read_ck(write(with_comments(CLEAN)))
    assert ck.observations["ROW"].tolist() == [5, 8, 10, 11]
    assert ck.doses["ROW"].tolist() == [4, 9]


def test_commented_nonmem_header(write):
    ck = read_ck(write("#" + CLEAN))
    assert ck == read_ck(write(CLEAN, "b.csv"))


def test_dot_and_empty_mean_missing(write):
    text = CLEAN.replace("1,0,1,1,.,.,.,0,0,70", "1,0,1,1,,,,,,70")
    ck = read_ck(write(text))
    assert ck == read_ck(write(CLEAN, "b.csv"))
    assert np.isnan(ck.observations.loc[1, "DV"])  # BLQ record


def test_defaults_for_optional_columns(write):
    text = "ID,TIME,EVID,AMT,ANALYTE,DV\n1,0,1,1,.,.\n1,7,,.,PB_QPCR,500\n"
    obs = read_ck(write(text)).observations
    assert obs[["BLQ", "MDV"]].iloc[0].tolist() == [0, 0]
    assert np.isnan(obs["LLOQ"].iloc[0])


def test_case_insensitive_headers(write):
    lines = CLEAN.splitlines()
    text = "\n".join([lines[0].lower().replace("wt", "WT"), *lines[1:]]) + "\n"
    assert read_ck(write(text)) == read_ck(write(CLEAN, "b.csv"))


def test_whitespace_and_crlf(write):
    text = CLEAN.replace(",", " , ").replace("\n", "\r\n")
    assert read_ck(write(text)) == read_ck(write(CLEAN, "b.csv"))


def test_quoted_cells(write):
    text = CLEAN.replace(",WT\n", ",WT,NOTE\n", 1).replace(",70\n", ',70,"a, b"\n') \
        .replace(",80\n", ",80,.\n")
    cov = read_ck(write(text)).covariates
    assert cov["NOTE"].tolist()[0] == "a, b" and pd.isna(cov["NOTE"].tolist()[1])


def test_trailing_empty_cells_are_fine(write):
    text = CLEAN.replace("\n", ",,\n")
    assert read_ck(write(text)) == read_ck(write(CLEAN, "b.csv"))
    found = check_ck(write(text.replace("5000,50,0,0,70,,", "5000,50,0,0,70,,9")))
    assert [(p.rule, p.row) for p in found] == [("ragged_line", 3)]


def test_single_analyte_without_column(write):
    text = "ID,TIME,EVID,AMT,DV\n1,0,1,1,.\n1,7,0,.,500\n"
    ck = read_ck(write(text), analytes=["PB_QPCR"])
    assert ck.analytes == ("PB_QPCR",)


def test_cdisc_mapping_reads_same_as_standard(example_dir, tmp_path):
    src = pd.read_csv(example_dir / "ck.csv", dtype=str, keep_default_na=False)
    cd = src.rename(columns={"ID": "USUBJID", "TIME": "AFRLT", "DV": "AVAL",
                             "ANALYTE": "PARAMCD", "LLOQ": "ALLOQ", "BLQ": "BLQFN"})
    cd.to_csv(tmp_path / "adpc.csv", index=False)
    out = pd.read_csv(example_dir / "outcomes.csv", dtype=str, keep_default_na=False)
    out.rename(columns={"ID": "USUBJID"}).to_csv(tmp_path / "o.csv", index=False)
    with pytest.warns(DataWarning):
        a = read_ck(tmp_path / "adpc.csv", outcomes=tmp_path / "o.csv", column_map="cdisc")
    with pytest.warns(DataWarning):
        b = read_ck(example_dir / "ck.csv", outcomes=example_dir / "outcomes.csv")
    assert a == b and a.hash() == b.hash()


def test_cdisc_preset_skips_existing_target(write):
    text = CLEAN.replace(",WT\n", ",WT,USUBJID\n", 1).replace(",70\n", ",70,S-1\n") \
        .replace(",80\n", ",80,S-2\n")
    ck = read_ck(write(text), column_map="cdisc")
    assert ck.subjects == ("1", "2") and "USUBJID" in ck.covariates


def test_dict_column_map(write):
    text = CLEAN.replace("ID,TIME", "PATIENT,DAY", 1)
    ck = read_ck(write(text), column_map={"patient": "ID", "DAY": "time"})
    assert ck == read_ck(write(CLEAN, "b.csv"))
    found = check_ck(write(text))
    assert [p.column for p in found if p.rule == "missing_column"] == ["ID", "TIME"]
    assert "column_map" in found[0].message


def test_bad_column_map_arguments(write):
    with pytest.raises(ValueError, match="preset"):
        check_ck(write(CLEAN), column_map="adam")
    with pytest.raises(TypeError):
        check_ck(write(CLEAN), column_map=["ID"])


def test_read_raises_with_all_errors(write):
    text = edit(edit(CLEAN, 3, "DV", "x"), 6, "TIME", "-4")
    with pytest.raises(DatasetError) as info:
        read_ck(write(text))
    assert [(p.rule, p.row) for p in info.value.problems] == [("non_numeric", 3),
                                                              ("negative_time", 6)]
    assert "line 3" in str(info.value) and "line 6" in str(info.value)


def test_warnings_emitted_once_and_kept(write):
    text = edit(edit(CLEAN, 3, "DV", "20"), 6, "DV", "0.5")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ck = read_ck(write(text))
    assert len(caught) == 1 and issubclass(caught[0].category, DataWarning)
    assert "2 x quantified_below_lloq" in str(caught[0].message)
    assert rules(ck.problems) == ["quantified_below_lloq"] * 2
    assert ck.observations["DV"].tolist()[0] == 20.0  # kept as measured


def test_outcomes_frame_accepted(write):
    out = pd.read_csv(pd.io.common.StringIO(CLEAN_OUTCOMES), dtype=str).set_index("ID")
    ck = read_ck(write(CLEAN), outcomes=out)
    assert ck.outcomes.index.tolist() == ["1", "2"] and ck.outcomes.loc["2", "BOR"] == "PD"


@pytest.mark.parametrize("content", [b"", b"# only a comment\n", b"\x00\x01binary",
                                     b"ID,TIME\n\xff\xfe\n"])
def test_unreadable_files_raise(tmp_path, content):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(DatasetError):
        check_ck(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_ck(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="not a file"):
        check_ck(tmp_path)


def test_utf8_bom_accepted(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + CLEAN.encode())
    assert check_ck(p) == []


def test_bad_time_unit(write):
    with pytest.raises(ValueError, match="time_unit"):
        read_ck(write(CLEAN), time_unit="days")
    assert read_ck(write(CLEAN), time_unit="hour").time_unit == "hour"


def test_ids_are_text(write):
    text = CLEAN.replace("\n1,", "\n001,")
    ck = read_ck(write(text))
    assert ck.subjects == ("001", "2")
    assert ck.observations["ID"].dtype == "str"
