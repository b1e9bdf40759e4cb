"""paho's client with lean paths for the ingest's hot loops: the only module that touches paho's private internals.

Checked against paho-mqtt 2.1.0 and 2.2.0 (pyproject allows ``>=2.1,<3``). It relies on these private members,
which a paho release may change without notice; re-check them when raising the bound:

- ``_sock_recv(bufsize)``, ``_sock_close()`` and ``_sock``: the socket reads, overridden to read ahead;
- ``_handle_publish()``, ``_in_packet["command"]``, ``_in_packet["packet"]``, ``_protocol``, ``_manual_ack``:
  the incoming PUBLISH, overridden to skip properties for QoS 1;
- ``_packet_queue(command, packet, mid, qos)``: the outgoing queue, given whole packets (command 0 is written
  as it is, without per-packet bookkeeping);
- ``_out_packet`` (a deque of dicts with ``to_process``) and ``_out_messages``: what waits for the socket or a
  PUBACK.

``tests/integration/test_mqtt_gateway.py`` and ``tests/integration/test_feed_broadcaster.py`` run these paths
against a real Mosquitto: run them first when trying a new paho release.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

__all__ = ["LeanClient", "RawSink"]

RawSink = Callable[[str, bytes, int, bool], None]
"""Receives a QoS 1 PUBLISH as topic, payload, packet id and DUP flag."""

# A PUBACK without reason code or properties: type 0x40, remaining length 2, packet id.
_PUBACK = struct.Struct("!BBH")


class LeanClient(paho.Client):
    """paho's client with a lean path for the QoS 1 PUBLISH packets the ingest consumes, and raw writes.

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

    def write_raw(self, blob: bytes) -> None:
        """Queue complete packets (see ``packets``) to be written as they are.

        Command 0: paho writes the bytes and runs no per-packet bookkeeping (a PUBLISH entry would make it call
        on_publish and look for a message info, which raw packets do not have).
        """
        self._packet_queue(0, blob, 0, 0)

    @property
    def pending(self) -> int:
        """Writes not yet on the socket, plus QoS 1 messages not yet confirmed."""
        return len(self._out_packet) + len(self._out_messages)

    def backed_up(self, max_bytes: int) -> bool:
        """True when more than ``max_bytes`` wait for the socket: the broker does not keep up."""
        queued = self._out_packet
        if len(queued) < 16:  # the usual case; 16 chunks of 256 KiB at most
            return False
        return sum(p["to_process"] for p in list(queued)) > max_bytes

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
