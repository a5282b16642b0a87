"""Figures drawn by worker processes: the same bytes as drawn here, and the fallbacks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from ckmodel.plots._style import log_panel  # noqa: E402
from ckmodel.report.document import Section, Text  # noqa: E402
from ckmodel.report.drawing import active_renderer, background_rendering  # noqa: E402
from ckmodel.report.figures import draw_png, figure_block  # noqa: E402


def _figure(seed):
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 2, layout="constrained", figsize=(6, 3))
    for ax in axes:
        ax.plot(np.arange(1, 50), np.exp(rng.normal(size=49)).cumsum(), "o-")
        log_panel(ax)  # the grid minor locator, a class made in a function, must pickle
        ax.set_title("a title")
    return fig


def _reference(seed):
    fig = _figure(seed)
    data = draw_png(fig, 80)
    plt.close(fig)
    return data


class _Unloadable:
    """Pickles, but cannot be loaded again (stands for an artist the worker cannot import)."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("not here")


def test_workers_draw_the_same_bytes_and_fall_back_here():
    unpicklable = _figure(3)
    unpicklable.axes[0].xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    expected_unpicklable = draw_png(unpicklable, 80)
    failing = _figure(4)
    failing.ckmodel_test_payload = _Unloadable()
    figs = [_figure(1), _figure(2)]
    ours = [f.number for f in (*figs, unpicklable, failing)]
    with background_rendering(2) as renderer:
        assert renderer is not None and active_renderer() is renderer
        blocks = [figure_block(figs[0], "one", caption="c1"),
                  figure_block(figs[1], "two", caption="c2"),
                  figure_block(unpicklable, "three", caption="c3"),
                  figure_block(failing, "four", caption="c4")]
        # handed out: empty until resolved; the lambda formatter does not pickle: drawn here
        assert [bool(b.data) for b in blocks] == [False, False, True, False]
        sections = renderer.resolve((Section("s", "S", (Text("x"), *blocks)),))
    assert active_renderer() is None
    out = sections[0].blocks[1:]
    assert [b.name for b in out] == ["one", "two", "three", "four"]
    assert out[0].data == _reference(1) and out[1].data == _reference(2)
    assert out[2].data == expected_unpicklable
    assert out[3].data == _reference(4)  # its worker failed to load it: drawn here
    assert all(b.data.startswith(b"\x89PNG") for b in out)
    # every figure handed out is closed once resolved (other tests' figures may be open)
    assert not set(ours) & set(plt.get_fignums())


def test_one_worker_draws_here():
    with background_rendering(1) as renderer:
        assert renderer is None
        block = figure_block(_figure(1), "one", caption="c")
    assert block.data == _reference(1)


def test_a_figure_the_caller_keeps_is_drawn_here():
    fig = _figure(1)
    with background_rendering(2):
        block = figure_block(fig, "kept", caption="c", close=False)
    assert block.data == _reference(1) and plt.fignum_exists(fig.number)
    plt.close(fig)
