#!/usr/bin/env bash
# Login to a real relay that requires it, end to end (`send` with smtp.username). Proves that:
#   - Postfix with Debian's defaults (STARTTLS with the self-signed "snakeoil" certificate) and
#     Dovecot SASL (smtpd_sasl_type = dovecot, a private Dovecot auth socket with a passwd-file),
#     relaying only for authenticated clients, refuses a client that does not log in;
#   - with a wrong password, `send` stops at once with a configuration error (exit 2) naming the
#     relay, the refusal and the keys to check, says the relay refused, sends nothing, counts no
#     attempt against anyone, and tries at most one login per connection (no retry loop);
#   - with the right password in BREACHMAIL_SMTP_PASSWORD, every letter goes through, logged in
#     with AUTH inside TLS, and lands in its mailbox.
#
# Postfix and Dovecot run as instances of their own: configuration, queue, state, maildirs and
# logs live in a temp dir; Postfix listens on 127.0.0.1 only, on a free port; Dovecot only serves
# the auth socket Postfix asks; the system's /etc/postfix and /etc/dovecot are neither read nor
# changed. The account is made up here, with a random password. Both are stopped and the temp dir
# removed on exit. Any mismatch fails the script (exit 1) and prints the logs; it never skips.
#
# Usage: tests/e2e/postfix_auth.sh   (as root; apt-get install postfix dovecot-core ssl-cert openssl python3)
# BREACHMAIL_BIN may name the binary to use, otherwise the debug binary is built with cargo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=tests/e2e/lib/postfix.sh
source "$repo/tests/e2e/lib/postfix.sh"

log() { printf 'postfix_auth: %s\n' "$*" >&2; }

[[ "$(id -u)" == 0 ]] || {
    log "must run as root (it starts Postfix and Dovecot instances)"
    exit 1
}
for tool in /usr/sbin/postfix /usr/sbin/postmap /usr/sbin/dovecot /usr/bin/doveadm openssl python3; do
    command -v "$tool" >/dev/null || {
        log "$tool is missing: apt-get install postfix dovecot-core ssl-cert openssl python3"
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

work="$(mktemp -d /tmp/breachmail-auth.XXXXXX)"
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

count_files() { # messages in a maildir (new/ and cur/)
    local dir="$1" n=0
    for sub in new cur; do
        if [[ -d "$dir/$sub" ]]; then
            n=$((n + $(find "$dir/$sub" -type f | wc -l)))
        fi
    done
    echo "$n"
}

state_counts() { # "pending=N sent=N failed=N deferred=N" from status --json's states
    local json key value out=""
    json="$(bm -q status --json 2>"$work/status.err")" || {
        cat "$work/status.err" >&2
        fail "status --json"
    }
    json="$(printf '%s\n' "$json" | sed -n '/"states": {/,/}/p')"
    for key in pending sent failed deferred; do
        value="$(printf '%s\n' "$json" | sed -n "s/^ *\"$key\": \([0-9]*\),\{0,1\}$/\1/p")"
        out+="$key=${value:-missing} "
    done
    echo "${out% }"
}

attempts() { # attempts counted over every delivery, from the audit export
    bm -q export audit --format csv --out "$work/audit.csv" >/dev/null 2>&1 || fail "export audit"
    local column
    column="$(head -n 1 "$work/audit.csv" | tr ',' '\n' | grep -nx attempts | cut -d: -f1)"
    [[ -n "$column" ]] || fail "the audit export has no attempts column"
    tail -n +2 "$work/audit.csv" | cut -d, -f"$column" | awk '{ n += $1 } END { print n + 0 }'
}

# --- the Dovecot instance: only its auth service, for Postfix -----------------------------------

