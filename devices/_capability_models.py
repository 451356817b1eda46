"""The pydantic models of devices.capabilities (import them from there)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from devices.capabilities import DeviceKind, KneadDirection, Place, Side
from devices.protocols import eb1, vb1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Motor(_Frozen):
    """One vibration motor of a belt: its 1-based number and where it sits."""

    index: int = Field(ge=1)
    place: Place
    side: Side
    max_level: int = vb1.MAX_LEVEL


class Kneading(_Frozen):
    """The pillow's kneading nodes: speeds 1..max_speed (0 is off) and directions."""

    nodes: int = Field(ge=1)
    max_speed: int = Field(ge=1)
    directions: tuple[KneadDirection, ...] = tuple(KneadDirection)


class EmsChannel(_Frozen):
    """One EMS channel of the butterfly, with the protocol's limits."""

    name: str
    side: Side
    places: tuple[Place, ...] = (Place.NECK, Place.SHOULDER, Place.UPPER_BACK)
    max_strength: int = eb1.MAX_STRENGTH
    # EB1 daemon rule 2: raise by at most 5 per 100 ms.
    max_raise_per_100ms: int = eb1.MAX_RAISE_PER_B0


class Capabilities(_Frozen):
    """Everything a driver reports about one connected device."""

    kind: DeviceKind
    model: str
    firmware: str = ""
    serial: str = ""
    motors: tuple[Motor, ...] = ()
    heater: bool = False
    kneading: Kneading | None = None
    ems_channels: tuple[EmsChannel, ...] = ()

    @property
    def full_scale(self) -> int:
        """The highest value its outputs take, in device units (what 100 % of it means);
        the kind's protocol maximum when it reports no outputs."""
        tops = [m.max_level for m in self.motors] + [c.max_strength for c in self.ems_channels]
        if self.kneading is not None:
            tops.append(self.kneading.max_speed)
        if tops:
            return max(tops)
        from devices.kinds import kind_spec  # (devices.kinds builds on these models)

        return kind_spec(self.kind).maximum

    def motors_at(self, place: Place, side: Side = Side.BOTH) -> tuple[Motor, ...]:
        """The motors at a place, on one side or both."""
        return tuple(
            m for m in self.motors if m.place == place and (side == Side.BOTH or m.side == side)
        )


_BELT_PLACES: tuple[tuple[Place, Side], ...] = (
    (Place.NECK, Side.LEFT),
    (Place.NECK, Side.RIGHT),
    (Place.SHOULDER, Side.LEFT),
    (Place.SHOULDER, Side.RIGHT),
    (Place.UPPER_BACK, Side.LEFT),
    (Place.UPPER_BACK, Side.RIGHT),
)


def belt_motors(count: int) -> tuple[Motor, ...]:
    """The motor layout of a VB1 belt with 4 or 6 motors (vb1-belt.md, Motors)."""
    if count not in (4, 6):
        raise ValueError(f"a VB1 belt has 4 or 6 motors, not {count}")
    return tuple(
        Motor(index=i + 1, place=place, side=side)
        for i, (place, side) in enumerate(_BELT_PLACES[:count])
    )


def butterfly_channels() -> tuple[EmsChannel, ...]:
    """The EB1's two channels: A on the left, B on the right (eb1-butterfly.md)."""
    return (EmsChannel(name="A", side=Side.LEFT), EmsChannel(name="B", side=Side.RIGHT))
