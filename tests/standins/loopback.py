"""Re-exported from ioc_cli.standins.loopback, the stand-in's one home (the demo uses it too)."""

from ioc_cli.standins.loopback import LoopbackServer, Request

__all__ = ["LoopbackServer", "Request"]
