#!/usr/bin/env bash
# Bounces read over IMAP from a real Dovecot, end to end (`bounces --imap`). Proves that:
#   - the bounces a real Postfix generates ("user unknown") for letters `send` handed to it, delivered
#     into a Dovecot account, are read by `bounces --imap imaps://...` over TLS, recorded, and
#     moved to a folder breachmail creates (Processed). Postfix and Dovecot keep Debian's TLS
#     defaults: STARTTLS in Postfix and `ssl = yes` in Dovecot, both with the self-signed
#     "snakeoil" certificate, which breachmail uses unverified because both are on loopback,
#     saying so once per run, with no TLS setting at all; Postfix's delivery status notifications
#     for the letters it delivered (send asks for them) come the same way and make those letters
#     `delivered`;
#   - a complaint (an ARF report naming one of the letters), an auto-reply and a person's reply in
#     the same folder are counted as such, none as a bounce; the reply is written to
#     --replies-to, owner-only; the complaint is a `complained` event on that person;
#   - a run killed after recording its first batch and before moving it, then run again, records
#     every bounce exactly once, and moves every message;
#   - a further run reads nothing new, and `imap://` with STARTTLS logs in as well, this time
#     verifying Dovecot's certificate: `bounces.tls_ca` names it, `bounces.tls_server_name` the
#     name it carries;
#   - with a `bounces.tls_ca` that did not sign it, nothing is read, and the error says what to
#     set (exit 2).
#
# Postfix and Dovecot run as instances of their own: configuration, queue, state, maildirs and
# logs live in a temp dir; both listen on 127.0.0.1 only, on free ports; the system's
# /etc/postfix and /etc/dovecot are neither read nor changed. The Dovecot account is made up
# here, with a random password. Both are stopped and the temp dir removed on exit. Any mismatch
# fails the script (exit 1) and prints the logs; it never skips.
#
# Usage: tests/e2e/dovecot_imap.sh   (as root; apt-get install postfix dovecot-imapd ssl-cert openssl)
# BREACHMAIL_BIN may name the binary to use, otherwise the debug binary is built with cargo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/e2e/lib/postfix.sh
source "$repo/tests/e2e/lib/postfix.sh"

log() { printf 'dovecot_imap: %s\n' "$*" >&2; }

[[ "$(id -u)" == 0 ]] || {
    log "must run as root (it starts Postfix and Dovecot instances)"
    exit 1
}
for tool in /usr/sbin/postfix /usr/sbin/postmap /usr/sbin/dovecot /usr/bin/doveadm openssl; do
    command -v "$tool" >/dev/null || {
        log "$tool is missing: apt-get install postfix dovecot-imapd openssl"
        exit 1
    }
done

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
else
    (cd "$repo" && cargo build --quiet --bin breachmail)
    bin="$repo/target/debug/breachmail"
fi
while read -r var; do unset "$var"; done < <(compgen -e | grep '^BREACHMAIL_' || true)

work="$(mktemp -d /tmp/breachmail-imap.XXXXXX)"
chmod 0755 "$work"
pf="$work/postfix"
queue="$work/queue"
data="$work/data"
mail="$work/mail"
maillog="$work/maillog"
dc="$work/dovecot"
dovelog="$work/dovecot.log"
campaign="$work/campaign"
mkdir -p "$pf" "$queue" "$data" "$mail" "$dc"
started=no
dovecot_started=no

