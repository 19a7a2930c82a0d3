//! `dkim`: DKIM signatures (RFC 6376) on the exact bytes of a message, one per configured key.
//!
//! Canonicalisation is relaxed/relaxed, which survives the header refolding and whitespace
//! changes relays are allowed to make; the hash is SHA-256; the key is RSA (RFC 8301) or Ed25519
//! (RFC 8463). The canonicalisation is ours, a few dozen lines of the RFC; the cryptography is
//! aws-lc-rs's (AWS-LC, OpenSSL's lineage: an RSA-2048 signature in about 0.3 ms of one core here,
//! as `openssl speed rsa2048`; ring took 0.5 ms and the RustCrypto `rsa` crate lettre signs with
//! about 1 ms). Every signature covers the same
//! headers ([`SIGNED_HEADERS`]) and none covers another's DKIM-Signature, so a receiver that
//! knows only one algorithm (Microsoft and Yahoo do not verify Ed25519 yet) verifies the one it
//! knows and ignores the other.

use std::path::Path;

use base64::Engine as _;

use crate::config::Dkim;
use crate::exit::UsageError;

/// The headers DKIM covers: those a reader trusts (who, what, when), those that change how the
/// message reads (MIME-Version, Content-Type) or whether an autoresponder answers it, and the ids
/// the helpline and the bounce matching rely on. From, To, Subject and Reply-To are named twice:
/// a verifier hashes one more instance of each than the message has (none, RFC 6376 5.4.2), so
/// a From, To, Subject or Reply-To added after signing breaks the signature instead of being
/// shown above the signed one. Reply-To is listed even when the campaign has none, for the same
/// reason: a header named in h= and absent is hashed as nothing, as a verifier does.
pub const SIGNED_HEADERS: [&str; 14] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Auto-Submitted",
    "X-Notice-Id",
    "From",
    "To",
    "Subject",
    "Reply-To",
];

/// RSA keys below this size are refused by aws-lc-rs: they are signed with the slower `rsa` crate.
const RING_MIN_RSA_BITS: usize = 2048;

/// A private key as read from its PEM file.
pub enum PrivateKey {
    Rsa(rsa::RsaPrivateKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl PrivateKey {
    /// `rsa` or `ed25519`, as the `k=` and `a=` tags name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "rsa",
            Self::Ed25519(_) => "ed25519",
        }
    }

    /// The size of the key in bits (256 for Ed25519).
    pub fn bits(&self) -> usize {
        use rsa::traits::PublicKeyParts as _;
        match self {
            Self::Rsa(key) => key.size() * 8,
            Self::Ed25519(_) => 256,
        }
    }

    /// The public key as a DKIM record's `p=` carries it: the SubjectPublicKeyInfo DER of an RSA
    /// key (what `openssl rsa -pubout` writes), the raw 32 bytes of an Ed25519 key (RFC 8463).
    pub fn public_key(&self) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey as _;
        match self {
            Self::Rsa(key) => key
                .to_public_key()
                .to_public_key_der()
                .map(|der| der.as_bytes().to_vec())
                .unwrap_or_default(),
            Self::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
        }
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn txt_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.kind(),
            base64::engine::general_purpose::STANDARD.encode(self.public_key())
        )
    }
}

/// The PEM forms a DKIM key comes in: RSA as PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8, Ed25519
/// as PKCS#8 (`BEGIN PRIVATE KEY`), as openssl writes them.
pub fn parse_private_key(pem: &str) -> Result<PrivateKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    use rsa::pkcs1::DecodeRsaPrivateKey as _;

    if pem.contains("BEGIN RSA PRIVATE KEY") {
        return rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            .map(PrivateKey::Rsa)
            .map_err(|e| format!("not a valid RSA private key: {e}"));
    }
    if !pem.contains("BEGIN PRIVATE KEY") {
        return Err(
            "not a PEM private key (expected BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY)".into(),
        );
    }
    if let Ok(rsa) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
        return Ok(PrivateKey::Rsa(rsa));
    }
    ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
        .map(PrivateKey::Ed25519)
        .map_err(|e| format!("neither an RSA nor an Ed25519 private key: {e}"))
}

