"""The [web] section of the configuration: where the daemon serves its page.

Bound to a loopback address unless the user opts into the LAN: ``lan = true``
is the one switch that both allows a non-loopback ``host`` and makes every
request but Stop and Emergency stop need a login (see docs/web.md).
"""

from __future__ import annotations

import ipaddress
import logging

from pydantic import BaseModel, ConfigDict, Field, model_validator

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    """True for "localhost" and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebSettings(BaseModel):
    """[web]: the page served by the daemon (phone and desktop)."""

    # Same conventions as the other sections of controller.config.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(
        default=True,
        description="Serve the web page (and its JSON API and live socket) from the daemon.",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        max_length=253,
        description="The address to listen on; anything but loopback needs lan = true.",
    )
    port: int = Field(
        default=DEFAULT_PORT,
        ge=0,
        le=65535,
        description="The TCP port; 0: any free port (the address is logged and in `status`).",
    )
    lan: bool = Field(
        default=False,
        description=(
            "Open to the LAN: a non-loopback host is allowed, and all but Stop needs the login "
            "token."
        ),
    )

    @model_validator(mode="after")
    def _lan_opt_in(self) -> WebSettings:
        """A non-loopback address only with the explicit LAN opt-in."""
        if not self.lan and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set lan = true to serve "
                "the LAN (a login token is then needed for everything but Stop)"
            )
        return self

    @property
    def login_required(self) -> bool:
        """Whether requests other than stop and emergency_stop need a login."""
        return self.lan
