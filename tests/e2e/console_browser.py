"""The helpline console as an adviser's browser uses it: headless Chromium, driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: no port, no extra package, the standard
library only). Called by console_browser.sh, which starts the console.

Usage: console_browser.py BROWSER BASE_URL DATABASE NOTICE_ID OUT_DIR PASSWORD

Logs in (a wrong password first), searches the notice id, opens the person, records a corrected
address; checks that pages are refused without a login, without the CSRF token, after a flood of
searches and once the session expired; writes search.png and person.png into OUT_DIR.
"""

import base64
import fcntl
import json
import os
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib

browser, base, database, notice_id, out_dir, password = sys.argv[1:7]


def fail(message):
    sys.exit(f"console_browser: {message}")


class Chromium:
    """One headless browser and one page, spoken to as JSON messages separated by NUL bytes on
    file descriptors 3 (to the browser) and 4 (from it)."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="console-browser-")
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Out of the way of 3 and 4 before the child moves them there.
        child_read = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_write = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def place_pipes():
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", "--window-size=1200,1400", "about:blank",
            ],
            pass_fds=(3, 4),
            preexec_fn=place_pipes,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(out_dir, "chromium.log"), "wb"),
        )
        os.close(child_read)
        os.close(child_write)
        self.buffer = b""
        self.next_id = 0
        self.events = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1200, "height": 1400, "deviceScaleFactor": 1, "mobile": False},
            session=True,
        )

    def read_message(self, deadline):
        while b"\0" not in self.buffer:
            if time.monotonic() > deadline:
                fail("the browser stopped answering")
            chunk = os.read(self.from_browser, 65536)
            if not chunk:
                fail("the browser closed its pipe (see chromium.log)")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, session=False):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self.read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    fail(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for_load(self):
        deadline = time.monotonic() + 60
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == "Page.loadEventFired":
                    del self.events[: i + 1]
                    return
            self.events.append(self.read_message(deadline))

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True
        )
        return result.get("result", {}).get("value")

    def open(self, path):
        self.events.clear()
        self.call("Page.navigate", {"url": base + path}, session=True)
        self.wait_for_load()

    def submit(self, script):
        """Runs a script that submits a form, and waits for the next page."""
        self.events.clear()
        self.evaluate(script)
        self.wait_for_load()

    def text(self):
        return self.evaluate("document.body.innerText") or ""

    def path(self):
        return self.evaluate("location.pathname + location.search") or ""

    def screenshot(self, name):
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path = os.path.join(out_dir, name)
        with open(path, "wb") as png:
            png.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            self.call("Browser.close")
        except SystemExit:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def fill(selector, value):
    return f"document.querySelector({json.dumps(selector)}).value = {json.dumps(value)};"


def colours(path):
    """Distinct colours in a PNG (8-bit RGB or RGBA, not interlaced), decoded with zlib alone:
    a blank or failed render is one colour."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    if depth != 8 or interlace != 0 or colour_type not in (2, 6):
        fail(f"unexpected PNG format {header}")
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    seen = set()
    offset = 0
    for _ in range(height):
        kind = raw[offset]
        line = bytearray(raw[offset + 1:offset + 1 + stride])
        offset += 1 + stride
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            upper_left = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                p = left + up - upper_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - upper_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
                line[i] = (line[i] + pred) & 0xFF
        for i in range(0, stride, channels * 8):
            seen.add(bytes(line[i:i + 3]))
        previous = line
    return len(seen)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"console_browser: ok: {message}")


page = Chromium()
try:
    # Nothing without a login.
    page.open("/person/1")
    check(page.path() == "/login", "a person's page without a login leads to the login page")

    page.submit(fill("#login", "alice") + fill("#password", "not the password")
                + "document.querySelector('#log-in').click();")
    check("Wrong login or password." in page.text(), "a wrong password is refused")

    page.submit(fill("#login", "alice") + fill("#password", password)
                + "document.querySelector('#log-in').click();")
    check(page.path() == "/", "the right password opens the search page")

    page.submit(fill("#q", notice_id.lower().replace("-", ""))
                + "document.querySelector('#search').click();")
    check("genuine" in page.text(), "the notice id, typed without dashes, is genuine")
    search_png = page.screenshot("search.png")

    page.submit("document.querySelector('#results a').click();")
    check(page.path().startswith("/person/"), "the search result opens the person's page")
    check(notice_id in page.text(), "the person's page shows the notice id")
    check("Timeline" in page.text(), "the person's page shows the timeline")
    person_png = page.screenshot("person.png")
    person_path = page.path()

    page.submit(fill("#email", "corrected.address@example.net")
                + "document.querySelector('#record-address').click();")
    check("The address is recorded" in page.text(), "a corrected address is recorded")
    check("address_corrected" in page.text(), "the person's timeline shows the correction")
    check("pending (generation 2)" in page.text(), "the letter is pending again, generation 2")

    # An action whose form lost its CSRF token.
    page.submit("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());"
                + fill("#note", "no token") + "document.querySelector('#record-note').click();")
    check("did not come from this console" in page.text(), "an action without its CSRF token is refused")

    # A flood of searches (the script set the limit low).
    refused = False
    for _ in range(30):
        page.open("/search?q=" + notice_id)
        if "Too many searches" in page.text():
            refused = True
            break
    check(refused, "a flood of searches is refused")

    # The session expires (as if the idle time had passed).
    with sqlite3.connect(database) as db:
        db.execute("UPDATE console_sessions SET expires_at = 0")
    page.open(person_path)
    check(page.path() == "/login?expired=1", "an expired session leads back to the login page")
    check("session has expired" in page.text(), "the login page says the session expired")

    for png in (search_png, person_png):
        count = colours(png)
        check(count >= 8, f"{os.path.basename(png)} rendered ({count} colours sampled)")
finally:
    page.close()
