"""A host process for the dead-host test: drives every device, feeds them, waits to be killed.

With ``--guard`` it runs under a host guard, as the daemon and ``massaged run`` do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from devices.capabilities import DeviceKind
from devices.kinds import make_device
from devices.outputs import BeltOutput, ButterflyOutput, EmsChannelOutput, PillowOutput
from simulator.ble.backend import SimBleakClient


async def main(radio: str, devices: list[dict[str, str]], guard: bool) -> None:
    """Connect to each device, switch it on, and keep the lease fed until killed."""
    async with contextlib.AsyncExitStack() as stack:
        if guard:
            from controller.guard import HostGuard

            await stack.enter_async_context(HostGuard())
        await drive(radio, devices)


async def drive(radio: str, devices: list[dict[str, str]]) -> None:
    """Switch every device on and keep the lease fed, forever."""
    drivers = []
    for spec in devices:
        kind = DeviceKind(spec["kind"])
        device = make_device(
            kind,
            spec["address"],
            transport="serial" if spec["link"] == "serial" else "ble",
            ble_backend=SimBleakClient,
            ble_kwargs={"radio": radio},
        )
        caps = await device.connect(timeout=10)
        device.renew_lease(1.0)
        if kind == DeviceKind.BELT:
            await device.apply(BeltOutput((100,) * len(caps.motors)))
        elif kind == DeviceKind.PILLOW:
            await device.apply(PillowOutput(speed=2))
        else:
            pulse = EmsChannelOutput(strength=10, frequency=50, intensity=50)
            await device.apply(ButterflyOutput(a=pulse, b=pulse))
        drivers.append(device)
    print("driving", flush=True)
    while True:
        for device in drivers:
            device.renew_lease(0.5)
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), "--guard" in sys.argv[3:]))
