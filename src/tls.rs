//! The TLS client side, one set of rules for every server breachmail talks to (the SMTP relays,
//! the bounce mailbox): rustls on the ring provider, safe protocol versions only.
//!
//! A certificate is verified against the web's roots (Mozilla's list, webpki-roots) and, when
//! the operator names one with `tls_ca`, a private CA or the server's own certificate; its name
//! is the host's, or `tls_server_name` where the server is reached by address. One exception: a
//! server on loopback (`localhost`, `127.0.0.0/8`, `::1`) with neither key set, such as Debian's
//! Postfix with its self-signed "snakeoil" certificate, is used encrypted but unverified, with a
//! warning once per run. Nothing crosses a network there, and plaintext to loopback is allowed
//! anyway. The handshake's signatures are still checked: the session is encrypted to the holder
//! of the key of the certificate presented.
//!
//! Debug builds also trust the file named by `BREACHMAIL_TEST_CA_FILE`, so that tests can run
//! servers with a certificate of their own; release builds ignore it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::exit::UsageError;

/// The operator's keys for one server's certificate (`tls_ca`, `tls_server_name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file: a private CA, or the server's own certificate, trusted besides the web's roots.
    pub ca: Option<PathBuf>,
    /// The name the certificate must carry, instead of the host of the URL.
    pub server_name: Option<String>,
}

impl TlsSettings {
    /// Whether the operator said anything about this server's certificate.
    fn is_set(&self) -> bool {
        self.ca.is_some() || self.server_name.is_some()
    }
}

/// Who refused to go on with a server: our rules, or the server itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refuser {
    /// Our TLS settings (an untrusted certificate, no STARTTLS to a remote host).
    Us,
    /// The server (a TLS alert, a refused login).
    Server,
}

/// How to open TLS with one server: the configuration and the name to verify, with what to
/// say when it fails.
pub struct TlsClient {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
    /// The configuration keys named in errors: `smtp`, `relay[1]`, `bounces`.
    section: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .field("section", &self.section)
            .finish()
    }
}

impl TlsClient {
    /// The client for `host` (its URL's host), as `section`'s keys say. `what` names the server
    /// in the one warning about an unverified certificate ("the relay 127.0.0.1:25").
    pub fn new(
        host: &str,
        settings: &TlsSettings,
        section: &str,
        what: &str,
    ) -> Result<TlsClient, UsageError> {
        let key = |name: &str| format!("{section}.{name}");
        let verify_as = settings.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(verify_as.trim_start_matches('[').trim_end_matches(']'))
            .map(|n| n.to_owned())
            .map_err(|_| {
                UsageError::new(match &settings.server_name {
                    Some(name) => format!(
                        "{} = {name:?} is not a host name or address a certificate can carry",
                        key("tls_server_name")
                    ),
                    None => format!(
                        "{host} is not a host name TLS can verify: set {} to the name the server's certificate carries",
                        key("tls_server_name")
                    ),
                })
            })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Verifier::new(host, settings, section, what, provider.clone())?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UsageError::new(format!("while setting up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            name,
            section: section.to_owned(),
        })
    }

    /// What a failed handshake means and what to do about it, when it was TLS that failed (as
    /// opposed to a connection that broke): "the relay's certificate is not trusted (unknown
    /// issuer): set smtp.tls_ca to …", with who refused.
    pub fn explain(&self, error: &std::io::Error, server: &str) -> Option<(String, Refuser)> {
        let tls = rustls_error(error)?;
        Some(explain(tls, &self.section, server, &self.name))
    }
}

/// A certificate that does not verify may still be used, encrypted, on loopback, when the
/// operator set neither `tls_ca` nor `tls_server_name` (either one asks for verification).
pub fn may_go_on_unverified(host: &str, settings: &TlsSettings) -> bool {
    crate::loopback::is_loopback_host(host) && !settings.is_set()
}

fn read_certificates(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).context("cannot read it")?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .context("not a PEM file of certificates")?;
    if certificates.is_empty() {
        anyhow::bail!(
            "holds no certificate (expected PEM: -----BEGIN CERTIFICATE----- …): the CA's certificate, or the server's own"
        );
    }
    Ok(certificates)
}

