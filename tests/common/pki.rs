//! A throwaway PKI made with rcgen in a temp dir: one CA, leaf certificates it signs (PEM files
//! for strait and Kafka, DER for rustls), the broker TLS settings of [`super::BrokerTls`].

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;

use super::BrokerTls;

/// A CA (`ca.pem`) and the certificates it signed, in a temp dir.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// One leaf certificate: its files and its DER forms.
pub struct Leaf {
    /// `<name>.pem`.
    pub cert: String,
    /// `<name>.key` (PKCS#8 PEM).
    pub key: String,
    pub der: CertificateDer<'static>,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

impl Pki {
    /// A new CA with common name `ca_name`, written to `ca.pem`.
    pub fn new(ca_name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = ca(ca_name);
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca");
        Pki { dir, ca }
    }

    /// A file of the PKI's dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ca.pem`.
    pub fn ca_file(&self) -> String {
        path_str(&self.path("ca.pem"))
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Another CA, which signs nothing here: `<name>.pem`, returned.
    pub fn unrelated_ca(&self, name: &str) -> String {
        let path = self.path(&format!("{name}.pem"));
        std::fs::write(&path, ca(name).pem()).expect("write ca");
        path_str(&path)
    }

    /// A certificate for `names` with common name `name`, as the CA signs it.
    pub fn leaf(&self, name: &str, names: &[&str]) -> Leaf {
        self.leaf_with(name, names, |_| {})
    }

    /// [`Pki::leaf`] with the parameters changed by `edit` before signing (validity, usages).
    pub fn leaf_with(&self, name: &str, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        edit(&mut params);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (cert_path, key_path) = (self.path(&format!("{name}.pem")), self.path(&format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Leaf {
            cert: path_str(&cert_path),
            key: path_str(&key_path),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A broker's TLS settings: a certificate for 127.0.0.1, this CA for client certificates.
    pub fn broker(&self, client_auth: bool) -> BrokerTls {
        let leaf = self.leaf("broker", &["127.0.0.1"]);
        BrokerTls {
            cert: PathBuf::from(leaf.cert),
            key: PathBuf::from(leaf.key),
            ca: PathBuf::from(self.ca_file()),
            client_auth,
        }
    }
}