cleanup() {
    local status=$?
    if [[ "$dovecot_started" == yes ]]; then
        /usr/bin/doveadm -c "$dc/dovecot.conf" stop >/dev/null 2>&1 || true
    fi
    if [[ "$started" == yes ]]; then
        /usr/sbin/postfix -c "$pf" stop >/dev/null 2>&1 || true
        local pid
        pid="$(tr -dc '0-9' <"$queue/pid/master.pid" 2>/dev/null || true)"
        for _ in $(seq 100); do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT

fail() {
    log "FAILED: $*"
    for file in "$maillog" "$dovelog"; do
        if [[ -f "$file" ]]; then
            echo "----- $file -----" >&2
            tail -n 60 "$file" >&2
        fi
    done
    if [[ -d "$mail" ]]; then
        echo "----- maildirs -----" >&2
        (cd "$mail" && find . -type f | sort) >&2
    fi
    exit 1
}

bm() {
    "$bin" --config "$campaign/breachmail.toml" "$@"
}

# --- the Postfix instance (as in postfix_bounces.sh) ------------------------------------------

port="$(free_port 2625)"
uid="$(id -u postfix)"
gid="$(id -g postfix)"

# Debian's main.cf as the package installs it (postfix.postinst: main.cf.debian, then main.cf.tls
# since ssl-cert's snakeoil key exists): STARTTLS offered with the self-signed "snakeoil"
# certificate. Then only what an operator sets for this instance: its paths, port, domains.
debian_main_cf "$pf" "$queue" "$data" "$maillog" "$work" postfix-e2e mx.e2e.test || fail "Postfix is not installed as the test needs"
cat >>"$pf/main.cf" <<EOF
mynetworks_style = host
mynetworks = 127.0.0.0/8
# Nothing leaves this instance: anything not for the two virtual domains fails at once.
default_transport = error:not a test domain
relay_transport = error:not a test domain
local_transport = error:no local delivery in the test
relay_domains =
alias_maps =
alias_database =
# The test domains: people.test (a few mailboxes) and bounces.test (catch-all for VERP).
virtual_mailbox_domains = people.test, bounces.test
virtual_mailbox_maps = hash:$pf/vmailbox
virtual_mailbox_base = $mail
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
# Accept unknown recipients at SMTP time: the virtual agent bounces them afterwards ("user
# unknown"), so that Postfix generates a real DSN to the envelope sender.
smtpd_reject_unlisted_recipient = no
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
delay_warning_time = 0
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
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
EOF

write_vmailbox() {
    {
        for box in "$@"; do
            printf '%s@people.test people/%s/\n' "$box" "$box"
        done
        printf '@bounces.test bounces/\n'
    } >"$pf/vmailbox"
    /usr/sbin/postmap -c "$pf" "hash:$pf/vmailbox" || fail "postmap $pf/vmailbox"
}

write_vmailbox alice bob carol
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

# Until smtpd answers: bounded, every 0.2 s.
for _ in $(seq 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        listening=yes
        break
    fi
    sleep 0.2
done
[[ "${listening:-}" == yes ]] || fail "Postfix does not listen on 127.0.0.1:$port"
log "Postfix instance up on 127.0.0.1:$port (config $pf)"

# --- the Dovecot instance: one account whose INBOX is the bounces.test catch-all maildir --------

imap_port="$(free_port 10143)"
imaps_port="$(free_port 10993)"
[[ -n "$port" && -n "$imap_port" && -n "$imaps_port" ]] || fail "no free ports on 127.0.0.1"
password="$(openssl rand -hex 16)"
printf 'bounces:{PLAIN}%s\n' "$password" >"$dc/users"
chgrp dovecot "$dc/users"
chmod 0640 "$dc/users"
# Dovecot's TLS as the package sets it (conf.d/10-ssl.conf): `ssl = yes` with the certificate
# dovecot-core's installation links to ssl-cert's self-signed "snakeoil".
dovecot_cert=/etc/dovecot/private/dovecot.pem
for file in "$dovecot_cert" /etc/dovecot/private/dovecot.key /usr/share/dovecot/dh.pem; do
    [[ -f "$file" ]] || fail "$file is missing: apt-get install dovecot-core ssl-cert"
done
# The name the certificate carries (make-ssl-cert puts the host's name in it).
cert_name="$(openssl x509 -in "$dovecot_cert" -noout -ext subjectAltName 2>/dev/null |
    sed -n 's/.*DNS:\([^,]*\).*/\1/p' | head -n 1)"
[[ -n "$cert_name" ]] || cert_name="$(openssl x509 -in "$dovecot_cert" -noout -subject -nameopt multiline |
    sed -n 's/^ *commonName *= *//p')"
