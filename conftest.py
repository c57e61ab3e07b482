"""Root pytest configuration: names every docstring example may use without importing, and
one share of the CPU per pytest-xdist worker (``scripts/test.sh`` runs one per core, at most
4), so that two workers on two cores do not each start two threads."""

import os

import pytest
import torch
from torch import nn


def pytest_configure(config: pytest.Config) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // workers))


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    doctest_namespace["nn"] = nn
