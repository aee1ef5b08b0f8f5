"""Pure aggregation math and the strategy policies, without a server."""

from __future__ import annotations

import inspect

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from owtrain.errors import BadRequest, ConfigError, StaleUpdate
from owtrain.specs import StrategySpec
from param_server import aggregate
from param_server.model_state import ModelState
from param_server.optim import build_optimizer, warmup_factor
from param_server.strategies import STRATEGIES, Update, check_strategy, parse_strategy
from param_server.strategies.sync import SyncStrategy
from tests.param_server.helpers import batch, grads, lenet, max_diff


def test_mean_of_updates():
    out = aggregate.mean([{"a": torch.tensor([1.0, 2.0])}, {"a": torch.tensor([3.0, 6.0])}])
    assert torch.equal(out["a"], torch.tensor([2.0, 4.0]))
    with pytest.raises(ValueError):
        aggregate.mean([])


def test_staleness_scale():
    assert aggregate.staleness_scale(0, 0.5) == 1.0
    assert aggregate.staleness_scale(3, 0.5) == pytest.approx(0.5)
    assert aggregate.staleness_scale(7, 0.0) == 1.0
    with pytest.raises(ValueError):
        aggregate.staleness_scale(-1, 0.5)


def test_apply_delta_adds_scaled_delta():
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    aggregate.apply_delta(dict(model.named_parameters()), {"weight": torch.ones(1, 2)}, 0.5)
    assert torch.allclose(model.weight, before + 0.5)


