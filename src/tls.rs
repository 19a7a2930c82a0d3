//! The TLS client side, one configuration for every server breachmail talks to (the SMTP relays,
//! the bounce mailbox): rustls on the ring provider, the Mozilla roots (webpki-roots), safe
//! protocol versions only, and no way to skip verification. Debug builds also trust the file
//! named by `BREACHMAIL_TEST_CA_FILE`, so that tests can run servers with a certificate of their
//! own; release builds ignore it.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls::{self, pki_types};

/// The client configuration; an error only when the test CA file cannot be read.
pub fn client_config() -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if cfg!(debug_assertions)
        && let Some(path) = std::env::var_os("BREACHMAIL_TEST_CA_FILE")
    {
        use pki_types::pem::PemObject;
        let pem = std::fs::read(&path).context("while reading BREACHMAIL_TEST_CA_FILE")?;
        for certificate in pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(certificate.context("while reading BREACHMAIL_TEST_CA_FILE")?)
                .context("while trusting BREACHMAIL_TEST_CA_FILE")?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("while setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The name a certificate must carry for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> anyhow::Result<pki_types::ServerName<'static>> {
    pki_types::ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host} is not a host name TLS can verify"))
}
