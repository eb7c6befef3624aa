"""Why the milter cannot listen where it is told to, said before it starts: libmilter itself only says
"cannot opensocket"."""

from __future__ import annotations

import errno
import socket


def port_in_use(spec: str) -> str:
    """Why an inet socket cannot be listened on (in use, no such local address), or "". A unix socket has its own
    checks (a live milter's lock) in milter.serve()."""
    kind, _, rest = spec.partition(":")
    if kind not in ("inet", "inet6"):
        return ""
    port, _, host = rest.partition("@")
    family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
    host = host or ("::1" if kind == "inet6" else "127.0.0.1")
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libmilter: TIME_WAIT is no conflict
            probe.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"cannot listen on {spec}: the address is in use (another milter? ss -ltnp 'sport = :{port}')"
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {spec}: {host} is not an address of this host ({exc.strerror or exc})"
        return ""  # anything else (a privileged port, ...): libmilter's own attempt reports it
    return ""
