//! TCP with mutual TLS on loopback, with certificates generated here: who gets in, and what
//! each role may do. Also: plain TCP only on loopback, and only for observers.

mod support;

use std::{path::Path, process::Command};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};
use support::*;

/// A CA that writes `NAME.pem` / `NAME.key` files into a directory.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).unwrap();
        Self { issuer }
    }

    /// Issues a certificate `NAME` with CN `cn`, OU `ou` (if any), valid `years` around now
    /// (`expired` makes it end in 2021).
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        cn: &str,
        ou: Option<&str>,
        server: bool,
        expired: bool,
    ) {
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            vec![]
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou);
        }
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
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

struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = TempDir::new("tls-pki");
        let (ca, other) = (Ca::new(&dir.0, "ca"), Ca::new(&dir.0, "other-ca"));
        ca.issue(&dir.0, "server", "chaos-daemon", None, true, false);
        ca.issue(&dir.0, "operator", "alice", Some("operator"), false, false);
        ca.issue(&dir.0, "observer", "bob", Some("observer"), false, false);
        ca.issue(&dir.0, "norole", "carol", Some("interns"), false, false);
        ca.issue(&dir.0, "expired", "dave", Some("operator"), false, true);
        other.issue(&dir.0, "foreign", "mallory", Some("operator"), false, false);
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.0.join(file).display().to_string()
    }

    /// Starts a daemon with mutual TLS on 127.0.0.1:0 and returns it with its https address.
    fn daemon(&self, dir: &Path) -> (Daemon, String) {
        let (cert, key, ca) = (
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        );
        let mut d = Daemon::start_with(
            dir,
            &[
                "--tcp",
                "127.0.0.1:0",
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--client-ca",
                &ca,
            ],
        );
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

    /// `chaos-ctl --daemon ADDR` as the client `who` (no certificate when `None`).
    fn ctl(&self, addr: &str, who: Option<&str>, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(ctl_bin());
        cmd.args(["--daemon", addr, "--ca", &self.path("ca.pem")]);
        if let Some(who) = who {
            cmd.args([
                "--cert",
                &self.path(&format!("{who}.pem")),
                "--key",
                &self.path(&format!("{who}.key")),
            ]);
        }
        cmd.args(args).output().unwrap()
    }
}

/// GetStatus over TLS that trusts `ca` but presents no client certificate: `Ok` with the
/// daemon's answer (a status or a gRPC error it sent), `Err` when the connection failed below
/// gRPC (TLS, transport).
fn status_without_a_certificate(addr: &str, ca: &str) -> Result<String, String> {
    use chaos_api::proto::{GetStatusRequest, chaos_daemon_client::ChaosDaemonClient};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("localhost");
        let channel = Endpoint::from_shared(addr.to_string())
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        match ChaosDaemonClient::new(channel)
            .get_status(GetStatusRequest {})
            .await
        {
            Ok(r) => Ok(format!("node {}", r.into_inner().node)),
            Err(status) => {
                let transport = std::error::Error::source(&status)
                    .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some());
                if transport {
                    Err(format!("GetStatus: {status:?}"))
                } else {
                    Ok(format!("answered {status:?}"))
                }
            }
        }
    })
}