/// Reads a DKIM key file, naming `key` (the configuration key) in every error. Refuses a file
/// others can read, since whoever holds it can sign mail as the organisation.
pub fn read_private_key(key: &str, path: &Path) -> anyhow::Result<PrivateKey> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable =
        |e: std::io::Error| UsageError::new(format!("{key}: cannot read {}: {e}", path.display()));
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(UsageError::new(format!(
            "{key}: {} is readable by others (mode {mode:03o}); make it owner-only with `chmod 600 {}`",
            path.display(),
            path.display()
        ))
        .into());
    }
    let pem = std::fs::read_to_string(path).map_err(unreadable)?;
    parse_private_key(&pem)
        .map_err(|reason| UsageError::new(format!("{key}: {}: {reason}", path.display())).into())
}

/// How one key signs the SHA-256 of the canonical headers.
enum Algorithm {
    /// aws-lc's RSA, for keys of 2048 bits and more.
    Rsa(aws_lc_rs::rsa::KeyPair),
    /// A 1024-bit key (still accepted by receivers, refused by aws-lc-rs): the `rsa` crate's.
    SmallRsa(Box<rsa::RsaPrivateKey>),
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
}

/// One key with its selector and domain, and the tags of its signature that never change.
struct Key {
    algorithm: Algorithm,
    /// `v=1; a=…; c=relaxed/relaxed; d=…; s=…;`
    fixed_tags: String,
}

/// Signs every message with every configured key, loaded once per run.
pub struct Signer {
    keys: Vec<Key>,
    rng: aws_lc_rs::rand::SystemRandom,
    /// `h=` of every signature: the names of [`SIGNED_HEADERS`], lower case.
    header_list: String,
}

impl Signer {
    /// The signer of the `[dkim]` keys, each read from its file (checked owner-only).
    pub fn new(keys: &[Dkim]) -> anyhow::Result<Self> {
        let keys = keys
            .iter()
            .map(|dkim| {
                let private = read_private_key(&dkim.config_key, &dkim.private_key)?;
                Key::new(&dkim.selector, &dkim.domain, &private)
                    .map_err(|reason| UsageError::new(format!("{}: {reason}", dkim.config_key)))
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self::from_keys(keys))
    }

    fn from_keys(keys: Vec<Key>) -> Self {
        let header_list = SIGNED_HEADERS
            .iter()
            .map(|name| name.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(":");
        Self {
            keys,
            rng: aws_lc_rs::rand::SystemRandom::new(),
            header_list,
        }
    }

    /// Whether any key signs.
    pub fn signs(&self) -> bool {
        !self.keys.is_empty()
    }

    /// `message` with one DKIM-Signature header per key in front, in the order of the keys.
    /// `timestamp` (seconds since 1970) is the `t=` tag: the message's Date.
    pub fn sign(&self, message: Vec<u8>, timestamp: i64) -> Vec<u8> {
        if self.keys.is_empty() {
            return message;
        }
        let (headers, body) = split_message(&message);
        let body_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &relaxed_body(body));
        let body_hash = base64::engine::general_purpose::STANDARD.encode(body_hash.as_ref());
        let mut signed_headers = Vec::with_capacity(headers.len());
        canonical_headers(headers, &SIGNED_HEADERS, &mut signed_headers);
        let mut signatures = Vec::with_capacity(self.keys.len() * 600);
        for key in &self.keys {
            let unsigned = format!(
                "DKIM-Signature: {}\r\n\tt={timestamp}; h={};\r\n\tbh={body_hash};\r\n\tb=",
                key.fixed_tags, self.header_list
            );
            let mut data = signed_headers.clone();
            relaxed_header(unsigned.as_bytes(), &mut data);
            // The DKIM-Signature itself is hashed without its final CRLF (RFC 6376 3.7).
            data.truncate(data.len() - 2);
            let signature = key.sign(&data, &self.rng);
            signatures.extend_from_slice(unsigned.as_bytes());
            fold_base64(&signature, &mut signatures);
            signatures.extend_from_slice(b"\r\n");
        }
        signatures.extend_from_slice(&message);
        signatures
    }
}

impl Key {
    fn new(selector: &str, domain: &str, private: &PrivateKey) -> Result<Self, String> {
        let algorithm = match private {
            PrivateKey::Rsa(key) if private.bits() >= RING_MIN_RSA_BITS => {
                use rsa::pkcs1::EncodeRsaPrivateKey as _;
                let der = key
                    .to_pkcs1_der()
                    .map_err(|e| format!("cannot read the RSA key: {e}"))?;
                Algorithm::Rsa(
                    aws_lc_rs::rsa::KeyPair::from_der(der.as_bytes())
                        .map_err(|e| format!("the RSA key is refused: {e}"))?,
                )
            }
            PrivateKey::Rsa(key) => Algorithm::SmallRsa(Box::new(key.clone())),
            PrivateKey::Ed25519(key) => Algorithm::Ed25519(
                aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(
                    &key.to_bytes(),
                    key.verifying_key().as_bytes(),
                )
                .map_err(|e| format!("the Ed25519 key is refused: {e}"))?,
            ),
        };
        Ok(Self {
            algorithm,
            fixed_tags: format!(
                "v=1; a={}-sha256; c=relaxed/relaxed; d={domain}; s={selector};",
                private.kind()
            ),
        })
    }

