"""Verifies the DKIM signature of every message given, with dkimpy: an implementation of RFC 6376
written apart from the one that signed. The public key the verifier would find in the DNS comes
from the private key file instead (the tests reach no DNS), published under the selector and
domain of the signature as a TXT record would publish it.

Usage: python dkim_verify.py PRIVATE_KEY.pem MESSAGE.eml...
       python dkim_verify.py SELECTOR=KEY.pem,SELECTOR=KEY.pem... MESSAGE.eml...
With several keys (dual signing), every message must carry one signature per key, and each
verifies with the key published under its selector.
Exits non-zero, naming the file, at the first message that does not verify.
"""

import base64
import sys

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa


def txt_record(key_path):
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    public = key.public_key()
    if isinstance(key, rsa.RSAPrivateKey):
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    sys.exit(f"dkim_verify: {key_path}: neither an RSA nor an Ed25519 key")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    keys = sys.argv[1].split(",")
    if len(keys) == 1 and "=" not in keys[0]:
        records = {None: txt_record(keys[0])}
    else:
        records = {}
        for pair in keys:
            selector, _, path = pair.partition("=")
            records[selector] = txt_record(path)
    asked = []

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        asked.append(name)
        if None in records:
            return records[None]
        return records.get(name.split(".", 1)[0], b"")

    for path in sys.argv[2:]:
        with open(path, "rb") as f:
            message = f.read()
        count = message.split(b"\r\n\r\n", 1)[0].lower().count(b"\ndkim-signature:") + int(
            message.lower().startswith(b"dkim-signature:"))
        if count != len(records):
            sys.exit(f"dkim_verify: {path}: {count} signatures, {len(records)} keys")
        for index in range(count):
            verifier = dkim.DKIM(message)
            if not verifier.verify(idx=index, dnsfunc=dnsfunc):
                sys.exit(f"dkim_verify: {path}: signature {index + 1} does not verify")
            check_headers(path, message, index, verifier, dnsfunc)
    kinds = ", ".join(r.split(b";")[1].strip().decode() for r in records.values())
    print(f"dkim_verify: {len(sys.argv) - 2} messages verify ({kinds}, "
          f"keys looked up at {', '.join(sorted(set(asked)))})")


def check_headers(path, message, index, verifier, dnsfunc):
    """Signature number index covers what a reader trusts, and breaks with a From on top."""
    signed = [h.decode().lower() for h in verifier.include_headers]
    for name in ("from", "to", "subject", "reply-to"):
        if signed.count(name) < 2:
            sys.exit(f"dkim_verify: {path}: {name} is not over-signed ({signed})")
    for name in ("mime-version", "content-type", "auto-submitted", "date", "message-id"):
        if name not in signed:
            sys.exit(f"dkim_verify: {path}: {name} is not signed ({signed})")
    # A From added after signing must break the signature.
    forged = b"From: Someone Else <helpdesk@elsewhere.example>\r\n" + message
    if dkim.DKIM(forged).verify(idx=index, dnsfunc=dnsfunc):
        sys.exit(f"dkim_verify: {path}: signature {index + 1} still verifies with a second From on top")


if __name__ == "__main__":
    main()
