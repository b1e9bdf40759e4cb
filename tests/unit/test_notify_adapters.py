"""The notification channel adapters against stand-ins of their receivers (loopback HTTP, a local SMTP server):
what they send, and how each answer is sorted into delivered, deferred (retry) and refused (give up)."""

from __future__ import annotations

import base64
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from gateways.local_postgres import free_port
from gateways.notify import (
    DeliveryDeferred,
    DeliveryRefused,
    EmailSender,
    Notice,
    SmsSender,
    WebhookSender,
    ZaloSender,
)
from gateways.notify.webhook import secret_key
from ioc_core.contacts import email_address, phone_number, webhook_url
from ioc_core.errors import ConfigError, Invalid
from ioc_core.settings import NotifySettings
from operations.dispatcher import RetryPolicy
from tests.standins.sms import SmsStandIn
from tests.standins.smtp import SmtpStandIn
from tests.standins.webhook_receiver import WebhookReceiver
from tests.standins.zalo import ZaloStandIn

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
AT = datetime(2026, 11, 3, 1, 30, tzinfo=UTC)
PAYLOAD = {"key": "incident:7:escalated:1", "event": "escalated", "subject": "Ngập lụt Hải Châu: báo động 2",
           "text": "Mực nước sông Hàn 2,1 m (báo động 2). Sự cố #7 chưa được xác nhận.",
           "body": "Sự cố #7 ở Hải Châu chưa được xác nhận sau 15 phút.\nThe flood incident #7 in Hai Chau is not "
                   "acknowledged.", "data": {"incident": 7, "zone": "hai-chau"}}


def notice(address: str, key: str = "incident:7:escalated:1:x", **changes: object) -> Notice:
    payload = {**PAYLOAD, **changes}
    return Notice.of(key, "escalated", address, payload)


# --- where messages may go -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "normal"), [("0905123456", "84905123456"), ("+84 905 123 456", "84905123456"),
                                             ("84905123456", "84905123456"), ("0236.3821.234", "842363821234")])
def test_vietnamese_phone_numbers_take_zalos_form(raw: str, normal: str) -> None:
    assert phone_number(raw) == normal


@pytest.mark.parametrize("raw", ["12345", "+1 415 555 0100", "0012345678", "09051234567890", ""])
def test_other_numbers_are_invalid(raw: str) -> None:
    with pytest.raises(Invalid):
        phone_number(raw)


def test_addresses_and_urls() -> None:
    assert email_address(" ops@danang.gov.vn ") == "ops@danang.gov.vn"
    for bad in ("ops", "Ops <ops@danang.gov.vn>", "a@b", "a@b.vn, c@d.vn", "a\x00b@danang.gov.vn"):
        with pytest.raises(Invalid):
            email_address(bad)
    assert webhook_url("https://hooks.example.vn/ioc") == "https://hooks.example.vn/ioc"
    for bad in ("ftp://x.vn/a", "https://user:pw@x.vn/", "http:///nohost", "https://x.vn/#frag", "http://[::1",
                "http://x.vn:port/", "https://x.vn/a b", "https://x.vn/\x00"):
        with pytest.raises(Invalid):
            webhook_url(bad)


def test_a_reference_is_the_keys_own_and_fits_every_receiver() -> None:
    first, again, other = notice("x"), notice("y"), notice("x", key="incident:8:escalated:1:x")
    assert first.reference == again.reference != other.reference
    assert len(first.reference) == 40 and first.reference.isalnum()


def test_retries_double_up_to_a_ceiling_and_respect_retry_after() -> None:
    policy = RetryPolicy(max_attempts=8, first_delay_s=10, max_delay_s=60)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    assert policy.delay(1, retry_after_s=30) == timedelta(seconds=30)
    assert policy.delay(3, retry_after_s=5) == timedelta(seconds=40)
    assert policy.delay(1, retry_after_s=10_000) == timedelta(seconds=60)


# --- settings ------------------------------------------------------------------------------------------------

