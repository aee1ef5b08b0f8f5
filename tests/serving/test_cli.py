"""`owtrain serve` refuses bad options with a message that says what to do, and no traceback."""

from __future__ import annotations

import subprocess

import pytest

from tests.fixtures.common import PYTHON, ROOT
from tests.serving.helpers import publish_seeded

R = "{repo}"


@pytest.mark.parametrize(("args", "message"), [
    ([], "give exactly one of --run-dir RUN_DIR or --repository"),
    (["--repository", R, "--batching", "lifo"], "--batching 'lifo': use aimd or fixed:B"),
    (["--repository", R, "--policy", "newest"], "version policy 'newest': use latest:N, all or specific:V1,V2"),
    (["--repository", R, "--max-instances", "0"], "--max-instances must be >= 1"),
    (["--repository", R, "--events-bucket", "b"], "--events-bucket needs --s3-endpoint"),
    (["promote", "--repository", R, "--model", "nope"], "no model 'nope'"),
    (["rollback", "--repository", R, "--model", "mnist"], "nothing to roll back to"),
    (["canary", "--repository", R, "--model", "mnist", "--version", "9", "--percent", "5"], "has no version 9"),
], ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None)
def test_usage_errors(tmp_path, args, message):
    publish_seeded(tmp_path / "repo", 1)
    argv = [PYTHON, "-m", "commands", "serve", *(str(tmp_path / "repo") if a == R else a for a in args)]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert message in out.stderr and "Traceback" not in out.stderr, out.stderr
