#!/usr/bin/env bash
# The helpline console end to end in headless Chromium: a demo campaign (its letters sent to
# files, in French, scheduled in Paris time), a supervisor, `breachmail serve` on a free loopback
# port, then console_browser.py drives the browser as an adviser on a call: log in (the login
# kept after a wrong password), the verdicts (genuine, not ours, a number whose person has no
# e-mail) equally prominent with their scripts, a last name typed without accents and a postcode
# with a space, the person's page with the letter as sent and, after a corrected address, the next
# letter, the masked letter and its reveal, the cap on person pages, the supervisor's page, and
# the refusals; with screenshots of each. Finally the correction must be in `export audit
# --events`, naming the adviser.
#
# Usage: tests/e2e/console_browser.sh [OUT_DIR]
# Needs chromium (Debian's package) and python3 on PATH; BREACHMAIL_BIN may name the binary to
# use, otherwise it is built with cargo (debug). OUT_DIR keeps the screenshots for a look.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
out="${1:-$work/out}"
mkdir -p "$out"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "console_browser: $*" >&2
    exit 1
}

browser="$(command -v chromium || command -v chromium-browser || true)"
[[ -n "$browser" ]] || fail "chromium is not installed (apt-get install -y chromium)"

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
    # breachmail refuses BREACHMAIL_* variables that are not config keys: keep it to ourselves.
    unset BREACHMAIL_BIN
else
    (cd "$repo" && cargo build --quiet --bin breachmail)
    bin="$repo/target/debug/breachmail"
fi

campaign="$work/campaign"
"$bin" -q demo "$campaign" --people 200 >/dev/null
config="$campaign/breachmail.toml"
password="the adviser's long password"
printf '%s\n' "$password" | "$bin" -q --config "$config" adviser add alice --supervisor >/dev/null

notice_id="$(python3 - "$campaign/breachmail.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
row = db.execute(
    "SELECT p.notice_id FROM people p JOIN deliveries d ON d.person_id = p.id "
    "WHERE d.state = 'sent' ORDER BY p.id LIMIT 1").fetchone()
print(row[0] if row else "")
PY
)"
[[ -n "$notice_id" ]] || fail "the demo sent no letter"

# Low limits, so that the flood of searches and the cap on person pages are reached quickly.
BREACHMAIL_CONSOLE_SEARCHES_PER_MINUTE=12 BREACHMAIL_CONSOLE_PERSON_VIEWS_PER_HOUR=8 \
    BREACHMAIL_SCHEDULE_TIMEZONE=Europe/Paris \
    "$bin" --config "$config" serve --listen 127.0.0.1:0 \
    >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
base=""
for _ in $(seq 1 100); do
    base="$(sed -n 's/^listening on \(http:\/\/.*\)$/\1/p' "$work/serve.out")"
    [[ -n "$base" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; fail "serve did not start"; }
    sleep 0.1
done
[[ -n "$base" ]] || fail "serve printed no address"

timeout 300 python3 "$repo/tests/e2e/console_browser.py" "$browser" "$base" \
    "$campaign/breachmail.db" "$notice_id" "$out" "$password" || {
    echo "--- serve log" >&2
    cat "$work/serve.log" >&2
    fail "the browser test failed"
}

"$bin" -q --config "$config" export audit --events --format csv >"$work/events.csv"
# The demo campaign is French: its audit names the event in French.
corrected="address_corrected|adresse corrigée"
grep -Eq "$corrected" "$work/events.csv" || fail "export audit --events lacks the correction"
grep -E "$corrected" "$work/events.csv" | grep -q "adviser alice" ||
    fail "the correction's event does not name the adviser"
echo "console_browser: ok: export audit --events shows the correction, naming the adviser"

for png in login search not_ours no_email name_search person next_letter refused supervisor; do
    [[ -s "$out/$png.png" ]] || fail "the screenshot $png.png is missing"
done
echo "console_browser: ok (screenshots in $out)"
