"""Re-exported from ioc_cli.standins.sms, the stand-in's one home (the demo uses it too)."""

from ioc_cli.standins.sms import SmsStandIn

__all__ = ["SmsStandIn"]
