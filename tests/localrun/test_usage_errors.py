"""Fail fast: every usage error of every command, run as the real CLI in a subprocess, ends with exit
status 2, one `owtrain CMD: error: ...` line naming the option and what to do, no traceback, and
no work done first (no run folder, no fetch, no server).

"Fast" is measured as the child's own CPU time (wall time on a shared machine says more about the
neighbours): under 2 s for the checks that need nothing heavy, and for the options whose valid
values live in torch-backed registries (strategy names and options, model) under the CPU that
importing those registries costs on this machine plus 1 s. (A compression, and a strategy's syntax,
are checked without them: `owtrain.specs` parses both when the config is built.)
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from tests.fixtures.common import PYTHON, ROOT

CHEAP_CPU_S = 2.0


def children_cpu() -> float:
    """CPU seconds of every child this process has reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> tuple[int, str, str, float]:
    """(exit status, stdout, stderr, CPU seconds of the child) of `owtrain ARGS...`."""
    before = children_cpu()
    done = subprocess.run([PYTHON, "-m", "commands", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr, children_cpu() - before


@pytest.fixture(scope="module")
def registries_cpu() -> float:
    """The CPU that importing the torch-backed registries costs here (the floor of those checks)."""
    before = children_cpu()
    subprocess.run([PYTHON, "-c", "import owtrain.models, owtrain.compression, param_server.strategies"],
                   cwd=ROOT, check=True)
    return children_cpu() - before


def check(status: int, err: str, *expected: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("owtrain ") and ": error: " in last, err
    for text in expected:
        assert text in err, err


CHEAP = [
    (["local", "--dataset", "/no/such/data"], ["--dataset", "mnist, fashion-mnist"]),
    (["local", "--workers", "0"], ["--workers must be at least 1"]),
    (["local", "--lr", "-1"], ["--lr must be positive"]),
    (["local", "--momentum", "1.5"], ["--momentum must be in [0, 1)"]),
    (["local", "--target-accuracy", "2"], ["--target-accuracy must be in (0, 1]"]),
    (["local", "--time-budget", "90"], ["--time-budget must be shorter than the action timeout"]),
    (["local", "--mode", "sgd"], ["--mode", "invalid choice", "grad", "delta"]),
    (["local", "--resume", "/no/such/run"], ["nothing to resume"]),
    (["local", "--s3-endpoint", "http://127.0.0.1:9"], ["OWTRAIN_S3_ACCESS_KEY"]),
    (["ps", "--job", "j", "--secret-file", "/no/such/secret"], ["--secret-file", "No such file"]),
    (["ps", "--secret-file", "/dev/null"], ["--job is required"]),
    (["ps", "token", "--worker", "w1"], ["--job is required"]),
    (["local", "--ps-shards", "0"], ["--ps-shards must be in 1..16"]),
    (["ps", "--job", "j", "--secret-file", "/dev/null", "--shard", "2/2"], ["--shard must be I/S with 0 <= I < S"]),
    (["ps", "--job", "j", "--secret-file", "/dev/null", "--shard", "0/2", "--shard-urls", "http://a:1"],
     ["--shard-urls lists 1 URL(s) but --shard 0/2 says 2 shards"]),
    (["ps", "--job", "j", "--secret-file", "/dev/null", "--shard", "0/2", "--eval-shard", "v.tar.gz"],
     ["--eval-shard with --shard 0/2 needs --shard-urls"]),
    (["train", "--shards", "/no/such.json", "--ps", "http://a:1,,http://b:2", "--secret", "s"],
     ["parameter-server URLs must be non-empty strings"]),
    (["pack", "/no/such/data", "--shards", "2", "--out", "/tmp/x"], ["SOURCE", "mnist, fashion-mnist"]),
    (["train", "--shards", "/no/such.json", "--ps", "http://127.0.0.1:9", "--secret", "s"],
     ["cannot read shard list /no/such.json"]),
    (["train", "--shards", "/no/such.json", "--ps", "http://127.0.0.1:9"], ["--secret", "OWTRAIN_JOB_SECRET"]),
    (["bridge", "serve", "--bucket", "b", "--ps", "http://127.0.0.1:9", "--secret", "s", "--token", "t"],
     ["--endpoint, --access-key and --secret-key"]),
    (["bridge", "serve", "--bucket", "b", "--ps", "http://127.0.0.1:9", "--secret", "s", "--token", "t",
      "--key-pattern", "(", "--endpoint", "http://127.0.0.1:9", "--access-key", "a", "--secret-key", "k"],
     ["--key-pattern", "not a regular expression"]),
    (["action-params", "/no/such.json", "--out", "/tmp/x"], ["OWTRAIN_PS_URL", "OWTRAIN_JOB_SECRET"]),
    # parsed into owtrain.specs' types when the config is built, before any registry is imported
    (["local", "--compression", "zip"], ["--compression 'zip'", "fp16", "topk:RATIO"]),
    (["local", "--compression", "topk:2"], ["--compression 'topk:2'", "top-k ratio must be in (0, 1]"]),
    (["local", "--strategy", "sync:k"], ["--strategy 'sync:k'", "write key=value"]),
    (["ps", "--job", "j", "--secret-file", "/dev/null", "--strategy", "sync:k"], ["--strategy 'sync:k'", "key=value"]),
]


@pytest.mark.parametrize(("args", "expected"), CHEAP, ids=[" ".join(a[:3]) for a, _ in CHEAP])
def test_usage_error_fails_fast_with_a_clear_message(args, expected, tmp_path):
    env = {"OWTRAIN_JOB_SECRET": "", "OWTRAIN_PS_URL": "", "OWTRAIN_S3_ACCESS_KEY": "", "HOME": str(tmp_path)}
    status, out, err, cpu = run_cli(*args, "--run-dir", str(tmp_path / "run")) if args[0] == "local" and \
        "--resume" not in args else run_cli(*args, env=env)
    check(status, err, *expected)
    assert cpu < CHEAP_CPU_S, f"{cpu:.2f}s of CPU before refusing"
    assert not (tmp_path / "run").exists(), "no work may start before the options are checked"


REGISTRY = [
    (["local", "--strategy", "fifo"], ["--strategy 'fifo'", "async", "bounded", "sync"]),
    (["local", "--strategy", "sync:k=two"], ["--strategy 'sync:k=two'", "not a valid int"]),
    (["local", "--model", "lenet6"], ["--model", "lenet5", "package.module:Class"]),
    (["local", "--model", "no_such_module:Net"], ["--model", "cannot import 'no_such_module'"]),
    (["local", "--model", "os:getcwd"], ["--model", "not a torch.nn.Module subclass"]),
    (["ps", "--job", "j", "--secret-file", "/dev/stdin", "--strategy", "fifo"], ["--strategy 'fifo'", "sync"]),
]


@pytest.mark.parametrize(("args", "expected"), REGISTRY, ids=[" ".join(a) for a, _ in REGISTRY])
def test_registry_usage_error_fails_before_any_work(args, expected, tmp_path, registries_cpu):
    extra = ["--run-dir", str(tmp_path / "run")] if args[0] == "local" else []
    status, out, err, cpu = run_cli(*args, *extra, stdin="sek\n")
    check(status, err, *expected)
    assert cpu < registries_cpu + 1.0, f"{cpu:.2f}s of CPU (the registries' import costs {registries_cpu:.2f}s)"
    assert not (tmp_path / "run").exists() and "run folder:" not in out


def test_cli_help_does_not_import_torch():
    """Every usage error above depends on it: `owtrain` builds its parser without torch."""
    probe = ("import sys, runpy; sys.argv = ['owtrain', '--help']\n"
             "try:\n    runpy.run_module('commands', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