    /// The signature of the canonical headers `data`: RSASSA-PKCS1-v1_5 over their SHA-256, or
    /// Ed25519 over their SHA-256 (RFC 8463 signs the hash, not the data).
    fn sign(&self, data: &[u8], rng: &aws_lc_rs::rand::SystemRandom) -> Vec<u8> {
        match &self.algorithm {
            Algorithm::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                // Only fails on a signature buffer of the wrong size or a broken system RNG.
                key.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    rng,
                    data,
                    &mut signature,
                )
                .expect("RSA signing with a buffer of the modulus' size");
                signature
            }
            Algorithm::SmallRsa(key) => {
                use sha2::Digest as _;
                let hash = sha2::Sha256::digest(data);
                key.sign(rsa::pkcs1v15::Pkcs1v15Sign::new::<sha2::Sha256>(), &hash)
                    .expect("RSA signing with a key that was read")
            }
            Algorithm::Ed25519(key) => {
                let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
                key.sign(hash.as_ref()).as_ref().to_vec()
            }
        }
    }
}

/// The message's header block (each field with its CRLF) and its body (after the empty line).
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(at) => (&message[..at + 2], &message[at + 4..]),
        None => (message, &[]),
    }
}

/// The header fields of `headers`, each from its name to the end of its last continuation line
/// (CRLF included).
fn header_fields(headers: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::with_capacity(16);
    let mut start = 0;
    let mut at = 0;
    while let Some(end) = memchr::memmem::find(&headers[at..], b"\r\n").map(|i| at + i + 2) {
        at = end;
        if !matches!(headers.get(end), Some(b' ' | b'\t')) {
            fields.push(&headers[start..end]);
            start = end;
        }
    }
    if start < headers.len() {
        fields.push(&headers[start..]);
    }
    fields
}

/// The fields named by `names`, each name taking the last instance not yet taken (RFC 6376
/// 5.4.2), relaxed, appended to `out`; a name with no instance left adds nothing.
fn canonical_headers(headers: &[u8], names: &[&str], out: &mut Vec<u8>) {
    let fields = header_fields(headers);
    let mut taken = vec![false; fields.len()];
    for name in names {
        let found = fields.iter().enumerate().rev().find(|(i, field)| {
            !taken[*i] && field_name(field).eq_ignore_ascii_case(name.as_bytes())
        });
        if let Some((i, field)) = found {
            taken[i] = true;
            relaxed_header(field, out);
        }
    }
}

fn field_name(field: &[u8]) -> &[u8] {
    let colon = memchr::memchr(b':', field).unwrap_or(field.len());
    trim_wsp_end(&field[..colon])
}

