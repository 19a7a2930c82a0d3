#!/usr/bin/env python3
"""bench/world_relay.py: a loopback SMTP relay that answers like the real ones, for bench/run.

    world_relay.py PORT [--greylist PERCENT] [--relay-limit N] [--chunking] [--name NAME]
                   [--log FILE]
    world_relay.py --proxy PORT TARGET_PORT --delay-ms MS

Accepts every letter (PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING with
--chunking), greylists PERCENT % of the recipients once (451 4.7.1, chosen by a hash of the
address, so the same ones in every run), and with --relay-limit takes at most N MAIL FROM a
second over all sessions, answering 421 4.7.0 and closing beyond it. With --name, its 250 after
a message says "queued on NAME" (so the audit can tell relays apart); with --log, it appends a
line "<unix time> <recipient>" to FILE for every message it accepts.

With --proxy it is a delaying proxy instead: every byte from either side is forwarded MS
milliseconds later (a relay MS x 2 round trip away), in order.

Listens on 127.0.0.1 only; stops on SIGTERM.
"""

import argparse
import asyncio
import signal
import socket
import time
import zlib


class Relay:
    def __init__(self, greylist, relay_limit, chunking, name=None, log=None):
        self.greylist = greylist
        self.relay_limit = relay_limit
        self.chunking = chunking
        self.seen = set()
        self.window = (0.0, 0)
        self.queued = "250 2.0.0 Ok: queued" + (f" on {name}" if name else "")
        self.log = open(log, "a", buffering=1) if log else None

    def accepted(self, rcpt):
        if self.log:
            self.log.write(f"{time.time():.6f} {rcpt}\n")

    def within_limit(self):
        if not self.relay_limit:
            return True
        start, count = self.window
        now = time.monotonic()
        if now - start >= 1.0:
            self.window = (now, 1)
            return True
        self.window = (start, count + 1)
        return count + 1 <= self.relay_limit

    def greylisted(self, rcpt):
        key = rcpt.lower()
        if zlib.crc32(key.encode()) % 100 >= self.greylist or key in self.seen:
            return False
        self.seen.add(key)
        return True

    async def session(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reply = lambda text: writer.write(text.encode() + b"\r\n")
        reply("220 127.0.0.1 ESMTP world relay")
        rcpts = 0
        last_rcpt = ""
        try:
            while True:
                if not reader._buffer:  # flush what was answered before waiting for more
                    await writer.drain()
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb == b"EHLO":
                    lines = ["127.0.0.1", "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
                    if self.chunking:
                        lines.append("CHUNKING")
                    lines.append("SIZE 52428800")
                    reply("\r\n".join(f"250-{l}" for l in lines[:-1]) + f"\r\n250 {lines[-1]}")
                elif verb == b"MAIL":
                    if not self.within_limit():
                        reply("421 4.7.0 rate limit exceeded, slow down")
                        break
                    rcpts = 0
                    reply("250 2.1.0 Ok")
                elif verb == b"RCPT":
                    rcpt = line.decode("utf-8", "replace").split("<", 1)[-1].split(">", 1)[0]
                    if self.greylist and self.greylisted(rcpt):
                        reply("451 4.7.1 Greylisted, please try again later")
                    else:
                        rcpts += 1
                        last_rcpt = rcpt
                        reply("250 2.1.5 Ok")
                elif verb == b"DATA":
                    if not rcpts:
                        reply("554 5.5.1 Error: no valid recipients")
                        continue
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    self.accepted(last_rcpt)
                    reply(self.queued)
                elif verb == b"BDAT" and self.chunking:
                    words = line.split()
                    await reader.readexactly(int(words[1]))
                    if not rcpts:
                        reply("554 5.5.1 Error: no valid recipients")
                    elif len(words) > 2 and words[2].upper() == b"LAST":
                        self.accepted(last_rcpt)
                        reply(self.queued)
                    else:
                        reply("250 2.0.0 Ok")
                elif verb == b"RSET":
                    rcpts = 0
                    reply("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    reply("221 2.0.0 Bye")
                    break
                else:
                    reply("250 2.0.0 Ok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def pipe(reader, writer, delay):
    """Forwards what `reader` gives to `writer`, each piece `delay` seconds after it came."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            at, data = await queue.get()
            if data is None:
                break
            wait = at + delay - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            queue.put_nowait((time.monotonic(), data))
    except ConnectionError:
        pass
    queue.put_nowait((time.monotonic(), None))
    try:
        await sender
    except ConnectionError:
        pass


async def proxy_session(reader, writer, target, delay):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        writer.close()
        return
    for w in (writer, up_writer):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(pipe(reader, up_writer, delay), pipe(up_reader, writer, delay))


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("target", type=int, nargs="?")
    parser.add_argument("--greylist", type=int, default=0)
    parser.add_argument("--relay-limit", type=int, default=0)
    parser.add_argument("--chunking", action="store_true")
    parser.add_argument("--proxy", action="store_true")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--name")
    parser.add_argument("--log")
    args = parser.parse_args()
    if args.proxy:
        delay = args.delay_ms / 1000.0
        handler = lambda r, w: proxy_session(r, w, args.target, delay)
    else:
        handler = Relay(args.greylist, args.relay_limit, args.chunking, args.name, args.log).session
    server = await asyncio.start_server(handler, "127.0.0.1", args.port, limit=1 << 20)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main())
