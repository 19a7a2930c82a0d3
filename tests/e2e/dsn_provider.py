#!/usr/bin/env python3
"""tests/e2e/dsn_provider.py: a person's mail provider on loopback, for tests/e2e/postfix_dsn.sh.

    dsn_provider.py PORT LOG [--greylist-seconds N]

The MX a relay hands letters to. It answers each recipient by the first word of its local part,
as providers do:

    refuse-...    550 5.1.1 <addr>: Recipient address rejected: User unknown (at RCPT TO)
    greylist-...  451 4.7.1 <addr>: Recipient address rejected: Greylisted, try again in N
                  seconds (for N seconds after its first try), then accepted
    anyone else   accepted: 250 2.0.0 Ok: queued as <ID>

It offers PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES and no DSN, like most providers'
MX: the relay then reports `Action: relayed` itself. Every accepted letter adds a line
"<recipient> <queue id>" to LOG. Listens on 127.0.0.1 only; stops on SIGTERM.
"""

import argparse
import asyncio
import itertools
import signal
import time


class Provider:
    def __init__(self, log, greylist_seconds):
        self.log = log
        self.greylist_seconds = greylist_seconds
        self.first_try = {}
        self.ids = itertools.count(1)

    def answer(self, rcpt):
        local = rcpt.split("@", 1)[0].lower()
        if local.startswith("refuse-"):
            return f"550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
        if local.startswith("greylist-"):
            first = self.first_try.setdefault(rcpt.lower(), time.monotonic())
            left = self.greylist_seconds - (time.monotonic() - first)
            if left > 0:
                return (
                    f"451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, "
                    f"try again in {int(left) + 1} seconds"
                )
        return None

    async def session(self, reader, writer):
        reply = lambda text: writer.write(text.encode() + b"\r\n")
        reply("220 mx.people.test ESMTP provider")
        rcpts = []
        try:
            while True:
                await writer.drain()
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    lines = ["mx.people.test", "PIPELINING", "8BITMIME", "SMTPUTF8",
                             "ENHANCEDSTATUSCODES", "SIZE 52428800"]
                    reply("\r\n".join(f"250-{l}" for l in lines[:-1]) + f"\r\n250 {lines[-1]}")
                elif verb == b"MAIL":
                    rcpts = []
                    reply("250 2.1.0 Ok")
                elif verb == b"RCPT":
                    rcpt = line.decode("utf-8", "replace").split("<", 1)[-1].split(">", 1)[0]
                    refusal = self.answer(rcpt)
                    if refusal:
                        reply(refusal)
                    else:
                        rcpts.append(rcpt)
                        reply("250 2.1.5 Ok")
                elif verb == b"DATA":
                    if not rcpts:
                        reply("554 5.5.1 Error: no valid recipients")
                        continue
                    reply("354 End data with <CR><LF>.<CR><LF>")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    queue_id = f"4P{next(self.ids):08X}"
                    with open(self.log, "a", encoding="utf-8") as log:
                        for rcpt in rcpts:
                            log.write(f"{rcpt} {queue_id}\n")
                    reply(f"250 2.0.0 Ok: queued as {queue_id}")
                    rcpts = []
                elif verb == b"RSET":
                    rcpts = []
                    reply("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    reply("221 2.0.0 Bye")
                    break
                else:
                    reply("502 5.5.2 Error: command not recognized")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("--greylist-seconds", type=float, default=8.0)
    args = parser.parse_args()
    provider = Provider(args.log, args.greylist_seconds)
    server = await asyncio.start_server(provider.session, "127.0.0.1", args.port, limit=1 << 20)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop


if __name__ == "__main__":
    asyncio.run(main())
