"""The daemon's web page: an aiohttp server, its JSON API, login and live socket.

Nothing is imported here: the configuration imports :mod:`controller.web.settings`
on every command line, which must not pay for aiohttp. The server is
:class:`controller.web.server.WebServer`.
"""
