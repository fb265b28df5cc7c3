"""Annealing schedules for planner knobs (state noise sigma, goal weight gamma), and the
knob and input validation the planners share, so a bad config fails before planning."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "linear", "cosine", "exp")
#: the "exp" schedule with a zero endpoint shrinks the gap to `final` by this factor overall
EXP_EPS = 1e-3


def scheduled_value(kind: str, init: float, final: float, progress: float) -> float:
    """Value of a schedule at `progress` in [0, 1] (0 -> init, 1 -> final, except `constant`).

    constant: always `init` (`final` is ignored).  linear / cosine: interpolation, cosine
    moves slowly at both ends.  exp: geometric interpolation init * (final/init)**p when both
    endpoints are non-zero and of one sign; otherwise (an endpoint is 0, e.g. noise annealed
    to 0) the gap to `final` decays exponentially, by EXP_EPS over the run, and is closed
    exactly at p = 1: final + (init - final) * (EXP_EPS**p - EXP_EPS) / (1 - EXP_EPS).
    """
    check_choice("schedule", kind, SCHEDULES)
    p = min(max(float(progress), 0.0), 1.0)
    init, final = float(init), float(final)
    if kind == "constant":
        return init
    if kind == "linear":
        return init + (final - init) * p
    if kind == "cosine":
        return final + (init - final) * 0.5 * (1.0 + math.cos(math.pi * p))
    if init * final > 0:
        return init * (final / init) ** p
    return final + (init - final) * (EXP_EPS**p - EXP_EPS) / (1.0 - EXP_EPS)


def schedule_values(kind: str, init: float, final: float, steps: int) -> list[float]:
    """The schedule at every iteration k of a run, progress = k / max(steps - 1, 1)."""
    return [scheduled_value(kind, init, final, k / max(steps - 1, 1)) for k in range(steps)]


# ---- constructor validation ---------------------------------------------------------------
def check_choice(key: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"planner.{key}={value!r}: allowed values are {', '.join(allowed)}")
    return value


def check_range(key: str, value: float, low: float | None = None, high: float | None = None,
                integer: bool = False, above: float | None = None) -> float:
    """Bounds low and high are inclusive, `above` exclusive (step sizes: > 0); raises naming the
    key and the allowed range."""
    if integer and (isinstance(value, bool) or int(value) != value):
        raise ValueError(f"planner.{key}={value!r}: must be an integer")
    if above is not None and (not math.isfinite(float(value)) or value <= above):
        raise ValueError(f"planner.{key}={value!r}: allowed values are finite numbers > {above}")
    if not math.isfinite(float(value)) or (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"planner.{key}={value!r}: allowed range is [{lo}, {hi}]")
    return int(value) if integer else float(value)


def check_schedule(key: str, kind: str, init: float, final: float) -> None:
    """Validate a knob's `<key>_schedule`, `<key>_init`, `<key>_final` (all non-negative)."""
    check_choice(f"{key}_schedule", kind, SCHEDULES)
    check_range(f"{key}_init", init, 0.0)
    check_range(f"{key}_final", final, 0.0)
