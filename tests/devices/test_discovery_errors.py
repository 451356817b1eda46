"""A scan whose Bluetooth part failed says why, instead of "nothing found" (issue 13)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from bleak.backends.scanner import AdvertisementDataCallback, BaseBleakScanner
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
)

from devices import discovery
from devices.capabilities import DeviceKind
from devices.discovery import Found
from devices.errors import BluetoothUnavailableError, LinkError
from devices.links.ble import bluetooth_unavailable

BELT = Found(DeviceKind.BELT, "/dev/ttyACM0", "VB1 belt", "serial", None)


class FailingScanner(BaseBleakScanner):
    """A scanner backend whose start fails as bleak's does on a machine without Bluetooth."""

    error: Exception = BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    )

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)

    async def start(self) -> None:
        raise self.error

    async def stop(self) -> None:
        pass

    def set_scanning_filter(self, **kwargs: Any) -> None:
        pass


def serial_ports(*found: Found) -> Any:
    async def scan_serial_ports() -> list[Found]:
        return list(found)

    return scan_serial_ports


async def test_no_bluetooth_and_nothing_found_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discovery, "_scan_serial_ports", serial_ports())
    with pytest.raises(BluetoothUnavailableError, match=r"^Bluetooth is unavailable: No Bluetooth"):
        await discovery.scan(0.05, scanner_backend=FailingScanner)


async def test_a_failed_bluetooth_scan_that_found_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Broken(FailingScanner):
        error = RuntimeError("adapter wedged")

    monkeypatch.setattr(discovery, "_scan_serial_ports", serial_ports())
    with pytest.raises(LinkError, match="the Bluetooth scan failed: adapter wedged") as err:
        await discovery.scan(0.05, scanner_backend=Broken)
    assert not isinstance(err.value, BluetoothUnavailableError)


async def test_no_bluetooth_but_a_serial_belt_lists_the_belt_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(discovery, "_scan_serial_ports", serial_ports(BELT))
    with caplog.at_level(logging.WARNING, logger="devices.discovery"):
        found = await discovery.scan(0.05, scanner_backend=FailingScanner)
    assert found == [BELT]
    assert [r.getMessage() for r in caplog.records] == [
        "discovery: ble: BleakBluetoothNotAvailableError('No Bluetooth adapters found.', "
        "<BleakBluetoothNotAvailableReason.NO_BLUETOOTH: 1>)"
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            BleakBluetoothNotAvailableError(
                "No powered Bluetooth adapters found.", BleakBluetoothNotAvailableReason.POWERED_OFF
            ),
            "Bluetooth is unavailable: No powered Bluetooth adapters found",
        ),
        (
            BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []),
            "Bluetooth is unavailable: BlueZ (bluetoothd) is not running",
        ),
        (
            FileNotFoundError(2, "No such file or directory"),
            "Bluetooth is unavailable: no system D-Bus to reach BlueZ (bluetoothd)",
        ),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), None),
        (TimeoutError(), None),
    ],
)
def test_what_counts_as_no_bluetooth(error: Exception, expected: str | None) -> None:
    assert bluetooth_unavailable(error) == expected
