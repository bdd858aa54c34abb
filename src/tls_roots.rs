//! Trust roots for TLS, shared by the Kafka connections and the OAuth token endpoint: the CA
//! certificates of a PEM file, or the system's.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The CA certificates in the PEM file `ca_file`, or the system's roots when it is empty.
pub(crate) fn load_roots(ca_file: &str) -> std::result::Result<RootCertStore, SetupFailure> {
    if ca_file.is_empty() {
        return Ok(system_roots());
    }
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_file)? {
        roots.add(cert).map_err(|e| {
            (
                "holds a certificate rustls cannot use as a trust anchor".to_owned(),
                Some(e.into()),
            )
        })?;
    }
    Ok(roots)
}

/// The system's CA store; Mozilla's bundled roots where the machine has none (distroless or
/// scratch images), so MSK's Amazon roots are trusted either way.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (_added, _ignored) = roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// What is wrong with a file, and the underlying error.
pub(crate) type SetupFailure = (String, Option<Box<dyn std::error::Error + Send + Sync + 'static>>);

/// The certificates of the PEM file at `path`: at least one.
pub(crate) fn read_certs(path: &str) -> std::result::Result<Vec<CertificateDer<'static>>, SetupFailure> {
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| ("is not a readable PEM certificate file".to_owned(), Some(e.into())))?;
    if certs.is_empty() {
        return Err((
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
            None,
        ));
    }
    Ok(certs)
}