def test_settings_refuse_half_configured_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value, said in [("IOC_NOTIFY_WEBHOOK_SECRET", "s3cret", "whsec_"),
                              ("IOC_NOTIFY_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"short").decode(), "bytes"),
                              ("IOC_NOTIFY_ZALO_ACCESS_TOKEN", "token", "IOC_NOTIFY_ZALO_TEMPLATE_ID"),
                              ("IOC_NOTIFY_SMTP_HOST", "mail.danang.gov.vn", "IOC_NOTIFY_SMTP_FROM"),
                              ("IOC_NOTIFY_MQTT_URL", "http://broker", "IOC_NOTIFY_MQTT_URL")]:
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(ConfigError, match=said):
                from ioc_core.settings import load
                load(NotifySettings)
    with pytest.raises(ConfigError, match="whsec_"):
        secret_key("not-a-secret")


# --- webhook ------------------------------------------------------------------------------------------------

@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET, tolerance_s=None) as server:
        yield server


def test_a_webhook_is_signed_and_its_id_is_the_same_on_every_attempt(receiver: WebhookReceiver) -> None:
    sender = WebhookSender(SECRET, timeout_s=5)
    try:
        assert sender.send(notice(receiver.url + "/hook"), AT) == "HTTP 200"
        sender.send(notice(receiver.url + "/hook"), AT + timedelta(seconds=30))  # a retry after a lost answer
    finally:
        sender.close()
    assert receiver.rejected == []
    ids = receiver.ids_received()
    assert len(ids) == 2 and ids[0] == ids[1] == f"msg_{notice('x').reference}"
    assert len(receiver.delivered) == 1  # the receiver dropped the repeat by its webhook-id
    body = receiver.delivered[ids[0]]
    assert body["type"] == "incident.escalated" and body["timestamp"] == AT.isoformat()
    assert body["data"] == PAYLOAD
    stamps = [r.headers["webhook-timestamp"] for r in receiver.received]
    assert stamps == [str(int(AT.timestamp())), str(int(AT.timestamp()) + 30)]


def test_a_webhook_signed_with_another_secret_is_refused(receiver: WebhookReceiver) -> None:
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    sender = WebhookSender(other, timeout_s=5)
    with pytest.raises(DeliveryRefused, match="401"):
        sender.send(notice(receiver.url), AT)
    assert receiver.rejected == ["no signature matches"] and receiver.delivered == {}


def test_a_stale_timestamp_is_refused_by_a_receiver_with_a_tolerance() -> None:
    with WebhookReceiver(SECRET, tolerance_s=300) as strict:
        with pytest.raises(DeliveryRefused):
            WebhookSender(SECRET).send(notice(strict.url), AT - timedelta(days=3000))
        assert strict.rejected == [f"timestamp {int((AT - timedelta(days=3000)).timestamp())} outside the tolerance"]


@pytest.mark.parametrize(("statuses", "error", "retry_after"), [
    ((503,), DeliveryDeferred, None), ((502,), DeliveryDeferred, None), ((429,), DeliveryDeferred, 1.0),
    ((408,), DeliveryDeferred, None), ((400,), DeliveryRefused, None), ((410,), DeliveryRefused, None),
    ((301,), DeliveryRefused, None)])
def test_webhook_answers_are_sorted_by_reaction(receiver: WebhookReceiver, statuses: tuple[int, ...],
                                               error: type[Exception], retry_after: float | None) -> None:
    receiver.fail_next(*statuses)
    with pytest.raises(error) as caught:
        WebhookSender(SECRET, timeout_s=5).send(notice(receiver.url), AT)
    assert str(statuses[0]) in str(caught.value)
    if isinstance(caught.value, DeliveryDeferred):
        assert caught.value.retry_after_s == retry_after


def test_no_server_is_deferred_and_a_bad_url_refused() -> None:
    sender = WebhookSender(SECRET, timeout_s=2)
    with pytest.raises(DeliveryDeferred, match="cannot reach"):
        sender.send(notice(f"http://127.0.0.1:{free_port()}/hook"), AT)
    with pytest.raises(DeliveryRefused, match="http"):
        sender.send(notice("mailto:ops@danang.gov.vn"), AT)


