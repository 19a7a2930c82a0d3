#!/usr/bin/env bash
# Past the relay, end to end: a real Postfix relays the letters to a person's provider on
# loopback and reports each letter's fate with delivery status notifications (RFC 3461).
# Proves that:
#   - `send` hands the letters to Postfix (Debian's defaults: STARTTLS with the self-signed
#     "snakeoil" certificate) with NOTIFY=SUCCESS,FAILURE,DELAY and ENVID, since Postfix offers
#     DSN; Postfix relays them to the provider (tests/e2e/dsn_provider.py), which accepts some,
#     greylists one for a while and refuses one;
#   - Postfix's notifications come back to the VERP addresses, into the bounce maildir:
#     `Action: relayed` with the provider's 250 reply, `Action: delayed` (delay_warning_time is
#     short here) with the greylisting reply, `Action: failed` with the refusal;
#   - `bounces` makes the accepted letters `delivered` with the provider's server, reply and
#     time in the audit, the refused one `bounced`, the greylisted one first `sent` with a
#     "still at the relay" note, then `delivered` once its notification comes; reading the
#     maildir again changes nothing;
#   - `status --json` (states.delivered, past_the_relay with the provider's waits), the audit,
#     `lookup` and the French report show the three levels.
#
# Postfix runs as an instance of its own in a temp dir (config, queue, data, maildirs, log),
# smtpd on 127.0.0.1 on a free port; the provider too. Nothing of the system's /etc/postfix is
# read or changed. Both are stopped and the temp dir removed on exit. Any mismatch fails the
# script (exit 1) with the Postfix log; it never skips.
#
# Usage: tests/e2e/postfix_dsn.sh   (as root: apt-get install postfix ssl-cert python3)
# BREACHMAIL_BIN may name the binary to use, otherwise the debug binary is built with cargo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/e2e/lib/postfix.sh
source "$repo/tests/e2e/lib/postfix.sh"

log() { printf 'postfix_dsn: %s\n' "$*" >&2; }

[[ "$(id -u)" == 0 ]] || {
    log "must run as root (it starts a Postfix instance)"
    exit 1
}
for tool in /usr/sbin/postfix /usr/sbin/postmap python3; do
    command -v "$tool" >/dev/null || {
        log "$tool is missing: apt-get install postfix python3"
        exit 1
    }
done

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
else
    (cd "$repo" && cargo build --quiet --bin breachmail)
    bin="$repo/target/debug/breachmail"
fi
# breachmail refuses BREACHMAIL_* variables that are not config keys: start from none of them.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BREACHMAIL_' || true)

work="$(mktemp -d /tmp/breachmail-dsn.XXXXXX)"
# Postfix's daemons and the virtual agent run as the postfix user: they must reach their files.
chmod 0755 "$work"
pf="$work/postfix"    # config_directory
queue="$work/queue"   # queue_directory
data="$work/data"     # data_directory
mail="$work/mail"     # virtual_mailbox_base: the bounce maildir
maillog="$work/maillog"
accepted="$work/provider.log"
campaign="$work/campaign"
mkdir -p "$pf" "$queue" "$data" "$mail"
started=no
provider_pid=""

