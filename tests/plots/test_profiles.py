from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # test process: never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from ckmodel.plots import plot_profiles, plot_profiles_by_subject  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(sid, analyte, t, dv, lloq, blq=None, hsct=None, mdv=None):
    n = len(t)
    return pd.DataFrame({
        "ID": sid, "ANALYTE": analyte, "TIME": np.asarray(t, float), "DV": dv, "LLOQ": lloq,
        "BLQ": blq or [0] * n, "MDV": mdv or [0] * n, "AFTER_HSCT": hsct or [False] * n,
    })  # fmt: skip


@pytest.fixture
def data():
    nan = np.nan
    obs = pd.concat([
        _rows("A", "PB_QPCR", [0, 1, 7, 14, 28], [nan, 100, 5000, 800, nan], 10.0,
              blq=[1, 0, 0, 0, 1]),
        _rows("A", "BM_QPCR", [14, 28], [200, 50], 20.0),
        _rows("B", "PB_QPCR", [1, 7, 14, 21, 28, 56], [20, 3000, 400, 1e6, 900, nan], 10.0,
              blq=[0, 0, 0, 0, 0, 1], mdv=[0, 0, 0, 1, 0, 0],
              hsct=[False, False, False, False, True, True]),
        _rows("C", "PB_QPCR", [7, 14], [50, 30], 10.0),
    ], ignore_index=True)  # fmt: skip
    cov = pd.DataFrame({"DOSE_LEVEL": [1, 2, 1]}, index=pd.Index(["A", "B", "C"], name="ID"))
    return SimpleNamespace(observations=obs, covariates=cov)


def lines(ax):
    """Line2D artists of an axes keyed by gid (gid -> list of lines)."""
    out = {}
    for line in ax.get_lines():
        out.setdefault(line.get_gid(), []).append(line)
    return out


def assert_png(path, min_kb=10):
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC
    assert len(raw) > min_kb * 1024


def test_plot_profiles_one_panel_per_analyte(data, tmp_path):
    fig = plot_profiles(data)
    try:
        assert [a.get_title() for a in fig.axes] == ["PB_QPCR: all subjects (n=3)",
                                                     "BM_QPCR: all subjects (n=1)"]
        assert all(a.get_yscale() == "log" for a in fig.axes)
        pb, bm = (lines(a) for a in fig.axes)
        assert set(pb) == {"obs:A", "blq:A", "obs:B", "hsct:B", "hsct-blq:B", "obs:C", "lloq"}
        np.testing.assert_array_equal(pb["obs:A"][0].get_xdata(), [1, 7, 14])
        np.testing.assert_array_equal(pb["obs:B"][0].get_ydata(), [20, 3000, 400])  # no MDV
        blq = pb["blq:A"][0]
        np.testing.assert_array_equal(blq.get_xdata(), [0, 28])
        np.testing.assert_array_equal(blq.get_ydata(), [10, 10])  # drawn at LLOQ
        assert blq.get_marker() == "v" and blq.get_markerfacecolor() == "none"
        assert blq.get_linestyle() == "None"
        hsct = pb["hsct:B"][0]
        np.testing.assert_array_equal(hsct.get_ydata(), [900])
        assert to_rgba(hsct.get_color()) == to_rgba("0.6")  # greyed
        assert pb["hsct-blq:B"][0].get_marker() == "v"
        assert len(pb["lloq"]) == 1 and list(pb["lloq"][0].get_ydata()) == [10, 10]
        # subjects keep their colour across panels
        assert pb["obs:A"][0].get_color() == bm["obs:A"][0].get_color()
        assert set(bm) == {"obs:A", "lloq"} and list(bm["lloq"][0].get_ydata()) == [20, 20]
        assert len(fig.axes[0].get_legend().get_texts()) == 4
        path = tmp_path / "profiles.png"
        fig.savefig(path, dpi=80)
        assert_png(path)
    finally:
        plt.close(fig)


def test_plot_profiles_by_covariate(data, tmp_path):
    fig = plot_profiles(data, analyte="PB_QPCR", by="DOSE_LEVEL", ncols=1)
    try:
        assert [a.get_title() for a in fig.axes] == [
            "DOSE_LEVEL 1 (n=2)", "DOSE_LEVEL 2 (n=1)",
        ]  # fmt: skip
        assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])
        one, two = (lines(a) for a in fig.axes)
        assert {g for g in one if g.startswith("obs")} == {"obs:A", "obs:C"}
        assert {g for g in two if g.startswith("obs")} == {"obs:B"}
        path = tmp_path / "by_dose.png"
        fig.savefig(path, dpi=80)
        assert_png(path)
    finally:
        plt.close(fig)


def test_plot_profiles_into_given_axes_and_dataframe_input(data):
    fig, ax = plt.subplots()
    try:
        out = plot_profiles(data.observations, analyte="BM_QPCR", ax=ax)
        assert out is fig and len(fig.axes) == 1
        assert set(lines(ax)) == {"obs:A", "lloq"}
        with pytest.raises(ValueError, match="exactly one panel"):
            plot_profiles(data, ax=ax)
        with pytest.raises(KeyError, match="ARM"):
            plot_profiles(data, by="ARM")
        with pytest.raises(ValueError, match="no records"):
            plot_profiles(data, analyte="PB_FLOW")
    finally:
        plt.close(fig)


def test_plot_profiles_by_subject(data, tmp_path):
    fig = plot_profiles_by_subject(data, max_subjects=2, ncols=2)
    try:
        assert [a.get_title() for a in fig.axes] == ["A", "B"]
        assert fig.get_suptitle() == "first 2 of 3 subjects"
        a = lines(fig.axes[0])
        assert set(a) == {"obs:PB_QPCR", "blq:PB_QPCR", "obs:BM_QPCR", "lloq"}
        assert sorted(line.get_ydata()[0] for line in a["lloq"]) == [10, 20]
        assert a["obs:PB_QPCR"][0].get_color() != a["obs:BM_QPCR"][0].get_color()
        b = lines(fig.axes[1])
        assert len(b["hsct:PB_QPCR"][0].get_xdata()) == 1
        path = tmp_path / "by_subject.png"
        fig.savefig(path, dpi=80)
        assert_png(path)
    finally:
        plt.close(fig)


def test_lazy_import_and_headless_backend(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        import ckmodel
        before = "matplotlib" in sys.modules
        import ckmodel.plots
        after_import = "matplotlib" in sys.modules
        import pandas as pd
        fig = ckmodel.plots.plot_profiles(pd.DataFrame({"ID": ["1", "1"], "TIME": [1.0, 2.0],
                                                        "DV": [1.0, 2.0]}))
        import matplotlib
        print(before, after_import, matplotlib.get_backend().lower())
        """
    )
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()  # fmt: skip
    before, after_import, backend = out
    if before == "False":  # importing ckmodel.plots alone must not pull in matplotlib
        assert after_import == "False"
    assert backend == "agg"


def test_docstring_examples_run():
    import doctest

    import ckmodel.plots.profiles as module

    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
