#!/usr/bin/env bash
# What a receiving server checks, on the messages `preview` writes: the DKIM signature verifies
# with an independent verifier (dkimpy) for an RSA and an Ed25519 key, and SpamAssassin's local
# rules (no network test) fire nothing beyond the informational ones.
#
# Usage: tests/e2e/receivers.sh [dkim|spamassassin]...   (both when none is named)
# Needs: PYTHON naming a Python with dkimpy, PyNaCl and cryptography (.ci/run makes a virtual
# environment), and spamassassin on PATH. BREACHMAIL_BIN may name the binary, otherwise it is
# built with cargo (debug).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
checks=("$@")
[[ ${#checks[@]} -gt 0 ]] || checks=(dkim spamassassin)

fail() {
    echo "receivers: $*" >&2
    exit 1
}

if [[ -n "${BREACHMAIL_BIN:-}" ]]; then
    bin="$(realpath "$BREACHMAIL_BIN")"
    # breachmail refuses BREACHMAIL_* variables that are not config keys: keep it to ourselves.
    unset BREACHMAIL_BIN
else
    (cd "$repo" && cargo build --quiet --bin breachmail)
    bin="$repo/target/debug/breachmail"
fi

campaign="$work/campaign"
"$bin" -q demo "$campaign" --people 60 >/dev/null

# One configuration per key type, beside the demo's, with the same letters and people; replies
# go to a monitored mailbox, as a campaign would set it.
signed_preview() {
    local kind="$1"
    install -m 600 "$repo/tests/keys/$kind.pem" "$campaign/dkim-$kind.pem"
    sed 's/^# reply_to = .*/reply_to = "dpo@france-emploi.example.fr"/' \
        "$campaign/breachmail.toml" >"$campaign/$kind.toml"
    cat >>"$campaign/$kind.toml" <<TOML

[dkim]
selector = "s2025"
domain = "notification.example.fr"
private_key = "dkim-$kind.pem"
TOML
    "$bin" -q --config "$campaign/$kind.toml" preview --all --out "$work/preview-$kind" >/dev/null
    compgen -G "$work/preview-$kind/*.eml" >/dev/null || fail "no preview written with the $kind key"
}

for check in "${checks[@]}"; do
    case "$check" in
    dkim)
        python="${PYTHON:-python3}"
        "$python" -c 'import dkim, nacl, cryptography' ||
            fail "PYTHON=$python lacks dkimpy, PyNaCl or cryptography"
        for kind in rsa ed25519; do
            signed_preview "$kind"
            "$python" "$repo/tests/e2e/dkim_verify.py" "$campaign/dkim-$kind.pem" \
                "$work/preview-$kind"/*.eml
        done
        # Dual signing: an RSA and an Ed25519 key under two selectors, two signatures a letter.
        sed 's/^# reply_to = .*/reply_to = "dpo@france-emploi.example.fr"/' \
            "$campaign/breachmail.toml" >"$campaign/dual.toml"
        cat >>"$campaign/dual.toml" <<TOML

[[dkim.key]]
selector = "rsa2025"
domain = "notification.example.fr"
private_key = "dkim-rsa.pem"

[[dkim.key]]
selector = "ed2025"
domain = "notification.example.fr"
private_key = "dkim-ed25519.pem"
TOML
        "$bin" -q --config "$campaign/dual.toml" preview --all --out "$work/preview-dual" >/dev/null
        "$python" "$repo/tests/e2e/dkim_verify.py" \
            "rsa2025=$campaign/dkim-rsa.pem,ed2025=$campaign/dkim-ed25519.pem" \
            "$work/preview-dual"/*.eml
        ;;
    spamassassin)
        command -v spamassassin >/dev/null ||
            fail "spamassassin is not installed (apt-get install -y spamassassin)"
        [[ -d "$work/preview-rsa" ]] || signed_preview rsa
        scored=0
        for message in "$work/preview-rsa"/*.eml; do
            report="$work/$(basename "$message").spamassassin"
            # -L: local tests only (no DNS, no network), -t: the report of the rules that fired.
            spamassassin -L -t <"$message" >"$report" 2>"$work/spamassassin.log" || {
                cat "$work/spamassassin.log" >&2
                fail "spamassassin could not score $(basename "$message")"
            }
            # The rules that fired: the lines of the "pts rule name" table after its ---- line.
            fired="$(sed -n '/^Content analysis details:/,$p' "$report" |
                sed -n '/^ *---- /,/^$/p' | grep -E '^ *-?[0-9]+\.[0-9]+ [A-Z0-9_]+' || true)"
            # Informational rules say so in their description (NO_RELAYS, NO_RECEIVED: a
            # message scored before it travels has no Received header); HTML_MESSAGE only says
            # that an HTML part is there (0.001 points).
            beyond="$(grep -v -e ' Informational: ' -e ' HTML_MESSAGE ' <<<"$fired" || true)"
            if [[ -n "$beyond" ]]; then
                echo "receivers: SpamAssassin rules fired on $(basename "$message"):" >&2
                echo "$beyond" >&2
                exit 1
            fi
            scored=$((scored + 1))
        done
        echo "receivers: spamassassin -L: $scored previews, no rule beyond the informational ones"
        ;;
    *)
        fail "unknown check $check (dkim or spamassassin)"
        ;;
    esac
done
echo "receivers: ok (${checks[*]})"