fn trim_wsp_end(mut bytes: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Relaxed header canonicalisation (RFC 6376 3.4.2) of one field, CRLF included: the name in
/// lower case, continuation lines unfolded, runs of spaces and tabs made one space, none around
/// the colon or at the end.
fn relaxed_header(field: &[u8], out: &mut Vec<u8>) {
    let colon = memchr::memchr(b':', field).unwrap_or(field.len());
    out.extend(
        trim_wsp_end(&field[..colon])
            .iter()
            .map(u8::to_ascii_lowercase),
    );
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or_default();
    let mut space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => space = started,
            _ => {
                if space {
                    out.push(b' ');
                    space = false;
                }
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Relaxed body canonicalisation (RFC 6376 3.4.4): runs of spaces and tabs made one space, none
/// at the end of a line, no empty line at the end, and a final CRLF unless the body is empty.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut empty_lines = 0usize;
    let mut rest = body;
    loop {
        let (line, next) = match memchr::memmem::find(rest, b"\r\n") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        let line = trim_wsp_end(line);
        if next.is_none() && line.is_empty() {
            break;
        }
        if line.is_empty() {
            empty_lines += 1;
        } else {
            for _ in 0..empty_lines {
                out.extend_from_slice(b"\r\n");
            }
            empty_lines = 0;
            let mut space = false;
            for &b in line {
                if matches!(b, b' ' | b'\t') {
                    space = true;
                } else {
                    if space {
                        out.push(b' ');
                        space = false;
                    }
                    out.push(b);
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    out
}

/// The base64 of `signature` in lines of 72 characters, each continuation indented.
fn fold_base64(signature: &[u8], out: &mut Vec<u8>) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature);
    for (n, chunk) in encoded.as_bytes().chunks(72).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n\t ");
        }
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(file: &str) -> PrivateKey {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(file);
        parse_private_key(&std::fs::read_to_string(path).expect("key file")).expect("key")
    }

    fn signer(files: &[&str]) -> Signer {
        Signer::from_keys(
            files
                .iter()
                .map(|file| Key::new("s2025", "notification.example.fr", &key(file)).expect("key"))
                .collect(),
        )
    }

    const MESSAGE: &[u8] = b"From: \"Agence\" <ne-pas-repondre@notification.example.fr>\r\n\
To: Jean Dupont <jean@example.fr>\r\n\
Subject: Information importante\r\n\
 sur vos donn\xc3\xa9es\r\n\
Date: Sun, 06 Dec 2026 07:00:00 +0000\r\n\
Message-ID: <abc@notification.example.fr>\r\n\
X-Notice-Id:   N-1234\t \r\n\
Content-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\n\
\r\n\
--XYZ\r\n\
Hello  \t world  \r\n\
\r\n\
\r\n\
--XYZ--\r\n\r\n\r\n";

    /// The tags of the DKIM-Signature at `index`, whitespace removed (as a verifier reads them).
    fn tags(message: &[u8], index: usize) -> (Vec<(String, String)>, Vec<u8>) {
        let (headers, _) = split_message(message);
        let fields = header_fields(headers);
        let field = String::from_utf8(fields[index].to_vec()).expect("ascii");
        let value = field.split_once(':').expect("colon").1;
        let tags = value
            .split(';')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                let (name, value) = t.split_once('=').expect("tag=value");
                let value: String = value.split_whitespace().collect();
                (name.trim().to_owned(), value)
            })
            .collect();
        (tags, fields[index].to_vec())
    }

    /// Verifies the signature at `index` the way a receiver does, from the public key: an
    /// independent reading of the tags, the headers taken bottom up, b= emptied.
    fn verify(message: &[u8], index: usize, public: &[u8]) {
        let (tags, field) = tags(message, index);
        let tag = |name: &str| {
            tags.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .expect(name)
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(tag("b"))
            .expect("b= is base64");
        // The message without the DKIM-Signature fields, as a verifier sees the others.
        let (headers, body) = split_message(message);
        let fields = header_fields(headers);
        let others: Vec<u8> = fields
            .iter()
            .filter(|f| !f.to_ascii_lowercase().starts_with(b"dkim-signature:"))
            .flat_map(|f| f.iter().copied())
            .collect();
        let h = tag("h");
        let names: Vec<&str> = h.split(':').collect();
        let mut data = Vec::new();
        canonical_headers(&others, &names, &mut data);
        let text = String::from_utf8(field).expect("ascii");
        let b_at = text.rfind("b=").expect("b=");
        relaxed_header(&text.as_bytes()[..b_at + 2], &mut data);
        data.truncate(data.len() - 2);
        let body_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &relaxed_body(body));
        assert_eq!(
            tag("bh"),
            base64::engine::general_purpose::STANDARD.encode(body_hash.as_ref())
        );
        match tag("a").as_str() {
            "rsa-sha256" => aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                // The PKCS#1 key inside the SubjectPublicKeyInfo: its last 270 bytes.
                &public[public.len() - 270..],
            )
            .verify(&data, &signature)
            .expect("the RSA signature verifies"),
            "ed25519-sha256" => {
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
                    .verify(
                        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data).as_ref(),
                        &signature,
                    )
                    .expect("the Ed25519 signature verifies")
            }
            other => panic!("unexpected algorithm {other}"),
        }
    }

    #[test]
    fn relaxed_body_follows_the_rfc_examples() {
        // RFC 6376 3.4.6, body: " C \r\nD \t E\r\n\r\n\r\n" becomes " C\r\nD E\r\n".
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b""), b"");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
        assert_eq!(
            relaxed_body(b"no final line break"),
            b"no final line break\r\n"
        );
        assert_eq!(relaxed_body(b"a\r\n\r\nb\r\n"), b"a\r\n\r\nb\r\n");
    }

    #[test]
    fn relaxed_headers_follow_the_rfc_examples() {
        // RFC 6376 3.4.6, headers: "A: X\r\nB : Y\t\r\n\tZ  \r\n".
        let mut out = Vec::new();
        canonical_headers(b"A: X\r\nB : Y\t\r\n\tZ  \r\n", &["a", "b"], &mut out);
        assert_eq!(out, b"a:X\r\nb:Y Z\r\n");
    }

    #[test]
    fn the_last_instance_is_signed_first_and_an_absent_one_adds_nothing() {
        let mut out = Vec::new();
        canonical_headers(
            b"From: first\r\nTo: t\r\nFrom: second\r\n",
            &["from", "reply-to", "from", "from"],
            &mut out,
        );
        assert_eq!(out, b"from:second\r\nfrom:first\r\n");
    }

    #[test]
    fn rsa_and_ed25519_signatures_verify_with_the_published_keys() {
        let (rsa, ed25519) = (key("rsa.pem"), key("ed25519.pem"));
        let signed = signer(&["rsa.pem", "ed25519.pem"]).sign(MESSAGE.to_vec(), 1_796_540_400);
        assert!(
            signed.ends_with(MESSAGE),
            "the message follows the signatures untouched"
        );
        let (first, _) = tags(&signed, 0);
        let (second, _) = tags(&signed, 1);
        assert!(first.contains(&("a".into(), "rsa-sha256".into())));
        assert!(second.contains(&("a".into(), "ed25519-sha256".into())));
        assert!(first.contains(&("t".into(), "1796540400".into())));
        verify(&signed, 0, &rsa.public_key());
        verify(&signed, 1, &ed25519.public_key());
        // A From added on top is hashed for the over-signed "from": the signature breaks.
        let mut forged = b"From: helpdesk@elsewhere.example\r\n".to_vec();
        forged.extend_from_slice(&signed);
        let broken = std::panic::catch_unwind(|| verify(&forged, 1, &rsa.public_key()));
        assert!(
            broken.is_err(),
            "a second From must break the RSA signature"
        );
    }

    #[test]
    fn the_txt_record_carries_the_public_key() {
        let rsa = key("rsa.pem");
        assert_eq!(rsa.bits(), 2048);
        assert!(
            rsa.txt_record()
                .starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
        );
        let ed25519 = key("ed25519.pem");
        assert_eq!(ed25519.public_key().len(), 32);
        assert!(ed25519.txt_record().starts_with("v=DKIM1; k=ed25519; p="));
    }
}
