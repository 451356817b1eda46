"""The programs command line, through controller.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.cli import main
from programs.library import LIBRARY_DIR, builtin_ids, user_dir
from programs.model import program_schema
from simulator.recording import Recorder

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_list(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASSAGED_PROGRAMS_DIR", raising=False)
    assert main(["programs", "list"]) == 0
    out = capsys.readouterr().out
    for program_id in builtin_ids():
        assert program_id in out
    assert "5.2/30" in out
    # No programs of one's own yet: where to put them (the default folder) and the variable.
    assert "MASSAGED_PROGRAMS_DIR" in out
    assert str(user_dir()) in out


def test_show_prints_steps_devices_and_bars(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programs", "show", "collar-zone"]) == 0
    out = capsys.readouterr().out
    assert "collar-zone: Cervical-collar zone massage" in out
    assert "1  0:00   0:35  stroking   collar_zone  both  7 strokes × 5 s (method 7)" in out
    assert "7  4:33   4:45  vibration  collar_zone  both  12 s: 1 burst" in out
    assert "belt       belt       VB1 (preview)" in out
    assert "belt motor1 neck L" in out
    assert "pillow speed" in out
    assert "butterfly A left" in out


def test_show_resolves_painful_side_and_devices(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["programs", "show", "cervical-osteochondrosis", "--painful-side", "left"]
    assert main([*args, "--devices", "belt", "--belt-motors", "4", "--width", "40"]) == 0
    out = capsys.readouterr().out
    assert "pillow" not in out.split("\nDEVICE ", 1)[1]
    assert "healthy→right" in out
    assert "painful→left" in out
    assert "motor5" not in out
    bars = [line for line in out.splitlines() if line.startswith("  belt motor")]
    assert len(bars) == 4
    assert all(len(line.split("|")[1]) == 40 for line in bars)


def test_show_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.toml"
    path.write_text((LIBRARY_DIR / "self-massage.toml").read_text())
    assert main(["programs", "show", str(path)]) == 0
    assert str(path) in capsys.readouterr().out


def test_show_unknown_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programs", "show", "no-such-program"]) == 1
    assert "massaged: error: no program 'no-such-program'" in capsys.readouterr().err


def test_show_a_user_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (LIBRARY_DIR / "office-weekly.toml").read_text().replace('"office-weekly"', '"mine"')
    (tmp_path / "mine.toml").write_text(text)
    monkeypatch.setenv("MASSAGED_PROGRAMS_DIR", str(tmp_path))
    assert main(["programs", "show", "mine"]) == 0
    assert "mine: Weekly" in capsys.readouterr().out
    assert main(["programs", "list"]) == 0
    assert "mine " in capsys.readouterr().out


# With test_plot.py: importing matplotlib costs a worker about a second of CPU.
@pytest.mark.xdist_group("matplotlib")
def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.png"
    assert main(["programs", "plot", "self-massage", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.xdist_group("matplotlib")
def test_plot_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "rec.jsonl"
    recorder = Recorder(rec)
    recorder.record(0.0, "belt-1", "belt", "motor1", 100)
    recorder.record(2.0, "belt-1", "belt", "motor1", 0)
    recorder.close()
    out = tmp_path / "rec.png"
    args = ["programs", "plot-recording", str(rec), "--out", str(out), "--program", "collar-zone"]
    assert main(args) == 0
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    missing = ["programs", "plot-recording", str(tmp_path / "none.jsonl"), "--out", str(out)]
    assert main(missing) == 1
    assert "cannot read" in capsys.readouterr().err


def test_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text((LIBRARY_DIR / "collar-zone.toml").read_text())
    assert main(["programs", "validate", str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {good}: collar-zone (adult, 8 steps")
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("duration_s = 12", "duration_s = 20"))
    assert main(["programs", "validate", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"ok: {good}" in captured.out
    assert captured.err.strip() == (
        f"{bad}: step 7 (vibration): duration_s: 20 is more than the method's 15 s for vibration"
    )


def test_validate_every_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in LIBRARY_DIR.glob("*.toml"))
    assert main(["programs", "validate", *files]) == 0
    assert capsys.readouterr().out.count("ok: ") == len(files)


def test_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programs", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == program_schema()


def test_programs_alone_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["programs"]) == 2
    assert "validate" in capsys.readouterr().out
