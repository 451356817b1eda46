"""SP1 pillow driver: what only the pillow does (resends, the pressure switch, its lease)."""

from __future__ import annotations

import asyncio

import pytest

from devices.capabilities import KneadDirection
from devices.errors import LinkLostError, SafetyError
from devices.events import DeviceEvent, LinkLost
from devices.outputs import BeltOutput, PillowOutput
from devices.protocols import sp1
from simulator.endpoints.memory import MemoryLink
from tests.devices.behaviour import wait_until
from tests.devices.test_drivers_memory import pillow_pair

KNEAD = PillowOutput(speed=2, direction=KneadDirection.CLOCKWISE, heat=False)


def commands(link: MemoryLink) -> list[int]:
    """The CMD of every frame the driver wrote."""
    return [sp1.decode(m.data).cmd for m in link.written]


async def test_connect_queries_info_then_state() -> None:
    driver, _, link = pillow_pair()
    try:
        await driver.connect()
        assert link.written[0].data == bytes.fromhex("55aa010102")
        assert commands(link) == [sp1.Command.QUERY_INFO, sp1.Command.QUERY_STATE]
        assert all(m.channel == sp1.DATA_UUID for m in link.written)
        assert driver.state is not None
    finally:
        await driver.close()


async def test_set_is_the_vendor_vector() -> None:
    driver, firmware, link = pillow_pair()
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(PillowOutput(speed=2, direction=KneadDirection.AUTO_REVERSE, heat=True))
        assert link.written[-1].data == bytes.fromhex("55aa04020202010b")
        assert firmware.knead_speed == 2
    finally:
        await driver.close()


async def test_a_lost_answer_is_resent_after_300_ms() -> None:
    driver, _, link = pillow_pair()
    try:
        await driver.connect()
        link.drop_next_answers = 1
        await driver.status()
        assert driver.resends == 1
        queries = [m for m in link.written if sp1.decode(m.data).cmd == sp1.Command.QUERY_STATE]
        assert len(queries) == 3  # connect, then the status query twice
        assert 0.29 <= queries[2].t - queries[1].t <= 0.4
    finally:
        await driver.close()


async def test_a_lost_set_is_resent_even_when_a_periodic_state_crosses_it() -> None:
    driver, firmware, link = pillow_pair()
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(KNEAD)
        # Running: the pillow notifies STATE every second. Lose the next SET (rule 1).
        await asyncio.sleep(0.8)
        link.drop_next_writes = 1
        await driver.apply(PillowOutput(speed=3, direction=KneadDirection.CLOCKWISE))
        assert firmware.knead_speed == 3
        assert driver.resends == 1
    finally:
        await driver.close()


async def test_no_answer_after_three_retries_is_a_lost_link() -> None:
    driver, _, link = pillow_pair()
    events: list[DeviceEvent] = []
    driver.add_listener(events.append)
    try:
        await driver.connect()
        link.drop_next_answers = 10
        before = len(link.written)
        with pytest.raises(LinkLostError):
            await driver.status()
        assert len(link.written) - before == 4
        assert [type(e) for e in events] == [LinkLost]
        assert not driver.is_connected
    finally:
        await driver.close()


async def test_refuses_to_knead_an_empty_pillow() -> None:
    driver, firmware, link = pillow_pair()
    loop = asyncio.get_running_loop()
    firmware.set_occupied(False, loop.time())
    try:
        await driver.connect()
        driver.renew_lease(10)
        sent = len(link.written)
        with pytest.raises(SafetyError):
            await driver.apply(KNEAD)
        assert len(link.written) == sent, "a SET went out for an empty pillow"
        assert firmware.knead_speed == 0
        # Warming an empty pillow before the head is back is allowed.
        await driver.apply(PillowOutput(speed=0, heat=True))
        assert firmware.heat
    finally:
        await driver.close()


async def test_revoked_lease_stops_the_pillow_at_once() -> None:
    driver, firmware, _ = pillow_pair()
    try:
        await driver.connect()
        driver.renew_lease(10)
        await driver.apply(KNEAD)
        driver.revoke_lease()
        # No watchdog on the pillow: the driver must stop it itself.
        await wait_until(lambda: not firmware.running, timeout=0.3, what="the pillow stopped")
        assert driver.output.is_zero
    finally:
        await driver.close()


async def test_heat_asked_while_overheated_is_reported_off() -> None:
    driver, firmware, _ = pillow_pair()
    loop = asyncio.get_running_loop()
    try:
        await driver.connect()
        firmware.overheat(loop.time())
        driver.renew_lease(10)
        await driver.apply(PillowOutput(speed=1, heat=True))
        assert firmware.knead_speed == 1
        assert not firmware.heat
        assert driver.output == PillowOutput(speed=1, heat=False)
        assert driver.resends == 0
        assert "overheat" in (await driver.status()).flags
    finally:
        await driver.close()


async def test_directions_and_bad_outputs() -> None:
    driver, firmware, link = pillow_pair(heater=False)
    try:
        caps = await driver.connect()
        assert not caps.heater
        driver.renew_lease(10)
        await driver.apply(PillowOutput(speed=1, direction=KneadDirection.COUNTER_CLOCKWISE))
        assert (await driver.status()).outputs["direction"] == 1
        assert firmware.direction == KneadDirection.COUNTER_CLOCKWISE
        sent = len(link.written)
        with pytest.raises(ValueError, match="speed"):
            await driver.apply(PillowOutput(speed=4))
        with pytest.raises(ValueError, match="heater"):
            await driver.apply(PillowOutput(speed=1, heat=True))
        with pytest.raises(TypeError):
            await driver.apply(BeltOutput(levels=(1, 2, 3, 4)))
        assert len(link.written) == sent
    finally:
        await driver.close()
