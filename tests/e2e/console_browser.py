"""The helpline console as an adviser's browser uses it: headless Chromium, driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: no port, no extra package, the standard
library only). Called by console_browser.sh, which starts the console.

Usage: console_browser.py BROWSER BASE_URL DATABASE NOTICE_ID OUT_DIR PASSWORD

The campaign is French: every check reads the French console. Logs in (a wrong password first:
the login stays in its field), searches a genuine notice id, one nobody was sent and one whose
person has no e-mail (each verdict as prominent as the others, with a script), a last name typed
without accents and a postcode with a space, opens the person (the letter as sent on the first
screen, masked, then revealed), records a corrected address (the next letter appears beside the
letter as sent), reaches the cap on person pages, reads the supervisor's page; checks that pages
are refused without a login, without the CSRF token, after a flood of searches and once the
session expired. Writes a screenshot of each step into OUT_DIR.
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


def verdict_style():
    return page.evaluate(
        "(() => { const v = document.querySelector('#verdict'); const s = getComputedStyle(v);"
        " return [s.fontSize, s.fontWeight, v.getBoundingClientRect().top < innerHeight]; })()"
    )


def on_first_screen(selector):
    return page.evaluate(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " return !!e && e.getBoundingClientRect().top < innerHeight; })()"
    )


db = sqlite3.connect(database)
no_email = db.execute(
    "SELECT p.notice_id FROM people p JOIN deliveries d ON d.person_id = p.id "
    "WHERE d.state = 'no_email' ORDER BY p.id LIMIT 1").fetchone()
if not no_email:
    fail("the demo has no person without an e-mail address")
genuine_row = db.execute(
    "SELECT p.email, p.last_name FROM people p WHERE p.notice_id = ?", (notice_id,)).fetchone()
accented = db.execute(
    "SELECT last_name, postcode, count(*) FROM people WHERE last_name LIKE '%è%' "
    "GROUP BY last_name, postcode ORDER BY count(*) DESC LIMIT 1").fetchone()
if not accented:
    fail("the demo has no accented last name")
db.close()

page = Chromium()
try:
    # Nothing without a login.
    page.open("/person/1")
    check(page.path() == "/login", "a person's page without a login leads to the login page")

    page.submit(fill("#login", "alice") + fill("#password", "not the password")
                + "document.querySelector('#log-in').click();")
    check("Identifiant ou mot de passe incorrect." in page.text(), "a wrong password is refused, in French")
    check(page.evaluate("document.querySelector('#login').value") == "alice",
          "the login stays in its field after a wrong password")
    page.screenshot("login.png")

    page.submit(fill("#password", password) + "document.querySelector('#log-in').click();")
    check(page.path() == "/", "the right password opens the search page")

    typed = notice_id.lower().replace("-", "")
    page.submit(fill("#q", typed) + "document.querySelector('#search').click();")
    text = page.text()
    check("authentique : envoyé par courriel le" in text, "the notice id, typed without dashes, is genuine, sent by e-mail")
    check("(Europe/Paris)" in text, "the time is local, the zone named")
    check("Ce qu'il faut dire" in text, "a script for the adviser under the verdict")
    check(page.evaluate("document.querySelector('#q').value") == typed, "the search box keeps what was typed")
    genuine_style = verdict_style()
    search_png = page.screenshot("search.png")

    page.submit(fill("#q", "ZZZZ-ZZZZ-ZZZZ") + "document.querySelector('#search').click();")
    check("pas de chez nous" in page.text(), "a number nobody was sent is not ours")
    forged_style = verdict_style()
    check(genuine_style[:2] == forged_style[:2] and genuine_style[2] and forged_style[2],
          f"genuine and not ours are equally prominent ({genuine_style} / {forged_style})")
    page.screenshot("not_ours.png")

    page.submit(fill("#q", no_email[0]) + "document.querySelector('#search').click();")
    check("aucun courriel n'a été envoyé à cette personne (pas d'adresse)" in page.text(),
          "a person without an e-mail: the number is ours, an e-mail quoting it is not")
    check(verdict_style()[:2] == genuine_style[:2], "that verdict is as prominent as the others")
    page.screenshot("no_email.png")

    # A last name typed in capitals without its accent, the postcode with a space.
    last_name, postcode, count = accented
    typed_name = last_name.replace("è", "e").upper()
    typed_postcode = postcode[:2] + " " + postcode[2:]
    page.submit(fill("#last_name", typed_name) + fill("#postcode", typed_postcode)
                + "document.querySelector('#search-name').click();")
    text = page.text()
    check(f"au code postal {typed_postcode}" in text, f"{typed_name} at {typed_postcode} is found")
    check(str(count) in text.replace("\u00a0", ""), f"the true number of matches ({count})")
    rows = page.evaluate("document.querySelectorAll('#results tr').length - 1")
    check(rows == min(count, 20), f"{rows} rows listed, with initials, city and masked address")
    check(page.evaluate("document.querySelector('#postcode').value") == typed_postcode,
          "the postcode stays as typed")
    page.screenshot("name_search.png")

    page.open("/search?q=" + notice_id)
    page.submit("document.querySelector('#results a').click();")
    check(page.path().startswith("/person/"), "the search result opens the person's page")
    check(notice_id in page.text(), "the person's page shows the notice id")
    check(page.evaluate("document.querySelector('#q').value") == notice_id, "the person's page has the search box, filled")
    check(on_first_screen("#as-sent"), "the letter as sent is on the first screen")
    check("Historique" in page.text(), "the person's page shows the timeline")
    html = page.evaluate("document.documentElement.outerHTML")
    check(genuine_row[0] not in html and genuine_row[1] not in html,
          "the address and the last name are masked, the letter included")
    person_png = page.screenshot("person.png")
    person_path = page.path()

    page.submit("document.querySelector('#reveal').click();")
    page.evaluate("document.querySelector('#as-sent-letter').open = true")
    check(genuine_row[1] in page.text(), "the letter is shown in clear at the adviser's request")

    page.submit(fill("#email", "corrected.address@example.net")
                + "document.querySelector('#record-address').click();")
    text = page.text()
    check("L'adresse est enregistrée" in text, "a corrected address is recorded")
    check("adresse corrigée" in text, "the person's timeline shows the correction, in words")
    check(on_first_screen("#next-letter") and "Génération 2" in text,
          "the next letter, labelled, beside the letter as sent on the first screen")
    page.screenshot("next_letter.png")

    # An action whose form lost its CSRF token.
    page.submit("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());"
                + fill("#note", "no token") + "document.querySelector('#record-note').click();")
    check("ne vient pas de cette console" in page.text(), "an action without its CSRF token is refused")

    # The cap on person pages (the script set it low).
    refused = False
    for n in range(1, 12):
        page.open(f"/person/{n}")
        if "Trop de fiches ouvertes" in page.text():
            refused = True
            break
    check(refused, "person pages beyond the hourly cap are refused with a clear page")
    page.screenshot("refused.png")

    page.open("/supervisor")
    text = page.text()
    check("au-delà du plafond" in text, "the supervisor sees the adviser over the cap")
    check("Pas de chez nous" in text and "adresse corrigée" in text,
          "the supervisor sees the not-ours look-ups and the day's calls")
    page.screenshot("supervisor.png")

    # A flood of searches (the script set the limit low).
    refused = False
    for _ in range(30):
        page.open("/search?q=" + notice_id)
        if "Trop de recherches" in page.text():
            refused = True
            break
    check(refused, "a flood of searches is refused")

    # The session expires (as if the idle time had passed).
    with sqlite3.connect(database) as db:
        db.execute("UPDATE console_sessions SET expires_at = 0")
    page.open(person_path)
    check(page.path() == "/login?expired=1", "an expired session leads back to the login page")
    check("session a expiré" in page.text(), "the login page says the session expired")

    for png in (search_png, person_png):
        count = colours(png)
        check(count >= 8, f"{os.path.basename(png)} rendered ({count} colours sampled)")
finally:
    page.close()
