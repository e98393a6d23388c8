"""Delivery benchmark: a fake SMS provider answering after LATENCY_MS, N Sets against a running
phoneproof that delivers to it, and the time until every message has reached the provider.

    python3 delivery.py BASE_URL PROVIDER_PORT TOKENS_FILE N LATENCY_MS
"""

import http.server
import json
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, provider_port, tokens_file, n, latency_ms = sys.argv[1:6]
n, latency = int(n), int(latency_ms) / 1000
received = 0
lock = threading.Lock()


class Provider(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        global received
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(latency)
        with lock:
            received += 1
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(provider_port)), Provider)
server.daemon_threads = True
threading.Thread(target=server.serve_forever, daemon=True).start()

tokens = open(tokens_file).read().split()[:n]


def set_phone(i):
    body = json.dumps({"phone": f"+41 79 9{i // 10000 % 10}{i // 1000 % 10} {i // 100 % 10}{i // 10 % 10} {i % 10}0"}).encode()
    req = urllib.request.Request(
        base + "/auth/v1/users/me/phone",
        data=body,
        method="PUT",
        headers={"authorization": "Bearer " + tokens[i], "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200, r.status


start = time.monotonic()
with ThreadPoolExecutor(16) as pool:
    list(pool.map(set_phone, range(n)))
accepted = time.monotonic() - start
deadline = start + 300
while received < n and time.monotonic() < deadline:
    time.sleep(0.01)
delivered = time.monotonic() - start
print(
    f"delivery: {received}/{n} messages at {latency_ms} ms provider latency: accepted in "
    f"{accepted:.2f} s, all delivered in {delivered:.2f} s = {received / delivered:.0f} msg/s"
)
