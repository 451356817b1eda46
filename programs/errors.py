"""The errors of the programs package: a program that breaks a rule, a plot that cannot be drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

from devices.errors import ConfigError

if TYPE_CHECKING:
    from programs.model import ProgramIssue


class ProgramError(ConfigError):
    """A program file is unreadable or breaks a rule; the message names file, step and field."""

    def __init__(self, message: str, *, source: str, issues: tuple[ProgramIssue, ...] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.issues = issues


class PlotError(ConfigError):
    """A plot cannot be drawn: matplotlib is missing or there is nothing to draw."""
