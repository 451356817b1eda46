"""One JSON value from bytes a stranger sent: size, text, syntax and nesting checked first.

The control socket (one request per line) and MQTT (one request per payload)
both take JSON from outside the daemon. Decoding it here, once, means a hostile
input gets the same plain refusal on both, and never an exception the caller
did not expect: Python's json module raises RecursionError, not a decoding
error, for a value nested a few thousand levels deep, and a value nested just
below that still breaks ``repr`` and error messages further on. So nesting is
capped far below where Python would choke, at a depth no request comes near.

Pure functions: no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from controller.errors import JsonError

MAX_BYTES: Final = 64 * 1024
"""Longest JSON text decoded (a request line, an MQTT payload)."""
MAX_DEPTH: Final = 16
"""Deepest nesting of arrays and objects accepted; a request needs 3."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a valid JSON number")


def nesting(text: str) -> int:
    """How deeply arrays and objects nest in a JSON text (brackets inside strings not counted)."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def decode(data: bytes, *, limit: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in data; JsonError when it is too large, not UTF-8, not JSON or too deep."""
    if len(data) > limit:
        raise JsonError(f"too large: {len(data)} bytes (at most {limit})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JsonError(f"not UTF-8 text (byte {err.start})") from None
    # Counting brackets is cheap in C; only a text with many is scanned properly.
    if text.count("[") + text.count("{") > max_depth and nesting(text) > max_depth:
        raise JsonError(f"nested too deeply (at most {max_depth} levels)")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise JsonError(f"not valid JSON ({err.msg} at {err.pos})") from None
    except RecursionError:  # not reached after the depth check; kept as the last guard
        raise JsonError(f"nested too deeply (at most {max_depth} levels)") from None