uid="$(id -u postfix)"
gid="$(id -g postfix)"
password="$(openssl rand -hex 16)"
printf 'relay-user:{PLAIN}%s\n' "$password" >"$dc/users"
chgrp dovecot "$dc/users"
chmod 0640 "$dc/users"
# Postfix's private/ (owned by postfix, as postfix would make it), where Dovecot puts the socket.
mkdir -p "$queue/private"
chown postfix:postfix "$queue/private"
chmod 0700 "$queue/private"

cat >"$dc/dovecot.conf" <<DOVECOT_CONF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dovelog
instance_name = breachmail-e2e-auth
# No mail protocol: this instance only answers Postfix's SASL questions.
protocols = none
# TLS as the package sets it (conf.d/10-ssl.conf).
ssl = yes
ssl_cert = </etc/dovecot/private/dovecot.pem
ssl_key = </etc/dovecot/private/dovecot.key
ssl_dh = </usr/share/dovecot/dh.pem
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dc/users
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$mail/home
}
service auth {
  unix_listener $queue/private/auth {
    mode = 0660
    user = postfix
    group = postfix
  }
}
DOVECOT_CONF
/usr/sbin/dovecot -c "$dc/dovecot.conf" >"$work/dovecot-start.log" 2>&1 || {
    cat "$work/dovecot-start.log" >&2
    fail "dovecot start"
}
dovecot_started=yes
for _ in $(seq 150); do
    [[ -S "$queue/private/auth" ]] && break
    sleep 0.2
done
[[ -S "$queue/private/auth" ]] || fail "Dovecot's auth socket $queue/private/auth did not appear"

# --- the Postfix instance: Debian's defaults, SASL through Dovecot, relay for logged-in clients --

port="$(free_port 2725)"
[[ -n "$port" ]] || fail "no free port on 127.0.0.1"
# Debian's main.cf (tests/e2e/lib/postfix.sh), then what an operator sets for a relay that
# requires a login.
debian_main_cf "$pf" "$queue" "$data" "$maillog" "$work" postfix-e2e-auth relay.e2e.test || fail "Postfix is not installed as the test needs"
cat >>"$pf/main.cf" <<EOF
default_transport = error:not a test domain
relay_transport = error:not a test domain
local_transport = error:no local delivery in the test
relay_domains =
alias_maps =
alias_database =
virtual_mailbox_domains = people.test, bounces.test
virtual_mailbox_maps = hash:$pf/vmailbox
virtual_mailbox_base = $mail
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
# The login: Dovecot SASL; only logged-in clients may send, whatever their address.
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_auth_enable = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject
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

printf '%s@people.test people/%s/\n' alice alice bob bob carol carol >"$pf/vmailbox"
printf '@bounces.test bounces/\n' >>"$pf/vmailbox"
/usr/sbin/postmap -c "$pf" "hash:$pf/vmailbox" || fail "postmap $pf/vmailbox"
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
wait_listening "$port" "Postfix"
log "Postfix up on 127.0.0.1:$port with Dovecot SASL ($queue/private/auth)"

# The relay really requires the login: without it, the recipient is refused.
python3 - "$port" >"$work/unauthenticated.log" 2>&1 <<'PY' || fail "an unauthenticated client was not refused: $(cat "$work/unauthenticated.log")"
import smtplib, ssl, sys
smtp = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=10)
smtp.starttls(context=ssl._create_unverified_context())
smtp.ehlo()
assert smtp.has_extn("auth"), "AUTH is not offered"
smtp.mail("someone@bounces.test")
code, text = smtp.rcpt("alice@people.test")
print(code, text.decode())
assert code == 554 and b"Access denied" in text, (code, text)
smtp.quit()
PY

# --- the campaign -----------------------------------------------------------------------------

