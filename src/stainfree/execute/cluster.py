"""Where the work runs: a ``dask.distributed`` client for a scheduler address, a local cluster or in-process.

Every worker process gets :class:`WorkerSetup` (torch threads = the worker's threads, so that workers do not
oversubscribe the cores; glibc keeps freed tensor memory) and loads each model bundle once
(:func:`cached_bundle`, keyed by path and modification time).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin

from stainfree.errors import InputError
from stainfree.execute.records import parse_cluster


class WorkerSetup(WorkerPlugin):
    """Per worker process: torch intra-op threads = the worker's threads, and the allocator setting of
    :func:`stainfree.runtime.keep_freed_memory`. A worker living in the client's own process is left alone."""

    name = "stainfree-worker-setup"

    def __init__(self) -> None:
        self.client_pid = os.getpid()

    def setup(self, worker: Any) -> None:
        if os.getpid() == self.client_pid:
            return
        # imported once here, before tasks run: two worker threads importing zarr at once can fail
        import dask.array  # noqa: F401
        import torch
        import zarr.core.array  # noqa: F401

        import stainfree.inference.predict  # noqa: F401
        import stainfree.io.readers  # noqa: F401
        from stainfree.runtime import keep_freed_memory

        threads = int(getattr(getattr(worker, "state", None), "nthreads", 0) or 1)
        torch.set_num_threads(threads)
        keep_freed_memory()


@contextmanager
def open_client(scheduler: str | None = None, cluster: str | None = None) -> Iterator[Client]:
    """A client for ``scheduler`` (an address such as ``tcp://10.0.0.5:8786``), for ``cluster`` (``local:N``:
    a LocalCluster of N worker processes with one thread each) or, by default, one worker thread in this
    process (torch then uses the machine's cores itself). Closed, with its cluster, on leaving."""
    if scheduler and cluster:
        raise InputError(f"{scheduler} / {cluster}", "give --scheduler or --cluster, not both")
    import logging

    local: LocalCluster | None = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise InputError(scheduler, f"no dask scheduler answers at this address ({exc})") from None
    else:
        n = parse_cluster(cluster)
        common: dict[str, Any] = {"dashboard_address": None, "silence_logs": logging.ERROR}
        if n is None:
            local = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, **common)
        else:
            local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, **common)
        client = Client(local)
    try:
        client.register_plugin(WorkerSetup())
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


# ----- per worker process: bundles loaded once -------------------------------------------------------------

_BUNDLES: dict[str, tuple[float, Any]] = {}
_LOCK = threading.Lock()


def _mtime(path: Path) -> float:
    """Newest modification time of a bundle (a folder: of its files)."""
    if path.is_dir():
        return max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.iterdir())])
    return path.stat().st_mtime


def cached_bundle(path: str | os.PathLike) -> Any:
    """The loaded bundle at ``path``, loaded once per process and again only when its files change."""
    from stainfree.models.bundle import load_bundle

    p = Path(path).resolve()
    stamp = _mtime(p)
    with _LOCK:
        hit = _BUNDLES.get(str(p))
        if hit is None or hit[0] != stamp:
            hit = (stamp, load_bundle(p))
            _BUNDLES[str(p)] = hit
        return hit[1]
