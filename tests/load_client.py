"""HTTP clients in a process of their own (not sharing the server's interpreter lock), for the
load tests: `python tests/load_client.py HOST PORT METHOD AT_ONCE BODY` with a JSON list of
paths on stdin (or of [path, body, headers] for requests that differ); prints a JSON list of
[status, seconds], one per request, in order. All start together (a barrier), AT_ONCE at a time."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> None:
    host, port, method, at_once, body = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    paths = json.loads(sys.stdin.read())
    barrier = threading.Barrier(min(at_once, len(paths)))
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if method == "POST" else {}

    def one(item: str | list) -> list:
        path, data, extra = (item, body, {}) if isinstance(item, str) else item
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        connection = http.client.HTTPConnection(host, port, timeout=60)
        began = time.monotonic()
        try:
            connection.request(method, path, body=data.encode() or None, headers={**headers, **extra})
            response = connection.getresponse()
            response.read()
            return [response.status, time.monotonic() - began]
        except OSError as exc:
            return [str(exc), time.monotonic() - began]
        finally:
            connection.close()

    with ThreadPoolExecutor(at_once) as pool:
        print(json.dumps(list(pool.map(one, paths))))


if __name__ == "__main__":
    main()