"$bin" -q init "$campaign" >/dev/null || fail "breachmail init"
export BREACHMAIL_SMTP_URL="smtp://127.0.0.1:$port"
export BREACHMAIL_SMTP_USERNAME="relay-user"
export BREACHMAIL_SENDER_BOUNCE_DOMAIN="bounces.test"
export BREACHMAIL_RATE_PER_SECOND=0
# The audit export speaks the campaign's language: English here, the column names and codes the
# helpers above read (the letters keep each person's language).
export BREACHMAIL_CAMPAIGN_DEFAULT_LANGUAGE=en
{
    echo "ref,email,civility,first_name,last_name,language,exposed,identifier"
    for who in alice bob carol; do
        printf '%s,%s@people.test,Mme,Élodie,Lefèvre,fr,name;email;postal;identifier,1234567A4821\n' "$who" "$who"
    done
} >"$work/people.csv"
bm -q import "$work/people.csv" || fail "import"

# 1. A wrong password: a configuration error naming the relay, nothing sent or counted.
set +e
BREACHMAIL_SMTP_PASSWORD="wrong-$password" bm send >"$work/wrong.out" 2>"$work/wrong.err"
status=$?
set -e
cat "$work/wrong.out" "$work/wrong.err" >&2
[[ "$status" == 2 ]] || fail "a wrong password: exit $status, expected 2 (configuration error)"
grep -q "the relay smtp://127.0.0.1:$port refused the login: 535 .*(at AUTH); check smtp.username (relay-user) and BREACHMAIL_SMTP_PASSWORD" \
    "$work/wrong.err" || fail "the error does not name the relay, the refusal and the keys"
grep -q "stopped: relay refuses this configuration" "$work/wrong.out" ||
    fail "the summary does not say the relay refused"
if grep -q "$password" "$work/wrong.out" "$work/wrong.err"; then
    fail "the password appears in the output"
fi
[[ "$(state_counts)" == "pending=3 sent=0 failed=0 deferred=0" ]] ||
    fail "after the refused login: status says $(state_counts)"
[[ "$(attempts)" == 0 ]] || fail "the refused login counted attempts: $(attempts)"
failed_logins="$(grep -c "SASL PLAIN authentication failed\|SASL LOGIN authentication failed" "$maillog" || true)"
max_connections="$(sed -n 's/^max_connections = \([0-9]*\)$/\1/p' "$campaign/breachmail.toml")"
((failed_logins >= 1 && failed_logins <= ${max_connections:-8})) ||
    fail "expected one refused login per connection at most (1 to ${max_connections:-8}), Postfix logged $failed_logins"
log "wrong password: exit 2, $failed_logins refused login(s), nothing sent"

# 2. The right password: every letter goes, logged in inside TLS.
BREACHMAIL_SMTP_PASSWORD="$password" bm send 2>"$work/right.err" || {
    cat "$work/right.err" >&2
    fail "send with the right password"
}
[[ "$(state_counts)" == "pending=0 sent=3 failed=0 deferred=0" ]] ||
    fail "after the login: status says $(state_counts)"
delivered() {
    [[ "$(count_files "$mail/people/alice")" == 1 &&
        "$(count_files "$mail/people/bob")" == 1 &&
        "$(count_files "$mail/people/carol")" == 1 ]]
}
for i in $(seq 300); do
    delivered && break
    if ((i % 25 == 0)); then /usr/sbin/postfix -c "$pf" flush >/dev/null 2>&1 || true; fi
    sleep 0.2
done
delivered || fail "timed out after 60 s waiting for the 3 letters"
grep -q "sasl_method=PLAIN, sasl_username=relay-user" "$maillog" ||
    fail "the Postfix log shows no PLAIN login by relay-user"
for who in alice bob carol; do
    grep -qE '^[[:space:]]+by relay\.e2e\.test \(Postfix\) with ESMTPSA id' "$mail/people/$who"/new/* ||
        fail "$who's letter did not come in logged in over TLS (no ESMTPSA in its Received header)"
done
if grep -q "$password" "$work/right.err"; then
    fail "the password appears in the output"
fi

log "passed: the wrong password stopped the run (exit 2, nothing sent); the right one sent 3 letters over TLS with AUTH PLAIN"
