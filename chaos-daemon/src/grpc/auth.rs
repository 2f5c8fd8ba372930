//! Who is calling and what they may do.
//!
//! * Unix socket (mode 0600): the kernel's peer credentials; root or the daemon's own uid is an
//!   operator, anyone else is refused.
//! * TCP with mutual TLS: the client certificate (already verified against `--client-ca`, in
//!   date) must carry the extendedKeyUsage extension with clientAuth, and names the caller by
//!   its subject CN and its role by its subject OU: exactly one OU, `operator` or `observer`.
//!   No OU, any other OU or several OUs (`OU=operator,OU=observer`) have no role and are
//!   refused.
//! * Plain TCP, only with `--insecure-tcp` on loopback: observer.
//!
//! Observers may read status and reports and may call EmergencyStop (stopping is always
//! allowed); operators may also start and stop experiments and clear the latch.

use chaos_api::error::escape_controls;
use tonic::{Request, Status, transport::server::UdsConnectInfo};
use x509_parser::prelude::{FromDer as _, X509Certificate};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Observer,
    Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// For the audit log: `uid 0`, `cert CN=alice (operator)`, `insecure tcp 127.0.0.1:5000`.
    pub name: String,
    pub role: Role,
}

/// How plain-TCP callers are named, before their address.
const INSECURE_TCP: &str = "insecure tcp";

impl Caller {
    /// Who the caller is for per-caller limits: its name, except that every plain-TCP
    /// loopback observer is one caller (`insecure tcp`), whatever its port: they cannot be
    /// told apart, and a new connection must not bring a new share.
    pub fn identity(&self) -> &str {
        if self.name.starts_with(INSECURE_TCP) {
            INSECURE_TCP
        } else {
            &self.name
        }
    }

    /// PermissionDenied unless the caller has at least `role`.
    pub fn require(&self, role: Role, method: &str) -> Result<(), Status> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} may not call {method}: it needs the {role:?} role",
                self.name
            )))
        }
    }
}

/// Identifies the caller of `req`.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    if let Some(uds) = req.extensions().get::<UdsConnectInfo>() {
        let uid = uds
            .peer_cred
            .map(|c| c.uid())
            .ok_or_else(|| Status::unauthenticated("no peer credentials"))?;
        // SAFETY: geteuid has no preconditions.
        if uid == 0 || uid == unsafe { libc::geteuid() } {
            return Ok(Caller {
                name: format!("uid {uid}"),
                role: Role::Operator,
            });
        }
        return Err(Status::permission_denied(format!(
            "uid {uid} may not use this daemon"
        )));
    }
    if let Some(certs) = req.peer_certs() {
        let leaf = certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        return from_certificate(leaf.as_ref());
    }
    match req.remote_addr() {
        Some(addr) if addr.ip().is_loopback() => Ok(Caller {
            name: format!("{INSECURE_TCP} {addr}"),
            role: Role::Observer,
        }),
        _ => Err(Status::unauthenticated("a client certificate is required")),
    }
}

/// The caller named by a verified client certificate (DER). The certificate must be meant for
/// client authentication (an extendedKeyUsage extension naming clientAuth: Unauthenticated
/// otherwise) and name exactly one role in its subject (one OU, `operator` or `observer`:
/// PermissionDenied otherwise, naming the OUs it has).
pub fn from_certificate(der: &[u8]) -> Result<Caller, Status> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let subject = cert.subject();
    // A CN is the caller's own text: its control characters are shown, not obeyed.
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map_or_else(|| "?".to_owned(), |cn| escape_controls(cn).into_owned());
    client_auth(&cert, &cn)?;
    let ous: Vec<&str> = subject
        .iter_organizational_unit()
        .map(|a| a.as_str().unwrap_or("?"))
        .collect();
    let role = match ous.as_slice() {
        ["operator"] => Role::Operator,
        ["observer"] => Role::Observer,
        _ => {
            let has = match ous.as_slice() {
                [] => "no OU".to_owned(),
                [one] => format!("OU={one:?}"),
                several => format!(
                    "{} OUs ({})",
                    several.len(),
                    several
                        .iter()
                        .map(|ou| format!("OU={ou:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err(Status::permission_denied(format!(
                "certificate CN={cn} has {has}; expected exactly one OU: OU=operator or \
                 OU=observer"
            )));
        }
    };
    Ok(Caller {
        name: format!("cert CN={cn} ({})", ous[0]),
        role,
    })
}

