"""What the command line prints: JSON for scripts, tables sized to their content, and questions.

Every listing command prints through here, so ``--json`` means the same thing
everywhere (indented JSON on stdout, nothing else there) and every table lines
up however long an address or a program id is. A question asked on a terminal
goes through :func:`ask`, which refuses at once, naming the flag that answers
it, when there is no terminal to ask on (a script, systemd, ``</dev/null``).
"""

from __future__ import annotations

import argparse
import sys

from controller.errors import NoTerminalError

# Not typing.TYPE_CHECKING: every command imports this module, and typing costs
# start-up time (mypy recognises this name on its own).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, TextIO


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """The --json option of a listing command."""
    parser.add_argument(
        "--json", action="store_true", help="print JSON (for scripts) instead of a table"
    )


def print_json(data: Any, *, out: TextIO | None = None) -> None:
    """data as indented JSON on stdout; dates, paths and the like as their text."""
    import json  # here: a command that prints no JSON starts without it

    stream = out if out is not None else sys.stdout
    stream.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()
) -> list[str]:
    """The lines of a table whose columns are as wide as their widest cell.

    right lists the columns aligned to the right (numbers). Trailing blanks are
    cut, so the last column may be as long as it likes.
    """
    cells = [[str(c) for c in header], *([("" if c is None else str(c)) for c in r] for r in rows)]
    columns = max(len(r) for r in cells)
    widths = [max((len(r[i]) for r in cells if i < len(r)), default=0) for i in range(columns)]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return lines


def format_time(seconds: float) -> str:
    """Seconds as m:ss."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def print_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[int] = ()
) -> None:
    """Print format_table's lines on stdout."""
    for line in format_table(header, rows, right=right):
        print(line)


def interactive(stream: TextIO | None = None) -> bool:
    """True when stream (default stdin) is a terminal someone can answer on."""
    stream = stream if stream is not None else sys.stdin
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed or replaced stdin
        return False


def ask(prompt: str, *, answered_by: str, stdin: TextIO | None = None) -> str:
    """The answer typed on the terminal, stripped.

    answered_by says what answers the question without a terminal (a flag, an
    argument); NoTerminalError naming it when stdin is not a terminal or ends
    (Ctrl-D) before an answer.
    """
    stream = stdin if stdin is not None else sys.stdin
    if not interactive(stream):
        raise NoTerminalError(f"cannot ask {prompt.strip()!r}: no terminal; {answered_by}")
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = stream.readline()
    if not line:
        raise NoTerminalError(f"no answer to {prompt.strip()!r} (end of input); {answered_by}")
    return line.strip()


def silence_stdout() -> None:
    """Send the rest of stdout to /dev/null: its reader went away (``| head``).

    The way the Python documentation gives for SIGPIPE: the descriptor itself
    is replaced, so neither a later print nor the flush at exit raises again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real descriptor (a test's capture)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def say(text: str, *, out: TextIO | None = None) -> None:
    """Print a line now; once the reader has gone, the rest is dropped quietly.

    For output written while something else goes on (a session's lines): a
    closed pipe must neither stop the session nor log a traceback per line.
    """
    stream = out if out is not None else sys.stdout
    try:
        stream.write(text + "\n")
        stream.flush()
    except BrokenPipeError:
        if stream is sys.stdout:
            silence_stdout()