# --- e-mail -------------------------------------------------------------------------------------------------

@pytest.fixture
def smtp() -> Iterator[SmtpStandIn]:
    with SmtpStandIn() as server:
        yield server


def test_an_email_arrives_with_its_subject_body_and_a_message_id_from_the_key(smtp: SmtpStandIn) -> None:
    sender = EmailSender(smtp.host, smtp.port, "ioc@danang.gov.vn", timeout_s=5)
    detail = sender.send(notice("truc.ban@danang.gov.vn"), AT)
    sender.send(notice("truc.ban@danang.gov.vn"), AT)
    assert "accepted" in detail
    first, again = smtp.messages
    assert first["Subject"] == PAYLOAD["subject"] and first["To"] == "truc.ban@danang.gov.vn"
    assert first.get_content().replace("\r\n", "\n").strip() == str(PAYLOAD["body"]).strip()  # SMTP's CRLF
    assert first["Message-ID"] == again["Message-ID"] == f"<{notice('x').reference}@danang.gov.vn>"
    assert smtp.envelopes[0] == ("ioc@danang.gov.vn", ["truc.ban@danang.gov.vn"])


@pytest.mark.parametrize(("answer", "error"), [("450 mailbox busy", DeliveryDeferred),
                                               ("550 no such user", DeliveryRefused)])
def test_smtp_refusals_are_sorted_by_their_class(smtp: SmtpStandIn, answer: str, error: type[Exception]) -> None:
    smtp.refuse = answer
    with pytest.raises(error, match=answer.split()[0]):
        EmailSender(smtp.host, smtp.port, "ioc@danang.gov.vn", timeout_s=5).send(notice("a@danang.gov.vn"), AT)
    assert smtp.messages == []


def test_email_without_a_server_is_deferred_and_a_bad_address_refused() -> None:
    sender = EmailSender("127.0.0.1", free_port(), "ioc@danang.gov.vn", timeout_s=2)
    with pytest.raises(DeliveryDeferred):
        sender.send(notice("a@danang.gov.vn"), AT)
    with pytest.raises(DeliveryRefused, match="e-mail"):
        sender.send(notice("not an address"), AT)


# --- Zalo ZNS -----------------------------------------------------------------------------------------------

TEMPLATE = "7895417a7d3f9461cd2e"


@pytest.fixture
def zalo() -> Iterator[ZaloStandIn]:
    with ZaloStandIn("oa-token", {TEMPLATE: ("title", "content", "reference"),
                                  "custom": ("ten", "muc_nuoc")}) as server:
        yield server


def test_a_zns_message_fills_the_template_and_tracks_the_key(zalo: ZaloStandIn) -> None:
    detail = ZaloSender("oa-token", TEMPLATE, base_url=zalo.url, timeout_s=5).send(notice("0905 123 456"), AT)
    assert detail == f"Zalo msg_id {1:032x}"
    (sent,) = zalo.sent
    assert sent == {"phone": "84905123456", "template_id": TEMPLATE, "tracking_id": notice("x").reference,
                    "template_data": {"title": PAYLOAD["subject"], "content": PAYLOAD["text"],
                                      "reference": notice("x").reference[:30]}}


def test_a_message_may_bring_its_own_template_data(zalo: ZaloStandIn) -> None:
    custom = notice("84905123456", data={"zalo_template_data": {"ten": "Hải Châu", "muc_nuoc": 2.1}})
    ZaloSender("oa-token", "custom", base_url=zalo.url).send(custom, AT)
    assert zalo.sent[0]["template_data"] == {"ten": "Hải Châu", "muc_nuoc": "2.1"}


@pytest.mark.parametrize(("token", "template", "code"), [("wrong", TEMPLATE, -124), ("oa-token", "nope", -109),
                                                         ("oa-token", "custom", -112)])
