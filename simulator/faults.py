"""Transport faults an endpoint applies to the bytes it carries.

Physical faults (the stop button, overheat, a lifted head, the EMS wheel) are
methods of the firmware models; these are faults of the wire or the radio.
"""

from __future__ import annotations

import random
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
