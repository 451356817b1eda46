"""Traceability: every built-in program cites the method word for word, and the docs map it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from programs.library import builtin_ids, get
from programs.loader import parse_program
from programs.model import parse_count

ROOT = Path(__file__).resolve().parents[2]
METHOD = ROOT / "docs" / "method" / "collar-zone-massage.txt"
"""The project's copy of the method (it must not depend on anything outside the repository)."""
GUIDE = ROOT / "docs" / "programs.md"


def normalized(text: str) -> str:
    text = text.replace("“", '"').replace("”", '"').replace("’", "'")
    return re.sub(r"\s+", " ", text).strip().lower()


@pytest.mark.parametrize("program_id", builtin_ids())
def test_every_cite_is_a_sentence_of_the_method(program_id: str) -> None:
    method = normalized(METHOD.read_text(encoding="utf-8"))
    for i, step in enumerate(get(program_id).program.steps):
        for part in step.cite.split("..."):
            passage = normalized(part).strip(" .")
            assert passage in method, f"{program_id} step {i + 1}: {passage!r}"


@pytest.mark.parametrize("program_id", builtin_ids())
def test_a_counted_step_states_the_methods_count(program_id: str) -> None:
    for i, step in enumerate(get(program_id).program.steps):
        said = re.search(r"\b(\d+)(?:-(\d+))? (?:strokes|rubs|times)\b", step.cite)
        if said is None:
            continue
        stated = (int(said.group(1)), int(said.group(2) or said.group(1)))
        assert step.method_count is not None, f"{program_id} step {i + 1}"
        assert parse_count(step.method_count) == stated
        assert step.repetitions is not None
        assert stated[0] <= step.repetitions <= stated[1]


@pytest.mark.parametrize("program_id", builtin_ids())
def test_the_guide_maps_every_step_to_the_method(program_id: str) -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    section = guide.split(f"### `{program_id}`\n", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"^\| \d+ \|", line)]
    steps = get(program_id).program.steps
    assert len(rows) == len(steps)
    for row, step in zip(rows, steps, strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == step.label
        assert cells[3] == step.describe_amount()
        assert cells[4] == step.describe_intensity()
        assert cells[5] == (f'"{step.cite}"' if step.cite else "(as the step before)")


def test_the_guides_example_is_a_valid_program() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    example = guide.split("## An example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    assert parse_program(example, source="docs/programs.md").id == "my-neck"
