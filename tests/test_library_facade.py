"""The library's entry points refuse what the command line refuses, and clean up after failures.

docs/library.md's examples (tests/test_library_docs.py) show the happy paths;
these are the other ones.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import controller
import devices
import simulator


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short private folder (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="libfa-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_a_session_without_the_persons_confirmation_is_refused_before_anything_moves() -> (
    None
):
    async with controller.SimulatedDevices(["belt"]) as sim:
        with pytest.raises(devices.SafetyError, match="pass well_today=True"):
            await controller.run_program("collar-zone", sim.devices, simulated=True)
        belt = sim.devices["belt-1"]
        assert belt.output.is_zero
        assert (await belt.status()).outputs["motor1"] == 0


async def test_speed_is_for_simulated_devices_only() -> None:
    async with controller.SimulatedDevices(["belt"]) as sim:
        with pytest.raises(devices.ConfigError, match="simulated devices"):
            await controller.prepare_program("collar-zone", sim.devices, well_today=True, speed=10)
        with pytest.raises(devices.ConfigError, match=r"scale must be 0\.\.1"):
            await controller.prepare_program("collar-zone", sim.devices, well_today=True, scale=2)


async def test_a_childs_profile_leaves_the_butterfly_out() -> None:
    child = controller.Profile(name="mia", audience=controller.Audience.CHILD)
    async with controller.SimulatedDevices(["belt", "butterfly"]) as sim:
        runner = await controller.prepare_program(
            "collar-zone-child", sim.devices, profile=child, well_today=True, simulated=True
        )
        runner.stop()  # ends at once, softly: the test is about what was prepared
        result = await runner.run()
    assert result.dropped == ("butterfly-1",)


async def test_an_unknown_program_names_the_built_ins() -> None:
    async with controller.SimulatedDevices(["belt"]) as sim:
        with pytest.raises(devices.ConfigError, match="collar-zone"):
            await controller.prepare_program("no-such-program", sim.devices, well_today=True)


async def test_a_simulator_process_that_cannot_start_says_why(folder: Path) -> None:
    process = simulator.SimulatorProcess(["toaster"], radio_path=folder / "radio.sock")
    with pytest.raises(devices.LinkError, match="toaster"):
        await process.start()
    assert process.returncode not in (None, 0)


async def test_a_second_simulator_on_the_same_radio_is_refused_and_the_first_serves_on(
    folder: Path,
) -> None:
    radio = folder / "radio.sock"
    async with simulator.serve(["pillow"], radio_path=radio) as first:
        with pytest.raises(devices.LinkError, match=r"busy|in use|already"):
            await simulator.SimulatorProcess(["pillow"], radio_path=radio).start()
        with pytest.raises(simulator.RadioError):
            async with simulator.serve(["pillow"], radio_path=radio):
                pass
        found = await devices.scan(0.5, radio_path=radio, include_serial=False)
        assert [f.address for f in found] == [first.devices[0].address]


async def test_serve_refuses_bad_arguments_before_serving(folder: Path) -> None:
    with pytest.raises(devices.ConfigError, match="unknown kind"):
        async with simulator.serve(["toaster"], radio_path=folder / "radio.sock"):
            pass
    with pytest.raises(devices.ConfigError, match="does not exist"):
        async with simulator.serve(
            ["belt"], radio_path=folder / "radio.sock", record=folder / "no" / "rec.jsonl"
        ):
            pass
    assert not (folder / "radio.sock").exists()


async def test_connect_closes_the_device_when_the_block_fails(folder: Path) -> None:
    drivers: list[devices.Device] = []

    async def failing_script(address: str) -> None:
        async with devices.connect(devices.DeviceKind.BELT, address) as driver:
            drivers.append(driver)
            await driver.apply(devices.BeltOutput(levels=(50,) * 6))
            raise RuntimeError("script failed")

    async with simulator.serve(["belt"], radio_path=folder / "radio.sock") as sim:
        belt = sim.device("belt-1")
        with pytest.raises(RuntimeError, match="script failed"):
            await failing_script(belt.address)
        assert not drivers[0].is_connected
        # The port was given back and the belt left at zero.
        async with devices.connect(belt.kind, belt.address) as again:
            assert (await again.status()).outputs["motor1"] == 0


async def test_a_daemon_client_without_a_daemon(folder: Path) -> None:
    client = controller.DaemonClient(folder / "control.sock", timeout=2.0)
    with pytest.raises(controller.DaemonNotRunningError):
        await client.status()
