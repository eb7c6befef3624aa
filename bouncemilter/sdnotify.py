"""systemd's readiness protocol (sd_notify), by hand: one datagram to $NOTIFY_SOCKET, no dependency.

With `Type=notify` systemd starts the units ordered after ours (Postfix) only once we sent READY=1, which
the milter does after its socket listens; RELOADING=1 / READY=1 frame a SIGHUP reload, STOPPING=1 the stop.
Without $NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send `fields` (e.g. "READY=1", "STATUS=...") to systemd; False when there is no one to tell."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError:
        return False
    return True


def reloading() -> bool:
    # systemd >= 253 wants the monotonic time with RELOADING=1 (Type=notify-reload); older ones ignore it
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
