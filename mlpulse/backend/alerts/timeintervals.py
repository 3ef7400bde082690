"""Mute time intervals: named, recurring weekly windows in a time zone.

A rules file declares them once and rules or channels reference them by name::

    time_intervals:
      - name: nights-and-weekends
        time_zone: Europe/Berlin
        weekdays: ["monday:friday"]
        times: [{start: "19:00", end: "24:00"}, {start: "00:00", end: "07:00"}]
        action: hold          # hold: send when the interval ends; drop: never send
      - name: weekends
        weekdays: [saturday, sunday]   # no times: the whole day (UTC by default)

An interval is active when the local weekday is one of ``weekdays`` (all days when
empty) and the local time of day lies in one of ``times`` (``start`` inclusive, ``end``
exclusive; the whole day when empty). Like Alertmanager's ``mute_time_intervals``, a muted
alert still changes state and is recorded in the history; only its notifications wait
(``hold``) or are discarded (``drop``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_NAME = r"^[A-Za-z0-9_.:-]{1,100}$"
_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _minutes(text: str) -> int:
    match = _CLOCK.match(text)
    if match is None:
        raise ValueError(f"invalid time {text[:20]!r}: use HH:MM, 00:00 to 24:00")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > 24 * 60:
        raise ValueError(f"invalid time {text!r}: 24:00 is the latest")
    return minutes


class TimeRange(BaseModel):
    """A time of day range, ``start`` inclusive, ``end`` exclusive (``24:00`` = midnight)."""

    model_config = ConfigDict(extra="forbid")

    start: str
    end: str

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if _minutes(self.start) >= _minutes(self.end):
            raise ValueError(
                f"times: start {self.start} must be before end {self.end} "
                "(split a range over midnight in two: 22:00-24:00 and 00:00-06:00)"
            )
        return self

    @property
    def span(self) -> tuple[int, int]:
        """The range in minutes since midnight."""
        return _minutes(self.start), _minutes(self.end)


class TimeInterval(BaseModel):
    """A named weekly window during which notifications are muted."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    time_zone: str = Field(default="UTC", max_length=64, description="IANA name")
    weekdays: list[str] = Field(
        default_factory=list, max_length=7, description='"monday", or a range "monday:friday"'
    )
    times: list[TimeRange] = Field(default_factory=list, max_length=24)
    action: Literal["hold", "drop"] = Field(
        default="hold", description="hold: deliver when the interval ends; drop: discard"
    )
    description: str = Field(default="", max_length=1000)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name[:64]!r} (an IANA name such as Europe/Berlin)"
            ) from None
        return name

    @field_validator("weekdays")
    @classmethod
    def _known_days(cls, items: list[str]) -> list[str]:
        for item in items:
            _day_numbers(item)
        return items

    def days(self) -> set[int]:
        """The weekdays (Monday = 0) the interval covers."""
        if not self.weekdays:
            return set(range(7))
        out: set[int] = set()
        for item in self.weekdays:
            out |= _day_numbers(item)
        return out

    def ranges(self) -> list[tuple[int, int]]:
        """The time of day ranges in minutes (the whole day when none are given)."""
        return [r.span for r in self.times] or [(0, 24 * 60)]

    def active(self, epoch: float) -> bool:
        """Return whether the interval covers the instant ``epoch``."""
        local = datetime.fromtimestamp(epoch, ZoneInfo(self.time_zone))
        if local.weekday() not in self.days():
            return False
        minute = local.hour * 60 + local.minute + local.second / 60
        return any(start <= minute < end for start, end in self.ranges())

    def end_after(self, epoch: float) -> float:
        """Return the first instant after ``epoch`` where this active interval stops."""
        zone = ZoneInfo(self.time_zone)
        local = datetime.fromtimestamp(epoch, zone)
        minute = local.hour * 60 + local.minute + local.second / 60
        end = next(e for s, e in self.ranges() if s <= minute < e)
        return _epoch(local.date(), end, zone)


def _day_numbers(item: str) -> set[int]:
    text = item.strip().lower()
    first, _, last = text.partition(":")
    for name in (first, last) if last else (first,):
        if name not in WEEKDAYS:
            raise ValueError(f"unknown weekday {name[:20]!r} (monday ... sunday, or a range)")
    a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
    if b < a:
        raise ValueError(f"weekday range {item!r} runs backwards: write it as two ranges")
    return set(range(a, b + 1))


def _epoch(day: date, minute: int, zone: ZoneInfo) -> float:
    """The epoch of ``minute`` past local midnight of ``day`` (24:00: the next midnight)."""
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), minute - 24 * 60
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return local.timestamp()


def active_intervals(intervals: Iterable[TimeInterval], epoch: float) -> list[TimeInterval]:
    """Return the intervals active at ``epoch``."""
    return [i for i in intervals if i.active(epoch)]


def muted_until(intervals: Iterable[TimeInterval], epoch: float) -> float | None:
    """Return when the union of the active ``intervals`` stops muting, or None if none is
    active now. Back-to-back intervals (22:00-24:00 then 00:00-06:00) count as one."""
    items = list(intervals)
    t = epoch
    for _ in range(8 * 24 * 2 * max(1, len(items))):  # bounded: a week of ranges each
        now_active = active_intervals(items, t)
        if not now_active:
            return None if t == epoch else t
        t = max(i.end_after(t) for i in now_active)
    return t  # muted all week, every week: report the horizon reached
