//! Who is calling and what they may do.
//!
//! * Unix socket (mode 0600): the kernel's peer credentials; root or the daemon's own uid is an
//!   operator, anyone else is refused.
//! * TCP with mutual TLS: the client certificate (already verified against `--client-ca`, in
//!   date) names the caller by its subject CN and its role by its subject OU: `operator` or
//!   `observer`. Any other OU has no role and is refused.
//! * Plain TCP, only with `--insecure-tcp` on loopback: observer.
//!
//! Observers may read status and reports and may call EmergencyStop (stopping is always
//! allowed); operators may also start and stop experiments and clear the latch.

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

impl Caller {
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
            name: format!("insecure tcp {addr}"),
            role: Role::Observer,
        }),
        _ => Err(Status::unauthenticated("a client certificate is required")),
    }
}

/// The caller named by a verified client certificate (DER).
pub fn from_certificate(der: &[u8]) -> Result<Caller, Status> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Status::unauthenticated(format!("unreadable client certificate: {e}")))?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("?");
    let ou = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("");
    let role = match ou {
        "operator" => Role::Operator,
        "observer" => Role::Observer,
        other => {
            return Err(Status::permission_denied(format!(
                "certificate CN={cn} has OU={other:?}; expected OU=operator or OU=observer"
            )));
        }
    };
    Ok(Caller {
        name: format!("cert CN={cn} ({ou})"),
        role,
    })
}
