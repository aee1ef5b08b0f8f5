"""`owtrain.supervised`: a spawned child ends when its parent dies, SIGKILL included, even when the
thread that asked for it ended long before; a clean stop tells the listeners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from owtrain import supervised
from tests.fixtures.common import ROOT

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

# A parent that spawns a sleeper from a short-lived thread, waits for that thread to end, then
# prints the child's pid and waits to be killed.
PARENT = textwrap.dedent("""
    import os, sys, threading, time
    from owtrain import supervised
    box = []
    t = threading.Thread(target=lambda: box.append(supervised.spawn(
        [sys.executable, "-c", "import time; time.sleep(120)"], role="sleeper", env=os.environ)))
    t.start(); t.join()
    print(box[0].pid, flush=True)
    time.sleep(120)
""")


def _wait_gone(pid: int, ticks: int | None, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not supervised.is_running(pid, ticks):
            return True
        time.sleep(0.05)
    return False


def test_child_dies_with_a_sigkilled_parent_even_after_its_spawning_thread_ended():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        ticks = supervised.start_ticks(child)
        time.sleep(0.5)
        assert supervised.is_running(child, ticks), "the child must outlive the thread that asked for it"
        assert os.getpgid(child) == child, "the child leads its own process group"
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(child, ticks), f"child {child} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_stop_ends_the_group_and_tells_the_listeners():
    events: list[tuple[str, str, int]] = []

    def listener(event: str, child: supervised.ChildInfo) -> None:
        events.append((event, child.role, child.pid))

    supervised.add_listener(listener)
    try:
        proc = supervised.spawn(SLEEPER, role="sleeper", port=1234, env=os.environ)
        ticks = supervised.start_ticks(proc.pid)
        assert supervised.is_running(proc.pid, ticks)
        assert not supervised.is_running(proc.pid, (ticks or 0) + 1), "another start time is another process"
        supervised.stop(proc, "sleeper", timeout=5)
    finally:
        supervised.remove_listener(listener)
    assert proc.returncode == -signal.SIGTERM
    assert not supervised.is_running(proc.pid, ticks)
    assert events == [("started", "sleeper", proc.pid), ("ended", "sleeper", proc.pid)]
