"""Drivers' breaks for the synthetic feed (DESIGN.md "Breaks"): some inside a period, some
crossing its start or finish, some too short to hold a point; some moved by a later create,
deleted, or deleted and re-created; some of whose events arrive in a later day's files.

Breaks draw from their own random.Random, so a feed without breaks (rate 0) has exactly the
bytes it had before breaks existed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
LATE_RATE = 0.2  # share of breaks whose later events come in the next day's files


@dataclass
class Break:
    id: str
    vehicle: str
    org: str
    events: list[tuple[int, str, int, int]] = field(default_factory=list)  # at, kind, start, finish
    malformed: bool = False  # its first line lacks data.vehicle_id (quarantined)


def _bounds(rng: random.Random, start: int, finish: int) -> tuple[int, int]:
    """A break's bounds in or around the period [start, finish], by shape."""
    shape = rng.random()
    span = finish - start
    if shape < 0.15:  # crosses the period's start
        return start - rng.randint(MINUTE_MS, 5 * MINUTE_MS), start + rng.randint(1, span // 3)
    if shape < 0.3:  # crosses the period's finish
        return finish - rng.randint(1, span // 3), finish + rng.randint(MINUTE_MS, 5 * MINUTE_MS)
    if shape < 0.45:  # shorter than the time between two updates: most hold no point
        begin = start + rng.randint(0, span - 2_000)
        return begin, begin + rng.randint(100, 1_500)
    length = min(span, rng.randint(MINUTE_MS, 8 * MINUTE_MS))
    begin = start + rng.randint(0, span - length)
    return begin, begin + length


def _lifecycle(
    rng: random.Random, b: Break, bounds: tuple[int, int], period: tuple[int, int], late_ok: bool
) -> None:
    """The create and, for some breaks, a later move, delete or delete + re-create; a move
    keeps the break overlapping its period."""
    start, finish = bounds
    created = start - rng.randint(0, 2 * MINUTE_MS)
    b.events.append((created, "create", start, finish))
    fate = rng.random()
    if fate < 0.55:
        return
    later = created + rng.randint(MINUTE_MS, 30 * MINUTE_MS)
    if late_ok and rng.random() < LATE_RATE / 0.45:  # LATE_RATE of all breaks overall
        later = created + DAY_MS + rng.randint(MINUTE_MS, 2 * HOUR_MS)
    lowest, highest = max(-5 * MINUTE_MS, period[0] - finish), min(5 * MINUTE_MS, period[1] - start)
    shift = rng.randint(lowest, highest)
    if fate < 0.75:  # moved by a later create
        b.events.append((later, "create", start + shift, finish + shift))
    elif fate < 0.9:  # deleted
        b.events.append((later, "delete", start, finish))
    else:  # deleted, then re-created with other bounds
        b.events.append((later, "delete", start, finish))
        again = later + rng.randint(MINUTE_MS, 10 * MINUTE_MS)
        b.events.append((again, "create", start + shift, finish + shift))


def plan_breaks(
    seed: int,
    rate: float,
    quirk_rate: float,
    periods: list[tuple[str, int, int]],
    drivers: Callable[[str, int, int], list[str]],
    last_ms: int,
) -> list[Break]:
    """Breaks for (org, start, finish) periods that end live: each vehicle ``drivers`` names
    for a period takes one with probability ``rate``; late events only when they still fall
    before ``last_ms`` (the end of the generated days)."""
    rng = random.Random(f"breaks-{seed}")  # noqa: S311 - reproducible test data
    breaks: list[Break] = []
    if rate <= 0:
        return breaks
    tag = f"{rng.getrandbits(24):06x}"
    for org, start, finish in periods:
        for vehicle in drivers(org, start, finish):
            if rng.random() >= rate:
                continue
            b = Break(f"br_{tag}_{len(breaks) + 1}", vehicle, org)
            b.malformed = rng.random() < quirk_rate
            late_ok = finish + DAY_MS + 3 * HOUR_MS < last_ms
            _lifecycle(rng, b, _bounds(rng, start, finish), (start, finish), late_ok)
            breaks.append(b)
    return breaks


def break_lines(b: Break, ts: Callable[[int], str]) -> list[tuple[int, str]]:
    """(at, line) of each event of a break; a malformed break's first line lacks
    data.vehicle_id (the stage must quarantine it)."""
    lines = []
    for i, (at, kind, start, finish) in enumerate(b.events):
        vehicle = "" if b.malformed and i == 0 else f'"vehicle_id":"{b.vehicle}",'
        data = f'"id":"{b.id}",{vehicle}"start":"{ts(start)}","finish":"{ts(finish)}"'
        line = (
            f'{{"event":"{kind}","on":"break","at":"{ts(at)}",'
            f'"data":{{{data}}},"organization_id":"{b.org}"}}'
        )
        lines.append((at, line))
    return lines
