"""Shared test fixtures: the real sample data folder (skipped when absent) and small helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it are skipped with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample data not found at {SHARED_DATA} (only present beside the project checkout)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny test networks run fastest, and steadiest, on one intra-op thread.

    On a busy 2-core machine two OpenMP threads can make a small convolution up to 100x slower.
    """
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def constant_bundle():
    """Factory of tiny segmentation bundles whose output is the constant ``bias`` (every weight zero):
    ``constant_bundle(folder, name, task, class_names, bias, patch_shape=(16, 16)) -> bundle path``
    (:func:`tests.fakes.constant_bundle`)."""
    pytest.importorskip("torch")
    from fakes import constant_bundle as make

    return make


@pytest.fixture(scope="session")
def dask_address():
    """Address of a LocalCluster of 2 worker processes with one thread each, shared by the session's tests
    (jobs reach it as they would a remote scheduler: ``scheduler=address``)."""
    import logging

    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with distributed.Client(cluster) as client:  # workers import torch and stainfree once, here
        client.run(_warm_up)
    yield cluster.scheduler_address
    cluster.close()


def _warm_up() -> None:
    import stainfree.inference.predict  # noqa: F401
    import stainfree.workflows.organelles  # noqa: F401
