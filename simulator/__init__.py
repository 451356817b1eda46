"""Firmware-level simulations of every device, served on real endpoints.

The public surface is ``__all__`` below (docs/library.md): serve simulated
devices in this process (:func:`serve`) or in a child process
(:class:`SimulatorProcess`), and read what they physically did
(:func:`read_recording`). Names are imported on first use, so ``import
simulator`` costs nothing until one is used.
"""

from __future__ import annotations

from devices._lazy import lazy_names

# Not typing.TYPE_CHECKING: importing the package must stay free (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from simulator.errors import RadioError
    from simulator.fleet import DEFAULT_SPECS, DeviceSpec, Fleet, parse_spec
    from simulator.in_process import Simulator, serve
    from simulator.process import SimulatorProcess
    from simulator.recording import Recorder, read_recording
    from simulator.served import ServedDevice

__all__ = [
    "DEFAULT_SPECS",
    "DeviceSpec",
    "Fleet",
    "RadioError",
    "Recorder",
    "ServedDevice",
    "Simulator",
    "SimulatorProcess",
    "parse_spec",
    "read_recording",
    "serve",
]

_LAZY: dict[str, str] = {
    "RadioError": "simulator.errors",
    "DEFAULT_SPECS": "simulator.fleet",
    "DeviceSpec": "simulator.fleet",
    "Fleet": "simulator.fleet",
    "parse_spec": "simulator.fleet",
    "Simulator": "simulator.in_process",
    "serve": "simulator.in_process",
    "SimulatorProcess": "simulator.process",
    "Recorder": "simulator.recording",
    "read_recording": "simulator.recording",
    "ServedDevice": "simulator.served",
}
"""Public name -> the module that defines it, imported on first use."""

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
