"""One module per command-line command; each exposes ``register(subparsers)``.

A command's handler is stored as ``func`` on its parser: it takes the parsed
arguments and returns the process exit code (it may be a coroutine function).

controller.cli imports only the module of the command given (its words are
listed in ``controller.cli.COMMANDS``; a test holds the table to what each
``register`` adds). So a module imports at module level only what ``register``
needs (argparse, controller.argtypes, controller.output, light constants), and
its handlers import the heavy layers (pydantic models, asyncio, the store, the
session runner, the simulator) when they run: a command that fails on its
options, or prints its help, then starts in a fraction of the time.
tests/controller/test_cli_startup.py checks which modules a command loads.
"""
