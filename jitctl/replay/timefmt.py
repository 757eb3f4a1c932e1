"""Times as the replay shows and reads them: wall clock, offset into the session, seek input.

Rules:
- Wall times are shown in the viewer's local zone (or the `tz` given, for tests and snapshots)
  with milliseconds; offsets are `+MM:SS.mmm` (`+H:MM:SS.mmm` past an hour) from the session's
  first record.
- Seek input: an offset (`+5`, `+1:23`, `1:23.5`, `+90s`, `2m`), a wall time of the session's day
  (`12:03:04`) or an ISO date-time; anything else is a ValueError with a readable message.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo

from jitctl.durations import parse_duration

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def wall(time_us: int, tz: tzinfo | None = None, date: bool = False) -> str:
    moment = datetime.fromtimestamp(time_us / 1e6, tz).astimezone(tz)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}"


def offset(us: int) -> str:
    sign = "-" if us < 0 else "+"
    us = abs(us)
    seconds, micro = divmod(us, 1_000_000)
    minutes, secs = divmod(seconds, 60)
    hours, mins = divmod(minutes, 60)
    head = f"{hours}:{mins:02d}" if hours else f"{mins:02d}"
    return f"{sign}{head}:{secs:02d}.{micro // 1000:03d}"


def _clock_seconds(text: str) -> float | None:
    match = _CLOCK.match(text)
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def parse_seek(text: str, start_us: int, tz: tzinfo | None = None) -> int:
    """The absolute time (µs) that `text` names within a session starting at `start_us`."""
    text = text.strip()
    if not text:
        raise ValueError("empty time")
    relative = text.startswith("+")
    body = text[1:] if relative else text
    if re.fullmatch(r"\d+(?:\.\d+)?", body):
        return start_us + int(float(body) * 1_000_000)  # plain seconds: an offset
    seconds = _clock_seconds(body)
    if seconds is not None and (relative or body.count(":") == 1):
        return start_us + int(seconds * 1_000_000)
    if seconds is not None:  # H:MM:SS without "+": a wall time on the session's day
        day = datetime.fromtimestamp(start_us / 1e6, tz).astimezone(tz)
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp() * 1_000_000 + seconds * 1_000_000)
    try:
        return start_us + int(parse_duration(body) * 1_000_000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: write an offset (+1:23, 90s), a wall time (12:03:04) "
            "or an ISO date-time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return int(moment.timestamp() * 1_000_000)
