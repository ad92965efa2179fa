#!/usr/bin/env python3
"""The JWKS server of the jwks-refresh benchmark workload (standard library).

    python3 jwks_server.py PORT ROOT CERT KEY LOG

Serves GET /NAME.json from ROOT/NAME.json over HTTPS on 127.0.0.1:PORT
with the certificate CERT and its key KEY (tokens.py makes them, signed by
a CA of the run), reading the file afresh on every request, so that
replacing it (write a temporary file, rename it over) changes what the next
fetch gets.  Every request appends "UNIX_SECONDS PATH STATUS" to LOG: the
harness counts keygated's fetches there.  Any other path, or a file that is
not there, is a 404; GET / is a 200 with an empty body (the harness's
readiness probe).
"""

import http.server
import os
import re
import ssl
import sys
import time

NAME = re.compile(r"^/([A-Za-z0-9_-]+\.json)$")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body, status = b"", 200
        m = NAME.match(self.path)
        if m:
            try:
                with open(os.path.join(self.server.root, m.group(1)),
                          "rb") as f:
                    body = f.read()
            except OSError:
                status = 404
        elif self.path != "/":
            status = 404
        with open(self.server.log, "a") as f:
            f.write("%.3f %s %d\n" % (time.time(), self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    if len(sys.argv) != 6:
        sys.exit("usage: jwks_server.py PORT ROOT CERT KEY LOG")
    port, root, cert, key, log = sys.argv[1:]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    srv.daemon_threads = True
    srv.root, srv.log = root, log
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
