"""Subscribe to the IOC open data feed and print what arrives: readings, device status, zone summaries.

    pip install "paho-mqtt>=2,<3"
    python subscriber.py --port 1884 --username dev-… --password …   # a public broker on this machine
    python subscriber.py --topic 'ioc/v1/+/water_level/#'       # only water levels, the whole city
    python subscriber.py --host mqtt.example.org --port 8883 --tls --username dev-1234 --password '...'

Retained messages come first: the latest reading of every public device, its status and each zone's
summary. Then live readings follow as the sensors report. Credentials: POST /api/v1/mqtt/credentials.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def resolve_senml(pack: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RFC 8428 resolution: every record with its full name and absolute time."""
    out = []
    base_name, base_time = "", 0.0
    for record in pack:
        base_name = record.get("bn", base_name)
        base_time = record.get("bt", base_time)
        resolved = {k: v for k, v in record.items() if k not in ("bn", "bt", "n", "t")}
        resolved["n"] = base_name + record.get("n", "")
        resolved["t"] = base_time + record.get("t", 0.0)
        out.append(resolved)
    return out


def describe(topic: str, payload: bytes) -> str:
    levels = topic.split("/")
    if not payload:
        return f"{topic}: cleared (the device or zone left the feed)"
    data = json.loads(payload)
    if levels[-1] == "_summary":
        counts = data["devices"]
        values = ", ".join(f"{kv['aggregate']} {kv['metric']} {kv['value']:.2f} {kv['unit']}"
                           for kv in data["key_values"])
        return (f"zone {data['name']}: {counts['reporting']}/{counts['total']} devices reporting, "
                f"{data['uplinks_last_hour']} uplinks in the last hour{'; ' + values if values else ''}")
    if levels[-2] == "_status":
        return f"status {data['name']} ({data['dev_eui']}): {data['health']} [{data['event']}]"
    records = resolve_senml(data)
    device = {r["n"].rsplit(":", 1)[1]: r.get("vs", r.get("v")) for r in records}
    when = datetime.fromtimestamp(records[0]["t"], UTC).isoformat(timespec="seconds")
    measured = ", ".join(f"{r['n'].rsplit(':', 1)[1]}={r['v']} {r['u']}" for r in records
                         if "v" in r and r["u"] not in ("lat", "lon"))
    return f"{when} {device['name']} ({device['kind']}, {device['zone_name']}): {measured}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1884, help="the public broker's developer listener")
    parser.add_argument("--tls", action="store_true", help="TLS with the system's CA certificates")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--topic", default="ioc/v1/#")
    parser.add_argument("--count", type=int, default=0, help="stop after this many messages (0: never)")
    args = parser.parse_args()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if args.username:
        client.username_pw_set(args.username, args.password)
    if args.tls:
        client.tls_set()
    seen = 0

    def on_connect(client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            sys.exit(f"the broker refused us: {reason}")
        client.subscribe(args.topic, qos=1)  # here, so a reconnect subscribes again

    def on_message(client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal seen
        print(("[retained] " if msg.retain else "") + describe(msg.topic, bytes(msg.payload)), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            client.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port, keepalive=60)
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()


if __name__ == "__main__":
    main()
