"""Transport faults an endpoint applies to the bytes it carries.

Physical faults (the stop button, overheat, a lifted head, the EMS wheel) are
methods of the firmware models; these are faults of the wire or the radio.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LinkFaults:
    """What goes wrong on one device's link; endpoints read it for every message."""

    corrupt_rate: float = 0.0
    """Fraction of bytes (serial) or messages (BLE) with one bit flipped, both ways."""
    drop_answer_rate: float = 0.0
    """Fraction of device->host messages silently dropped."""
    delay: float = 0.0
    """Seconds added before each device->host message is delivered."""
    split: bool = False
    """Deliver device->host data one byte at a time (serial) or in halves (BLE NUS)."""
    link_down: bool = False
    """The link is cut: nothing passes, BLE centrals are disconnected."""
    rng: random.Random = field(default_factory=lambda: random.Random(0x5EED))

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        # An endpoint that sleeps until its firmware's next deadline hears of a cut link
        # now, rather than polling for it.
        watchers = self.__dict__.get("_watchers")
        if watchers:
            for watcher in list(watchers):
                watcher()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call callback after every change of a fault; returns a function that stops it."""
        watchers: list[Callable[[], None]] = self.__dict__.setdefault("_watchers", [])
        watchers.append(callback)

        def unwatch() -> None:
            if callback in watchers:
                watchers.remove(callback)

        return unwatch

    def corrupt(self, data: bytes) -> bytes:
        """Flip one bit in about corrupt_rate of the bytes."""
        if self.corrupt_rate <= 0:
            return data
        out = bytearray(data)
        for i in range(len(out)):
            if self.rng.random() < self.corrupt_rate:
                out[i] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def should_drop(self) -> bool:
        """True when this answer is to be lost."""
        return self.drop_answer_rate > 0 and self.rng.random() < self.drop_answer_rate

    def clear(self) -> None:
        """No faults any more."""
        self.corrupt_rate = 0.0
        self.drop_answer_rate = 0.0
        self.delay = 0.0
        self.split = False
        self.link_down = False


MAX_DELAY_S = 60.0
"""Longest delay fault: beyond it every host gives up anyway, and a typo must not hang one."""


def _nothing(value: object) -> bool:
    return value is None


def _flag(value: object) -> bool:
    return value is None or isinstance(value, bool)


def _rate(value: object) -> bool:
    return value is None or _number_in(value, 0.0, 1.0)


def _delay(value: object) -> bool:
    return value is None or _number_in(value, 0.0, MAX_DELAY_S)


def _occupied(value: object) -> bool:
    return isinstance(value, bool)


def _wheel(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in value
        )
    )


def _number_in(value: object, low: float, high: float) -> bool:
    """A finite number (not a bool, which JSON keeps apart) from low to high."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and low <= value <= high


FAULT_VALUES: dict[str, tuple[Callable[[object], bool], str]] = {
    "link_down": (_nothing, "takes no value"),
    "link_up": (_nothing, "takes no value"),
    "clear": (_nothing, "takes no value"),
    "split": (_flag, "takes true, false or no value"),
    "corrupt": (_rate, "takes a rate from 0 to 1 (default 0.1)"),
    "drop": (_rate, "takes a rate from 0 to 1 (default 0.5)"),
    "delay": (_delay, f"takes seconds from 0 to {MAX_DELAY_S:g} (default 0.2)"),
    "press_stop_button": (_nothing, "takes no value"),
    "overheat": (_nothing, "takes no value"),
    "set_occupied": (_occupied, "takes true or false"),
    "turn_wheel": (_wheel, "takes [A, B]: two strengths (0 or more), null to leave one"),
}
"""Every fault name and what value it accepts: checked before a fault touches a device."""


def check_fault_value(name: str, value: object) -> None:
    """Raise ValueError with a sentence when value does not suit the fault (or name is unknown)."""
    entry = FAULT_VALUES.get(name)
    if entry is None:
        raise ValueError(f"unknown fault {name!r}; valid: {', '.join(FAULT_VALUES)}")
    accepts, what = entry
    if not accepts(value):
        raise ValueError(f"{name} {what}, not {_shown(value)}")


def _shown(value: object) -> str:
    """A value as the user typed it (JSON), not as Python prints it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)
