"""A fast SMTP sink on 127.0.0.1 for the benchmarks: accepts every message and discards it.

    python bench/smtp_sink.py [--port 0] [--delay 0.02] [--count-file FILE]

Plain asyncio.Protocol (no aiosmtpd), so that it costs far less than the client it serves:
enough SMTP for smtplib and the product's client (220 greeting, EHLO advertising 8BITMIME,
SMTPUTF8, PIPELINING and SIZE, HELO, MAIL FROM, RCPT TO, DATA read until CRLF.CRLF, RSET,
NOOP, QUIT). `--delay` seconds pass before the 250 reply to the end of DATA, on the event
loop's timer (the same as an `await asyncio.sleep`), so every connection waits concurrently:
a relay that takes 20 ms per message. Pipelined commands sent during the wait are answered
after it, in order.

Run it in its own process (it must not share the GIL with what it measures). It binds the
port itself (0: any free one) and prints `listening 127.0.0.1 PORT` on stdout when ready.
Counters: the extra command `XCOUNT` answers `250 messages=M distinct=D connections=C bytes=B`
(M messages accepted, D distinct recipients among them, C connections opened, not counting
the ones that ask, B bytes of DATA); `XRESET` zeroes them. On SIGTERM or SIGINT it prints
the same figures as a last line (`count messages=…`), writes them as JSON into
`--count-file` if given, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import sys

TERMINATOR = b"\r\n.\r\n"
MAX_LINE = 4096


class Counters:
    def __init__(self) -> None:
        self.messages = 0
        self.connections = 0
        self.bytes = 0  # of the messages (DATA), accepted or not
        self.recipients: set[bytes] = set()

    def reset(self) -> None:
        self.messages = 0
        self.connections = 0
        self.bytes = 0
        self.recipients = set()

    def as_dict(self) -> dict[str, int]:
        return {"messages": self.messages, "distinct": len(self.recipients), "connections": self.connections,
                "bytes": self.bytes}

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items())


EHLO = (b"250-127.0.0.1 sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-PIPELINING\r\n"
        b"250 SIZE 104857600\r\n")


class SinkProtocol(asyncio.Protocol):
    def __init__(self, counters: Counters, delay: float) -> None:
        self.counters = counters
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.buffer = b""  # command bytes not yet a whole line, or held during a delayed reply
        self.in_data = False
        self.tail = b""  # the last bytes of the message so far: the terminator may straddle reads
        self.waiting = False  # the reply to the end of DATA is being delayed
        self.rcpts: list[bytes] = []
        self.control = False  # a connection asking for the counters is not counted as one

    # ---------------------------------------------------------------- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counters.connections += 1
        self.transport.write(b"220 127.0.0.1 ESMTP sink\r\n")  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.waiting:
            self.buffer += data
            return
        self._consume(data)

    # ---------------------------------------------------------------- SMTP

    def _consume(self, data: bytes) -> None:
        while data and self.transport is not None and not self.waiting:
            if self.in_data:
                self.counters.bytes += len(data)
                # The terminator may straddle reads: look across the seam, then in this read
                # (no copy of the read itself).
                seam = self.tail + data[:4]
                at = seam.find(TERMINATOR)
                if at >= 0:
                    rest = data[at + len(TERMINATOR) - len(self.tail):]
                else:
                    at = data.find(TERMINATOR)
                    if at < 0:
                        self.tail = (self.tail + data)[-4:] if len(data) < 4 else data[-4:]
                        return
                    rest = data[at + len(TERMINATOR):]
                self.in_data = False
                self.tail = b""
                if self.delay > 0:
                    self.waiting = True
                    self.buffer = rest
                    asyncio.get_running_loop().call_later(self.delay, self._end_of_data_delayed)
                    return
                self._accept()
                data = rest
                continue
            data = self.buffer + data
            self.buffer = b""
            while not self.in_data and not self.waiting:
                cut = data.find(b"\r\n")
                if cut < 0:
                    if len(data) > MAX_LINE:
                        self._reply(b"500 line too long\r\n")
                        data = b""
                    self.buffer = data
                    return
                line, data = data[:cut], data[cut + 2:]
                self._command(line)
                if self.transport is None:
                    return
            # now in DATA (loop round to look for its end in what is left), or waiting

    def _end_of_data_delayed(self) -> None:
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            return  # the client gave up before the reply: not accepted
        self._accept()
        pending, self.buffer = self.buffer, b""
        if pending:
            self._consume(pending)

    def _accept(self) -> None:
        self.counters.messages += 1
        self.counters.recipients.update(self.rcpts)
        self.rcpts = []
        self._reply(b"250 2.0.0 accepted\r\n")

    def _control(self) -> None:
        if not self.control:
            self.control = True
            self.counters.connections -= 1

    def _reply(self, text: bytes) -> None:
        if self.transport is not None:
            self.transport.write(text)

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._reply(EHLO)
        elif verb == b"HELO":
            self._reply(b"250 127.0.0.1 sink\r\n")
        elif verb == b"MAIL":
            self.rcpts = []
            self._reply(b"250 2.1.0 ok\r\n")
        elif verb == b"RCPT":
            address = line[line.find(b":") + 1:].strip().split(b" ", 1)[0].strip(b"<>").lower()
            self.rcpts.append(address)
            self._reply(b"250 2.1.5 ok\r\n")
        elif verb == b"DATA":
            if not self.rcpts:
                self._reply(b"503 5.5.1 no valid recipients\r\n")
                return
            self.in_data = True
            self.tail = b"\r\n"  # an empty message ends with ".\r\n" right after the DATA line
            self._reply(b"354 end data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"RSET":
            self.rcpts = []
            self._reply(b"250 2.0.0 ok\r\n")
        elif verb == b"NOOP":
            self._reply(b"250 2.0.0 ok\r\n")
        elif verb == b"QUIT":
            self._reply(b"221 2.0.0 bye\r\n")
            if self.transport is not None:
                self.transport.close()
                self.transport = None
        elif line.upper() == b"XCOUNT":
            self._control()
            self._reply(f"250 {self.counters.line()}\r\n".encode())
        elif line.upper() == b"XRESET":
            self.counters.reset()
            self.control = True  # counted before the reset: nothing to take back
            self._reply(b"250 2.0.0 reset\r\n")
        else:
            self._reply(b"502 5.5.2 command not implemented\r\n")


async def serve(port: int, delay: float, count_file: str | None) -> Counters:
    counters = Counters()
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", port), backlog=1024)
    server = await loop.create_server(lambda: SinkProtocol(counters, delay), sock=listener)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening 127.0.0.1 {listener.getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    print(f"count {counters.line()}", flush=True)
    if count_file:
        with open(count_file, "w", encoding="utf-8") as f:
            json.dump(counters.as_dict(), f)
    return counters


def query(port: int, command: str = "XCOUNT") -> dict[str, int]:
    """Ask a running sink for its counters (XCOUNT) or zero them (XRESET), over SMTP."""
    import smtplib

    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        code, reply = client.docmd(command)
    if code != 250:
        raise RuntimeError(f"sink on port {port} answered {code} {reply!r} to {command}")
    text = reply.decode()
    return {k: int(v) for k, v in (item.split("=") for item in text.split())} if "=" in text else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed when ready)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before the reply to the end of DATA")
    parser.add_argument("--count-file", help="write the counters here as JSON on exit")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.delay, args.count_file))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
