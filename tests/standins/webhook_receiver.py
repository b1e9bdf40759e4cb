"""Re-exported from ioc_cli.standins.webhook_receiver, the stand-in's one home (the demo uses it too)."""

from ioc_cli.standins.webhook_receiver import WebhookReceiver

__all__ = ["WebhookReceiver"]
