#!/usr/bin/env bash
# The report as a browser shows it: builds a small demo campaign, writes `report --html` for it
# as a French campaign and as an English one, has headless Chromium take a screenshot and dump
# the DOM of each, and checks that each page rendered in its language (a PNG with more than one
# colour; the lang, the incident ref and the reconciliation in that language in the DOM). The
# French page must hold no English word (tests/e2e/english_words.txt) outside what it quotes as
# received or as a code (`<code>`, the letter's `<pre>`), and its reconciliation must add up to
# the rows of the import file.
#
# Usage: tests/e2e/report_screenshot.sh [OUT_DIR]
# Needs chromium (Debian's package) and python3 on PATH; BREACHMAIL_BIN may name the binary to
# use, otherwise it is built with cargo (debug). OUT_DIR keeps the PNGs and the DOMs for a look
# (report-fr.*, report-en.*).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
out="${1:-$work/out}"
mkdir -p "$out"
profile="$(mktemp -d)"
trap 'rm -rf "$work" "$profile"' EXIT

browser="$(command -v chromium || command -v chromium-browser || true)"
if [[ -z "$browser" ]]; then
    echo "report_screenshot: chromium is not installed (apt-get install -y chromium)" >&2
    exit 1
fi

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
    # breachmail refuses BREACHMAIL_* variables that are not config keys: keep it to ourselves.
    unset BREACHMAIL_BIN
else
    (cd "$repo" && cargo build --quiet --bin breachmail)
    bin="$repo/target/debug/breachmail"
fi

campaign="$work/campaign"
"$bin" -q demo "$campaign" --people 50 >/dev/null
incident_ref="$(sed -n 's/^ref = "\(.*\)"$/\1/p' "$campaign/breachmail.toml" | head -n 1)"

# The same isolation for every run: a throwaway profile, nothing fetched in the background.
chrome=("$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
    --disable-background-networking --disable-component-update --disable-sync
    --user-data-dir="$profile" --window-size=1200,1600)

fail() {
    echo "report_screenshot: $*" >&2
    exit 1
}

# render LANGUAGE RECONCILIATION HEADING: the report of the campaign set to LANGUAGE, its
# screenshot and DOM; the DOM must hold the reconciliation and a heading in that language.
render() {
    local language="$1" reconciliation="$2" heading="$3"
    local page="$out/report-$language"
    BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE="$language" \
        "$bin" -q --config "$campaign/breachmail.toml" report --html "$page.html" >/dev/null
    timeout 120 "${chrome[@]}" --screenshot="$page.png" "file://$page.html" \
        >"$work/chromium-screenshot.log" 2>&1 || {
        cat "$work/chromium-screenshot.log" >&2
        exit 1
    }
    timeout 120 "${chrome[@]}" --dump-dom "file://$page.html" >"$page.dom.html" \
        2>"$work/chromium-dom.log" || {
        cat "$work/chromium-dom.log" >&2
        exit 1
    }
    [[ -s "$page.png" ]] || fail "no screenshot at $page.png"
    grep -q "<html lang=\"$language\">" "$page.dom.html" || fail "$language: the page is not lang=$language"
    grep -q -- "$incident_ref" "$page.dom.html" || fail "$language: the DOM lacks the incident ref $incident_ref"
    grep -q "$reconciliation" "$page.dom.html" || fail "$language: the DOM lacks \"$reconciliation\""
    grep -q "$heading" "$page.dom.html" || fail "$language: the DOM lacks the heading \"$heading\""
    grep -q "<svg" "$page.dom.html" || fail "$language: the DOM lacks the charts"
    # Decode the PNG with zlib alone (no imaging library needed) and count distinct pixel
    # colours: a blank or failed render is a single colour.
    python3 - "$page.png" <<'PY'
import struct, sys, zlib

path = sys.argv[1]
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"report_screenshot: {path} is not a PNG")
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
    sys.exit(f"report_screenshot: unexpected PNG format {header}")
channels = 3 if colour_type == 2 else 4
raw = zlib.decompress(idat)
stride = width * channels
previous = bytearray(stride)
colours = set()
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
    for i in range(0, stride, channels * 4):
        colours.add(bytes(line[i:i + 3]))
    previous = line
if len(colours) < 8:
    sys.exit(f"report_screenshot: the screenshot is (nearly) blank: {len(colours)} colours")
print(f"report_screenshot: {path}: {width}x{height} PNG, {len(colours)} distinct colours")
PY
}

render fr "rapprochement.*: concordant" "Où en est chaque lettre"
render en "reconciliation: ok" "Where every letter stands"

# The French page as a reader sees it: no English word, and sums that add up.
python3 - "$out/report-fr.dom.html" "$repo/tests/e2e/english_words.txt" "$campaign/people.csv" <<'PY'
import csv, html, re, sys

page, word_list, people_csv = sys.argv[1], sys.argv[2], sys.argv[3]
# The import file's rows as a CSV reader counts them (a quoted field may hold a line break).
with open(people_csv, newline="", encoding="utf-8") as f:
    rows = sum(1 for _ in csv.reader(f)) - 1
dom = open(page, encoding="utf-8").read()
# What the page quotes rather than says: codes, relays' replies, the letter (in its own
# language), the style sheet.
said = re.sub(r"<(style|code|pre)\b.*?</\1>", " ", dom, flags=re.S | re.I)
text = html.unescape(re.sub(r"<[^>]+>", " ", said))
english = {
    w.strip().lower()
    for w in open(word_list, encoding="utf-8")
    if w.strip() and not w.startswith("#")
}
found = sorted({w for w in re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text) if w.lower() in english})
if found:
    sys.exit(f"report_screenshot: English words in the French report: {', '.join(found)}")
# import : concordant, 50 lignes en 1 import = 47 personnes + 0 ligne ... + 3 lignes refusées
number = r"(\d[\d\u202f]*)"
flat = " ".join(text.split())
imported = re.search(
    rf"import\s*: concordant, {number} lignes? en {number} imports? = {number} personnes? \+ {number} lignes? [^+]*\+ {number} lignes? refusées? à l'import",
    flat,
)
if not imported:
    sys.exit("report_screenshot: the French report has no import reconciliation that adds up")
as_int = lambda s: int(s.replace("\u202f", ""))
total, _, people, known, refused = map(as_int, imported.groups())
if total != rows or people + known + refused != rows:
    sys.exit(f"report_screenshot: {rows} rows in the import file, the report says {imported.group(0)}")
states = re.search(rf"rapprochement\s*: concordant, {number} personnes? = ([^.]*?)(?: Fichier| fichier|$)", flat)
if not states:
    sys.exit("report_screenshot: the French report has no reconciliation of the letters' states")
terms = [as_int(t) for t in re.findall(rf"{number} [a-zé']", states.group(2))]
if as_int(states.group(1)) != people or sum(terms) != people:
    sys.exit(f"report_screenshot: the states do not add up to {people} people: {states.group(0)}")
print(f"report_screenshot: French report: no English word; {rows} rows = {people} people + {known} + {refused} refused; states add up")
PY

echo "report_screenshot: ok (French and English: $out/report-fr.*, $out/report-en.*)"
