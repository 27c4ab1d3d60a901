"""Shared fixtures: the agent-server binary (the test command builds it first; a missing binary
is a failure, not a skip) and small scenarios that keep the suite to a few minutes on 2 cores."""

import shutil
import tempfile

import pytest

from malcolm_gym import find_agent_server

#: A few hundred Steps of the design's heterogeneous rack: enough for every code path.
SMALL = "hetero:tasks=400,warmup=40"


@pytest.fixture(scope="session")
def agent_server():
    return find_agent_server()


@pytest.fixture
def short_tmp():
    """A short temporary folder (ipc socket paths are limited to ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="mg-")
    yield d
    shutil.rmtree(d, ignore_errors=True)
