"""Report figures drawn in worker processes while the next sections are computed.

Drawing (layout, ticks, rasterising) is most of a report's time, and each figure is
independent. Inside :func:`background_rendering`, :func:`~ckmodel.report.figures.figure_block`
pickles each figure and hands it to one of two worker processes; the report goes on
computing and :meth:`Renderer.resolve` puts the PNG bytes into the blocks at the end.

The workers are plain ``python -m ckmodel.report.drawing`` subprocesses reading pickled
figures on stdin and writing PNGs on stdout, not :mod:`multiprocessing`: its spawn and
forkserver starts import the caller's ``__main__`` again, which re-runs a user's script that
has no ``if __name__ == "__main__"`` guard, and fork is unsafe after the samplers' threads.
The pickles travel only between this process and its own children, never through a file.

A figure is drawn here instead when it does not pickle, or when its worker fails (an artist
from a module the worker cannot import); the bytes are the same either way (same
matplotlib, and the caller's rcParams go with each figure).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import IO, Any

from ckmodel.report.document import FigureBlock, Section

__all__ = ["Renderer", "background_rendering", "active_renderer"]

log = logging.getLogger(__name__)

#: rcParams that select or steer a backend: never sent to a drawing process.
_LOCAL_RC = ("backend", "backend_fallback", "interactive")


def _send(stream: IO[bytes], data: bytes) -> None:
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


class _Worker:
    """One drawing subprocess."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "ckmodel.report.drawing"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def draw(self, payload: bytes) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _send(self.proc.stdin, payload)
        reply = _receive(self.proc.stdout)
        if reply is None:
            raise RuntimeError("the drawing process ended")
        ok, data = pickle.loads(reply)  # noqa: S301 - our own child's reply
        if not ok:
            raise RuntimeError(data)
        return data

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class Renderer:
    """Two drawing processes and the figures handed to them (see the module docstring)."""

    def __init__(self, workers: int) -> None:
        self.n = workers
        self.idle: queue.Queue[_Worker] = queue.Queue()
        self.workers: list[_Worker] = []
        self.threads = ThreadPoolExecutor(workers, thread_name_prefix="ckmodel-draw")
        self.pending: dict[str, tuple[Future[bytes], Any, int]] = {}

    def _draw(self, payload: bytes) -> bytes:
        worker = self.idle.get()
        try:
            return worker.draw(payload)
        finally:
            self.idle.put(worker)

    def submit(self, fig: Any, name: str, dpi: int) -> bool:
        """Hand ``fig`` to a worker; False when it does not pickle (draw it here)."""
        import matplotlib

        rc = {k: v for k, v in matplotlib.rcParams.items() if k not in _LOCAL_RC}
        try:
            payload = pickle.dumps((fig, dpi, rc))
        except Exception as exc:  # noqa: BLE001 - an artist that does not pickle
            log.debug("figure %s drawn here: it does not pickle (%s)", name, exc)
            return False
        if not self.workers:  # started on the first figure; they load while work goes on
            self.workers = [_Worker() for _ in range(self.n)]
            for w in self.workers:
                self.idle.put(w)
        self.pending[name] = (self.threads.submit(self._draw, payload), fig, dpi)
        return True

    def resolve(self, sections: tuple[Section, ...]) -> tuple[Section, ...]:
        """The sections with every figure handed out replaced by its drawing."""
        import matplotlib.pyplot as plt

        from ckmodel.report.figures import draw_png

        def done(b: Any) -> Any:
            if not (isinstance(b, FigureBlock) and b.name in self.pending and not b.data):
                return b
            future, fig, dpi = self.pending.pop(b.name)
            try:
                data = future.result()
            except Exception as exc:  # noqa: BLE001 - drawn here instead
                log.debug("figure %s drawn here: its worker failed (%s)", b.name, exc)
                data = draw_png(fig, dpi)
            plt.close(fig)
            return replace(b, data=data)

        return tuple(replace(s, blocks=tuple(done(b) for b in s.blocks)) for s in sections)

    def close(self) -> None:
        """Stop the threads and the drawing processes."""
        self.threads.shutdown(wait=True, cancel_futures=True)
        for w in self.workers:
            w.close()


_ACTIVE: ContextVar[Renderer | None] = ContextVar("ckmodel_report_renderer", default=None)


def active_renderer() -> Renderer | None:
    """The renderer of the enclosing :func:`background_rendering`, if any."""
    return _ACTIVE.get()


@contextmanager
def background_rendering(workers: int | None = None) -> Iterator[Renderer | None]:
    """Inside, :func:`~ckmodel.report.figures.figure_block` hands figures to workers.

    Parameters
    ----------
    workers : int, optional
        Drawing processes; default 2, or 1 on a single core. Below 2 nothing changes
        (figures are drawn where they are made) and None is yielded.

    Yields
    ------
    Renderer or None
        Call its :meth:`Renderer.resolve` on the sections before the block ends.
    """
    n = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    if n < 2:
        yield None
        return
    renderer = Renderer(n)
    token = _ACTIVE.set(renderer)
    try:
        yield renderer
    finally:
        _ACTIVE.reset(token)
        renderer.close()


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: pickled ``(figure, dpi, rcParams)`` in, ``(ok, PNG or error)`` out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ckmodel.report.figures import draw_png

    while (job := _receive(stdin)) is not None:
        try:
            fig, dpi, rc = pickle.loads(job)  # noqa: S301 - from our parent process
            try:
                with matplotlib.rc_context(rc):
                    reply = (True, draw_png(fig, dpi))
            finally:
                plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which draws it
            reply = (False, f"{type(exc).__name__}: {exc}")
        _send(stdout, pickle.dumps(reply))


if __name__ == "__main__":
    _out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed goes to stderr, not into the replies
    _serve(sys.stdin.buffer, _out)
