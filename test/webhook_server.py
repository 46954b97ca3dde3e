#!/usr/bin/env python3
"""A webhook receiver for the tests of the HTTP sink (HTTP/1.1, keep-alive).

It checks every request's Standard Webhooks signature (webhook-id,
webhook-timestamp, webhook-signature: v1,base64(HMAC-SHA256(key,
"id.timestamp.body")), with key the base64 after "whsec_" of --secret) and
answers by path:

  /flaky        --fail-rate of requests get a 500 or 503 (some with
                Retry-After: 0), --slow-rate are answered after --slow-seconds
                (past the sink's timeout), the rest 200
  /ok           200
  /gone         410 with a body: the sink sends those to the dead letters
  /down         503 always
  /slow         200 after --slow-seconds, always
  /hang         200 after --hang-seconds (recorded when it comes in)
  /retry-after  503 with Retry-After: 2 on a message's first request, 200 on
                the next

Each 200 is recorded (before a delay) in --log as one line
"time<TAB>path<TAB>webhook-id<TAB>key header<TAB>body"; a request whose
signature does not verify gets 401 and a line "BAD<TAB>..." instead.  The
port it listens on is written to --port-file once it is ready; with
--tls-cert and --tls-key it also serves HTTPS, on the port written after it.
"""
import argparse
import base64
import hashlib
import hmac
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
log_lock = threading.Lock()
log_file = None
seen_retry_after = set()


def record(line):
    with log_lock:
        log_file.write(line + "\n")
        log_file.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body of an answer are two writes: without
    # TCP_NODELAY the body waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def answer(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        msg_id = self.headers.get("webhook-id", "")
        ts = self.headers.get("webhook-timestamp", "")
        sig = self.headers.get("webhook-signature", "")
        key = self.headers.get("x-key", "")
        path = self.path
        signed = (msg_id + "." + ts + ".").encode() + body
        expected = base64.b64encode(hmac.new(args.key, signed, hashlib.sha256).digest()).decode()
        good = any(s.startswith("v1,") and hmac.compare_digest(s[3:], expected)
                   for s in sig.split(" "))
        if not good or abs(time.time() - int(ts or 0)) > 300:
            record("BAD\t%s\t%s\t%s\t%s" % (path, msg_id, sig, body.decode()))
            self.answer(401, b"bad signature")
            return
        line = "%.6f\t%s\t%s\t%s\t%s" % (time.time(), path, msg_id, key, body.decode())
        if path == "/flaky":
            r = random.random()
            if r < args.fail_rate:
                if r < args.fail_rate / 4:
                    self.answer(503, b"busy", {"Retry-After": "0"})
                else:
                    self.answer(500, b"internal error")
                return
            if r < args.fail_rate + args.slow_rate:
                record(line)
                time.sleep(args.slow_seconds)
                self.answer(200, b"ok, late")
                return
            record(line)
            self.answer(200, b"ok")
        elif path == "/ok":
            record(line)
            self.answer(200)
        elif path == "/gone":
            self.answer(410, b"this endpoint is gone for good")
        elif path == "/down":
            self.answer(503, b"down")
        elif path == "/slow":
            time.sleep(args.slow_seconds)
            self.answer(200)
        elif path == "/hang":
            record(line)
            time.sleep(args.hang_seconds)
            self.answer(200)
        elif path == "/retry-after":
            if msg_id not in seen_retry_after:
                seen_retry_after.add(msg_id)
                record(line.replace("\t/retry-after\t", "\t/retry-after-first\t", 1))
                self.answer(503, b"later", {"Retry-After": "2"})
            else:
                record(line)
                self.answer(200)
        else:
            self.answer(404, b"no such path")


def main():
    global args, log_file
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--fail-rate", type=float, default=0.3)
    p.add_argument("--slow-rate", type=float, default=0.01)
    p.add_argument("--slow-seconds", type=float, default=2.0)
    p.add_argument("--hang-seconds", type=float, default=120.0)
    p.add_argument("--tls-cert", help="also serve HTTPS with this certificate")
    p.add_argument("--tls-key")
    args = p.parse_args()
    s = args.secret
    args.key = base64.b64decode(s[6:]) if s.startswith("whsec_") else s.encode()
    log_file = open(args.log, "a")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ports = str(server.server_address[1])
    if args.tls_cert:
        import ssl
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        tls.socket = context.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=tls.serve_forever, daemon=True).start()
        ports += " " + str(tls.server_address[1])
    with open(args.port_file + ".tmp", "w") as f:
        f.write(ports)
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
