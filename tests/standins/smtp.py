"""Re-exported from ioc_cli.standins.smtp, the stand-in's one home (the demo uses it too)."""

from ioc_cli.standins.smtp import SmtpStandIn

__all__ = ["SmtpStandIn"]
