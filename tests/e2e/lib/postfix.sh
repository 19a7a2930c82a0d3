# Sourced by the end-to-end scripts that run a Postfix instance of their own.
#
# debian_main_cf DIR QUEUE DATA MAILLOG WORK SYSLOG_NAME MYHOSTNAME writes DIR/main.cf as Debian's
# package installs it (postfix.postinst: main.cf.debian, then main.cf.tls since ssl-cert's
# snakeoil key exists: STARTTLS offered with the self-signed certificate, DSN as always), then
# what every test instance sets: its paths, its log file, its names, loopback only, no DNS.
# The caller appends what its own instance needs (networks, domains, transports, login).
# Returns 1, saying what is missing, when Postfix or ssl-cert is not installed.
debian_main_cf() {
    local dir="$1" queue="$2" data="$3" maillog="$4" work="$5" syslog_name="$6" myhostname="$7"
    local file
    for file in /usr/share/postfix/main.cf.debian /usr/share/postfix/main.cf.tls /etc/ssl/private/ssl-cert-snakeoil.key; do
        if [[ ! -f "$file" ]]; then
            echo "$file is missing: apt-get install postfix ssl-cert" >&2
            return 1
        fi
    done
    cat /usr/share/postfix/main.cf.debian /usr/share/postfix/main.cf.tls >"$dir/main.cf"
    cat >>"$dir/main.cf" <<CONF

# --- this instance ---
queue_directory = $queue
data_directory = $data
mail_owner = postfix
setgid_group = postdrop
syslog_name = $syslog_name
maillog_file = $maillog
maillog_file_prefixes = $work
myhostname = $myhostname
mydomain = e2e.test
myorigin = \$myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
smtp_host_lookup = native
smtp_dns_support_level = disabled
CONF
}

# free_port FIRST: the first port from FIRST to FIRST + 99 on 127.0.0.1 that nothing answers on
# (empty if none).
free_port() {
    local candidate
    for candidate in $(seq "$1" $(($1 + 99))); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
}

# wait_listening PORT WHAT: waits (bounded, every 0.2 s, 30 s at most) until something answers on
# 127.0.0.1:PORT, else the caller's `fail` names WHAT.
wait_listening() {
    for _ in $(seq 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    fail "$2 does not listen on 127.0.0.1:$1"
}
