//! Test certificates: a CA that issues the daemon's and clients' certificates (rcgen), and a
//! daemon serving mutual TLS with them.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};

use super::Daemon;

/// A CA that writes `NAME.pem` / `NAME.key` files into a directory.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Self { issuer }
    }

    /// Issues a certificate `NAME` with CN `cn`, the OUs `ous` and the extended key usage of
    /// `usage`, valid around now (`expired` makes it end in 2021).
    pub fn issue(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        ous: &[&str],
        usage: Usage,
        expired: bool,
    ) {
        let sans = match usage {
            Usage::Server => vec!["localhost".to_string(), "127.0.0.1".to_string()],
            _ => vec![],
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for (i, ou) in ous.iter().enumerate() {
            // rcgen keeps one value per type: a second OU is the same OID (2.5.4.11) spelled
            // as a custom type.
            let ty = if i == 0 {
                DnType::OrganizationalUnitName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 11])
            };
            params.distinguished_name.push(ty, *ou);
        }
        params.extended_key_usages = match usage {
            Usage::Server | Usage::ServerAuthOnly => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::NoEku => vec![],
        };
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    }
}

/// What a certificate is for: its extendedKeyUsage (and SANs).
#[derive(Clone, Copy)]
pub enum Usage {
    /// The daemon's: serverAuth, SANs localhost and 127.0.0.1.
    Server,
    /// A client's: clientAuth.
    Client,
    /// A client's without the extendedKeyUsage extension.
    NoEku,
    /// A client's whose only extended key usage is serverAuth.
    ServerAuthOnly,
}

/// Starts a daemon with `extra` arguments and mutual TLS on 127.0.0.1:0 with the files of
/// `certs` (`server.pem`, `server.key`, the client CA `ca.pem`); returns it with its https
/// address.
pub fn tls_daemon(dir: &Path, certs: &Path, extra: &[&str]) -> (Daemon, String) {
    let file = |name: &str| certs.join(name);
    let files = [file("server.pem"), file("server.key"), file("ca.pem")];
    tls_daemon_with(dir, &files, extra)
}

/// [`tls_daemon`] with the files `[certificate, key, client CA]`.
pub fn tls_daemon_with(dir: &Path, files: &[PathBuf; 3], extra: &[&str]) -> (Daemon, String) {
    let [cert, key, ca] = files.each_ref().map(|f| f.display().to_string());
    let tls = [
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--client-ca",
        &ca,
    ];
    let mut d = Daemon::start_with(dir, &[&tls[..], extra].concat());
    let line = d.next_line();
    let addr = line
        .strip_prefix("listening on https://")
        .expect("https line")
        .to_string();
    (
        d,
        format!("https://localhost:{}", addr.rsplit(':').next().unwrap()),
    )
}