fn code(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mutual_tls_authenticates_callers_and_roles_decide() {
    let Some(mount) = kernel() else { return };
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    let (daemon, addr) = pki.daemon(&dir.0);
    let cg = TestCgroup::new(&mount, "tls");
    let cgs = cg.path.to_str().unwrap();
    let start = [
        "experiment",
        "packet_loss",
        "--cgroup",
        cgs,
        "--duration",
        "60",
        "--intensity",
        "0",
    ];

    // Who does not get in at all: no certificate, another CA's, an expired one. chaos-ctl
    // does not even try without a certificate (a usage error naming the flag), so a client
    // that trusts our CA but has no certificate is made here.
    let no_cert = {
        let mut cmd = Command::new(ctl_bin());
        cmd.args(["--daemon", &addr, "--ca", &pki.path("ca.pem"), "status"]);
        cmd.output().unwrap()
    };
    let (c, err) = code(&no_cert);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("an https:// daemon needs --cert"), "{err}");
    let status = status_without_a_certificate(&addr, &pki.path("ca.pem"));
    // The TLS layer refuses it (the CertificateRequired alert, or the connection closed
    // before the alert is read): no gRPC answer at all.
    assert!(
        status.is_err(),
        "the daemon answered a client without a certificate: {status:?}"
    );
    for who in ["foreign", "expired"] {
        let out = pki.ctl(&addr, Some(who), &["status"]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{who} must be rejected: {:?}",
            code(&out)
        );
    }
    // A certificate from our CA without a known role: refused (3).
    let (c, err) = code(&pki.ctl(&addr, Some("norole"), &start));
    assert_eq!(c, Some(3), "{err}");
    assert!(err.contains("OU=\"interns\""), "{err}");

    // An observer reads and may stop everything, but may not start or clear.
    assert_eq!(
        code(&pki.ctl(&addr, Some("observer"), &["status"])).0,
        Some(0)
    );
    let (c, err) = code(&pki.ctl(&addr, Some("observer"), &start));
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("PermissionDenied") && err.contains("CN=bob"),
        "{err}"
    );

    // An operator starts; the observer's emergency stop works; only the operator clears.
    let (c, err) = code(&pki.ctl(&addr, Some("operator"), &start));
    assert_eq!(c, Some(0), "{err}");
    assert_eq!(
        code(&pki.ctl(&addr, Some("observer"), &["emergency-stop"])).0,
        Some(0)
    );
    assert_eq!(
        code(&pki.ctl(&addr, Some("observer"), &["emergency-stop", "--clear"])).0,
        Some(3)
    );
    assert_eq!(
        code(&pki.ctl(&addr, Some("operator"), &["emergency-stop", "--clear"])).0,
        Some(0)
    );
    assert_eq!(cg.attached(), 0);

    // The audit log names certificate identities, refusals included.
    drop(daemon);
    let audit = chaos_daemon::store::Store::open(&dir.0.join("state"))
        .unwrap()
        .audit_log()
        .unwrap();
    let has = |caller: &str, method: &str, outcome: &str| {
        audit
            .iter()
            .any(|a| a.caller == caller && a.method == method && a.outcome.starts_with(outcome))
    };
    assert!(
        has("cert CN=alice (operator)", "StartExperiment", "ok"),
        "{audit:#?}"
    );
    assert!(
        has("cert CN=bob (observer)", "EmergencyStop", "ok"),
        "{audit:#?}"
    );
    assert!(
        has("refused caller", "StartExperiment", "PermissionDenied"),
        "{audit:#?}"
    );
}

#[test]
fn plain_tcp_is_loopback_only_and_read_only() {
    let Some(_) = kernel() else { return };
    let dir = TempDir::new("tls-insecure");
    // Refused on a non-loopback address.
    let out = Command::new(DAEMON)
        .args(["serve", "--socket"])
        .arg(dir.0.join("a.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state-a"))
        .args(["--insecure-tcp", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only allowed on loopback"));
    // On loopback: status works, starting does not.
    let mut d = Daemon::start_with(&dir.0, &["--insecure-tcp", "127.0.0.1:0"]);
    let line = d.next_line();
    let port = line
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    let addr = format!("http://127.0.0.1:{port}");
    let ctl = |args: &[&str]| {
        Command::new(ctl_bin())
            .arg("--daemon")
            .arg(&addr)
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(ctl(&["status"]).status.code(), Some(0));
    let out = ctl(&[
        "experiment",
        "packet_loss",
        "--cgroup",
        "/",
        "--duration",
        "1",
        "--intensity",
        "1",
    ]);
    let (c, err) = code(&out);
    assert_eq!(c, Some(3), "{err}");
    assert!(
        err.contains("PermissionDenied") && err.contains("needs the Operator role"),
        "refused for the role, before the target is looked at: {err}"
    );
}
