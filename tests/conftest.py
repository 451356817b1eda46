"""Shared fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

VECTORS_PATH = Path(__file__).parent / "vectors" / "vectors.json"


@pytest.fixture(scope="session")
def vectors() -> dict[str, list[dict[str, Any]]]:
    """The vendors' normative test vectors (copied from the protocol documents)."""
    data: dict[str, list[dict[str, Any]]] = json.loads(VECTORS_PATH.read_text())
    return data
