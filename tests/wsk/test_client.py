"""The OpenWhisk REST client against the fake controller (every request validated by the swagger)."""

from __future__ import annotations

import time

import pytest

from owtrain.errors import (
    ActivationFailed,
    BadRequest,
    ConfigError,
    ObjectMissing,
    ServerUnavailable,
    Throttled,
    Unauthorized,
)
from owtrain.retry import RetryPolicy
from tests.wsk.fake_controller import validate
from wsk.client import OpenWhiskClient
from wsk.config import WskConfig, load_wsk_config


def make_client(ctl, **kw) -> OpenWhiskClient:
    return OpenWhiskClient(WskConfig(apihost=ctl.url, auth=ctl.auth), policy=RetryPolicy(attempts=4, base=0.05, **kw))


def test_config_precedence(tmp_path):
    props = tmp_path / "props"
    props.write_text("APIHOST=file:3233\nAUTH=u:file\nNAMESPACE=ns1\n")
    env = {"WSK_CONFIG_FILE": str(props)}
    cfg = load_wsk_config(env)
    assert (cfg.apihost, cfg.auth, cfg.namespace, cfg.insecure) == ("file:3233", "u:file", "ns1", False)
    assert cfg.base_url == "https://file:3233/api/v1"
    cfg = load_wsk_config({**env, "__OW_API_HOST": "http://ow:1", "WSK_AUTH": "u:env", "WSK_INSECURE": "1"})
    assert (cfg.apihost, cfg.auth, cfg.insecure) == ("http://ow:1", "u:env", True)
    cfg = load_wsk_config({**env, "WSK_APIHOST": "http://env:1"}, apihost="http://flag:2", namespace="x")
    assert (cfg.apihost, cfg.namespace) == ("http://flag:2", "x")
    assert "u:file" not in repr(load_wsk_config(env))
    with pytest.raises(ConfigError, match="APIHOST and AUTH"):
        load_wsk_config({"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="UUID:KEY"):
        WskConfig(apihost="h", auth="nokey")


def test_validator_rejects_what_the_spec_forbids():
    with pytest.raises(ValueError, match="undeclared query"):
        validate("POST", "/namespaces/_/actions/a", {"bogus": "1"}, {}, True)
    with pytest.raises(ValueError, match="not in"):
        validate("POST", "/namespaces/_/actions/a", {"blocking": "yes"}, {}, True)
    with pytest.raises(ValueError, match="body"):
        validate("PUT", "/namespaces/_/actions/a", {}, {"exec": {"kind": "cobol"}}, True)
    with pytest.raises(ValueError, match="missing required body"):
        validate("PUT", "/namespaces/_/rules/r", {}, None, False)
    with pytest.raises(ValueError, match="no such operation"):
        validate("PATCH", "/namespaces/_/actions/a", {}, None, False)
    template, values = validate("GET", "/namespaces/_/actions/pkg/a", {"code": "false"}, None, False)
    assert values == {"namespace": "_", "packageName": "pkg", "actionName": "a"}


def test_action_crud_and_blocking_invoke(fake_controller):
    client = make_client(fake_controller)
    stored = client.put_action("dist-train", image="owtrain/action:0.1", limits={"timeout": 120000, "memory": 512},
                               parameters={"batch_sz_train": 32}, annotations={"provide-api-key": False})
    assert stored["exec"] == {"kind": "blackbox", "image": "owtrain/action:0.1"}
    assert client.get_action("dist-train")["limits"]["memory"] == 512
    record = client.invoke_blocking("dist-train", {"x": 1})
    assert record["response"]["result"] == {"echo": {"x": 1}}
    client.delete_action("dist-train")
    with pytest.raises(ObjectMissing):
        client.get_action("dist-train")


def test_nonblocking_invoke_and_activation_calls(fake_controller):
    client = make_client(fake_controller)
    client.put_action("a", image="img:1")
    activation_id = client.invoke("a", {"k": "v"})
    record = client.poll(activation_id, timeout=5, interval=0.02)
    assert record["activationId"] == activation_id
    assert client.activation_result(activation_id)["result"] == {"echo": {"k": "v"}}
    assert client.activation_logs(activation_id)[0].endswith("stdout: ran")
    assert [r["activationId"] for r in client.activations(name="a", limit=5)] == [activation_id]


def test_429_is_retried_without_losing_or_doubling(fake_controller):
    client = make_client(fake_controller)
    client.put_action("a", image="img:1")
    fake_controller.force_429 = 2
    activation_id = client.invoke("a", {"n": 1})
    assert client.poll(activation_id, timeout=5, interval=0.02)["response"]["success"]
    statuses = [r.status for r in fake_controller.requests if r.method == "POST"]
    assert statuses == [429, 429, 202]
    fake_controller.force_429 = 10
    with pytest.raises(Throttled):
        client.invoke("a", {"n": 2})
    assert len(fake_controller.invocations("a")) == 1


def test_blocking_past_the_wait_polls_the_activation(fake_controller):
    fake_controller.blocking_wait_s = 0.2
    fake_controller.impl = lambda p: (time.sleep(0.8), ("success", {"slow": True}))[1]
    client = make_client(fake_controller)
    client.put_action("a", image="img:1")
    record = client.invoke_blocking("a", {}, wait_s=10)
    assert record["response"]["result"] == {"slow": True}
    first = [r for r in fake_controller.requests if r.method == "POST"][0]
    assert first.status == 202 and first.query["blocking"] == "true"


@pytest.mark.parametrize("status, app", [("application error", True), ("action developer error", False)])
def test_502_says_whose_fault(fake_controller, status, app):
    fake_controller.impl = lambda p: (status, {"error": "boom"})
    client = make_client(fake_controller)
    client.put_action("a", image="img:1")
    with pytest.raises(ActivationFailed, match="boom") as info:
        client.invoke_blocking("a", {})
    assert info.value.status == status and info.value.is_application_error is app
    assert fake_controller.requests[-1].status == 502


def test_wrong_key_is_unauthorized_and_bad_rule_is_bad_request(fake_controller):
    bad = OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth="u:wrong"))
    with pytest.raises(Unauthorized):
        bad.invoke("a", {})
    with pytest.raises(BadRequest, match="does not exist"):
        make_client(fake_controller).put_rule("r", "nope", "nope")


