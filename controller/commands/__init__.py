"""One module per command-line command; each exposes ``register(subparsers)``.

A command's handler is stored as ``func`` on its parser: it takes the parsed
arguments and returns the process exit code (it may be a coroutine function).
"""