def test_zns_errors_are_refusals_with_their_code(zalo: ZaloStandIn, token: str, template: str, code: int) -> None:
    with pytest.raises(DeliveryRefused, match=f"Zalo error {code}"):
        ZaloSender(token, template, base_url=zalo.url).send(notice("0905123456"), AT)
    assert zalo.sent == [] and zalo.errors == [code]


def test_zns_unknown_errors_and_5xx_are_deferred_and_bad_phones_never_sent(zalo: ZaloStandIn) -> None:
    sender = ZaloSender("oa-token", TEMPLATE, base_url=zalo.url)
    zalo.fail_next(502)
    with pytest.raises(DeliveryDeferred, match="502"):
        sender.send(notice("0905123456"), AT)
    zalo.fail_next(200)  # a 200 without ZNS's JSON: it may or may not have gone
    with pytest.raises(DeliveryDeferred, match="without ZNS"):
        sender.send(notice("0905123456"), AT)
    with pytest.raises(DeliveryRefused, match="phone"):
        sender.send(notice("12345"), AT)
    assert zalo.sent == []


def test_the_zalo_stand_in_answers_the_documented_shapes(zalo: ZaloStandIn) -> None:
    def post(body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(zalo.url + "/message/template", data=json.dumps(body).encode(),
                                         headers={"access_token": "oa-token", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 200
            result: dict[str, object] = json.loads(answer.read())
            return result

    bad_phone = post({"phone": "0905123456", "template_id": TEMPLATE, "template_data": {"title": "a"}})
    assert bad_phone == {"error": -108, "message": "Phone number invalid"}
    empty = post({"phone": "84905123456", "template_id": TEMPLATE, "template_data": {}})
    assert empty["error"] == -111
    ok = post({"phone": "84905123456", "template_id": TEMPLATE, "tracking_id": "abc_1",
               "template_data": {"title": "a", "content": "b", "reference": "c"}})
    assert ok["error"] == 0 and ok["message"] == "Success"
    data = ok["data"]
    assert isinstance(data, dict) and set(data) == {"msg_id", "sent_time", "sending_mode", "quota"}
    assert data["quota"] == {"dailyQuota": "500", "remainingQuota": "499"}


# --- SMS ----------------------------------------------------------------------------------------------------

@pytest.fixture
def sms() -> Iterator[SmsStandIn]:
    with SmsStandIn("sms-token") as server:
        yield server


def test_an_sms_goes_to_the_gateway_with_its_reference_and_a_repeat_is_dropped(sms: SmsStandIn) -> None:
    sender = SmsSender(sms.url + "/send", "sms-token", timeout_s=5)
    assert sender.send(notice("0905123456"), AT) == "HTTP 202, id sms-1"
    assert sender.send(notice("0905123456"), AT) == "HTTP 200, id sms-1"
    assert sms.requests == 2
    assert list(sms.messages.values()) == [{"to": "+84905123456", "text": PAYLOAD["text"],
                                            "reference": notice("x").reference}]


def test_sms_refusals_and_failures(sms: SmsStandIn) -> None:
    with pytest.raises(DeliveryRefused, match="401"):
        SmsSender(sms.url + "/send", "wrong").send(notice("0905123456"), AT)
    sms.fail_next(500)
    with pytest.raises(DeliveryDeferred, match="500"):
        SmsSender(sms.url + "/send", "sms-token").send(notice("0905123456"), AT)
    with pytest.raises(DeliveryRefused, match="phone"):
        SmsSender(sms.url + "/send", "sms-token").send(notice("not a phone"), AT)
    assert sms.messages == {}


def test_starttls_asked_of_a_server_without_it_is_deferred(smtp: SmtpStandIn) -> None:
    sender = EmailSender(smtp.host, smtp.port, "ioc@danang.gov.vn", starttls=True, timeout_s=5)
    with pytest.raises(DeliveryDeferred, match="STARTTLS"):
        sender.send(notice("a@danang.gov.vn"), AT)
    assert smtp.messages == []
