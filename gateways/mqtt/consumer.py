"""The MQTT broker adapter (paho-mqtt 2.x, MQTT 5): a consumer with manual acks and a publisher."""

from __future__ import annotations

import itertools
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ioc_core.errors import FatalError, RetriableError
from ioc_core.settings import MqttUrl

__all__ = [
    "BrokerRefused",
    "BrokerUnavailable",
    "InboundMessage",
    "MqttBroadcaster",
    "MqttConsumer",
    "MqttPublisher",
]

log = logging.getLogger(__name__)

# Connection numbers unique in the process, so no consumer can ack a packet id of another connection.
_SESSIONS = itertools.count(1)


class BrokerUnavailable(RetriableError):
    """The broker cannot be reached (yet)."""


class BrokerRefused(FatalError):
    """The broker answered but refused us (bad credentials, not authorised): retrying will not help."""


class InboundMessage(NamedTuple):  # a tuple: created per message, and cheaper than a frozen dataclass
    """One PUBLISH as it arrived, before any parsing.

    ``session`` numbers the connection it came on: a packet id is only meaningful on its own connection,
    so an ack for an older connection must not be sent (the broker redelivers those messages instead).
    ``original_size`` is non-zero when the payload was larger than the consumer's ``max_payload``: then
    ``payload`` holds only its first bytes, so one huge message cannot hold the worker's memory.
    """

    topic: str
    payload: bytes
    mid: int
    received_at: float
    session: int
    duplicate: bool
    original_size: int = 0


RawSink = Callable[[str, bytes, int, bool], None]
# A PUBACK without reason code or properties: type 0x40, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")