def test_trigger_rule_and_the_fire_trap(fake_controller):
    client = make_client(fake_controller)
    client.put_action("a", image="img:1")
    client.put_trigger("up", parameters={"bucket": "b"})
    assert client.fire_trigger("up", {}) is None  # no rule yet: 204
    client.put_rule("r", "up", "a")
    trigger_id = client.fire_trigger("up", {"key": "k1"})
    assert trigger_id is not None
    deadline = time.monotonic() + 5
    while not any(r.get("cause") == trigger_id for r in fake_controller.activations.values()):
        assert time.monotonic() < deadline, "the rule never invoked the action"
        time.sleep(0.02)
    # The trap: the fire is accepted (202) even though the rule's invoke is throttled and dropped.
    fake_controller.per_minute = 0
    lost = client.fire_trigger("up", {"key": "k2"})
    assert lost is not None
    assert '"success": false' in client.activation_logs(lost)[0]
    client.set_rule_state("r", active=False)
    assert fake_controller.rules["r"]["status"] == "inactive"
    assert client.fire_trigger("up", {}) is None


def test_tls_verification_is_on_unless_insecure_and_that_is_logged(caplog):
    assert OpenWhiskClient(WskConfig(apihost="https://ow:443", auth="u:k")).session.verify is True
    with caplog.at_level("WARNING"):
        insecure = OpenWhiskClient(WskConfig(apihost="https://ow:443", auth="u:k", insecure=True))
    assert insecure.session.verify is False
    assert "TLS certificate verification is OFF" in caplog.text


def test_unreachable_controller_is_server_unavailable():
    from owtrain.errors import ServerUnavailable
    from tests.fixtures.common import free_port

    client = OpenWhiskClient(WskConfig(apihost=f"http://127.0.0.1:{free_port()}", auth="u:k"),
                             RetryPolicy(attempts=2, base=0.01))
    with pytest.raises(ServerUnavailable, match="cannot reach"):
        client.activation("0" * 32)


def test_an_answer_that_is_not_the_controllers_is_server_unavailable(canned_server):
    """A 2xx that is not an OpenWhisk answer (a proxy's HTML page, JSON of the wrong shape) is
    ServerUnavailable saying what came back, never a raw ValueError, KeyError or AttributeError."""
    client = OpenWhiskClient(WskConfig(apihost=canned_server.url, auth="u:k"), policy=RetryPolicy(attempts=1))
    try:
        with pytest.raises(ServerUnavailable, match="not JSON .*text/html"):
            client.get_action("a")
        canned_server.answer(200, "application/json", b"[]")
        with pytest.raises(ServerUnavailable, match="not a JSON object"):
            client.get_action("a")
        with pytest.raises(ServerUnavailable, match="not a JSON object"):
            client.activation_result("id1")
        canned_server.answer(202, "application/json", b'{"activationId": 5}')
        with pytest.raises(ServerUnavailable, match="no activationId"):
            client.invoke("a", {})
        with pytest.raises(ServerUnavailable, match="no activationId"):
            client.fire_trigger("t", {})
        canned_server.answer(200, "application/json", b'{"activationId": "x", "response": "oops"}')
        with pytest.raises(ServerUnavailable, match="'response' is not an object"):
            client.invoke_blocking("a", {})
        canned_server.answer(200, "application/json", b'{"logs": "one line"}')
        with pytest.raises(ServerUnavailable, match="not a list of strings"):
            client.activation_logs("id1")
        canned_server.answer(200, "application/json", b'{"activations": []}')
        with pytest.raises(ServerUnavailable, match="not a list of activation objects"):
            client.activations()
        canned_server.answer(200, "application/json", b'[{"activationId": "x"}]')
        assert client.activations() == [{"activationId": "x"}]
    finally:
        client.close()
