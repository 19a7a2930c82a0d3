#!/usr/bin/env bash
# bench/imap_bounces.sh: times `bounces --imap` on a folder of 100,000 messages in a real Dovecot.
#
#   bench/imap_bounces.sh [--messages N] [--keep]
#
# A throwaway campaign of N people is imported and its letters marked sent in the database
# directly (sending is not what is measured: its own benchmark is bench/run); then N messages are
# written into the maildir of a Dovecot instance of its own on loopback, as they would come back:
# 70 % hard bounces (RFC 3464, naming the person's address as Final-Recipient, so each is matched
# through the recipient index), 10 % delay notices, 5 % ARF complaints, 10 % auto-replies, 5 %
# replies. Dovecot indexes the folder
# (`doveadm index`, as a live server has), and `bounces --imap imaps://... --move-to Processed` is
# timed under /usr/bin/time -v: wall time, peak memory, and the summary. A second run shows what
# reading nothing new costs.
#
# The server's certificate comes from a throwaway authority trusted through
# BREACHMAIL_TEST_CA_FILE, which only builds with debug assertions read: the binary is built in
# release mode with them on, in target/bench-imap (or BREACHMAIL_BIN names one). As root; needs
# dovecot-imapd, openssl, python3, /usr/bin/time.
set -euo pipefail

cd "$(dirname "$0")/.."
repo="$(pwd)"

MESSAGES=100000
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --messages) MESSAGES="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench/imap_bounces.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

log() { printf 'bench imap: %s\n' "$*" >&2; }

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
else
    cargo build --quiet --release --bin breachmail --target-dir target/bench-imap \
        --config 'profile.release.debug-assertions=true' --config 'profile.release.overflow-checks=false'
    bin="$repo/target/bench-imap/release/breachmail"
fi
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BREACHMAIL_' || true)

work="$(mktemp -d "${TMPDIR:-/tmp}/breachmail-imap-bench.XXXXXX")"
chmod 0755 "$work"
dc="$work/dovecot"
mail="$work/mail"
campaign="$work/campaign"
mkdir -p "$dc" "$mail/bounces"/{cur,new,tmp} "$mail/home"
dovecot_started=no

