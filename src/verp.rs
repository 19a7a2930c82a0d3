//! Signed identifiers derived from the campaign's secret key: the VERP token that names a
//! delivery in the envelope sender, and the Message-ID of each letter.
//!
//! The token is `<person base36, 8>` `<generation base36, 2>` `<HMAC-SHA256 tail, 13 base32>`: only
//! lowercase letters and digits, because some mail systems fold the case of local parts. Without the
//! key nobody can make a token that verifies, so a forged bounce cannot mark anyone.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const MAC_CHARS: usize = 13;
pub const TOKEN_LEN: usize = 8 + 2 + MAC_CHARS;

/// What a verified token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRef {
    pub person_id: i64,
    pub generation: i64,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not shaped like one of our tokens at all.
    Malformed,
    /// Shaped like ours but the signature does not match: forged or damaged.
    BadSignature,
}

fn mac(key: &[u8], purpose: &[u8], person_id: i64, generation: i64) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(purpose);
    mac.update(&person_id.to_be_bytes());
    mac.update(&generation.to_be_bytes());
    mac.finalize().into_bytes().into()
}

fn base36(mut value: u64, width: usize) -> Option<String> {
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        *slot = BASE36[(value % 36) as usize];
        value /= 36;
    }
    (value == 0).then(|| String::from_utf8(digits).unwrap_or_default())
}

fn parse_base36(text: &str) -> Option<u64> {
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = BASE36.iter().position(|d| *d == b)? as u64;
        acc.checked_mul(36)?.checked_add(digit)
    })
}

fn base32_tail(bytes: &[u8]) -> String {
    // 13 characters × 5 bits = 65 bits of the MAC.
    let mut bits: u128 = 0;
    for b in &bytes[..9] {
        bits = (bits << 8) | u128::from(*b);
    }
    (0..MAC_CHARS)
        .map(|i| BASE32[((bits >> (72 - 5 * (i + 1))) & 31) as usize] as char)
        .collect()
}

/// The token for one delivery generation. Person ids up to 36^8 (2.8 × 10^12) and generations up
/// to 1295 fit.
pub fn token(key: &[u8], delivery: DeliveryRef) -> String {
    let person = base36(delivery.person_id as u64, 8).unwrap_or_else(|| "zzzzzzzz".into());
    let generation = base36(delivery.generation as u64, 2).unwrap_or_else(|| "zz".into());
    let tail = base32_tail(&mac(key, b"verp", delivery.person_id, delivery.generation));
    format!("{person}{generation}{tail}")
}

/// Checks a token (case-insensitive, since relays may fold case) and says whose it is.
pub fn verify(key: &[u8], token: &str) -> Result<DeliveryRef, TokenError> {
    let token = token.to_ascii_lowercase();
    if token.len() != TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenError::Malformed);
    }
    let person_id = parse_base36(&token[..8]).ok_or(TokenError::Malformed)? as i64;
    let generation = parse_base36(&token[8..10]).ok_or(TokenError::Malformed)? as i64;
    let expected = base32_tail(&mac(key, b"verp", person_id, generation));
    // Compare without an early exit, so timing says nothing about the signature.
    let same = expected
        .bytes()
        .zip(token[10..].bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same != 0 {
        return Err(TokenError::BadSignature);
    }
    Ok(DeliveryRef {
        person_id,
        generation,
    })
}

/// Extracts and verifies the token of a `b-<token>@domain` address.
pub fn verify_address(key: &[u8], address: &str) -> Option<Result<DeliveryRef, TokenError>> {
    verify_bounce_address(key, address, None)
}

