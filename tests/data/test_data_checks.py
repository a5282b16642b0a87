"""Every rule fires where it should, with the right line and column, and not on clean data."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from ckdata_helpers import CLEAN, CLEAN_OUTCOMES, edit, rules

from ckmodel.data import check_ck
from ckmodel.data._pipeline import coerce_ck
from ckmodel.data.checks import CheckContext, run_checks
from ckmodel.data.schema import analyte_registry

BROKEN = """\
ID,TIME,EVID,AMT,ANALYTE,DV,LLOQ,BLQ,MDV,WT
# a comment line
1,0,1,1,.,.,.,0,0,70
1,7,0,.,PB_QPCR,abc,50,0,0,70
1,-2,0,.,PB_QPCR,100,50,0,0,70
@ignored,row
1,14,0,.,PB_QPCR,0,50,0,0,70
1,14,0,.,PB_QPCR,300,50,0,0,70
1,21,0,.,PB_QPCR,.,.,1,0,70
1,28,0,.,PB_QPCR,100,50,2,0,70
1,35,3,.,PB_QPCR,100,50,0,0,70
2,0,1,.,.,.,.,0,0,80
2,7,0,.,PB_QPRC,100,50,0,0,80
3,7,0,.,PB_QPCR,100,50,0,0,90
3,10,0,5,PB_QPCR,100,50,0,0,90
1,42,0,.,PB_QPCR,100,50,0,7,71
"""
BROKEN_OUTCOMES = """\
ID,CRS_GRADE,BOR,EFS_TIME,EFS_EVENT,HSCT_TIME
1,7,CR,100,1,.
2,2,XX,-5,1,5
9,1,PD,.,1,.
"""


def test_broken_file_lists_every_problem(write):
    ck, out = write(BROKEN), write(BROKEN_OUTCOMES, "outcomes.csv")
    found = check_ck(ck, outcomes=out, baseline_covariates=["WT"])
    got = [(p.file, p.row, p.column, p.rule, p.severity, p.subject) for p in found]
    c, o = str(ck), str(out)
    assert got == [
        (c, 4, "DV", "non_numeric", "error", "1"),
        (c, 5, "TIME", "negative_time", "error", "1"),
        (c, 7, "DV", "dv_not_positive", "error", "1"),
        (c, 8, "TIME", "duplicate_record", "error", "1"),
        (c, 9, "LLOQ", "blq_without_lloq", "error", "1"),
        (c, 10, "BLQ", "blq_value", "error", "1"),
        (c, 11, "EVID", "evid_value", "error", "1"),
        (c, 12, "AMT", "dose_amount", "error", "2"),
        (c, 13, "ANALYTE", "unknown_analyte", "error", "2"),
        (c, 13, "TIME", "after_hsct", "warning", "2"),
        (c, 14, "EVID", "no_dose", "error", "3"),
        (c, 15, "AMT", "amt_on_observation", "error", "3"),
        (c, 16, "MDV", "mdv_value", "error", "1"),
        (c, 16, "WT", "baseline_varies", "error", "1"),
        (o, 2, "CRS_GRADE", "grade_value", "error", "1"),
        (o, 3, "EFS_TIME", "negative_time", "error", "2"),
        (o, 3, "BOR", "bor_value", "error", "2"),
        (o, 4, "ID", "unknown_subject", "warning", "9"),
        (o, 4, "EFS_TIME", "event_without_time", "error", "9"),
    ]
    dup = next(p for p in found if p.rule == "duplicate_record")
    assert "line 7" in dup.message
    unknown = next(p for p in found if p.rule == "unknown_analyte")
    assert "PB_QPCR, BM_QPCR, PB_FLOW, BM_FLOW" in unknown.message
    assert "analytes=" in unknown.message and "did you mean PB_QPCR" in unknown.message
    assert "not supported yet" in next(p for p in found if p.rule == "evid_value").message


def test_clean_data_has_no_problems(write):
    assert check_ck(write(CLEAN), outcomes=write(CLEAN_OUTCOMES, "o.csv")) == []


# (rule, edited text, line, column, severity, extra check_ck kwargs)
CASES = [
    ("missing_column", CLEAN.replace(",DV,", ",XX,"), 1, "DV", "error", {}),
    ("non_numeric", edit(CLEAN, 3, "TIME", "7d"), 3, "TIME", "error", {}),
    ("non_numeric", edit(CLEAN, 3, "DV", "inf"), 3, "DV", "error", {}),
    ("missing_value", edit(CLEAN, 3, "TIME", "."), 3, "TIME", "error", {}),
    ("missing_value", edit(CLEAN, 3, "ID", ""), 3, "ID", "error", {}),
    ("negative_time", edit(CLEAN, 3, "TIME", "-1"), 3, "TIME", "error", {}),
    ("duplicate_record", CLEAN + "2,7,0,.,PB_QPCR,7000,50,0,0,80\n", 8, "TIME", "error", {}),
    ("dv_not_positive", edit(CLEAN, 3, "DV", "0"), 3, "DV", "error", {}),
    ("dv_not_positive", edit(CLEAN, 3, "DV", "-5"), 3, "DV", "error", {}),
    ("dv_not_positive", edit(CLEAN, 3, "DV", "."), 3, "DV", "error", {}),
    ("blq_without_lloq", edit(CLEAN, 4, "LLOQ", "."), 4, "LLOQ", "error", {}),
    ("lloq_not_positive", edit(CLEAN, 3, "LLOQ", "-1"), 3, "LLOQ", "error", {}),
    ("blq_value", edit(CLEAN, 3, "BLQ", "2"), 3, "BLQ", "error", {}),
    ("mdv_value", edit(CLEAN, 3, "MDV", "-1"), 3, "MDV", "error", {}),
    ("evid_value", edit(CLEAN, 3, "EVID", "2"), 3, "EVID", "error", {}),
    ("dose_amount", edit(CLEAN, 2, "AMT", "."), 2, "AMT", "error", {}),
    ("dose_amount", edit(CLEAN, 2, "AMT", "0"), 2, "AMT", "error", {}),
    ("amt_on_observation", edit(CLEAN, 3, "AMT", "1"), 3, "AMT", "error", {}),
    ("no_dose", edit(CLEAN, 5, "ID", "3").replace("3,0,1,3", "3,0,1,3"), 6, "EVID", "error", {}),
    ("unknown_analyte", edit(CLEAN, 3, "ANALYTE", "pb_qpcr"), 3, "ANALYTE", "error", {}),
    ("missing_analyte", edit(CLEAN, 3, "ANALYTE", "."), 3, "ANALYTE", "error", {}),
    ("baseline_varies", edit(CLEAN, 3, "WT", "71"), 3, "WT", "error",
     {"baseline_covariates": ["WT"]}),
    ("baseline_declared", CLEAN, 1, "HEIGHT", "error", {"baseline_covariates": ["HEIGHT"]}),
    ("blq_above_lloq", edit(CLEAN, 4, "DV", "60"), 4, "BLQ", "warning", {}),
    ("quantified_below_lloq", edit(CLEAN, 3, "DV", "20"), 3, "DV", "warning", {}),
    ("ragged_line", CLEAN + "2,21,0,.,PB_QPCR,10,50,0,0,80,99\n", 8, None, "error", {}),
    ("ragged_line", CLEAN + "2,21,0,.,PB_QPCR\n", 8, None, "error", {}),
    ("duplicate_column", CLEAN.replace(",WT", ",dv"), 1, "DV", "error", {}),
    ("empty_column_name", CLEAN.replace(",LLOQ,", ",,", 1), 1, "UNNAMED_7", "error", {}),
    ("no_records", CLEAN.splitlines()[0] + "\n", 1, None, "error", {}),
    ("unsupported_column", CLEAN.replace(",WT\n", ",WT,ADDL\n", 1).replace(",70\n", ",70,0\n")
     .replace(",80\n", ",80,2\n"), 5, "ADDL", "error", {}),
    ("cmt_on_observation", CLEAN.replace(",WT\n", ",WT,CMT\n", 1).replace(",70\n", ",70,1\n")
     .replace(",80\n", ",80,.\n"), 3, "CMT", "warning", {}),
]


@pytest.mark.parametrize(("rule", "text", "line", "column", "severity", "kw"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fires(write, rule, text, line, column, severity, kw):
    found = [p for p in check_ck(write(text), **kw) if p.rule == rule]
    assert found, f"{rule} did not fire"
    assert (found[0].row, found[0].column, found[0].severity) == (line, column, severity)
    assert len(found[0].message) > 20


@pytest.mark.parametrize("rule", sorted({c[0] for c in CASES}))
def test_rule_quiet_on_clean(write, rule):
    assert rule not in rules(check_ck(write(CLEAN), baseline_covariates=["WT"]))


def test_unknown_analyte_reported_once_per_name(write):
    text = edit(edit(CLEAN, 3, "ANALYTE", "XX"), 6, "ANALYTE", "XX")
    found = [p for p in check_ck(write(text)) if p.rule == "unknown_analyte"]
    assert len(found) == 1 and found[0].row == 3 and "2 record(s)" in found[0].message


def test_extra_analyte_accepted(write):
    text = edit(CLEAN, 3, "ANALYTE", "PB_DDPCR")
    assert check_ck(write(text), analytes={"PB_DDPCR": "copies/ug gDNA"}) == []


def test_missing_analyte_column_needs_single_analyte(write):
    text = "ID,TIME,EVID,AMT,DV\n1,0,1,1,.\n1,7,0,.,500\n"
    assert "missing_column" in rules(check_ck(write(text)))
    assert check_ck(write(text), analytes=["PB_QPCR"]) == []


def test_missing_amt_column_with_doses(write):
    text = "ID,TIME,EVID,ANALYTE,DV\n1,0,1,.,.\n1,7,0,PB_QPCR,500\n"
    found = [p for p in check_ck(write(text)) if p.column == "AMT"]
    assert [p.rule for p in found] == ["missing_column"]


def test_negative_time_allowed_on_excluded_observation(write):
    text = edit(edit(CLEAN, 3, "TIME", "-3"), 3, "MDV", "1")
    assert check_ck(write(text)) == []


def test_mdv_replicate_is_not_duplicate(write):
    text = CLEAN + "2,7,0,.,PB_QPCR,7000,50,0,1,80\n"
    assert check_ck(write(text)) == []


def test_separator_hint(write):
    found = check_ck(write(CLEAN.replace(",", ";")))
    assert any("comma-separated" in p.message for p in found)


def test_baseline_heuristic_warns_on_near_constant_covariate(write):
    lines = ["ID,TIME,EVID,AMT,ANALYTE,DV,SEX"]
    for i in range(1, 7):
        sex = "F" if i % 2 else "M"
        lines += [f"{i},0,1,1,.,.,{sex}", f"{i},7,0,.,PB_QPCR,500,{sex}",
                  f"{i},14,0,.,PB_QPCR,200,{'M' if i == 5 else sex}"]
    found = check_ck(write("\n".join(lines) + "\n"))
    assert [(p.rule, p.severity, p.subject, p.row) for p in found] == [
        ("baseline_varies", "warning", "5", 16)]
    assert "constant within 5 of 6" in found[0].message


def test_time_varying_covariate_not_flagged(write):
    lines = ["ID,TIME,EVID,AMT,ANALYTE,DV,CRP"]
    for i in range(1, 5):
        lines += [f"{i},0,1,1,.,.,{i}", f"{i},7,0,.,PB_QPCR,500,{i + 10}",
                  f"{i},14,0,.,PB_QPCR,200,{i + 20}"]
    assert check_ck(write("\n".join(lines) + "\n")) == []


def test_after_hsct_from_ck_column(write):
    text = CLEAN.replace(",WT\n", ",WT,HSCT_TIME\n", 1).replace(",70\n", ",70,10\n") \
        .replace(",80\n", ",80,.\n")
    found = check_ck(write(text))
    assert [(p.rule, p.row, p.severity) for p in found] == [("after_hsct", 4, "warning")]


def test_hsct_sources_must_agree(write):
    text = CLEAN.replace(",WT\n", ",WT,HSCT_TIME\n", 1).replace(",70\n", ",70,30\n") \
        .replace(",80\n", ",80,.\n")
    out = CLEAN_OUTCOMES.replace("200,0,.", "200,0,20")
    found = check_ck(write(text), outcomes=write(out, "o.csv"))
    assert "hsct_mismatch" in rules(found)


OUTCOME_CASES = [
    ("grade_value", ("CRS_GRADE", "2.5")), ("grade_value", ("ICANS_GRADE", "6")),
    ("flag_value", ("DLT", "2")), ("flag_value", ("MRD_NEG", "-1")),
    ("bor_value", ("BOR", "cr")), ("negative_time", ("EFS_TIME", "-1")),
    ("event_without_time", ("EFS_TIME", ".")), ("time_without_event", ("EFS_EVENT", ".")),
    ("unknown_subject", ("ID", "01")), ("non_numeric", ("DLT", "yes")),
]


@pytest.mark.parametrize(("rule", "cell"), OUTCOME_CASES)
def test_outcome_rule_fires(write, rule, cell):
    out = edit(CLEAN_OUTCOMES, 2, *cell)
    found = [p for p in check_ck(write(CLEAN), outcomes=write(out, "o.csv")) if p.rule == rule]
    assert found and found[0].row == 2 and found[0].file.endswith("o.csv")


def test_outcome_structure_rules(write):
    ck = write(CLEAN)
    dup = CLEAN_OUTCOMES + "2,0,0,0,PD,0,40,1,.\n"
    assert "duplicate_subject" in rules(check_ck(ck, outcomes=write(dup, "o.csv")))
    no_id = CLEAN_OUTCOMES.replace("ID,", "SUBJ,", 1)
    assert "missing_column" in rules(check_ck(ck, outcomes=write(no_id, "o.csv")))
    half = "ID,OS_TIME\n1,100\n"
    assert "missing_column" in rules(check_ck(ck, outcomes=write(half, "o.csv")))


def test_checks_are_fast_on_150k_rows():
    n_sub, per = 10_000, 15
    ids = np.repeat(np.arange(n_sub).astype(str), per)
    k = np.tile(np.arange(per), n_sub)
    raw = pd.DataFrame({
        "ID": ids, "TIME": np.where(k == 0, 0.0, k * 3.0), "EVID": (k == 0).astype(int),
        "AMT": np.where(k == 0, 1.0, np.nan), "ANALYTE": np.where(k == 0, None, "PB_QPCR"),
        "DV": np.where(k == 0, np.nan, 5000.0 / (k + 1) ** 2), "LLOQ": 50.0, "BLQ": 0, "MDV": 0,
        "WT": np.repeat(np.linspace(50, 90, n_sub), per)})
    table, _ = coerce_ck(raw, np.arange(2, len(raw) + 2), "big.csv")
    ctx = CheckContext(table, analyte_registry(), ("WT",))
    t0 = time.perf_counter()
    found = run_checks(ctx)
    elapsed = time.perf_counter() - t0
    assert len(raw) == 150_000
    assert [p.rule for p in found].count("quantified_below_lloq") == n_sub * 5
    assert elapsed < 5.0  # measured ~0.3 s on a quiet core; generous for a shared machine
