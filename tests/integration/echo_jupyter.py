"""A stand-in for a session's Jupyter server that tells what reached it (the local launcher
runs it as NBPLANE_SESSION_COMMAND, with Jupyter's arguments and JUPYTER_TOKEN): it writes
the file Jupyter writes once it listens, answers ``api/status`` to its token, ``answer``
with a redirect to its own address, cookies and a service worker scope, and anything else with
the method, path, headers and body it got, as JSON."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

options = dict(arg.lstrip("-").split("=", 1) for arg in sys.argv[1:] if "=" in arg)
BASE = options["ServerApp.base_url"]
TOKEN = os.environ["JUPYTER_TOKEN"]
PORT = int(options["ServerApp.port"])


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status: int, body: dict[str, object], *headers: tuple[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (("Content-Type", "application/json"), *headers):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path == f"{BASE}api/status":
            ok = self.headers.get("Authorization") == f"token {TOKEN}"
            self.answer(200 if ok else 403, {"last_activity": "2024-01-01T00:00:00Z"})
        elif self.path == f"{BASE}answer":
            here = f"http://127.0.0.1:{PORT}"
            self.answer(
                302,
                {},
                ("Location", f"{here}{BASE}lab"),
                ("Set-Cookie", f"_xsrf=1; Path={BASE}"),
                ("Set-Cookie", "wide=1; Path=/; Domain=127.0.0.1"),
                ("Set-Cookie", f"scoped=1; Path={BASE}lab"),
                ("Set-Cookie", "nbplane_token=forged; Path=/"),
                ("Service-Worker-Allowed", "/"),
            )
        else:
            self.answer(
                200,
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": body,
                },
            )

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Echo)
runtime = os.environ["JUPYTER_RUNTIME_DIR"]
with open(os.path.join(runtime, f"jpserver-{os.getpid()}.json"), "w") as info:
    json.dump({"port": PORT, "base_url": BASE}, info)
server.serve_forever()
