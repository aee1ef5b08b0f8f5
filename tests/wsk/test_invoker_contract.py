"""One contract suite, run against every Invoker backend (Contract 4): what the driver relies on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from owtrain.errors import Throttled
from tests.wsk.entries import main as entry_main
from wsk.client import OpenWhiskClient
from wsk.config import WskConfig
from wsk.invoker import INVOKERS, InvokerSettings, make_invoker
from wsk.invoker.base import STATUSES, Invoker
from wsk.ratelimit import RateLimiter


def fake_entry(params: dict) -> tuple[str, dict]:
    """The test entry's behaviour on the fake controller (no processes there)."""
    if params.get("do") == "fail":
        return "application error", {"error": "ValueError: bad input"}
    return "success", entry_main(params)


@pytest.fixture(params=sorted(INVOKERS))
def invoker(request, local_invoker, fake_controller) -> Iterator[Invoker]:
    if request.param == "local":
        yield local_invoker("tests.wsk.entries:main", concurrent=2, per_minute=1000)
        return
    if request.param == "docker":  # the real image on a real engine (skipped, saying why, without one)
        yield request.getfixturevalue("docker_invoker")("tests.wsk.entries:main", concurrent=2, per_minute=1000)
        return
    fake_controller.impl = fake_entry
    fake_controller.concurrent = 2
    OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth=fake_controller.auth)).put_action("a", "img:1")
    wsk = WskConfig(apihost=fake_controller.url, auth=fake_controller.auth)
    backend = make_invoker("openwhisk", InvokerSettings(wsk=wsk), {})
    yield backend
    backend.close()


def test_invoke_then_wait_gives_the_result(invoker):
    activation_id = invoker.invoke("a", {"n": 7})
    assert isinstance(activation_id, str) and len(activation_id) == 32
    activation = invoker.wait(activation_id, timeout=60)
    assert activation.activation_id == activation_id and activation.name == "a"
    assert activation.success and activation.result["echo"] == {"n": 7}
    assert activation.status in STATUSES and activation.end >= activation.start > 0


def test_application_errors_are_reported_not_raised(invoker):
    activation = invoker.wait(invoker.invoke("a", {"do": "fail"}), timeout=60)
    assert activation.status == "application error" and activation.error == "ValueError: bad input"


def test_get_is_none_while_running_and_over_quota_is_throttled(invoker):
    first = invoker.invoke("a", {"do": "sleep", "s": 1.0})
    second = invoker.invoke("a", {"do": "sleep", "s": 1.0})
    assert invoker.get(first) is None
    with pytest.raises(Throttled):
        invoker.invoke("a", {})  # a third concurrent activation is over the quota of 2
    assert invoker.wait(first, 60).success and invoker.wait(second, 60).success


def test_unknown_backend_names_the_valid_ones():
    from owtrain.errors import ConfigError

    with pytest.raises(ConfigError, match="docker, local, openwhisk"):
        make_invoker("lambda", InvokerSettings(), {})


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(2, window_s=10, clock=lambda: now[0])
    assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()
    assert limiter.wait_time() == 10
    now[0] = 9.99
    assert not limiter.try_acquire()
    now[0] = 10.0
    assert limiter.try_acquire() and limiter.wait_time() == 0
    assert limiter.try_acquire() and not limiter.try_acquire()
