"""No asyncio.wait_for in massaged's own code.

On Python 3.11 (the oldest massaged supports) wait_for can swallow a cancellation
that arrives as the awaited call completes: the cancelled task then goes on. Found
in the control client's close, where it left `massaged demo` hanging after a SIGTERM
near a session's end. asyncio.timeout does not have that flaw.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("controller", "devices", "programs", "simulator")


def test_no_package_calls_asyncio_wait_for() -> None:
    calls = re.compile(r"\bwait_for\(")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if calls.search(line.split("#", 1)[0])
    ]
    assert not found, f"asyncio.wait_for used (use asyncio.timeout): {found}"
