//! HTTPS for the console itself (`console.tls_cert`, `console.tls_key`), for a helpline that
//! reaches it across a network without a reverse proxy in front.
//!
//! Handshakes run in tasks of their own, each with a deadline, so a client that opens a
//! connection and says nothing holds up no one else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A handshake not finished by then is dropped.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Reads the PEM certificate chain and key into a TLS acceptor (TLS 1.2 and 1.3, HTTP/1.1).
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("while reading console.tls_cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("while reading console.tls_cert {}", cert.display()))?;
    if chain.is_empty() {
        return Err(crate::exit::UsageError::new(format!(
            "console.tls_cert: {} holds no certificate",
            cert.display()
        ))
        .into());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("while reading console.tls_key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("while setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("console.tls_cert and console.tls_key do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and hands over those whose TLS handshake succeeded.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> TlsListener {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("console: accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let handed_over = sender.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = handed_over.send((stream, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!("console: TLS handshake with {peer} failed: {error}")
                        }
                        Err(_) => tracing::debug!("console: TLS handshake with {peer} timed out"),
                    }
                });
                if sender.is_closed() {
                    return;
                }
            }
        });
        TlsListener { local, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended: nothing will come any more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
