//! Whether a host is this machine (`localhost`, `127.0.0.0/8`, `::1`): a relay there may be
//! spoken to in plain text, and a certificate there may go unverified (see `tls`).

/// `localhost` or a loopback address, with or without the brackets of an IPv6 literal.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("[::1]"));
        assert!(!is_loopback_host("smtp.example.fr"));
    }
}
