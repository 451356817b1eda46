"""The built-in programs (programs/library/*.toml) and the user's own program directory.

A program is found by its id: first among the built-ins, then as ``<id>.toml`` in
the user's program folder: ``$MASSAGED_PROGRAMS_DIR``, by default ``programs/`` in
massaged's configuration folder (``~/.config/massaged/programs``). A built-in
cannot be shadowed, so a session named "collar-zone" is always the shipped one.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from programs.errors import ProgramError
from programs.ids import SLUG_PATTERN

TYPE_CHECKING = False
if TYPE_CHECKING:
    from programs.model import Program

logger = logging.getLogger(__name__)

LIBRARY_DIR: Final = Path(__file__).with_name("library")
"""Where the built-in program files live."""

USER_DIR_ENV: Final = "MASSAGED_PROGRAMS_DIR"
"""Environment variable naming a directory of the user's own program files."""


@dataclass(frozen=True, slots=True)
class ProgramSource:
    """A program and the file it came from."""

    program: Program
    path: Path
    builtin: bool


def user_dir() -> Path:
    """The user's program folder: $MASSAGED_PROGRAMS_DIR, else programs/ in the configuration
    folder (which need not exist yet: the web page's editor creates it on the first save)."""
    value = os.environ.get(USER_DIR_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    # controller.paths.config_dir()'s rule, restated: programs/ sits below controller/ and
    # cannot import it (tests/programs/test_library.py checks that the two agree).
    config = os.environ.get("MASSAGED_CONFIG_DIR", "").strip()
    if config:
        return Path(config).expanduser() / "programs"
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "massaged" / "programs"


def builtin_paths() -> dict[str, Path]:
    """Every built-in program id and its file, sorted by id."""
    return {p.stem: p for p in sorted(LIBRARY_DIR.glob("*.toml"))}


def builtin_ids() -> list[str]:
    """The ids of the built-in programs."""
    return list(builtin_paths())


def _load(path: Path) -> Program:
    """Read and check one program file.

    The loader (pydantic, the plan checks) is imported here, where a program is read:
    an unknown or malformed id is refused without it.
    """
    from programs.loader import load_program

    return load_program(path)


@functools.cache
def _load_builtin(path: Path) -> Program:
    """Built-ins never change while running, so each is parsed once."""
    return _load(path)


def _check_id(program: Program, path: Path) -> None:
    """A program found by id must carry that id, or lookups would surprise."""
    if program.id != path.stem:
        raise ProgramError(
            f"{path}: id: {program.id!r} does not match the file name; "
            f"name the file {program.id}.toml or set id = {path.stem!r}",
            source=str(path),
        )


def get(program_id: str) -> ProgramSource:
    """The program with this id, built-in or from the user's directory."""
    if not re.match(SLUG_PATTERN, program_id):
        # An id is a slug: never a path that would reach outside the program folders.
        raise ProgramError(
            f"{program_id!r} is not a program id (lower-case letters, digits and '-')",
            source=program_id,
        )
    builtins = builtin_paths()
    if program_id in builtins:
        path = builtins[program_id]
        return ProgramSource(_load_builtin(path), path, builtin=True)
    directory = user_dir()
    path = directory / f"{program_id}.toml"
    if path.is_file():
        program = _load(path)
        _check_id(program, path)
        return ProgramSource(program, path, builtin=False)
    raise ProgramError(
        f"no program {program_id!r} among the built-ins ({', '.join(builtins)}) or in "
        f"{directory} (your own programs' folder, ${USER_DIR_ENV})",
        source=program_id,
    )


def resolve(ref: str) -> ProgramSource:
    """A program given by id or by the path of a TOML file."""
    path = Path(ref).expanduser()
    if ref.endswith(".toml") or os.sep in ref or path.is_file():
        return ProgramSource(_load(path), path, builtin=False)
    return get(ref)


def list_programs() -> tuple[list[ProgramSource], list[ProgramError]]:
    """Every built-in and user program, and the errors of user files that failed to load."""
    found = [ProgramSource(_load_builtin(p), p, builtin=True) for p in builtin_paths().values()]
    errors: list[ProgramError] = []
    directory = user_dir()
    if not directory.is_dir():
        if directory.exists() or os.environ.get(USER_DIR_ENV, "").strip():
            # Named by the user, or a file where the folder should be: say so. The default
            # folder not made yet is simply no programs of one's own.
            logger.warning("$%s=%s is not a directory", USER_DIR_ENV, directory)
        return found, errors
    taken = {source.program.id for source in found}
    for path in sorted(directory.glob("*.toml")):
        try:
            program = _load(path)
            _check_id(program, path)
        except ProgramError as err:
            errors.append(err)
            continue
        if program.id in taken:
            errors.append(
                ProgramError(
                    f"{path}: id: {program.id!r} is a built-in program's id; choose another",
                    source=str(path),
                )
            )
            continue
        found.append(ProgramSource(program, path, builtin=False))
    return found, errors
