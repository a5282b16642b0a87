"""Figures of fits: VPC (with the BLQ panel), GOF, individual fits, profiles with the fit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # test process: never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from ckmodel.diagnostics import gof_table, vpc  # noqa: E402
from ckmodel.plots import (  # noqa: E402
    plot_gof,
    plot_individual,
    plot_profiles,
    plot_rank,
    plot_vpc,
)
from ckmodel.plots._style import OKABE_ITO  # noqa: E402


def by_gid(ax, kind="lines"):
    out = {}
    for a in (ax.get_lines() if kind == "lines" else ax.collections):
        out.setdefault(a.get_gid(), []).append(a)
    return out


@pytest.fixture(scope="module")
def vpc_result(small_fit):
    return vpc(small_fit, stratify="DOSE", n_sim=60, seed=1)


def test_plot_vpc_layout_labels_and_blq_panel_against_a_direct_count(vpc_result, tmp_path):
    fig = plot_vpc(vpc_result)
    try:
        axes = np.array(fig.axes).reshape(2, 2)  # VPC row and BLQ row, two dose levels
        assert [a.get_title() for a in axes[0]] == ["1 1e6 CAR+ T cells/kg (n=12)",
                                                    "3 1e6 CAR+ T cells/kg (n=12)"]
        assert axes[0, 0].get_yscale() == "log"
        assert axes[0, 0].get_ylabel() == "PB_QPCR (copies/ug gDNA)"
        assert axes[1, 0].get_ylabel() == "Fraction BLQ"
        assert axes[1, 1].get_xlabel() == "Time since infusion (day)"
        assert axes[0, 0].get_shared_x_axes().joined(axes[0, 0], axes[1, 1])
        assert axes[0, 0].get_shared_y_axes().joined(axes[0, 0], axes[0, 1])
        main = by_gid(axes[0, 0], "collections")
        assert {"sim-p05", "sim-p50", "sim-p95"} <= set(main)
        assert {"obs-p50", "obs-points", "lloq"} <= set(by_gid(axes[0, 0]))
        # the observed BLQ fraction drawn equals a direct count of the records per bin
        rec = vpc_result.observed
        for j, dose in enumerate(["1", "3"]):
            line = by_gid(axes[1, j])["blq-obs"][0]
            sub = rec[rec["STRATUM"] == dose]
            direct = sub.groupby("BIN")["BLQ"].mean().to_numpy()
            np.testing.assert_allclose(line.get_ydata(), direct)
            np.testing.assert_allclose(line.get_xdata(),
                                       sub.groupby("BIN")["TIME"].median().to_numpy())
        band = by_gid(axes[0, 0], "collections")["sim-p50"][0]
        assert to_hex(band.get_facecolor()[0], keep_alpha=False) == OKABE_ITO["orange"].lower()
        fig.savefig(tmp_path / "vpc.png", dpi=60)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="no VPC for analyte"):
        plot_vpc(vpc_result, analytes="PB_FLOW")


def test_plot_gof_panels_and_units(small_fit, tmp_path):
    table = gof_table(small_fit, n_sim=100, stratify="DOSE")
    fig = plot_gof(table)
    try:
        a = fig.axes
        assert len(a) == 4
        assert a[0].get_xlabel() == "PRED PB_QPCR (copies/ug gDNA)"
        assert a[1].get_ylabel() == "Observed PB_QPCR (copies/ug gDNA)"
        assert a[2].get_xlabel() == "Time since infusion (day)"
        assert a[0].get_xscale() == a[0].get_yscale() == "log"
        gids = set(by_gid(a[2]))
        assert {"npde-time:1", "npde-time:3", "npde-time:1-blq", "npde-ref"} <= gids
        n_drawn = sum(len(line.get_xdata()) for g, lines in by_gid(a[3]).items()
                      if g.startswith("npde-pred") for line in lines)
        assert n_drawn == len(table)  # BLQ records drawn too
        fig.savefig(tmp_path / "gof.png", dpi=60)
    finally:
        plt.close(fig)


def test_plot_individual_bands_over_the_dosing_history(small_fit):
    fig = plot_individual(small_fit, ["S00001", "S00013"], n_draws=40)
    try:
        visible = [a for a in fig.axes if a.get_visible()]
        assert [a.get_title() for a in visible] == ["S00001: 1 1e6 CAR+ T cells/kg",
                                                    "S00013: 3 1e6 CAR+ T cells/kg"]
        assert "band:PB_QPCR" in by_gid(visible[0], "collections")
        assert {"median:PB_QPCR", "obs:PB_QPCR", "blq:PB_QPCR", "dose"} <= set(
            by_gid(visible[0]))
        assert visible[0].get_ylabel() == "PB_QPCR (copies/ug gDNA)"
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="not in the fit"):
        plot_individual(small_fit, ["nobody"])


def test_plot_individual_with_a_shared_prediction_draws_the_same_curves(small_fit):
    """The report predicts once for all pages: a given prediction gives the same lines."""
    ids = ["S00001", "S00013"]
    pred = small_fit.predict(n_draws=40)
    figs = [plot_individual(small_fit, ids, n_draws=40),
            plot_individual(small_fit, ids, prediction=pred)]
    try:
        medians = [[line.get_ydata() for a in f.axes if a.get_visible()
                    for line in by_gid(a).get("median:PB_QPCR", [])] for f in figs]
        assert len(medians[0]) == len(ids)
        for m0, m1 in zip(*medians, strict=True):
            np.testing.assert_array_equal(m0, m1)
        assert np.ptp(medians[0][0]) > 0
    finally:
        for f in figs:
            plt.close(f)


def test_plot_profiles_doses_across_columns_with_the_fitted_band(small_fit, tmp_path):
    fig = plot_profiles(small_fit.data, by="DOSE", fit=small_fit, n_sim=20)
    try:
        a = fig.axes
        assert [x.get_title() for x in a] == ["1 1e6 CAR+ T cells/kg (n=12)",
                                              "3 1e6 CAR+ T cells/kg (n=12)"]
        assert a[0].get_ylabel() == "PB_QPCR (copies/ug gDNA)"
        assert a[1].get_xlabel() == "Time since infusion (day)"
        assert a[0].get_shared_y_axes().joined(a[0], a[1])
        for x in a:
            assert "fit-band" in by_gid(x, "collections")
            assert "fit-median" in by_gid(x)
        fig.savefig(tmp_path / "profiles.png", dpi=60)
    finally:
        plt.close(fig)


def test_plot_rank(small_fit):
    fig = plot_rank(small_fit, ["rho_pop", "sigma_PB_QPCR"])
    try:
        assert len([a for a in fig.axes if a.get_visible()]) >= 2
    finally:
        plt.close(fig)


def test_grid_panels_drop_minor_ticks_only_on_wide_log_axes():
    from ckmodel.plots._style import MINOR_TICK_DECADES, log_panel

    fig, (wide, narrow) = plt.subplots(1, 2)
    for ax, top in ((wide, 10 ** (MINOR_TICK_DECADES + 4)), (narrow, 50.0)):
        log_panel(ax)
        ax.set_ylim(1.0, top)
    fig.canvas.draw()
    assert len(wide.yaxis.get_minorticklocs()) == 0
    assert len(wide.yaxis.get_majorticklocs()) >= 3
    minor = narrow.yaxis.get_minorticklocs()
    assert {2.0, 5.0, 20.0} <= set(np.round(minor, 6))        # 2 and 5 of each decade only
    assert not np.isin([3.0, 4.0, 30.0], np.round(minor, 6)).any()
    plt.close(fig)


def test_log_panel_axes():
    from ckmodel.plots._style import log_panel

    fig, (a, b) = plt.subplots(1, 2)
    log_panel(a, "both")
    log_panel(b, "x")
    assert (a.get_xscale(), a.get_yscale(), b.get_xscale(), b.get_yscale()) == (
        "log", "log", "log", "linear")
    a.set_xlim(1.0, 1e7)
    fig.canvas.draw()
    assert len(a.xaxis.get_minorticklocs()) == 0
    with pytest.raises(ValueError, match="which"):
        log_panel(a, "z")
    plt.close(fig)
