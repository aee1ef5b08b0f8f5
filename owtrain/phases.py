"""Where an activation's time goes: the named phases the action times, shared by everyone who reads them.

The action (`actions/main.py`) times each phase of an activation with a `PhaseClock` and returns the
totals in its result as `phases: {name: {"s": seconds, "n": count}}` (docs/action.md, Result); it
also reports them to the parameter server (`POST /reportPhases`), which totals them per worker for
`/status` and the dashboard; the driver keeps them with each activation's record and the run report
totals them over the run. One list of names, here, so the three readers cannot drift apart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from owtrain.errors import BadRequest

# download: fetch the shard (or find it in the disk cache) and check its sha256;
# verify: decompress it and check every member (skipped on a warm container's cached shard);
# register: the registration round trip (and building the model on a container's first use);
# pull: fetching newer parameters; compute: local batches (forward, backward, local step);
# push: building, encoding and sending an update until the server answers;
# sync_wait: long-polling for an open sync round to close (the pull that ends it included).
PHASES = ("download", "verify", "register", "pull", "compute", "push", "sync_wait")
MAX_SECONDS = 1e7  # far beyond any activation (or run): larger totals are corrupt, not slow
MAX_COUNT = 10**9

Phases = dict[str, dict[str, float]]


class PhaseClock:
    """Seconds and counts per phase for one activation (single-threaded, like the action's loop)."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.counts = dict.fromkeys(PHASES, 0)

    def add(self, phase: str, seconds: float, count: int = 1) -> None:
        """Charge `seconds` to `phase` (a name from PHASES) as `count` more occurrences."""
        self.seconds[phase] += seconds
        self.counts[phase] += count

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Charge the time the block takes (also when it raises) to `phase`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)

    def total(self) -> float:
        return sum(self.seconds.values())

    def to_json(self) -> Phases:
        """`{phase: {"s": seconds, "n": count}}` for every phase, in PHASES order."""
        return {p: {"s": round(self.seconds[p], 6), "n": self.counts[p]} for p in PHASES}


def parse_phases(obj: object) -> Phases:
    """A phases object from a request, checked: only names from PHASES, each `{"s": finite seconds
    in [0, MAX_SECONDS], "n": integer count in [0, MAX_COUNT]}`. Raises BadRequest naming the fault."""
    if not isinstance(obj, Mapping):
        raise BadRequest('phases must be an object {"<phase>": {"s": seconds, "n": count}}')
    out: Phases = {}
    for name, entry in obj.items():
        if name not in PHASES:
            raise BadRequest(f"unknown phase {str(name)[:40]!r}; phases are {', '.join(PHASES)}")
        if not isinstance(entry, Mapping) or set(entry) != {"s", "n"}:
            raise BadRequest(f'phase {name} must be {{"s": seconds, "n": count}}')
        s, n = entry["s"], entry["n"]
        if isinstance(s, bool) or not isinstance(s, int | float) or not math.isfinite(s) or not 0 <= s <= MAX_SECONDS:
            raise BadRequest(f"phase {name}: s must be a number of seconds in [0, {MAX_SECONDS:g}]")
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_COUNT:
            raise BadRequest(f"phase {name}: n must be an integer count in [0, {MAX_COUNT}]")
        out[name] = {"s": float(s), "n": n}
    return out


def parse_report(body: Mapping[str, object]) -> tuple[Phases, float]:
    """The `(phases, wall_s)` of a `POST /reportPhases` body, checked (BadRequest naming the fault)."""
    wall = body.get("wall_s")
    if isinstance(wall, bool) or not isinstance(wall, int | float) or not math.isfinite(wall) \
            or not 0 <= wall <= MAX_SECONDS:
        raise BadRequest(f"wall_s must be the activation's seconds, a number in [0, {MAX_SECONDS:g}]")
    return parse_phases(body.get("phases")), float(wall)


def sum_phases(parts: Iterable[Mapping[str, Mapping[str, float]] | None]) -> Phases:
    """Totals over several phases objects (None and missing phases count as zero), in PHASES order."""
    total = {p: {"s": 0.0, "n": 0} for p in PHASES}
    for part in parts:
        for name, entry in (part or {}).items():
            if name in total:
                total[name]["s"] += float(entry.get("s", 0.0))
                total[name]["n"] += int(entry.get("n", 0))
    return {p: {"s": round(v["s"], 6), "n": int(v["n"])} for p, v in total.items()}
