"""Raw MQTT PUBLISH packets, encoded by hand for the broadcaster's fast path (QoS 0, no properties)."""

from __future__ import annotations

__all__ = ["publish_packet", "remaining_length", "topic_field"]


def remaining_length(n: int) -> bytes:
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


def topic_field(topic: str, mqtt5: bool) -> bytes:
    """The topic name as a PUBLISH packet carries it (length, UTF-8), plus MQTT 5's empty properties."""
    name = topic.encode("utf-8")
    return len(name).to_bytes(2, "big") + name + (b"\x00" if mqtt5 else b"")


def publish_packet(topic: str, payload: bytes, *, retain: bool, mqtt5: bool) -> bytes:
    """A complete QoS 0 PUBLISH packet (MQTT 3.1.1, or MQTT 5 with no properties)."""
    field = topic_field(topic, mqtt5)
    return b"".join((b"\x31" if retain else b"\x30", remaining_length(len(field) + len(payload)), field, payload))
