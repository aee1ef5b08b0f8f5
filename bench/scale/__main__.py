"""One command for the scale study (docs/scale.md), run from the repository root:

    .venv/bin/python -m bench.scale            # predict: the calibrated model's tables and plots (minutes)
    .venv/bin/python -m bench.scale calibrate  # re-measure this machine -> bench/scale/calibration.json
    .venv/bin/python -m bench.scale validate   # real owtrain local runs vs the model -> validation.json
    .venv/bin/python -m bench.scale all        # calibrate, validate, predict

Options after the step name go to that step (`… predict --quick`, `… validate --workers 1,2`).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate  # noqa: E402
import predict  # noqa: E402
import validate  # noqa: E402

STEPS = {"calibrate": calibrate.main, "validate": validate.main, "predict": predict.main}


def main() -> None:
    step = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "predict"
    rest = sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == step else sys.argv[1:]
    if step == "all":
        for name in ("calibrate", "validate", "predict"):
            sys.argv = [f"bench.scale {name}"]
            STEPS[name]()
        return
    if step not in STEPS:
        raise SystemExit(f"unknown step {step!r}; choose one of {', '.join([*STEPS, 'all'])}")
    sys.argv = [f"bench.scale {step}", *rest]
    STEPS[step]()


if __name__ == "__main__":
    main()