cleanup() {
    local status=$?
    if [[ "$started" == yes ]]; then
        /usr/sbin/postfix -c "$pf" stop >/dev/null 2>&1 || true
        local pid
        pid="$(tr -dc '0-9' <"$queue/pid/master.pid" 2>/dev/null || true)"
        for _ in $(seq 100); do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    if [[ -n "$provider_pid" ]]; then
        kill "$provider_pid" 2>/dev/null || true
        wait "$provider_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

fail() {
    log "FAILED: $*"
    if [[ -f "$maillog" ]]; then
        echo "----- Postfix log ($maillog) -----" >&2
        cat "$maillog" >&2
        echo "----- end of the Postfix log -----" >&2
    fi
    if [[ -d "$mail" ]]; then
        echo "----- bounce maildir -----" >&2
        (cd "$mail" && find . -type f | sort) >&2
    fi
    exit 1
}

bm() {
    "$bin" --config "$campaign/breachmail.toml" "$@"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- the provider -----------------------------------------------------------------------------

provider_port="$(free_port 2925)"
[[ -n "$provider_port" ]] || fail "no free port in 2925-3024 for the provider"
# Greylisting long enough for Postfix to send its delay notice first, short enough for a test.
python3 "$repo/tests/e2e/dsn_provider.py" "$provider_port" "$accepted" --greylist-seconds 15 &
provider_pid=$!
for _ in $(seq 100); do
    listening "$provider_port" && break
    sleep 0.1
done
listening "$provider_port" || fail "the provider does not listen on 127.0.0.1:$provider_port"

# --- the Postfix instance ---------------------------------------------------------------------

port="$(free_port 2525)"
[[ -n "$port" ]] || fail "no free port in 2525-2624 for Postfix"
uid="$(id -u postfix)"
gid="$(id -g postfix)"

# Debian's main.cf as the package installs it (main.cf.debian, then main.cf.tls since ssl-cert's
# snakeoil key exists): STARTTLS offered with the self-signed certificate, DSN offered as always.
# Then what an operator sets for this instance: paths, port, where people.test mail goes, and
# delay_warning_time (Postfix's default, 0h, sends no delay notice at all).
debian_main_cf "$pf" "$queue" "$data" "$maillog" "$work" postfix-dsn relay.e2e.test || fail "Postfix is not installed as the test needs"
cat >>"$pf/main.cf" <<EOF
mynetworks_style = host
mynetworks = 127.0.0.0/8
local_transport = error:no local delivery in the test
default_transport = error:not a test domain
alias_maps =
alias_database =
# The people's provider: people.test goes to its MX on loopback.
relay_domains = people.test
transport_maps = hash:$pf/transport
# The bounce domain: every VERP address into one maildir.
virtual_mailbox_domains = bounces.test
virtual_mailbox_maps = hash:$pf/vmailbox
virtual_mailbox_base = $mail
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
# A delay notice after 2 seconds in the queue, and retries every second or two.
delay_warning_time = 2s
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
EOF

cat >"$pf/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
EOF

printf '@bounces.test bounces/\n' >"$pf/vmailbox"
printf 'people.test smtp:[127.0.0.1]:%s\n' "$provider_port" >"$pf/transport"
/usr/sbin/postmap -c "$pf" "hash:$pf/vmailbox" || fail "postmap vmailbox"
/usr/sbin/postmap -c "$pf" "hash:$pf/transport" || fail "postmap transport"
chown "$uid:$gid" "$mail" "$data"

/usr/sbin/postfix -c "$pf" check >"$work/postfix-check.log" 2>&1 || {
    cat "$work/postfix-check.log" >&2
    fail "postfix check"
}
/usr/sbin/postfix -c "$pf" start >"$work/postfix-start.log" 2>&1 || {
    cat "$work/postfix-start.log" >&2
    fail "postfix start"
}
started=yes
for _ in $(seq 150); do
    listening "$port" && break
    sleep 0.2
done
listening "$port" || fail "Postfix does not listen on 127.0.0.1:$port"
log "Postfix on 127.0.0.1:$port relays people.test to the provider on 127.0.0.1:$provider_port"

# --- helpers ----------------------------------------------------------------------------------

notices() { # ACTION: how many notifications in the bounce maildir report it
    grep -l "^Action: $1" "$mail/bounces"/new/* "$mail/bounces"/cur/* 2>/dev/null | wc -l
}

# wait_for DESCRIPTION COMMAND...: poll every 0.2 s, up to 90 s.
wait_for() {
    local what="$1"
    shift
    for _ in $(seq 450); do
        if "$@"; then
            return 0
        fi
        sleep 0.2
    done
    fail "timed out after 90 s waiting for: $what"
}

# json EXPRESSION: evaluates a Python expression over `status --json` (as `s`).
status_json() {
    bm -q status --json >"$work/status.json" 2>"$work/status.err" || {
        cat "$work/status.err" >&2
        fail "status --json"
    }
}
json() {
    python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print($1)" "$work/status.json"
}

# ref<TAB>state<TAB>notifications asked<TAB>delivered_by<TAB>reply<TAB>at?, sorted by ref, from
# the audit export (JSONL: the machine format, the same keys and codes in every language).
audit() {
    bm -q export audit --format jsonl --out "$work/audit.jsonl" >/dev/null 2>"$work/audit.err" || {
        cat "$work/audit.err" >&2
        fail "export audit"
    }
    python3 - "$work/audit.jsonl" <<'EOF'
import json, sys
rows = sorted((json.loads(line) for line in open(sys.argv[1]) if line.strip()), key=lambda r: r["ref"])
for r in rows:
    reply = (r["delivered_reply"] or "").split(" as ")[0]
    print("\t".join([r["ref"], r["state"], str(r["delivery_notifications"]).lower(),
                     r["delivered_by"] or "", reply, "at" if r["delivered_at"] else "-"]))
EOF
}

expect_audit() { # EXPECTED lines
    local actual
    actual="$(audit)"
    [[ "$actual" == "$1" ]] || {
        printf 'expected:\n%s\nactual:\n%s\n' "$1" "$actual" >&2
        fail "the audit export does not show the expected states"
    }
}

events_of() { # REF: that person's event kinds, space-separated, from the events export
    bm -q export audit --events --format jsonl --out "$work/events.jsonl" >/dev/null 2>&1 ||
        fail "export audit --events"
    python3 - "$work/events.jsonl" "$1" <<'EOF'
import json, sys
events = (json.loads(line) for line in open(sys.argv[1]) if line.strip())
print(" ".join(e["kind"] for e in events if e["ref"] == sys.argv[2]))
EOF
}

# --- the campaign -----------------------------------------------------------------------------

"$bin" -q init "$campaign" >/dev/null || fail "breachmail init"
export BREACHMAIL_SMTP_URL="smtp://127.0.0.1:$port"
export BREACHMAIL_SENDER_BOUNCE_DOMAIN="bounces.test"
export BREACHMAIL_RATE_PER_SECOND=0

{
    echo "ref,email,civility,first_name,last_name,language,exposed,identifier"
    for who in anne:anne bruno:bruno bea:greylist-bea carl:refuse-carl; do
        printf '%s,%s@people.test,Mme,Élodie,Lefèvre,fr,name;email;postal;identifier,1234567A4821\n' \
            "${who%%:*}" "${who#*:}"
    done
} >"$work/people.csv"
bm -q import "$work/people.csv" || fail "import"

# 1. send: Postfix takes all four (over STARTTLS, its certificate unverified on loopback).
bm send 2>"$work/send.err" || {
    cat "$work/send.err" >&2
    fail "send"
}
grep -q "the relay offers delivery status notifications: asking for them" "$work/send.err" ||
    fail "send did not find DSN offered by Postfix: $(cat "$work/send.err")"
status_json
[[ "$(json 's["states"]["sent"]')" == 4 ]] || fail "after send: $(json 's["states"]')"
[[ "$(json 's["past_the_relay"]["still_at_relay"]')" == 4 ]] ||
    fail "after send, 4 letters should wait at the relay: $(json 's["past_the_relay"]')"

# 2. Postfix's notifications: anne and bruno relayed, carl refused, bea greylisted (delayed).
first_notices() {
    [[ "$(notices relayed)" -ge 2 && "$(notices failed)" == 1 && "$(notices delayed)" == 1 ]]
}
wait_for "2 relayed, 1 failed and 1 delayed notification" first_notices
[[ "$(notices relayed)" == 2 ]] || fail "bea's greylisting ended before the first reading"
grep -q "^Original-Envelope-Id: " "$mail/bounces"/new/* ||
    fail "Postfix's notifications quote no envelope id: ENVID was not sent"
grep -l "^Action: delayed" "$mail/bounces"/new/* | xargs grep -q "greylist-bea@people.test" ||
    fail "the delay notice is not about bea"
log "Postfix reported: 2 relayed, 1 failed, 1 delayed"

bm bounces "$mail/bounces" || fail "bounces (first reading)"
expect_audit "$(printf '%s\n' \
    "anne	delivered	true	127.0.0.1	250 2.0.0 Ok: queued	at" \
    "bea	sent	true			-" \
    "bruno	delivered	true	127.0.0.1	250 2.0.0 Ok: queued	at" \
    "carl	bounced	true			-")"
[[ "$(events_of bea)" == "imported claimed sent delayed" ]] ||
    fail "bea should carry a 'still at the relay' note: $(events_of bea)"
grep -q "still at the relay: 4.7.1 451 4.7.1 .*Greylisted" "$work/events.jsonl" ||
    fail "the delay note lacks the provider's reason"
status_json
[[ "$(json 's["past_the_relay"]["still_at_relay"]')" == 1 ]] ||
    fail "bea should still be at the relay: $(json 's["past_the_relay"]')"
[[ "$(json 's["past_the_relay"]["providers"][0]["domain"]')" == people.test ]] ||
    fail "per provider: $(json 's["past_the_relay"]["providers"]')"

# 3. The greylisting ends: Postfix relays bea's letter and says so.
three_relayed() { [[ "$(notices relayed)" == 3 ]]; }
wait_for "bea's letter relayed once the greylisting ended" three_relayed
grep -q "^greylist-bea@people.test " "$accepted" || fail "the provider never accepted bea's letter"
bm bounces "$mail/bounces" || fail "bounces (second reading)"
expect_audit "$(printf '%s\n' \
    "anne	delivered	true	127.0.0.1	250 2.0.0 Ok: queued	at" \
    "bea	delivered	true	127.0.0.1	250 2.0.0 Ok: queued	at" \
    "bruno	delivered	true	127.0.0.1	250 2.0.0 Ok: queued	at" \
    "carl	bounced	true			-")"
[[ "$(events_of bea)" == "imported claimed sent delayed delivered" ]] ||
    fail "bea's timeline: $(events_of bea)"

# 4. Reading the same maildir again changes nothing.
cp "$work/events.jsonl" "$work/events-before.jsonl"
bm -q bounces "$mail/bounces" >/dev/null || fail "bounces (third reading)"
events_of bea >/dev/null
cmp -s "$work/events.jsonl" "$work/events-before.jsonl" ||
    fail "reading the notifications again changed the events"

# 5. The three levels everywhere.
status_json
[[ "$(json 's["states"]["delivered"]')" == 3 && "$(json 's["states"]["bounced"]')" == 1 ]] ||
    fail "status: $(json 's["states"]')"
[[ "$(json 's["past_the_relay"]["accepted_by_provider"]')" == 3 &&
    "$(json 's["past_the_relay"]["still_at_relay"]')" == 0 ]] ||
    fail "status past the relay: $(json 's["past_the_relay"]')"
# Bea sat at the relay through the greylisting: the slowest acceptance shows it.
[[ "$(json 'int(s["past_the_relay"]["providers"][0]["p95_seconds"] >= 10)')" == 1 ]] ||
    fail "the provider's 95th percentile wait should show the greylisting: $(json 's["past_the_relay"]["providers"]')"
bm lookup bea --json >"$work/lookup.json" || fail "lookup bea"
grep -q "accepted by the person's provider (127.0.0.1)" "$work/lookup.json" ||
    fail "lookup: $(cat "$work/lookup.json")"
bm -q report --html "$work/report.html" >/dev/null 2>&1 || fail "report --html"
grep -q "Au-delà du relais" "$work/report.html" || fail "the report has no past-the-relay section"
grep -q "acceptées par le fournisseur du destinataire" "$work/report.html" ||
    fail "the report does not name the providers' acceptances in French"

log "passed: relayed, greylisted then relayed, and refused letters read back from Postfix's notifications"