class _LeanClient(paho.Client):
    """paho's client with a lean path for the QoS 1 PUBLISH packets the ingest consumes.

    For every incoming MQTT 5 PUBLISH paho builds a ``Properties`` object and an ``MQTTMessage`` and matches
    the topic against its callback trie; measured, that costs more than everything else the ingest does
    with a message. The ingest reads no publish properties, so this path skips them and hands topic, payload,
    packet id and DUP flag straight to ``raw_sink``. Everything else (QoS 0/2, MQTT 3.1.1, malformed
    packets) takes paho's own path. Topic aliases cannot occur: we never announce a Topic Alias Maximum,
    so the broker must send full topics.
    """

    raw_sink: RawSink | None = None
    # Read buffer: paho asks the socket for one byte at a time for each packet header; reading 64 KiB at
    # once and serving those calls from memory saves several system calls and a select() per message.
    _rbuf: bytes = b""
    _rpos: int = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data: bytes = super()._sock_recv(65536)
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data
            self._rbuf, self._rpos = data, 0
        start = self._rpos
        self._rpos = start + bufsize
        return self._rbuf[start : self._rpos]

    def _sock_close(self) -> None:
        # Bytes of a closed connection must never be read as the start of the next one.
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc: MQTTErrorCode = super().loop_read(max_packets)
        # select() watches the socket, not our buffer: handle every packet already read before going
        # back to it, or a complete packet could wait for the next bytes from the network.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and self._sock is not None:
            rc = super().loop_read(max_packets)
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK several QoS 1 messages in one write: paho's ``ack`` queues a packet, wakes its loop and
        makes a system call per message."""
        if mids:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._packet_queue(0x40, blob, 0, 0)

    def _handle_publish(self) -> MQTTErrorCode:
        sink = self.raw_sink
        header = self._in_packet["command"]
        if sink is None or (header & 0x06) != 0x02 or self._protocol != paho.MQTTv5 or not self._manual_ack:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        try:
            end = 2 + ((packet[0] << 8) | packet[1])
            topic = bytes(packet[2:end]).decode("utf-8")
            mid = (packet[end] << 8) | packet[end + 1]
            pos = end + 2
            length = shift = 0
            while True:  # MQTT variable byte integer: the length of the properties to skip
                byte = packet[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError("properties length is longer than four bytes")
        except (IndexError, UnicodeDecodeError, ValueError):
            return super()._handle_publish()  # paho reports the malformed packet its own way
        sink(topic, bytes(packet[pos + length :]), mid, bool(header & 0x08))
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def _new_client(url: MqttUrl, client_id: str, ca_file: Path | None, *, v5: bool = True) -> paho.Client:
    client = _LeanClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
    )
    if url.username:
        password = url.password.get_secret_value() if url.password else None
        client.username_pw_set(url.username, password)
    if url.tls:
        client.tls_set(ca_certs=str(ca_file) if ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def _refusal(reason: ReasonCode) -> str | None:
    """A CONNACK reason that retrying cannot fix, as text; None for success or transient failures."""
    if not reason.is_failure:
        return None
    if reason.value in (0x86, 0x87, 0x8C, 0x85, 0x84):  # bad credentials, not authorised, bad auth, bad id
        return str(reason)
    return None


class MqttConsumer:
    """A persistent-session, shared-subscription consumer that acknowledges only when told to.

    QoS 1 with manual acks gives at-least-once delivery: a message is acked after its batch is committed.
    The MQTT 5 *Receive Maximum* caps how many unacked messages the broker sends us, which is the
    backpressure: when the database stalls and acks stop, the broker stops sending and memory stays bounded.
    """

    def __init__(
        self,
        url: MqttUrl,
        *,
        client_id: str,
        topic_filter: str,
        on_message: Callable[[InboundMessage], None],
        share_group: str | None = None,
        receive_maximum: int = 20_000,
        session_expiry_s: int = 7 * 24 * 3600,
        ca_file: Path | None = None,
        max_payload: int | None = None,
        keep_payload: int = 4096,
    ) -> None:
        self._url = url
        self._topic = f"$share/{share_group}/{topic_filter}" if share_group else topic_filter
        self._max_payload = max_payload
        self._keep_payload = keep_payload
        self._sink = on_message
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._client = _new_client(url, client_id, ca_file)
        self._client.manual_ack_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        if isinstance(self._client, _LeanClient):
            self._client.raw_sink = self._on_raw
        self._client.on_subscribe = self._on_subscribe
        # Guards ``_session``: an ack is sent only while the session it belongs to is still the live one.
        self._lock = threading.Lock()
        self._session = -1
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._refused: str | None = None
        # Messages handed to us so far, acked or not; with acks withheld it cannot pass Receive Maximum.
        self.delivered = 0

    # paho callbacks run on paho's network thread.
    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        refusal = _refusal(reason)
        if refusal:
            self._refused = refusal
            self._connected.set()
            return
        if reason.is_failure:
            log.warning("broker %s refused the connection for now: %s", self._url, reason)
            return
        with self._lock:
            self._session = next(_SESSIONS)
        log.info("connected to %s (session %d), subscribing to %s", self._url, self._session, self._topic)
        # Subscribing here, not once after connect, brings the subscription back after any reconnect.
        client.subscribe(self._topic, qos=1)
        self._connected.set()

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._refused = f"subscription to {self._topic} refused: {failed[0]}"
        self._subscribed.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        with self._lock:
            self._session = next(_SESSIONS)
        self._subscribed.clear()
        if reason.is_failure:
            log.warning("lost the broker %s: %s; paho reconnects", self._url, reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_raw(msg.topic, bytes(msg.payload), msg.mid, bool(msg.dup))

    def _on_raw(self, topic: str, payload: bytes, mid: int, duplicate: bool) -> None:
        self.delivered += 1
        limit = self._max_payload
        if limit is not None and len(payload) > limit:
            # Cut here, on paho's thread: the batch then holds a few KiB of this message, not all of it.
            self._sink(InboundMessage(topic, payload[: self._keep_payload], mid, time.time(), self._session,
                                      duplicate, len(payload)))
            return
        self._sink(InboundMessage(topic, payload, mid, time.time(), self._session, duplicate))

    def start(self, *, wait_s: float = 10.0) -> None:
        """Connect in the background and wait for the subscription; refusals are fatal, absence is not."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        self._client.connect_async(
            self._url.host, self._url.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()
        if not self._subscribed.wait(wait_s):
            if self._refused:
                self.stop()
                raise BrokerRefused(f"broker {self._url} refused the ingest worker: {self._refused}")
            log.warning("broker %s not reachable after %.0f s; still trying", self._url, wait_s)
        elif self._refused:
            self.stop()
            raise BrokerRefused(self._refused)

    def ack(self, messages: list[InboundMessage]) -> int:
        """Acknowledge messages of the live session; returns how many were acked.

        Messages from an earlier connection are skipped: the broker will deliver them again, and the
        idempotent write drops the repeat.
        """
        with self._lock:
            session = self._session
            mids = [m.mid for m in messages if m.session == session]
            if isinstance(self._client, _LeanClient):
                self._client.ack_many(mids)
            else:
                for mid in mids:
                    self._client.ack(mid, 1)
        return len(mids)

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    def wait_subscribed(self, timeout: float) -> bool:
        """True once the broker has acknowledged the subscription (from then on nothing is missed)."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class MqttPublisher:
    """A QoS 1 publisher that blocks when too many messages are unconfirmed, so callers cannot outrun it.

    While the broker is away paho keeps unconfirmed messages and sends them again after reconnecting;
    ``publish`` then blocks once the window is full instead of growing memory.
    """

    def __init__(
        self,
        url: MqttUrl,
        client_id: str | None = None,
        qos: int = 1,
        *,
        max_inflight: int = 1000,
        ca_file: Path | None = None,
        connect_timeout_s: float = 10.0,
        mqtt5: bool = True,
    ) -> None:
        self._url = url
        self._qos = qos
        self._window = max_inflight
        # MQTT 3.1.1 is an option for load generators: paho parses MQTT 5 properties on every PUBACK.
        self._client = _new_client(url, client_id or "", ca_file, v5=mqtt5)
        self._client.max_inflight_messages_set(max_inflight)
        self._connect_timeout_s = connect_timeout_s
        self._connected = threading.Event()
        self._refused: str | None = None
        self._unconfirmed: set[int] = set()
        self._early: set[int] = set()
        self._confirmed = threading.Condition()
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self.published = 0

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            self._refused = _refusal(reason)
        else:
            self._connected.set()

    def _on_publish(
        self, _client: paho.Client, _userdata: Any, mid: int, _reason: ReasonCode, _props: Any
    ) -> None:
        with self._confirmed:
            if mid in self._unconfirmed:
                self._unconfirmed.discard(mid)
                self._confirmed.notify_all()
            else:
                # Confirmed before ``publish`` registered it.
                self._early.add(mid)

    def __enter__(self) -> MqttPublisher:
        try:
            self._client.connect(self._url.host, self._url.port, keepalive=30)
        except OSError as err:
            raise BrokerUnavailable(f"cannot reach the broker at {self._url}: {err}") from err
        self._client.loop_start()
        deadline = time.monotonic() + self._connect_timeout_s
        while not self._connected.wait(0.05):
            if self._refused or time.monotonic() > deadline:
                self._client.loop_stop()
                raise BrokerRefused(
                    f"broker {self._url} did not accept the publisher: {self._refused or 'no CONNACK'}"
                )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.flush(timeout=60.0)
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if self._qos > 0:
            with self._confirmed:
                while len(self._unconfirmed) >= self._window:
                    self._confirmed.wait(1.0)
        # Not under our lock: paho calls on_publish while holding its own message lock.
        info = self._client.publish(topic, payload, qos=self._qos, retain=retain)
        # NO_CONN means queued: paho sends it after reconnecting.
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise BrokerUnavailable(f"publish to {topic} failed: {paho.error_string(info.rc)}")
        if self._qos > 0:
            with self._confirmed:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._unconfirmed.add(info.mid)
        self.published += 1

    def flush(self, timeout: float) -> None:
        """Wait until every message published so far is confirmed by the broker."""
        deadline = time.monotonic() + timeout
        with self._confirmed:
            while self._unconfirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BrokerUnavailable(
                        f"{len(self._unconfirmed)} messages unconfirmed after {timeout:.0f} s"
                    )
                self._confirmed.wait(min(remaining, 1.0))


def _remaining_length(n: int) -> bytes:
    """MQTT's variable byte integer."""
    if n < 128:
        return bytes((n,))
    if n < 16_384:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _topic_field(topic: str, mqtt5: bool) -> bytes:
    """The topic name as a PUBLISH packet carries it (length, UTF-8), plus MQTT 5's empty properties."""
    name = topic.encode("utf-8")
    return len(name).to_bytes(2, "big") + name + (b"\x00" if mqtt5 else b"")


