"""Test configuration: one torch thread (two cores here) and the real-service fixtures."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

# Each service's fixtures live in their own module under tests/fixtures/.
pytest_plugins = [
    "tests.fixtures.ps",
    "tests.fixtures.swift",
    "tests.fixtures.action",
    "tests.fixtures.wsk",
    "tests.fixtures.docker",
    "tests.fixtures.browser",
    "tests.fixtures.canned",
]
