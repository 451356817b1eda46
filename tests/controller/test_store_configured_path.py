"""[store] path of the configuration is the database of every command, not only the daemon's.

Before, ``profiles``, ``history``, ``course`` and an in-process ``run`` opened the default
database whatever the configuration said: a cap set with ``profiles set`` was not the one
the daemon's sessions read, and ``history`` showed none of the daemon's sessions.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli import main
from controller.paths import db_path
from controller.store import Store


@pytest.fixture
def configured(private_paths: Path) -> Path:
    """A configuration whose [store] path is not the default database."""
    db = private_paths / "elsewhere" / "ours.db"
    db.parent.mkdir()
    config = private_paths / "config" / "massaged" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[store]\npath = "{db}"\n')
    return db


def test_a_profile_set_goes_to_the_configured_database(configured: Path) -> None:
    assert main(["profiles", "set", "ann", "--cap", "butterfly=0.3"]) == 0
    with Store.open_for_reading(configured) as store:
        assert store.get_profile("ann").caps.butterfly == pytest.approx(0.3)
    assert not db_path().exists(), "the default database was made (or written) instead"


def test_history_reads_the_configured_database(
    configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not made yet: an empty history, as the default database not made yet is.
    assert main(["history"]) == 0
    assert "no sessions yet" in capsys.readouterr().out
    assert not configured.exists(), "reading made the database"
    args = ["run", "--simulate", "--speed", "50", "--no-display", "--well"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert "collar-zone" in out, out
    assert "completed" in out, out
    assert configured.exists()
    assert not db_path().exists(), "the in-process run wrote the default database"


def test_db_flag_still_wins_over_the_configuration(configured: Path, private_paths: Path) -> None:
    flag = private_paths / "flag.db"
    assert main(["profiles", "set", "bob", "--painful-side", "left", "--db", str(flag)]) == 0
    with Store.open_for_reading(flag) as store:
        assert store.get_profile("bob").painful_side.value == "left"
    assert not configured.exists()


def test_a_configuration_it_cannot_use_is_refused_in_one_line(
    private_paths: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = private_paths / "config" / "massaged" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[store]\npath = 12\n")
    assert main(["history"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "[store] path" in err, err
