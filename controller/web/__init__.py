"""The daemon's web page: an aiohttp server, its JSON API, login and live socket.

Nothing heavy is imported here: the configuration imports :mod:`controller.web.settings`
on every command line, which must not pay for aiohttp. The server is
:class:`controller.web.server.WebServer`.
"""

from pathlib import Path
from typing import Final

STATIC_DIR: Final = Path(__file__).with_name("static")
"""The page's files (written by the front end; shipped as package data)."""
