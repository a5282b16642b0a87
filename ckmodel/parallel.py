"""Running independent tasks in order, here or on a Dask cluster (the one place that does).

Simulations (operating characteristics of designs, virtual populations) split their work into
tasks fixed by the problem, never by the workers, and give each its own seed from
``numpy.random.SeedSequence(seed).spawn``: the results are the same on one core, on a local
cluster of any size and on a remote scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

__all__ = ["dask_client", "map_tasks", "uses_dask"]


def uses_dask(*, workers: int = 1, scheduler: str | None = None, client: Any = None) -> bool:
    """Whether these settings ask for Dask (a client, a scheduler or more than one worker)."""
    return client is not None or scheduler is not None or int(workers) > 1


@contextmanager
def dask_client(*, workers: int = 1, scheduler: str | None = None, client: Any = None,
                processes: bool = True) -> Iterator[Any]:
    """The Dask client to submit to, or None to run here.

    ``client`` is used as given; ``scheduler`` (``tcp://host:8786``) connects to a running
    cluster; ``workers > 1`` starts a ``LocalCluster`` of single-threaded workers
    (processes unless ``processes=False``) for the duration of the block.
    """
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if client is not None or not uses_dask(workers=workers, scheduler=scheduler):
        yield client
        return
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as own:
            yield own
        return
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                      dashboard_address=":0") as cluster, Client(cluster) as own:
        yield own


def map_tasks(func: Callable[..., Any], args: Sequence[tuple[Any, ...]], client: Any = None,
              *, shared: tuple[Any, ...] = (),
              progress: Callable[[int, int], None] | None = None) -> list[Any]:
    """``[func(*shared, *a) for a in args]``, on ``client`` when given, in submission order.

    ``shared`` arguments (a model spec, a grid) are sent to the cluster once, not with every
    task. ``progress(done, total)`` is called as tasks finish (in order here; as completed on
    Dask).
    """
    if client is None:
        out = []
        for i, a in enumerate(args):
            out.append(func(*shared, *a))
            if progress is not None:
                progress(i + 1, len(args))
        return out
    from dask.distributed import as_completed

    common = client.scatter(list(shared), broadcast=True) if shared else []
    futures = [client.submit(func, *common, *a, pure=False) for a in args]
    if progress is not None:
        for i, _ in enumerate(as_completed(futures)):
            progress(i + 1, len(futures))
    return client.gather(futures)
