"""./dev's first run: a line per phase, pip's own output in a log, and its end only on failure.

pip is replaced by a stand-in that prints what pip prints (and a warning), so
this runs in a second; the real install was checked on a fresh clone (see the
report of issue 13).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for .venv/bin/python: -c runs the real one, -m pip prints what pip prints.
if [ "$1" = "-c" ]; then exec "{real}" "$@"; fi
echo "Collecting pydantic<3,>=2.6 (from massaged==0.1.0)"
echo "  Downloading pydantic-2.12.0-py3-none-any.whl (460 kB)"
echo "WARNING: Location 'file:///nowhere/simple/pip/' is ignored" >&2
echo "Installing collected packages: pydantic, massaged"
if [ -n "${{FAKE_PIP_FAILS:-}}" ]; then
    echo "ERROR: No matching distribution found for pydantic" >&2
    exit 1
fi
echo "Successfully installed massaged-0.1.0 pydantic-2.12.0"
"""


def _project(tmp_path: Path) -> Path:
    """A project folder with ./dev, a pyproject and a .venv whose python is the stand-in."""
    project = tmp_path / "project"
    (project / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "dev", project / "dev")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    python = project / ".venv" / "bin" / "python"
    python.write_text(FAKE_PYTHON.format(real=sys.executable))
    massaged = project / ".venv" / "bin" / "massaged"
    massaged.write_text('#!/usr/bin/env bash\necho "the demo ran with $*"\n')
    for script in (python, massaged):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return project


def _dev_demo(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(project / "dev"), "demo", "--speed", "60"],
        cwd=project,
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_install_says_what_it_does_and_nothing_alarming(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _dev_demo(project)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the demo ran with demo --speed 60\n"
    lines = done.stderr.splitlines()
    assert lines[0].startswith("dev: installing massaged and its development tools")
    assert lines[1].startswith("     1/2 updating pip: done in ")
    assert lines[2].startswith("     2/2 massaged and its tools: done in ")
    assert len(lines) == 3
    for alarming in ("WARNING", "Warning", "Traceback", "!!"):
        assert alarming not in done.stderr
    # Nothing is lost: pip's whole output is in the log the first line names.
    log = (project / ".venv" / "pip-install.log").read_text()
    assert "WARNING: Location" in log
    assert "Successfully installed massaged-0.1.0" in log
    # The second run finds everything installed and says nothing.
    again = _dev_demo(project)
    assert again.returncode == 0
    assert again.stderr == ""


def test_a_failed_install_shows_the_end_of_pips_output(tmp_path: Path) -> None:
    project = _project(tmp_path)
    done = _dev_demo(project, FAKE_PIP_FAILS="1")
    assert done.returncode == 1
    assert done.stdout == ""  # the demo did not start
    assert "dev: pip failed (1/2 updating pip)" in done.stderr
    assert "ERROR: No matching distribution found for pydantic" in done.stderr
    assert not (project / ".venv" / ".massaged-installed").exists()  # tried again next time
