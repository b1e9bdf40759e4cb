"""Re-exported from ioc_cli.standins.zalo, the stand-in's one home (the demo uses it too)."""

from ioc_cli.standins.zalo import ZaloStandIn

__all__ = ["ZaloStandIn"]
