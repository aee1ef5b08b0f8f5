"""How every benchmark here prints a figure: the median and the range of its repeats.

One formatter, so the tables in docs/benchmarks.md read alike: `median (min–max)`, "–" for a figure
that has no values (a run that never reached the target), optional thousands separators.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def spread(values: Iterable[float | None], digits: int = 1, scale: float = 1.0, thousands: bool = False) -> str:
    """`median (min–max)` of the values that are not None, each times `scale`; "–" when none are."""
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "–"
    sep = "," if thousands else ""
    return f"{statistics.median(vals):{sep}.{digits}f} ({min(vals):{sep}.{digits}f}–{max(vals):{sep}.{digits}f})"