[[ -n "$cert_name" ]] || fail "no name in $dovecot_cert"
# A throwaway CA that signed nothing Dovecot presents: the wrong `bounces.tls_ca`.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=breachmail e2e unrelated CA" \
    -keyout "$dc/unrelated-ca-key.pem" -out "$dc/unrelated-ca.pem" >"$work/openssl.log" 2>&1 || {
    cat "$work/openssl.log" >&2
    fail "openssl (the unrelated CA)"
}

cat >"$dc/dovecot.conf" <<DOVECOT_CONF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dovelog
instance_name = breachmail-e2e
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <$dovecot_cert
ssl_key = </etc/dovecot/private/dovecot.key
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dc/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$mail/bounces-home
}
mail_location = maildir:$mail/bounces
namespace inbox {
  inbox = yes
  separator = /
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $imaps_port
    ssl = yes
  }
}
DOVECOT_CONF
mkdir -p "$mail/bounces-home"
chown "$uid:$gid" "$mail/bounces-home"
/usr/sbin/dovecot -c "$dc/dovecot.conf" >"$work/dovecot-start.log" 2>&1 || {
    cat "$work/dovecot-start.log" >&2
    fail "dovecot start"
}
dovecot_started=yes
wait_listening "$imaps_port" "Dovecot (imaps)"
wait_listening "$imap_port" "Dovecot (imap)"
log "Dovecot instance up on 127.0.0.1:$imaps_port (imaps) and :$imap_port (imap, STARTTLS)"

# --- helpers ----------------------------------------------------------------------------------

count_files() { # messages in a maildir folder (new/ and cur/)
    local dir="$1" n=0
    for sub in new cur; do
        if [[ -d "$dir/$sub" ]]; then
            n=$((n + $(find "$dir/$sub" -type f | wc -l)))
        fi
    done
    echo "$n"
}

wait_for() {
    local what="$1" i
    shift
    for i in $(seq 300); do
        if "$@"; then
            return 0
        fi
        if ((i % 25 == 0)); then
            /usr/sbin/postfix -c "$pf" flush >/dev/null 2>&1 || true
        fi
        sleep 0.2
    done
    fail "timed out after 60 s waiting for: $what"
}

state_of() { # REF: the delivery state, from the audit export
    bm -q export audit --format csv --out "$work/audit.csv" >/dev/null 2>&1 || fail "export audit"
    awk -F, -v ref="$1" '$1 == ref { print $5 }' "$work/audit.csv"
}

events_of() { # KIND: the refs of the timeline's events of that kind, sorted
    bm -q export audit --events --format csv --out "$work/events.csv" >/dev/null 2>&1 ||
        fail "export audit --events"
    awk -F, -v kind="$1" '$5 == kind { print $1 }' "$work/events.csv" | sort
}