def publish_packet(topic: str, payload: bytes, *, retain: bool, mqtt5: bool) -> bytes:
    """A complete QoS 0 PUBLISH packet (MQTT 3.1.1, or MQTT 5 with no properties)."""
    field = _topic_field(topic, mqtt5)
    return b"".join((b"\x31" if retain else b"\x30", _remaining_length(len(field) + len(payload)), field, payload))


# A chunk of packets handed to paho as one write; small enough that paho's slicing after a partial send stays cheap.
_CHUNK_BYTES = 256 * 1024


class MqttBroadcaster:
    """A publisher that never blocks its caller, for the open feed's many small retained messages.

    ``publish_many`` turns a list of messages into QoS 0 PUBLISH packets and hands them to paho in a few
    writes: paho's own path costs a message object, locks, a wake-up write and a send per message, which is
    more than the ingest spends on an uplink. QoS 1 messages (``publish``, or ``publish_many(qos=1)``) take
    paho's path, for the few that must survive a reconnect. While the broker is away, or more than
    ``max_pending_bytes`` wait for the socket (or ``window`` QoS 1 messages for their PUBACK), messages are
    refused and the caller counts them: memory stays bounded and nothing waits on the broker. paho
    reconnects on its own. MQTT 5 by default, so that listing retained topics can ask the broker for "no
    local": the feed's own live messages are not sent back to it.
    """

    def __init__(
        self,
        url: MqttUrl,
        *,
        client_id: str,
        ca_file: Path | None = None,
        mqtt5: bool = True,
        max_pending_bytes: int = 16 * 1024 * 1024,
        window: int = 10_000,
    ) -> None:
        self._url = url
        self._mqtt5 = mqtt5
        self._client = _new_client(url, client_id, ca_file, v5=mqtt5)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(window)
        self._max_pending_bytes = max_pending_bytes
        self._topic_fields: dict[str, bytes] = {}
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._subscribed = threading.Event()
        self._sub_refused = False
        self._retained: set[str] = set()
        self._last_retained = 0.0
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            self._refused = _refusal(reason)
            if not self._refused:
                log.warning("broker %s refused the feed publisher for now: %s", self._url, reason)
            return
        log.info("feed publisher connected to %s", self._url)
        self._connected.set()

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("feed publisher lost the broker %s: %s; paho reconnects", self._url, reason)

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _props: Any
    ) -> None:
        self._sub_refused = any(r.is_failure for r in reasons)
        self._subscribed.set()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if msg.retain:
            self._retained.add(msg.topic)
            self._last_retained = time.monotonic()

    def start(self, *, wait_s: float = 10.0) -> bool:
        """Connect in the background; True once connected. A refusal is fatal, an absent broker is not."""
        self._client.connect_async(self._url.host, self._url.port, keepalive=30)
        self._client.loop_start()
        deadline = time.monotonic() + wait_s
        while not self._connected.wait(0.05):
            if self._refused:
                self.stop()
                raise BrokerRefused(f"broker {self._url} refused the feed publisher: {self._refused}")
            if time.monotonic() > deadline:
                log.warning("broker %s not reachable after %.0f s; the feed publisher keeps trying", self._url, wait_s)
                return False
        return True

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def pending(self) -> int:
        """Writes handed to paho and not yet on the socket, plus QoS 1 messages not yet confirmed."""
        return len(self._client._out_packet) + len(self._client._out_messages)

    def _backed_up(self) -> bool:
        """More than ``max_pending_bytes`` wait for the socket: the broker does not keep up."""
        queued = self._client._out_packet
        if len(queued) < 16:  # the usual case; 16 chunks of 256 KiB at most
            return False
        return sum(p["to_process"] for p in list(queued)) > self._max_pending_bytes

    def publish_many(self, messages: list[tuple[str, bytes, bool]], *, qos: int = 0) -> int:
        """Publish ``(topic, payload, retain)`` messages; returns how many were taken (all or none at QoS 0)."""
        if not messages or not self._connected.is_set() or self._backed_up():
            return 0
        if qos:
            taken = 0
            for topic, payload, retain in messages:
                if not self.publish(topic, payload, retain=retain, qos=qos):
                    break
                taken += 1
            return taken
        # publish_packet, unrolled: this loop runs for every reading the feed publishes.
        fields = self._topic_fields
        chunk: list[bytes] = []
        size = 0
        for topic, payload, retain in messages:
            field = fields.get(topic)
            if field is None:
                field = _topic_field(topic, self._mqtt5)
                if len(fields) < 200_000:
                    fields[topic] = field
            n = len(field) + len(payload)
            length = (bytes((n,)) if n < 128 else bytes((n & 0x7F | 0x80, n >> 7)) if n < 16_384
                      else _remaining_length(n))
            chunk += (b"\x31" if retain else b"\x30", length, field, payload)
            size += n
            if size >= _CHUNK_BYTES:
                self._write(b"".join(chunk))
                chunk, size = [], 0
        if chunk:
            self._write(b"".join(chunk))
        return len(messages)

    def _write(self, blob: bytes) -> None:
        # Command 0: paho writes the bytes as they are and runs no per-packet bookkeeping (a PUBLISH entry
        # would make it call on_publish and look for a message info, which raw packets do not have).
        self._client._packet_queue(0, blob, 0, 0)

    def publish(self, topic: str, payload: bytes, *, retain: bool, qos: int = 1) -> bool:
        """One message through paho's own path; False when refused (broker away, window full)."""
        if not self._connected.is_set():
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        return bool(info.rc == paho.MQTT_ERR_SUCCESS)

    def retained_topics(self, topic_filter: str, *, quiet_s: float = 1.0, timeout_s: float = 30.0) -> set[str] | None:
        """Topics under ``topic_filter`` that hold a retained message; None when the broker will not say.

        Subscribes, collects what the broker sends as retained until nothing came for ``quiet_s``, unsubscribes.
        """
        if not self._connected.is_set():
            return None
        self._retained = set()
        self._subscribed.clear()
        self._last_retained = time.monotonic()
        if self._mqtt5:
            options = SubscribeOptions(qos=0, noLocal=True)
            result, _mid = self._client.subscribe(topic_filter, options=options)
        else:
            result, _mid = self._client.subscribe(topic_filter, qos=0)
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or not self._subscribed.wait(min(timeout_s, 10.0)):
            return None
        try:
            if self._sub_refused:
                return None
            deadline = time.monotonic() + timeout_s
            while time.monotonic() - self._last_retained < quiet_s:
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.05)
            return set(self._retained)
        finally:
            self._client.unsubscribe(topic_filter)

    def flush(self, timeout: float) -> bool:
        """Wait until every write has reached the socket and every QoS 1 message is confirmed."""
        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() > deadline or not self._connected.is_set():
                return False
            time.sleep(0.01)
        return True

    def stop(self, *, flush_s: float = 5.0) -> None:
        if self._connected.is_set():
            self.flush(flush_s)
        self._client.disconnect()
        self._client.loop_stop()
