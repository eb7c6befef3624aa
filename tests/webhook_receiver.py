"""A webhook receiver for the tests: a real HTTP server on loopback that records every POST."""

from __future__ import annotations

import http.server
import json
import threading


class Receiver:
    """Records every POST as (headers, body); answers `status` (or 422 for an address in `refuse`)."""

    def __init__(self, port: int = 0) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.status = 204
        self.refuse: set[str] = set()  # addresses answered 422 whatever `status` says
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.posts.append((dict(self.headers), body))
                self.send_response(422 if json.loads(body)["address"] in outer.refuse else outer.status)
                if outer.status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(b) for _, b in self.posts]
