"""A simulator that cannot have its radio refuses before it touches anything (issue 13)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.ble.radio import SimRadio
from simulator.endpoints.pty import PtyEndpoint
from simulator.errors import RadioError
from simulator.fleet import Fleet, parse_spec
from tests.simulator.test_pty_endpoint import TestFirmware


@pytest.fixture
def short() -> Iterator[Path]:
    """A folder with a short path: Unix socket paths are limited to about 100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="msd-f-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_a_fleet_on_a_busy_radio_leaves_the_other_ones_links(short: Path) -> None:
    radio_path = short / "radio.sock"
    link = short / "belt-1"
    async with SimRadio(radio_path):
        link.symlink_to("/dev/pts/the-first-simulators")
        before = sorted(os.listdir(short))
        fleet = Fleet([parse_spec("belt"), parse_spec("pillow")], radio_path=radio_path)
        with pytest.raises(RadioError) as err:
            await fleet.start()
        assert err.value.code == "busy"
        await fleet.close()
        assert os.readlink(link) == "/dev/pts/the-first-simulators"
        assert sorted(os.listdir(short)) == before
        assert fleet.devices == []


async def test_a_stopped_endpoint_removes_only_its_own_link(short: Path) -> None:
    link = short / "belt-1"
    endpoint = PtyEndpoint(TestFirmware(), link_path=link)
    await endpoint.start()
    assert os.readlink(link) == endpoint.tty_name
    # Someone else (another simulator) takes the path over while this one runs.
    link.unlink()
    link.symlink_to("/dev/pts/someone-elses")
    await endpoint.stop()
    assert os.readlink(link) == "/dev/pts/someone-elses"