def test_warmup_is_linear_then_flat():
    assert [warmup_factor(s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_parse_strategy_options_and_errors():
    s = parse_strategy("sync:k=4,timeout=5")
    assert isinstance(s, SyncStrategy) and (s.k, s.timeout) == (4, 5.0)
    assert parse_strategy("bounded:s=3,mode=damp").describe() == {"name": "bounded", "s": 3, "mode": "damp",
                                                                  "damping": 1.0}
    assert parse_strategy("async:damping=0").damping == 0.0
    with pytest.raises(ValueError, match="choose one of"):
        parse_strategy("hogwild")
    with pytest.raises(ValueError, match="valid options"):
        parse_strategy("sync:q=1")
    with pytest.raises(ValueError, match="not a valid int"):
        parse_strategy("sync:k=two")
    with pytest.raises(ValueError, match="mode"):
        parse_strategy("bounded:mode=drop")
    assert set(STRATEGIES) == {"sync", "async", "bounded"}


def test_a_spec_and_its_string_build_the_same_strategy():
    spec = StrategySpec.parse("bounded:s=3,mode=damp")
    assert parse_strategy(spec).describe() == parse_strategy(str(spec)).describe()
    with pytest.raises(ConfigError, match=r"--strategy 'sync:k=two': strategy option k='two' is not a valid int"):
        check_strategy(StrategySpec.parse("sync:k=two"))
    with pytest.raises(ConfigError, match=r"--strategy 'sync:q=1': bad strategy option 'q=1' for sync; valid"):
        check_strategy("sync:q=1")


def built_before(text: str) -> bool:
    """Whether `parse_strategy` built a strategy from `text` before the specs (its rule as it was, as
    the test's oracle)."""
    name, _, rest = text.strip().partition(":")
    cls = STRATEGIES.get(name)
    if cls is None:
        return False
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in params or key == "self":
            return False
        try:
            kwargs[key] = type(params[key].default)(value)
        except ValueError:
            return False
    try:
        cls(**kwargs)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    return True


strategy_text = st.tuples(
    st.sampled_from(["sync", "async", "bounded", " sync", "sync ", "", "fifo", "sync:k=2", "bounded:mode=damp"]),
    st.sampled_from(["", ":", ": ", ":,"]),
    st.lists(st.tuples(st.sampled_from(["k", "timeout", "min", "s", "mode", "damping", " k", "k ", "", "q"]),
                       st.sampled_from(["=", "", " ="]),
                       st.sampled_from(["2", " 3", "0.5", "damp", "reject", "two", "", "-1", "1=2"])).map("".join),
             max_size=3).map(",".join),
).map("".join)


@settings(derandomize=True, database=None, deadline=None, max_examples=400)
@given(strategy_text)
def test_the_registry_builds_exactly_what_it_always_did(text):
    try:
        parse_strategy(text)
    except (ValueError, TypeError):
        assert not built_before(text), text
        return
    assert built_before(text), text


def _state(lr: float = 0.1) -> ModelState:
    model = lenet()
    return ModelState(model, build_optimizer(model, "sgd", lr))


def _update(state: ModelState, worker: str, base: int, value: float, kind: str = "grad") -> Update:
    tensors = {n: torch.full(s, value) for n, (s, _) in state.spec.items()}
    return Update(worker=worker, seq=0, base_version=base, kind=kind, tensors=tensors)


def test_sync_times_out_with_min_updates_and_rejects_late_ones():
    state = _state()
    sync = SyncStrategy(k=3, timeout=0.5, min=2)
    assert sync.submit(_update(state, "a", 0, 1.0), state).status == "accepted"
    assert not sync.tick(state, sync.round_started + 1.0)  # one update < min: keep waiting
    assert sync.submit(_update(state, "b", 0, 1.0), state).status == "accepted"
    assert not sync.tick(state, sync.round_started + 0.1)  # not late yet
    assert sync.tick(state, sync.round_started + 0.6) and state.version == 1
    with pytest.raises(StaleUpdate):  # the straggler's update is for version 0
        sync.submit(_update(state, "c", 0, 1.0), state)


def test_sync_counts_each_worker_once_per_round():
    state = _state()
    sync = SyncStrategy(k=2)
    assert sync.submit(_update(state, "a", 0, 1.0), state).status == "accepted"
    with pytest.raises(StaleUpdate, match="already contributed") as info:
        sync.submit(_update(state, "a", 0, 5.0), state)  # a second push of the same round
    assert info.value.current_version == 0 and state.version == 0 and len(sync.pending) == 1
    before = state.snapshot().tensors
    assert sync.submit(_update(state, "b", 0, 3.0), state).status == "applied"
    after = state.snapshot().tensors
    # one SGD step (lr 0.1) on the mean of a's 1.0 and b's 3.0; a's rejected 5.0 is not in it
    assert all(torch.allclose(after[n], before[n] - 0.1 * 2.0) for n in before)


def test_sync_refuses_mixed_kinds_in_one_round():
    state = _state()
    sync = SyncStrategy(k=2)
    sync.submit(_update(state, "a", 0, 1.0), state)
    with pytest.raises(BadRequest, match="delta"):
        sync.submit(_update(state, "b", 0, 1.0, kind="delta"), state)


def test_sync_pending_round_survives_state_dict():
    state = _state()
    sync = SyncStrategy(k=2)
    sync.submit(_update(state, "a", 0, 2.0), state)
    tensors, meta = sync.state_dict()
    again = SyncStrategy(k=2)
    again.load_state_dict(tensors, meta)
    assert again.submit(_update(state, "b", 0, 4.0), state).status == "applied"
    assert state.version == 1


def test_delta_updates_apply_server_lr():
    state = ModelState(lenet(), build_optimizer(lenet(), "sgd", 0.1), server_lr=0.5)
    before = state.snapshot().tensors
    parse_strategy("async").submit(_update(state, "a", 0, 2.0, kind="delta"), state)
    after = state.snapshot().tensors
    assert all(torch.allclose(after[n], before[n] + 1.0) for n in before)


def test_bounded_damp_mode_applies_stale_updates_damped_and_asks_for_refresh():
    state = _state(lr=1.0)
    bounded = parse_strategy("bounded:s=0,mode=damp,damping=1")
    bounded.submit(_update(state, "a", 0, 0.0), state)
    before = state.snapshot().tensors
    outcome = bounded.submit(_update(state, "a", 0, 1.0), state)  # staleness 1 > s: weight 1/2
    assert (outcome.status, outcome.staleness, outcome.refresh, state.version) == ("applied", 1, True, 2)
    after = state.snapshot().tensors
    assert all(torch.allclose(after[n], before[n] - 0.5) for n in before)


def test_adam_one_worker_async_equals_torch_adam():
    """The server's optimiser path (grads in, one step per update) is plain torch Adam."""
    model, reference = lenet(), lenet()
    state = ModelState(model, build_optimizer(model, "adam", 1e-3))
    opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
    strategy = parse_strategy("async")
    for step in range(4):
        x, y = batch(8, seed=step)
        g = grads(lenet(state.snapshot().tensors), x, y)
        strategy.submit(Update("w", step, state.version, "grad", g), state)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    assert max_diff(state.snapshot().tensors, dict(reference.named_parameters())) < 1e-6


def test_warmup_scales_the_first_steps():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    state = ModelState(model, build_optimizer(model, "sgd", 1.0), warmup_steps=2)
    one = {"weight": torch.ones(1, 1)}
    state.apply("grad", one)
    assert float(model.weight.detach()) == pytest.approx(-0.5)  # step 0 at half the rate
    state.apply("grad", one)
    assert float(model.weight.detach()) == pytest.approx(-1.5)  # full rate from step 1


@pytest.mark.parametrize(("name", "momentum", "nesterov", "weight_decay"),
                         [("sgd", 0.0, False, 0.0), ("sgd", 0.9, False, 1e-4), ("sgd", 0.9, True, 0.0),
                          ("adam", 0.0, False, 1e-4)])
def test_applying_leaves_the_decoded_body_intact(name, momentum, nesterov, weight_decay):
    """The hot path decodes a push's tensors as views of its body buffer and the journal writes that
    same buffer after the update was applied: applying must never write into what it was given."""
    from owtrain.codec import decode_tensors, encode_tensors

    model = lenet()
    state = ModelState(model, build_optimizer(model, name, 0.1, momentum, nesterov, weight_decay))
    for kind in ("grad", "delta"):
        for factor in (1.0, 0.5, 1.0):
            body = bytearray(encode_tensors({n: torch.randn_like(p) for n, p in model.named_parameters()}))
            sent = bytes(body)
            tensors, _ = decode_tensors(body)
            state.apply(kind, tensors, factor)
            assert body == sent, f"{kind} update (factor {factor}) was changed in place by {name}"