json_field() { # JSON KEY: a top-level number
    printf '%s\n' "$1" | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

# --- the campaign -----------------------------------------------------------------------------

"$bin" -q init "$campaign" >/dev/null || fail "breachmail init"
export BREACHMAIL_SMTP_URL="smtp://127.0.0.1:$port"
export BREACHMAIL_SENDER_BOUNCE_DOMAIN="bounces.test"
export BREACHMAIL_RATE_PER_SECOND=0
# The audit export speaks the campaign's language: English here, the column names and codes the
# helpers above read (the letters keep each person's language).
export BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE=en

{
    echo "ref,email,civility,first_name,last_name,language,exposed,identifier"
    for who in alice bob carol dave erin fred; do
        printf '%s,%s@people.test,Mme,Élodie,Lefèvre,fr,name;email;postal;identifier,1234567A4821\n' "$who" "$who"
    done
} >"$work/people.csv"
bm -q import "$work/people.csv" || fail "import"
bm -q send || fail "send"

delivered() {
    [[ "$(count_files "$mail/people/alice")" == 1 &&
        "$(count_files "$mail/people/bob")" == 1 &&
        "$(count_files "$mail/people/carol")" == 1 &&
        "$(count_files "$mail/bounces")" == 6 ]]
}
wait_for "3 letters delivered, 3 delivery notifications and 3 Postfix bounces in the IMAP account" delivered

# Besides Postfix's notifications (their files named so that Dovecot numbers them after Postfix's
# six, hence the killed run's first batch holds two of Postfix's): a complaint about carol's letter (La Poste's ARF shape, with her letter's
# real Return-Path and Message-ID), a vacation answer and a person's reply.
carol_letter="$(find "$mail/people/carol/new" -type f | head -n 1)"
carol_return_path="$(sed -n 's/^Return-Path: <\(b-[a-z0-9]*@bounces\.test\)>$/\1/p' "$carol_letter" | head -n 1)"
carol_message_id="$(sed -n 's/^Message-ID: <\(.*\)>.*$/\1/Ip' "$carol_letter" | head -n 1)"
[[ -n "$carol_return_path" && -n "$carol_message_id" ]] ||
    fail "carol's letter lacks a VERP Return-Path or a Message-ID"
sed -e "s/b-0000002s01k3h6q9z2m4x7w@bounces\.example\.fr/$carol_return_path/g" \
    -e "s/3f9a1c0e5b7d2a64c8e1f0b2@notification\.example\.fr/$carol_message_id/g" \
    -e "s/marc\.vincent@laposte\.net/carol@people.test/g" \
    "$repo/tests/bounces/arf-laposte.eml" >"$mail/bounces/new/2100000001.M1P1.e2e"
cp "$repo/tests/bounces/autoreply-gmail-vacation.eml" "$mail/bounces/new/2100000002.M2P2.e2e"
cp "$repo/tests/bounces/reply-person.eml" "$mail/bounces/new/2100000003.M3P3.e2e"
chown -R "$uid:$gid" "$mail/bounces"
[[ "$(count_files "$mail/bounces")" == 9 ]] || fail "expected 9 messages in the IMAP account"

export BREACHMAIL_BOUNCES_PASSWORD="$password"
imaps="imaps://bounces@127.0.0.1:$imaps_port/INBOX"

# 1. A run killed after recording its first batch of two, before moving it.
set +e
BREACHMAIL_TEST_ABORT_AFTER_BATCHES=1 bm bounces --imap "$imaps" --move-to Processed \
    --imap-batch 2 --replies-to "$work/replies" >"$work/run1.out" 2>"$work/run1.err"
status=$?
set -e
[[ "$status" != 0 ]] || fail "the run asked to stop dead exited 0"
[[ ! -s "$work/run1.out" ]] || fail "the killed run printed a summary: $(cat "$work/run1.out")"
[[ "$(count_files "$mail/bounces")" == 9 ]] || fail "the killed run moved messages before dying"
[[ "$( (events_of bounced; events_of delivered) | wc -l)" == 2 ]] ||
    fail "the killed run should have recorded its first batch, two of Postfix's notifications: $( (events_of bounced; events_of delivered) | tr '\n' ' ')"
log "run 1 killed after its first batch (exit $status): two notifications recorded, nothing moved"

# 2. Run again: the two recorded messages are moved without being read again, the rest read.
summary="$(bm bounces --imap "$imaps" --move-to Processed --imap-batch 2 \
    --replies-to "$work/replies" --json 2>"$work/run2.err")" || {
    cat "$work/run2.err" >&2
    fail "bounces --imap (run 2)"
}
log "run 2: $summary"
[[ "$(grep -c "the certificate is not verified (self-signed, or unknown issuer): going on encrypted" "$work/run2.err")" == 1 ]] ||
    fail "run 2 should say once that Dovecot's certificate is not verified: $(cat "$work/run2.err")"
[[ "$(json_field "$summary" messages)" == 7 ]] || fail "run 2 should read the 7 messages left: $summary"
[[ "$(json_field "$summary" duplicates)" == 0 ]] || fail "run 2 read a message twice: $summary"
for who in alice bob carol; do
    [[ "$(state_of "$who")" == delivered ]] || fail "$who should be delivered, is $(state_of "$who")"
done
[[ "$(events_of delivered | tr '\n' ' ')" == "alice bob carol " ]] ||
    fail "expected one delivered event each for alice, bob, carol: $(events_of delivered | tr '\n' ' ')"
for who in dave erin fred; do
    [[ "$(state_of "$who")" == bounced ]] || fail "$who should be bounced, is $(state_of "$who")"
done
[[ "$(events_of bounced | tr '\n' ' ')" == "dave erin fred " ]] ||
    fail "expected one bounced event each for dave, erin, fred: $(events_of bounced | tr '\n' ' ')"
[[ "$(events_of complained)" == carol ]] ||
    fail "expected one complained event, for carol: $(events_of complained)"
[[ "$(count_files "$mail/bounces")" == 0 ]] || fail "INBOX should be empty after run 2"
[[ "$(count_files "$mail/bounces/.Processed")" == 9 ]] ||
    fail "Processed should hold the 9 messages: $(count_files "$mail/bounces/.Processed")"
replies=("$work/replies"/*.eml)
[[ "${#replies[@]}" == 1 && -f "${replies[0]}" ]] || fail "expected one reply written to --replies-to"
[[ "$(stat -c %a "${replies[0]}")" == 600 && "$(stat -c %a "$work/replies")" == 700 ]] ||
    fail "the reply must be owner-only (0600 in a 0700 folder)"
grep -q "Annie Lebrun" "${replies[0]}" || fail "the reply written is not the person's message"

# 3. Nothing new: nothing read. Over imap:// with STARTTLS this time, the certificate verified:
# bounces.tls_ca names Dovecot's own (self-signed) certificate, tls_server_name its name.
summary="$(BREACHMAIL_BOUNCES_TLS_CA="$dovecot_cert" BREACHMAIL_BOUNCES_TLS_SERVER_NAME="$cert_name" \
    bm bounces --imap "imap://bounces@127.0.0.1:$imap_port/INBOX" --move-to Processed \
    --json 2>"$work/run3.err")" || {
    cat "$work/run3.err" >&2
    fail "bounces --imap imap:// (run 3, STARTTLS, verified)"
}
[[ "$(json_field "$summary" messages)" == 0 ]] || fail "run 3 should read nothing: $summary"
if grep -q "not verified" "$work/run3.err"; then
    fail "run 3 had the certificate to verify, yet says it is not verified: $(cat "$work/run3.err")"
fi

# 4. A bounces.tls_ca that did not sign Dovecot's certificate: verification is asked for and
# fails; nothing is read, and the error says what to set (exit 2, a configuration error).
set +e
BREACHMAIL_BOUNCES_TLS_CA="$dc/unrelated-ca.pem" bm -q bounces --imap "$imaps" \
    >"$work/run4.out" 2>"$work/run4.err"
status=$?
set -e
[[ "$status" == 2 ]] || fail "a certificate bounces.tls_ca did not sign: exit $status, expected 2: $(cat "$work/run4.err")"
grep -q "the certificate is not trusted (unknown issuer): set bounces.tls_ca to the certificate of the CA that signed it" \
    "$work/run4.err" || fail "the refusal does not say what to set: $(cat "$work/run4.err")"
if grep -q "$password" "$work"/run*.err; then
    fail "the IMAP password appears in a log"
fi

log "passed: 3 Postfix bounces read over IMAP once each across a killed run, 1 complaint, 1 auto-reply, 1 reply; all moved to Processed"
