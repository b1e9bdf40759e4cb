"""Channel adapters of the notification dispatcher: webhook, e-mail, Zalo ZNS, SMS and the public MQTT feed."""

from gateways.notify.email import EmailSender
from gateways.notify.errors import DeliveryDeferred, DeliveryError, DeliveryRefused
from gateways.notify.mqtt import MqttSender
from gateways.notify.notice import Notice, Sender
from gateways.notify.sms import SmsSender
from gateways.notify.webhook import WebhookSender
from gateways.notify.zalo import ZaloSender

__all__ = ["DeliveryDeferred", "DeliveryError", "DeliveryRefused", "EmailSender", "MqttSender", "Notice", "Sender",
           "SmsSender", "WebhookSender", "ZaloSender"]
