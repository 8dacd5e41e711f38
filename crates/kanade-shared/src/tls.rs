//! Which CA certificates a TLS client trusts: the ones in a PEM file the operator names (only
//! those, so a private CA is pinned), else the system's.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// `setting` names where the file is given (`sslrootcert`, `--ca-file`), for the messages.
pub fn root_store(ca_file: Option<&Path>, setting: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    format!(
                        "cannot read {setting} {}: {e}; give a PEM file of the CA certificates that sign the server's",
                        path.display()
                    )
                })?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "{setting} {} holds no usable CA certificate (PEM `BEGIN CERTIFICATE` blocks)",
                    path.display()
                ));
            }
        }
        None => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                return Err(format!(
                    "no trusted CA certificates found on this system to check the server's certificate; name a PEM file with {setting}"
                ));
            }
        }
    }
    Ok(store)
}

/// Trusts nobody: for a client that only speaks plain HTTP.
pub fn no_roots() -> RootCertStore {
    RootCertStore::empty()
}

/// A client config trusting `roots`, with the ring provider the rest of the build uses.
pub fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(
            root_store(Some(&empty), "--ca-file").unwrap_err(),
            format!(
                "--ca-file {} holds no usable CA certificate (PEM `BEGIN CERTIFICATE` blocks)",
                empty.display()
            )
        );
        let missing = dir.path().join("missing.pem");
        assert!(
            root_store(Some(&missing), "--ca-file")
                .unwrap_err()
                .starts_with(&format!("cannot read --ca-file {}", missing.display()))
        );
    }
}