fn add_test_ca(roots: &mut rustls::RootCertStore) -> anyhow::Result<()> {
    if cfg!(debug_assertions)
        && let Some(path) = std::env::var_os("BREACHMAIL_TEST_CA_FILE")
    {
        let pem = std::fs::read(&path).context("while reading BREACHMAIL_TEST_CA_FILE")?;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(certificate.context("while reading BREACHMAIL_TEST_CA_FILE")?)
                .context("while trusting BREACHMAIL_TEST_CA_FILE")?;
        }
    }
    Ok(())
}

/// The web's roots and the operator's `tls_ca`; on loopback without settings, a certificate
/// that does not verify is used anyway, said once.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `tls_ca`: a server presenting one of them, byte for byte, is trusted.
    pinned: Vec<CertificateDer<'static>>,
    unverified_allowed: bool,
    warned: AtomicBool,
    what: String,
    section: String,
}

impl Verifier {
    fn new(
        host: &str,
        settings: &TlsSettings,
        section: &str,
        what: &str,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Verifier, UsageError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let mut pinned = Vec::new();
        if let Some(path) = &settings.ca {
            let certificates = read_certificates(path).map_err(|e| {
                UsageError::new(format!("{section}.tls_ca = {:?}: {e:#}", path.display()))
            })?;
            for certificate in certificates {
                // A CA certificate is a root; a server's own (self-signed, not a CA) is also
                // taken as it is, byte for byte: webpki takes no root as a server's certificate.
                let _ = roots.add(certificate.clone());
                pinned.push(certificate);
            }
        }
        add_test_ca(&mut roots).map_err(|e| UsageError::new(format!("{e:#}")))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| UsageError::new(format!("{section}.tls_ca: {e}")))?;
        Ok(Verifier {
            webpki,
            pinned,
            unverified_allowed: may_go_on_unverified(host, settings),
            warned: AtomicBool::new(false),
            what: what.to_owned(),
            section: section.to_owned(),
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let error = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        // The operator's own copy of the certificate vouches for its issuer, not for its name
        // or its dates: only a chain that could not be built is forgiven.
        let chain_only = matches!(
            error,
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::Other(_)
            )
        );
        if chain_only
            && self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        if !self.unverified_allowed {
            return Err(error);
        }
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                server = %self.what,
                "the certificate is not verified ({}): going on encrypted, as the server is on this machine (loopback); to verify it, set {}.tls_ca to its certificate or its CA's",
                in_short(&error),
                self.section
            );
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// rustls' error inside an `io::Error` (how tokio-rustls reports a failed handshake).
fn rustls_error(error: &std::io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The cause and the fix of a failed handshake, and who refused.
fn explain(
    error: &rustls::Error,
    section: &str,
    server: &str,
    name: &ServerName<'_>,
) -> (String, Refuser) {
    use rustls::Error as E;
    match error {
        E::InvalidCertificate(_) | E::NoCertificatesPresented => (
            format!("{server}: {}", certificate_problem(error, section, name)),
            Refuser::Us,
        ),
        E::AlertReceived(alert) => (
            format!(
                "{server} ended the TLS handshake ({alert:?}): it accepts none of the TLS versions or ciphers offered (TLS 1.2 and 1.3), or wants a client certificate; ask its administrator"
            ),
            Refuser::Server,
        ),
        E::PeerIncompatible(_) => (
            format!(
                "{server} speaks no TLS this program accepts ({error}): TLS 1.2 or 1.3 with current ciphers is required; ask its administrator"
            ),
            Refuser::Us,
        ),
        E::InvalidMessage(_)
        | E::InappropriateHandshakeMessage { .. }
        | E::InappropriateMessage { .. } => (
            format!(
                "{server} did not answer in TLS ({error}): is the port the one for this scheme (smtps:// on 465, smtp:// with STARTTLS on 25 or 587; imaps:// on 993, imap:// on 143)?"
            ),
            Refuser::Us,
        ),
        other => (format!("TLS with {server} failed: {other}"), Refuser::Us),
    }
}

/// What is wrong with the certificate presented, and which key mends it.
fn certificate_problem(error: &rustls::Error, section: &str, name: &ServerName<'_>) -> String {
    use CertificateError as C;
    let rustls::Error::InvalidCertificate(problem) = error else {
        return format!("the certificate is refused: {error}");
    };
    let name = name.to_str();
    match problem {
        C::UnknownIssuer => format!(
            "the certificate is not trusted (unknown issuer): set {section}.tls_ca to the certificate of the CA that signed it (or to the server's own certificate, if it is self-signed)"
        ),
        C::Expired | C::ExpiredContext { .. } => format!(
            "the certificate has expired{}: the server's administrator must renew it (this program never takes an expired certificate)",
            match problem {
                C::ExpiredContext { not_after, .. } => format!(" (on {})", date(*not_after)),
                _ => String::new(),
            }
        ),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the certificate is not valid yet: check this machine's clock, and the server's certificate dates".to_owned()
        }
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "the certificate is not valid for the name {name}{}: reach the server by a name its certificate carries, or set {section}.tls_server_name to that name",
            match problem {
                C::NotValidForNameContext { presented, .. } if !presented.is_empty() => format!(
                    " (it is for {})",
                    presented.iter().map(|n| bare_name(n)).collect::<Vec<_>>().join(", ")
                ),
                _ => String::new(),
            }
        ),
        C::Revoked => "the certificate has been revoked: the server's administrator must replace it".to_owned(),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "the certificate is not for a server (its extended key usage lacks serverAuth): the server's administrator must replace it".to_owned()
        }
        C::BadSignature | C::BadEncoding => format!(
            "the certificate is damaged or not signed by its issuer ({problem:?}): check {section}.tls_ca and the chain the server sends"
        ),
        other => format!(
            "the certificate is refused ({other:?}): check {section}.tls_ca and the server's certificate"
        ),
    }
}

