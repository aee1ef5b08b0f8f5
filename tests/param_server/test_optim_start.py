"""The server's optimiser does not import torch._dynamo (seconds of a server's start, before it
listens): building it, checkpointing and restoring its state and zeroing it stay free of it, and
the optimiser still steps and restores like torch's."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from tests.fixtures.common import PYTHON, ROOT

SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from owtrain.models import build_model
    from param_server.optim import build_optimizer, load_optimizer_state, optimizer_state

    out = {}
    for name in sys.argv[1:]:
        model = build_model("lenet5", seed=0)
        opt = build_optimizer(model, name, 0.1, 0.9)
        before = "torch._dynamo" in sys.modules
        tensors, meta = optimizer_state(opt)
        load_optimizer_state(opt, tensors, meta)
        opt.zero_grad()
        out[name] = {"dynamo_before_step": before or "torch._dynamo" in sys.modules}
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        opt.step()  # torch's step itself may import it (grad mode, at the first gradient push)
        tensors, meta = optimizer_state(opt)
        fresh = build_optimizer(model, name, 0.1, 0.9)
        load_optimizer_state(fresh, tensors, meta)
        out[name]["restored"] = all(torch.equal(a, b) for a, b in zip(
            optimizer_state(fresh)[0].values(), tensors.values()))
        out[name]["state_tensors"] = len(tensors)
    print(json.dumps(out))
""")


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_building_and_checkpointing_the_optimiser_does_not_import_dynamo(name):
    done = subprocess.run([PYTHON, "-c", SCRIPT, name], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])[name]
    assert out["dynamo_before_step"] is False
    assert out["restored"] is True and out["state_tensors"] > 0