/// The token of an address that looks like one of our VERP addresses (`b-…`, at
/// `bounce_domain` when one is configured), verified: None only for an address that does not
/// look like ours at all. Anything after our prefix that does not verify, malformed or badly
/// signed, is an error, and a bounce sent to it is forged: it must mark nobody by another route.
pub fn verify_bounce_address(
    key: &[u8],
    address: &str,
    bounce_domain: Option<&str>,
) -> Option<Result<DeliveryRef, TokenError>> {
    let address = address.trim().trim_matches(['<', '>']);
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    if bounce_domain.is_some_and(|ours| !domain.eq_ignore_ascii_case(ours.trim_end_matches('.'))) {
        return None;
    }
    let token = local.to_ascii_lowercase().strip_prefix("b-")?.to_owned();
    Some(verify(key, &token))
}

/// The envelope sender for a delivery when a bounce domain is configured.
pub fn envelope_sender(key: &[u8], delivery: DeliveryRef, bounce_domain: &str) -> String {
    format!("b-{}@{bounce_domain}", token(key, delivery))
}

/// A Message-ID stable for a person and generation (so retries keep it) and unguessable (so it
/// reveals nothing about who else was written to).
pub fn message_id(key: &[u8], delivery: DeliveryRef, domain: &str) -> String {
    let digest = mac(key, b"message-id", delivery.person_id, delivery.generation);
    format!(
        "{}.{}@{domain}",
        hex::encode(&digest[..12]),
        delivery.generation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens_round_trip_and_use_only_lowercase_and_digits() {
        let delivery = DeliveryRef {
            person_id: 340_000,
            generation: 2,
        };
        let token = token(KEY, delivery);
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(verify(KEY, &token), Ok(delivery));
        assert_eq!(verify(KEY, &token.to_uppercase()), Ok(delivery));
    }

    #[test]
    fn a_forged_or_damaged_token_is_refused() {
        let genuine = token(
            KEY,
            DeliveryRef {
                person_id: 7,
                generation: 1,
            },
        );
        // Pointing the genuine signature at someone else.
        let forged = format!("{}{}", "00000008", &genuine[8..]);
        assert_eq!(verify(KEY, &forged), Err(TokenError::BadSignature));
        assert_eq!(
            verify(b"another campaign's key", &genuine),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify(KEY, "short"), Err(TokenError::Malformed));
        assert_eq!(
            verify(KEY, &format!("{}!", &genuine[1..])),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn addresses_carry_the_token() {
        let delivery = DeliveryRef {
            person_id: 42,
            generation: 3,
        };
        let address = envelope_sender(KEY, delivery, "bounces.example.fr");
        assert!(address.starts_with("b-"));
        assert_eq!(
            verify_address(KEY, &address.to_uppercase()),
            Some(Ok(delivery))
        );
        assert_eq!(verify_address(KEY, "someone@example.fr"), None);
    }

    #[test]
    fn anything_after_our_prefix_at_our_domain_is_a_token_to_verify() {
        let ours = Some("bounces.example.fr");
        let malformed = "b-zzzzzzzzzzzzzzzzzzzzzzzzz@bounces.example.fr";
        assert_eq!(
            verify_bounce_address(KEY, malformed, ours),
            Some(Err(TokenError::Malformed))
        );
        assert_eq!(
            verify_bounce_address(KEY, "<B-@Bounces.Example.FR>", ours),
            Some(Err(TokenError::Malformed))
        );
        // Another domain's address that happens to begin like ours is not ours.
        assert_eq!(verify_bounce_address(KEY, "b-team@example.org", ours), None);
        assert_eq!(
            verify_bounce_address(KEY, "postmaster@bounces.example.fr", ours),
            None
        );
    }

    #[test]
    fn message_ids_are_stable_per_generation() {
        let first = DeliveryRef {
            person_id: 42,
            generation: 1,
        };
        let second = DeliveryRef {
            person_id: 42,
            generation: 2,
        };
        assert_eq!(
            message_id(KEY, first, "x.fr"),
            message_id(KEY, first, "x.fr")
        );
        assert_ne!(
            message_id(KEY, first, "x.fr"),
            message_id(KEY, second, "x.fr")
        );
    }
}