/// What is wrong with a certificate, in a few words.
fn in_short(error: &rustls::Error) -> String {
    use CertificateError as C;
    match error {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            "self-signed, or unknown issuer".to_owned()
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "expired".to_owned()
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => "not for this name".to_owned(),
        other => other.to_string(),
    }
}

/// `relay.example.fr` out of webpki's `DnsName("relay.example.fr")`, `10.0.0.25` out of
/// `IpAddress(10.0.0.25)`; anything else as it is.
fn bare_name(presented: &str) -> &str {
    for (open, close) in [("DnsName(\"", "\")"), ("IpAddress(", ")")] {
        if let Some(inner) = presented
            .strip_prefix(open)
            .and_then(|rest| rest.strip_suffix(close))
        {
            return inner;
        }
    }
    presented
}

/// A certificate date, as `2026-12-06`.
fn date(time: UnixTime) -> String {
    let days = time.as_secs() / 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_settings_goes_on_unverified() {
        let none = TlsSettings::default();
        for host in ["127.0.0.1", "localhost", "[::1]", "127.0.0.53"] {
            assert!(may_go_on_unverified(host, &none), "{host}");
        }
        // Any other host: verification stays mandatory, whatever its name resolves to.
        for host in [
            "relay.example.fr",
            "10.0.0.25",
            "localhost.example.fr",
            "0.0.0.0",
        ] {
            assert!(!may_go_on_unverified(host, &none), "{host}");
        }
        // On loopback, either key asks for verification.
        let ca = TlsSettings {
            ca: Some("ca.pem".into()),
            server_name: None,
        };
        let name = TlsSettings {
            ca: None,
            server_name: Some("relay.example.fr".into()),
        };
        assert!(!may_go_on_unverified("127.0.0.1", &ca));
        assert!(!may_go_on_unverified("127.0.0.1", &name));
    }

    /// A self-signed certificate, as Debian's snakeoil, for `names`, with its PEM.
    fn self_signed(names: &[&str]) -> (CertificateDer<'static>, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let certificate = params.self_signed(&key).expect("certificate");
        (certificate.der().clone(), certificate.pem())
    }

    fn check(
        host: &str,
        settings: &TlsSettings,
        certificate: &CertificateDer<'_>,
    ) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            Verifier::new(host, settings, "smtp", "the relay", provider).expect("verifier");
        let name = ServerName::try_from(settings.server_name.as_deref().unwrap_or(host))
            .expect("name")
            .to_owned();
        verifier
            .verify_server_cert(certificate, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn a_self_signed_certificate_is_taken_on_loopback_or_when_it_is_tls_ca() {
        let (certificate, pem) = self_signed(&["localhost", "relay.example.fr"]);
        let none = TlsSettings::default();
        assert!(check("localhost", &none, &certificate).is_ok());
        assert!(check("127.0.0.1", &none, &certificate).is_ok());
        let refused = check("relay.example.fr", &none, &certificate).expect_err("remote");
        let (text, by) = explain(
            &refused,
            "smtp",
            "the relay relay.example.fr:25",
            &ServerName::try_from("relay.example.fr").expect("name"),
        );
        assert_eq!(by, Refuser::Us);
        assert!(
            text.contains(
                "not trusted (unknown issuer): set smtp.tls_ca to the certificate of the CA"
            ),
            "{text}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("relay.pem");
        std::fs::write(&file, pem).expect("write pem");
        let pinned = TlsSettings {
            ca: Some(file),
            server_name: None,
        };
        assert!(check("relay.example.fr", &pinned, &certificate).is_ok());
        // Another self-signed certificate is not this one.
        let (other, _) = self_signed(&["relay.example.fr"]);
        assert!(check("relay.example.fr", &pinned, &other).is_err());
        // It vouches for the issuer, not for another name.
        assert!(check("other.example.fr", &pinned, &certificate).is_err());
        assert!(
            check("127.0.0.1", &pinned, &other).is_err(),
            "tls_ca set: verified even on loopback"
        );
    }

    #[test]
    fn a_tls_ca_that_is_not_a_certificate_is_a_configuration_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").expect("write");
        let settings = TlsSettings {
            ca: Some(file),
            server_name: None,
        };
        let error = TlsClient::new("relay.example.fr", &settings, "relay[1]", "the relay")
            .expect_err("refused");
        assert!(error.0.contains("relay[1].tls_ca"), "{error}");
        assert!(error.0.contains("holds no certificate"), "{error}");
        let missing = TlsSettings {
            ca: Some(dir.path().join("missing.pem")),
            server_name: None,
        };
        let error =
            TlsClient::new("relay.example.fr", &missing, "smtp", "the relay").expect_err("refused");
        assert!(
            error.0.contains("smtp.tls_ca") && error.0.contains("cannot read"),
            "{error}"
        );
        let bad_name = TlsSettings {
            ca: None,
            server_name: Some("not a name".into()),
        };
        let error = TlsClient::new("10.0.0.25", &bad_name, "bounces", "the bounce mailbox")
            .expect_err("refused");
        assert!(error.0.contains("bounces.tls_server_name"), "{error}");
    }

    #[test]
    fn each_certificate_problem_says_what_to_set() {
        let name = ServerName::try_from("10.0.0.25").expect("name");
        let say = |problem: CertificateError| {
            explain(
                &rustls::Error::InvalidCertificate(problem),
                "relay[0]",
                "the relay 10.0.0.25:25",
                &name,
            )
            .0
        };
        assert!(say(CertificateError::UnknownIssuer).contains("set relay[0].tls_ca"));
        assert!(say(CertificateError::Expired).contains("expired"));
        assert!(
            say(CertificateError::ExpiredContext {
                time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_780_000_000)),
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    1_764_979_200
                )),
            })
            .contains("expired (on 2025-12-06)")
        );
        let wrong_name = say(CertificateError::NotValidForNameContext {
            expected: name.to_owned(),
            presented: vec![
                "DnsName(\"relay.example.fr\")".into(),
                "IpAddress(10.0.0.26)".into(),
            ],
        });
        assert!(
            wrong_name.contains(
                "not valid for the name 10.0.0.25 (it is for relay.example.fr, 10.0.0.26)"
            ),
            "{wrong_name}"
        );
        assert!(
            wrong_name.contains("set relay[0].tls_server_name"),
            "{wrong_name}"
        );
        assert!(say(CertificateError::NotValidYet).contains("clock"));
        let (alert, by) = explain(
            &rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            "smtp",
            "the relay",
            &name,
        );
        assert_eq!(by, Refuser::Server);
        assert!(alert.contains("ended the TLS handshake"), "{alert}");
    }
}
