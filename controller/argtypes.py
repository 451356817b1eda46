"""Argument types for the command line: each names what it wants when a value does not fit.

argparse reports a type function's ValueError as "invalid <function name> value",
which leaks a private name to the user ("invalid _positive value"). These raise
ArgumentTypeError with a sentence instead, and refuse nan and inf, which float()
accepts but no time-out or speed can use.
"""

from __future__ import annotations

import argparse
import math


def number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds above zero."""
    value = number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0")
    return value


def count(text: str) -> int:
    """A whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
