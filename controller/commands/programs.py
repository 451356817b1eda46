"""``massaged programs``: list, show, plot, validate programs and print their JSON schema."""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from pathlib import Path

from controller.argtypes import number
from controller.output import add_json_option, print_json, print_table
from devices.errors import ConfigError

# Not typing.TYPE_CHECKING: importing typing costs start-up time and mypy
# recognises this name on its own.
TYPE_CHECKING = False
# The program and device layers (pydantic models, the renderers) are imported by the
# handlers, when they run.
if TYPE_CHECKING:
    from typing import Final

    from devices.capabilities import Capabilities, Side
    from devices.outputs import Output
    from programs.model import Program, StepSide
    from programs.timeline import DeviceTimeline, SessionPlan

logger = logging.getLogger(__name__)

BAR_WIDTH: Final = 72
"""Columns of the text timeline in ``programs show``."""

_BLOCKS: Final = " ▁▂▃▄▅▆▇█"

PROGRAMS_DIR_ENV: Final = "MASSAGED_PROGRAMS_DIR"
"""programs.library.USER_DIR_ENV, written out for the help: the library loads the program
models (pydantic), which `programs --help` and a bad option do without;
tests/controller/test_cli_startup.py checks that the two agree."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the programs command and its subcommands."""
    parser = sub.add_parser(
        "programs",
        help="list, show, plot and validate massage programs",
        description=(
            "Massage programs: the built-ins and your own TOML files. A program is named by "
            f"its id (built-in, or <id>.toml in ${PROGRAMS_DIR_ENV}) or by the path of a file."
        ),
    )
    parser.set_defaults(func=lambda args: _help(parser))
    cmds = parser.add_subparsers(dest="programs_command", metavar="SUBCOMMAND")

    p = cmds.add_parser(
        "list",
        help="list the built-in and user programs",
        description=(
            "Every program: its id, audience, minutes (program/at most), whether it is "
            f"built in or yours (${PROGRAMS_DIR_ENV}), and its title."
        ),
    )
    add_json_option(p)
    p.set_defaults(func=cmd_list)

    p = cmds.add_parser(
        "show",
        help="the steps with their times and what each device does",
        description=(
            "A program as it would run: its steps with start times and sides, what each "
            "device does in each, and a text timeline of every output."
        ),
    )
    p.add_argument("program", metavar="ID|FILE")
    _add_render_options(p)
    p.add_argument(
        "--width", type=int, default=BAR_WIDTH, help="columns of the text timeline (default 72)"
    )
    p.set_defaults(func=cmd_show)

    p = cmds.add_parser(
        "plot",
        help="draw the rendered program as a PNG",
        description="Draw every output of the rendered program over time, as a PNG "
        "(needs matplotlib: pip install 'massaged[plot]').",
    )
    p.add_argument("program", metavar="ID|FILE")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.png")
    _add_render_options(p)
    p.set_defaults(func=cmd_plot)

    p = cmds.add_parser(
        "plot-recording",
        help="draw a simulator recording (JSON lines) as a PNG",
        description="Draw what the simulated devices did (a --record file of 'massaged run "
        "--simulate' or 'massaged simulate') as a PNG, optionally shaded by a program's steps.",
    )
    p.add_argument("recording", type=Path, metavar="RECORDING.jsonl")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.png")
    p.add_argument("--program", metavar="ID|FILE", help="shade this program's steps")
    p.add_argument(
        "--session-start",
        type=number,
        default=0.0,
        metavar="SECONDS",
        help="the recording's t at which the session started: the plot's time 0 "
        "('massaged demo' prints it; default 0)",
    )
    p.set_defaults(func=cmd_plot_recording)

    p = cmds.add_parser(
        "validate",
        help="check program files; exit 1 if any is invalid",
        description="Check program files against the schema and the safety rules; every "
        "problem is named with its file and line. Exit 1 if any file is invalid.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(func=cmd_validate)

    p = cmds.add_parser(
        "schema",
        help="print the JSON schema of a program file",
        description="Print the JSON schema of a program file (for editors that check TOML "
        "against a schema).",
    )
    p.set_defaults(func=cmd_schema)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    print("massaged: error: give a programs subcommand (listed above)", file=sys.stderr)
    return 2


def _add_render_options(p: argparse.ArgumentParser) -> None:
    from devices.capabilities import Side

    p.add_argument(
        "--painful-side",
        choices=[Side.LEFT.value, Side.RIGHT.value, Side.BOTH.value],
        help='resolve steps on the "painful"/"healthy" side (default: healthy left, painful right)',
    )
    p.add_argument(
        "--devices",
        default="belt,pillow,butterfly",
        help="preview devices to render on, comma-separated (default: belt,pillow,butterfly)",
    )
    p.add_argument(
        "--belt-motors", type=int, choices=(4, 6), default=6, help="motors of the preview belt"
    )


def _preview_devices(args: argparse.Namespace) -> dict[str, Capabilities]:
    """The default preview devices, narrowed and adjusted by the command-line options."""
    from devices.capabilities import belt_motors
    from programs.errors import ProgramError
    from programs.render import default_devices

    available = default_devices()
    wanted = [w.strip() for w in str(args.devices).split(",") if w.strip()]
    unknown = [w for w in wanted if w not in available]
    if unknown or not wanted:
        raise ProgramError(
            f"--devices: {', '.join(unknown) or 'nothing'} is not one of {', '.join(available)}",
            source="--devices",
        )
    chosen = {name: available[name] for name in wanted}
    if "belt" in chosen and args.belt_motors != 6:
        chosen["belt"] = chosen["belt"].model_copy(update={"motors": belt_motors(args.belt_motors)})
    return chosen


def _render(args: argparse.Namespace, program: Program) -> SessionPlan:
    from devices.capabilities import Side
    from programs.render import render

    side = Side(args.painful_side) if args.painful_side else None
    return render(program, _preview_devices(args), painful_side=side)


def _clock(seconds: float) -> str:
    """m:ss, or m:ss.s when the seconds are not whole."""
    minutes, rest = divmod(seconds, 60)
    text = f"{int(minutes)}:{rest:04.1f}" if round(rest, 1) % 1 else f"{int(minutes)}:{rest:02.0f}"
    return text


def cmd_list(args: argparse.Namespace) -> int:
    """Print every program: id, audience, minutes, where from, title."""
    from programs.library import USER_DIR_ENV, list_programs, user_dir
    from programs.model import fmt_number

    found, errors = list_programs()
    if args.json:
        print_json(
            [
                {
                    "id": source.program.id,
                    "title": source.program.title,
                    "audience": source.program.audience.value,
                    "duration_s": source.program.total_duration,
                    "max_duration_min": source.program.max_duration,
                    "builtin": source.builtin,
                    "path": str(source.path),
                }
                for source in found
            ]
        )
        for err in errors:
            print(f"warning: skipped {err}", file=sys.stderr)
        return 0
    rows = []
    for source in found:
        p = source.program
        minutes = f"{fmt_number(round(p.total_duration / 60, 1))}/{fmt_number(p.max_duration)}"
        rows.append(
            (p.id, p.audience.value, minutes, "built-in" if source.builtin else "user", p.title)
        )
    print_table(("ID", "AUDIENCE", "MIN", "SOURCE", "TITLE"), rows)
    if not any(not source.builtin for source in found):
        print(f"\n(your own programs: <id>.toml files in {user_dir()}, or in ${USER_DIR_ENV})")
    for err in errors:
        print(f"warning: skipped {err}", file=sys.stderr)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a program's steps with times and a text picture of every device's timeline."""
    from devices.capabilities import Side
    from programs.library import resolve
    from programs.model import fmt_number

    source = resolve(args.program)
    program = source.program
    plan = _render(args, program)
    painful = Side(args.painful_side) if args.painful_side else None
    origin = "built-in" if source.builtin else str(source.path)
    print(f"{program.id}: {program.title}")
    print(
        f"  {program.audience.value}, {_clock(program.total_duration)} "
        f"(at most {fmt_number(program.max_duration)} min), {len(program.steps)} steps, {origin}"
    )
    if program.frequency:
        print(f"  frequency: {program.frequency}")
    for line in textwrap.wrap(program.description, 96):
        print(f"  {line}")
    print("  cites:")
    for line in textwrap.wrap(program.cites, 94):
        print(f"    {line}")
    print()
    header = "# START END TECHNIQUE ZONE SIDE AMOUNT INTENSITY HEAT DEVICES LABEL"
    rows: list[tuple[str, ...]] = [tuple(header.split())]
    for span, step in zip(plan.steps, program.steps, strict=True):
        rows.append(
            (
                str(span.index + 1),
                _clock(span.start),
                _clock(span.end),
                step.technique.value,
                step.zone.value,
                _side(step.side, painful),
                step.describe_amount(),
                step.describe_intensity(),
                "yes" if step.heat else "",
                ",".join(d.value for d in step.devices) if step.devices else "all",
                span.label,
            )
        )
    print_table(rows[0], rows[1:])
    print()
    table: list[tuple[str, ...]] = [("DEVICE", "KIND", "MODEL", "CUES", "ACTIVE", "PEAK")]
    for name, timeline in plan.timelines.items():
        table.append(
            (
                name,
                timeline.capabilities.kind.value,
                timeline.capabilities.model,
                str(len(timeline.cues)),
                _clock(_active_seconds(timeline, plan.duration)),
                _peak(timeline),
            )
        )
    print_table(table[0], table[1:])
    print()
    _print_bars(plan, max(20, int(args.width)))
    return 0


def _side(side: StepSide, painful: Side | None) -> str:
    """The side as written, with healthy/painful resolved: "healthy→right"."""
    from programs.model import StepSide
    from programs.render_common import resolve_side

    if side in (StepSide.HEALTHY, StepSide.PAINFUL):
        return f"{side.value}→{resolve_side(side, painful).value}"
    return side.value


def _active_seconds(timeline: DeviceTimeline, end: float) -> float:
    """Seconds during which the device puts anything out."""
    total = 0.0
    for cue, following in zip(timeline.cues, [*timeline.cues[1:], None], strict=True):
        until = following.t if following is not None else end
        if not cue.output.is_zero:
            total += max(0.0, until - cue.t)
    return total


def _peak(timeline: DeviceTimeline) -> str:
    """The highest output a device is asked for, in its units."""
    from devices.kinds import kind_spec

    outputs = [cue.output for cue in timeline.cues]
    caps = timeline.capabilities
    spec = kind_spec(caps.kind)
    heat = any(o.heat for o in outputs)
    suffix = ", heat" if heat else ""
    peak = max((o.peak() for o in outputs), default=0)
    top = caps.kneading.max_speed if caps.kneading else spec.maximum
    return f"{spec.quantity} {peak}/{top}{suffix}"


def _channels(timeline: DeviceTimeline) -> list[tuple[str, float]]:
    """Rows of the text timeline of a device: (name, full-scale value)."""
    from devices.kinds import kind_spec, off_output
    from programs.render_butterfly import NOMINAL_MAX_STRENGTH

    caps = timeline.capabilities
    spec = kind_spec(caps.kind)
    labels = {
        f"motor{m.index}": f"motor{m.index} {m.place.value} {m.side.value[0].upper()}"
        for m in caps.motors
    }
    labels |= {
        f"output_{ch.name.lower()}": f"{ch.name} {ch.side.value}" for ch in caps.ems_channels
    }
    if spec.plot_full_scale is not None:
        full = spec.plot_full_scale
    elif caps.kneading is not None:
        full = float(caps.kneading.max_speed)
    elif spec.plot_rows:
        # EMS: full scale is what a program asks at intensity 1.0, far below the maximum.
        full = float(NOMINAL_MAX_STRENGTH)
    else:
        full = float(spec.maximum)
    rows = [(labels.get(name, name), full) for name, _ in off_output(caps).felt()]
    return rows + ([("heat", 1.0)] if caps.heater else [])


def _values(output: Output, timeline: DeviceTimeline) -> list[float]:
    """An output as the numbers of the rows _channels names."""
    heat = [float(output.heat)] if timeline.capabilities.heater else []
    return [value for _, value in output.felt()] + heat


def _print_bars(plan: SessionPlan, width: int) -> None:
    """Per-device text bars: one column per slice of the session, the height its peak output."""
    if plan.duration <= 0:
        return
    from programs.model import fmt_number

    per_col = plan.duration / width
    label_width = 26
    print(f"timeline: one column = {fmt_number(round(per_col, 1))} s; | marks a step's start")
    marks = [" "] * width
    for span in plan.steps:
        col = min(width - 1, int(span.start / per_col))
        number = str(span.index + 1)
        if all(c == " " for c in marks[col : col + len(number) + 1]):
            marks[col : col + len(number)] = list(number)
        elif marks[col] == " ":
            marks[col] = "|"
    print(" " * (label_width + 4) + "".join(marks).rstrip())
    for name, timeline in plan.timelines.items():
        rows = _channels(timeline)
        peaks = [[0.0] * width for _ in rows]
        cues = timeline.cues
        for i, cue in enumerate(cues):
            until = cues[i + 1].t if i + 1 < len(cues) else plan.duration
            if until <= cue.t:
                continue
            first = min(width - 1, int(cue.t / per_col))
            last = min(width - 1, max(first, int((until - 1e-9) / per_col)))
            for r, value in enumerate(_values(cue.output, timeline)):
                for col in range(first, last + 1):
                    peaks[r][col] = max(peaks[r][col], value)
        for (row_name, full), row in zip(rows, peaks, strict=True):
            if row_name == "heat":
                bar = "".join("=" if v > 0 else " " for v in row)
            else:
                bar = "".join(_BLOCKS[_block(v, full)] for v in row)
            print(f"  {(name + ' ' + row_name)[:label_width]:<{label_width}} |{bar}|")


def _block(value: float, full: float) -> int:
    """Index into _BLOCKS: 0 for nothing, at least 1 for anything, 8 for full scale."""
    if value <= 0 or full <= 0:
        return 0
    return max(1, min(len(_BLOCKS) - 1, round(value / full * (len(_BLOCKS) - 1))))


def cmd_plot(args: argparse.Namespace) -> int:
    """Render a program and draw it as a PNG."""
    from programs.library import resolve
    from programs.plot import plot_plan  # lazily: matplotlib is an optional dependency

    program = resolve(args.program).program
    out = plot_plan(_render(args, program), args.out)
    print(f"wrote {out}")
    return 0


def cmd_plot_recording(args: argparse.Namespace) -> int:
    """Draw a simulator recording as a PNG."""
    path: Path = args.recording
    _check_out(args.out)  # before anything is loaded, read or drawn
    from controller.recording_file import load_recording

    rows = load_recording(path)
    # The program library and the plotting only for a recording that could be read.
    from programs.plot import TimeAxis, plot_recording

    plan = None
    if args.program:
        from programs.library import resolve
        from programs.render import render

        plan = render(resolve(args.program).program)
    title = f"recording {path.name}"
    if plan is not None:
        title = f"{plan.program_id}: {plan.title} — {title}"
    axis = TimeAxis(origin=args.session_start)
    out = plot_recording(rows, args.out, plan=plan, axis=axis, title=title)
    print(f"wrote {out}")
    return 0


def _check_out(out: Path) -> None:
    """Refuse a PNG path that cannot be written, before reading or drawing anything."""
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; give a file name such as {out / 'plot.png'}")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: the folder {out.parent} does not exist")


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each file; print ok or the error, exit 1 if any is invalid."""
    from programs.errors import ProgramError
    from programs.loader import load_program
    from programs.model import fmt_number

    bad = 0
    for path in args.files:
        try:
            program = load_program(path)
        except ProgramError as err:
            bad += 1
            print(str(err), file=sys.stderr)
            continue
        print(
            f"ok: {path}: {program.id} ({program.audience.value}, {len(program.steps)} steps, "
            f"{_clock(program.total_duration)} of at most {fmt_number(program.max_duration)} min)"
        )
    return 1 if bad else 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema of a program file."""
    from programs.loader import schema_text

    print(schema_text(), end="")
    return 0
