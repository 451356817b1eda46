"""The host guard: a small process that ends a frozen or dead daemon's BLE links.

Whatever drives devices starts it (``async with guarded():``); see
``controller.guard.process`` for why and how.
"""

from controller.guard.client import BEAT_EVERY_S, STALL_AFTER_S, HostGuard, guarded

__all__ = ["BEAT_EVERY_S", "STALL_AFTER_S", "HostGuard", "guarded"]
