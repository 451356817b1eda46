"""docs/safety.md stays true: every test it names exists, every promise names a test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "safety.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)(?:\[[^\]`]*\])?`")
"""A named test: `tests/path/file.py::test_name` (a parameter in [...] is allowed)."""


def promise_rows(text: str) -> list[str]:
    """The rows of the promises table (the one whose first header is "#")."""
    rows: list[str] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("| # |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if in_table and not line.startswith("| ---"):
            rows.append(line)
    return rows


def test_every_named_test_exists() -> None:
    text = DOC.read_text()
    refs = TEST_REF.findall(text)
    assert len(refs) >= 40, "docs/safety.md names too few tests: was the format changed?"
    missing = []
    for path, name in sorted(set(refs)):
        file = ROOT / path
        if not file.is_file():
            missing.append(f"{path} (no such file)")
            continue
        if not re.search(rf"^\s*(async\s+)?def {name}\(", file.read_text(), re.MULTILINE):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/safety.md names tests that do not exist: {missing}"


def test_every_promise_names_its_tests() -> None:
    rows = promise_rows(DOC.read_text())
    assert len(rows) >= 14
    for row in rows:
        assert TEST_REF.search(row), f"a promise without a test: {row[:80]}"


def test_the_promises_the_project_makes_are_all_there() -> None:
    text = DOC.read_text().lower()
    for words in (
        "no output past a cap",
        "ems ramp",
        "emergency stop",
        "dead daemon or a lost link",
        "length limit",
        "heater on-time limit",
        "empty pillow",
        "stop button is final",
        "wheel is the user's word",
        "contraindications block sessions",
        "bad input changes nothing",
        "no finished history record is lost",
        "mqtt is not a safety channel",
    ):
        assert words in text, words


def test_every_fault_matrix_test_is_in_the_doc() -> None:
    matrix = (ROOT / "tests" / "reliability" / "test_fault_matrix.py").read_text()
    tests = re.findall(r"^(?:async )?def (test_\w+)\(", matrix, re.MULTILINE)
    named = {name for _, name in TEST_REF.findall(DOC.read_text())}
    missing = [t for t in tests if t not in named and t != "test_process_cells_exist"]
    assert not missing, f"fault-matrix cells missing from docs/safety.md: {missing}"


def test_the_readme_links_the_safety_page() -> None:
    assert "(docs/safety.md)" in (ROOT / "README.md").read_text()


def test_the_soak_named_in_the_doc_exists() -> None:
    assert "bench/soak.py --minutes 1" in DOC.read_text()
    assert (ROOT / "bench" / "soak.py").is_file()
