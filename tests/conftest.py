"""Shared by every test: one intra-op torch thread.

The tests run tiny models on a shared 2-core machine (`make test` runs two pytest workers): a second thread only
adds contention, and two threads spinning against other jobs were measured 9x slower.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
