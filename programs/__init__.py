"""Massage programs as validated data, and their rendering onto devices.

The public surface is ``__all__`` below (docs/library.md): find or load a
program, render it onto devices as a session plan, plot it. Names are imported
on first use, so ``import programs`` costs nothing until one is used.
"""

from __future__ import annotations

from devices._lazy import lazy_names

# Not typing.TYPE_CHECKING: importing the package must stay free (mypy knows this name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from programs.errors import ProgramError
    from programs.library import ProgramSource, builtin_ids, list_programs
    from programs.library import resolve as find_program
    from programs.loader import load_program, parse_program
    from programs.model import Program
    from programs.plot import plot_plan, plot_recording
    from programs.render import render as render_program
    from programs.timeline import Cue, DeviceTimeline, SessionPlan, StepSpan

__all__ = [
    "Cue",
    "DeviceTimeline",
    "Program",
    "ProgramError",
    "ProgramSource",
    "SessionPlan",
    "StepSpan",
    "builtin_ids",
    "find_program",
    "list_programs",
    "load_program",
    "parse_program",
    "plot_plan",
    "plot_recording",
    "render_program",
]

# Public name -> (module, name there). render and resolve get clearer names here, and
# "render" would be shadowed by the submodule programs.render once that is imported.
_LAZY: dict[str, tuple[str, str]] = {
    "ProgramSource": ("programs.library", "ProgramSource"),
    "builtin_ids": ("programs.library", "builtin_ids"),
    "find_program": ("programs.library", "resolve"),
    "list_programs": ("programs.library", "list_programs"),
    "load_program": ("programs.loader", "load_program"),
    "parse_program": ("programs.loader", "parse_program"),
    "Program": ("programs.model", "Program"),
    "ProgramError": ("programs.errors", "ProgramError"),
    "plot_plan": ("programs.plot", "plot_plan"),
    "plot_recording": ("programs.plot", "plot_recording"),
    "render_program": ("programs.render", "render"),
    "Cue": ("programs.timeline", "Cue"),
    "DeviceTimeline": ("programs.timeline", "DeviceTimeline"),
    "SessionPlan": ("programs.timeline", "SessionPlan"),
    "StepSpan": ("programs.timeline", "StepSpan"),
}

__getattr__, __dir__ = lazy_names(__name__, globals(), __all__, _LAZY)