cleanup() {
    if [[ "$dovecot_started" == yes ]]; then
        doveadm -c "$dc/dovecot.conf" stop >/dev/null 2>&1 || true
    fi
    if [[ "$KEEP" == 1 ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

free_port() {
    local candidate
    for candidate in $(seq "$1" $(($1 + 99))); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    log "no free port from $1"
    exit 1
}

# --- the campaign: N people, every letter marked sent -------------------------------------------

"$bin" -q init "$campaign" >/dev/null
"$bin" -q generate-people --people "$MESSAGES" --out "$work/people.csv"
"$bin" -q --config "$campaign/breachmail.toml" import "$work/people.csv" >/dev/null
python3 - "$campaign/breachmail.db" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
now = int(time.time() * 1000)
db.execute("UPDATE deliveries SET state = 'sent', sent_at = ?, attempts = 1 WHERE state = 'pending'", (now,))
db.commit()
PY
"$bin" -q --config "$campaign/breachmail.toml" export audit --out "$work/audit.csv" >/dev/null
log "campaign of $MESSAGES people, letters marked sent"

# --- the folder: N messages as they come back ----------------------------------------------------

python3 - "$work/audit.csv" "$mail/bounces/cur" "$MESSAGES" "$repo/tests/bounces" <<'PY'
import csv, os, sys
audit, folder, wanted, corpus = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
people = [r for r in csv.DictReader(open(audit, newline="")) if r.get("email")]
auto = open(os.path.join(corpus, "autoreply-outlook-fr.eml"), encoding="latin-1").read()
reply = open(os.path.join(corpus, "reply-person.eml"), encoding="utf-8").read()

def dsn(i, rcpt, mid, action, status, code):
    return f"""Return-Path: <>
From: MAILER-DAEMON@relay.example.fr (Mail Delivery System)
To: ne-pas-repondre@notification.example.fr
Subject: Undelivered Mail Returned to Sender
Date: Mon, 1 Dec 2025 10:00:00 +0100
Message-ID: <bounce-{i}@relay.example.fr>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B{i}"

--B{i}
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B{i}
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.fr

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {code} {status} <{rcpt}>: Recipient address rejected

--B{i}
Content-Type: text/rfc822-headers

Message-ID: <{mid}>
Subject: Information importante

--B{i}--
"""

def arf(i, rcpt, mid):
    return f"""From: Feedback Loop <fbl@fbl.provider{i % 3}.example>
To: fbl@notification.example.fr
Subject: Abuse report
Date: Mon, 1 Dec 2025 10:00:00 +0100
Message-ID: <arf-{i}@fbl.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F{i}"

--F{i}
Content-Type: text/plain

This is an abuse report.

--F{i}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: FBL/1.0
Version: 1
Original-Rcpt-To: {rcpt}

--F{i}
Content-Type: text/rfc822-headers

Message-ID: <{mid}>
Subject: Information importante

--F{i}--
"""

for i in range(wanted):
    person = people[i % len(people)]
    rcpt, mid = person["email"], f"letter-{i}@notification.example.fr"
    kind = i % 20
    if kind < 14:
        text = dsn(i, rcpt, mid, "failed", "5.1.1", 550)
    elif kind < 16:
        text = dsn(i, rcpt, mid, "delayed", "4.4.1", 451)
    elif kind < 17:
        text = arf(i, rcpt, mid)
    elif kind < 19:
        text = auto.replace("Subject:", f"X-Serial: {i}\nSubject:", 1)
    else:
        text = reply.replace("Subject:", f"X-Serial: {i}\nSubject:", 1)
    name = os.path.join(folder, f"{1700000000 + i}.M{i}P1.bench:2,")
    with open(name, "w", encoding="utf-8", errors="replace") as out:
        out.write(text.replace("\n", "\r\n"))
PY
size="$(du -sh "$mail/bounces" | cut -f1)"
log "$MESSAGES messages written ($size)"

# --- Dovecot ------------------------------------------------------------------------------------

imaps_port="$(free_port 11993)"
password="$(openssl rand -hex 16)"
printf 'bounces:{PLAIN}%s\n' "$password" >"$dc/users"
chgrp dovecot "$dc/users"
chmod 0640 "$dc/users"
{
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=breachmail bench CA" \
        -keyout "$dc/ca-key.pem" -out "$dc/ca.pem" &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout "$dc/key.pem" -out "$dc/server.csr" &&
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
            >"$dc/server.ext" &&
        openssl x509 -req -in "$dc/server.csr" -CA "$dc/ca.pem" -CAkey "$dc/ca-key.pem" \
            -CAcreateserial -days 1 -extfile "$dc/server.ext" -out "$dc/cert.pem"
} >"$work/openssl.log" 2>&1
chown -R "$(id -u dovecot):$(id -g dovecot)" "$mail"
cat >"$dc/dovecot.conf" <<DOVECOT_CONF
base_dir = $dc/run
state_dir = $dc/state
log_path = $work/dovecot.log
instance_name = breachmail-bench
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$dc/cert.pem
ssl_key = <$dc/key.pem
disable_plaintext_auth = yes
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dc/users
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$mail/home
}
mail_location = maildir:$mail/bounces
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  chroot =
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
DOVECOT_CONF
dovecot -c "$dc/dovecot.conf"
dovecot_started=yes
started=$(date +%s.%N)
doveadm -c "$dc/dovecot.conf" index -u bounces INBOX
log "Dovecot indexed the folder in $(printf '%.1f' "$(echo "$(date +%s.%N) - $started" | bc)") s"

# --- the timed runs -------------------------------------------------------------------------------

run() { # NAME: one timed `bounces --imap` run
    BREACHMAIL_TEST_CA_FILE="$dc/ca.pem" BREACHMAIL_BOUNCES_PASSWORD="$password" \
        /usr/bin/time -v -o "$work/$1.time" \
        "$bin" -q --config "$campaign/breachmail.toml" bounces \
        --imap "imaps://bounces@127.0.0.1:$imaps_port/INBOX" --move-to Processed --imap-batch "${BATCH:-500}" \
        >"$work/$1.out" 2>"$work/$1.err" || {
        cat "$work/$1.err" >&2
        exit 1
    }
    local wall rss
    wall="$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/$1.time")"
    rss="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/$1.time")"
    printf '%s: wall %s, peak memory %d MiB\n  %s\n' "$1" "$wall" $((rss / 1024)) "$(cat "$work/$1.out")"
}
run "first run ($MESSAGES messages)"
run "second run (nothing new)"