/// Unauthenticated unless `cert` has the extendedKeyUsage extension with clientAuth.
fn client_auth(cert: &X509Certificate<'_>, cn: &str) -> Result<(), Status> {
    let refuse = |why: String| {
        Err(Status::unauthenticated(format!(
            "certificate CN={cn} {why}; a client certificate needs extendedKeyUsage clientAuth"
        )))
    };
    match cert.extended_key_usage() {
        Ok(Some(eku)) if eku.value.client_auth => Ok(()),
        Ok(Some(eku)) => {
            let v = eku.value;
            let has: Vec<String> = [
                (v.any, "anyExtendedKeyUsage"),
                (v.server_auth, "serverAuth"),
                (v.code_signing, "codeSigning"),
                (v.email_protection, "emailProtection"),
                (v.time_stamping, "timeStamping"),
                (v.ocsp_signing, "OCSPSigning"),
            ]
            .into_iter()
            .filter(|(yes, _)| *yes)
            .map(|(_, name)| name.to_owned())
            .chain(v.other.iter().map(ToString::to_string))
            .collect();
            refuse(format!(
                "has extendedKeyUsage {} without clientAuth",
                has.join(", ")
            ))
        }
        Ok(None) => refuse("has no extendedKeyUsage extension".to_owned()),
        Err(e) => refuse(format!(
            "has an unreadable extendedKeyUsage extension ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, KeyPair};
    use tonic::Code;

    use super::*;

    /// A self-signed certificate (DER) with CN `cn`, the OUs `ous` in order and the EKUs `ekus`
    /// (no extendedKeyUsage extension when empty).
    fn cert(cn: &str, ous: &[&str], ekus: &[Eku]) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
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
        params.extended_key_usages = ekus.to_vec();
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn refused(der: &[u8]) -> (Code, String) {
        let s = from_certificate(der).unwrap_err();
        (s.code(), s.message().to_owned())
    }

    #[test]
    fn one_role_ou_with_client_auth_names_the_caller() {
        let alice = from_certificate(&cert("alice", &["operator"], &[Eku::ClientAuth])).unwrap();
        assert_eq!(
            alice,
            Caller {
                name: "cert CN=alice (operator)".into(),
                role: Role::Operator
            }
        );
        let both = [Eku::ServerAuth, Eku::ClientAuth];
        let bob = from_certificate(&cert("bob", &["observer"], &both)).unwrap();
        assert_eq!(
            (bob.name.as_str(), bob.role),
            ("cert CN=bob (observer)", Role::Observer)
        );
        // A CN is shown, not obeyed, wherever the caller's name goes (audit, stop reasons).
        let odd = cert("eve\u{1b}[2J\u{7}", &["observer"], &[Eku::ClientAuth]);
        assert_eq!(
            from_certificate(&odd).unwrap().name,
            "cert CN=eve\\u{1b}[2J\\u{7} (observer)"
        );
    }

    #[test]
    fn anything_but_exactly_one_role_ou_is_refused() {
        let client = [Eku::ClientAuth];
        for ous in [["operator", "observer"], ["observer", "operator"]] {
            let (code, message) = refused(&cert("mallory", &ous, &client));
            assert_eq!(code, Code::PermissionDenied, "{message}");
            assert_eq!(
                message,
                format!(
                    "certificate CN=mallory has 2 OUs (OU={:?}, OU={:?}); expected exactly one \
                     OU: OU=operator or OU=observer",
                    ous[0], ous[1]
                )
            );
        }
        let (code, message) = refused(&cert("carol", &[], &client));
        assert_eq!(code, Code::PermissionDenied);
        assert!(message.contains("CN=carol has no OU;"), "{message}");
        let (code, message) = refused(&cert("carol", &["interns"], &client));
        assert_eq!(code, Code::PermissionDenied);
        assert!(message.contains("has OU=\"interns\";"), "{message}");
    }

    #[test]
    fn a_certificate_not_meant_for_clients_is_refused() {
        let (code, message) = refused(&cert("alice", &["operator"], &[]));
        assert_eq!(code, Code::Unauthenticated, "{message}");
        assert_eq!(
            message,
            "certificate CN=alice has no extendedKeyUsage extension; a client certificate \
             needs extendedKeyUsage clientAuth"
        );
        let (code, message) = refused(&cert("alice", &["operator"], &[Eku::ServerAuth]));
        assert_eq!(code, Code::Unauthenticated, "{message}");
        assert_eq!(
            message,
            "certificate CN=alice has extendedKeyUsage serverAuth without clientAuth; a client \
             certificate needs extendedKeyUsage clientAuth"
        );
        let (_, message) = refused(&cert("alice", &["operator"], &[Eku::Any]));
        assert!(
            message.contains("has extendedKeyUsage anyExtendedKeyUsage without clientAuth"),
            "{message}"
        );
    }

    #[test]
    fn plain_tcp_observers_are_one_caller_whatever_their_port() {
        let identity = |name: &str| {
            Caller {
                name: name.into(),
                role: Role::Observer,
            }
            .identity()
            .to_owned()
        };
        assert_eq!(identity("insecure tcp 127.0.0.1:5000"), "insecure tcp");
        assert_eq!(identity("insecure tcp [::1]:6000"), "insecure tcp");
        assert_eq!(identity("cert CN=bob (observer)"), "cert CN=bob (observer)");
        assert_eq!(identity("uid 0"), "uid 0");
    }
}
