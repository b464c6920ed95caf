"""Is the feed up? A daily run's own source day must list enough objects, or the run fails
before it writes anything: an empty day is far more often a broken feed, a wrong prefix or a
bucket that stopped receiving files than a day without traffic."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sized

from flows.errors import VdpError
from flows.settings import Settings
from flows.source import open_source


class EmptySourceDay(VdpError):
    """The run's own source day listed fewer objects than VDP_MIN_OBJECTS_PER_DAY."""


def require_objects(settings: Settings, day: dt.date, listed: Sized) -> None:
    """Raise EmptySourceDay when ``listed`` (the day's source objects) holds fewer than
    ``settings.min_objects_per_day`` objects; 0 disables the check. Apply it to the run's own
    day only: earlier days listed again for late objects are normally empty."""
    wanted, found = settings.min_objects_per_day, len(listed)
    if found >= wanted:
        return
    where = open_source(settings).describe()
    if found == 0:
        raise EmptySourceDay(
            f"no objects for source day {day} under {where}; is the feed down? "
            "(a known-empty day: VDP_MIN_OBJECTS_PER_DAY=0 or vdp run --allow-empty)"
        )
    raise EmptySourceDay(
        f"only {found} objects for source day {day} under {where}, fewer than "
        f"VDP_MIN_OBJECTS_PER_DAY={wanted}; is the feed down? "
        "(a known-sparse day: vdp run --allow-empty)"
    )


def require_days(settings: Settings, days: list[dt.date]) -> None:
    """The same rule for each day of a backfill, checked before any day is fetched."""
    if settings.min_objects_per_day == 0:
        return
    source = open_source(settings)
    for day in days:
        require_objects(settings, day, source.list_day(day))
