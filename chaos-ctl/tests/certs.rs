//! `chaos-ctl certs` offline: the files, their modes, what each certificate says (issuer,
//! extended key usage, the one OU of a client, the daemon's names, validity), and that no
//! existing file is ever overwritten. That a daemon accepts them, and gives each OU its role,
//! is chaos-daemon/tests/deploy_tls.rs.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Command, Output},
    time::{SystemTime, UNIX_EPOCH},
};

use support::TempDir;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, pem::Pem};

mod support;

const CTL: &str = env!("CARGO_BIN_EXE_chaos-ctl");

const FILES: [&str; 8] = [
    "ca.pem",
    "ca-key.pem",
    "daemon.pem",
    "daemon-key.pem",
    "operator.pem",
    "operator-key.pem",
    "observer.pem",
    "observer-key.pem",
];

fn certs(out: &Path, extra: &[&str]) -> Output {
    Command::new(CTL)
        .args(["certs", "--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn pem(path: &Path) -> Pem {
    let text = std::fs::read(path).unwrap();
    x509_parser::pem::parse_x509_pem(&text).unwrap().1
}

/// The subject OUs of `cert`.
fn ous(cert: &X509Certificate) -> Vec<String> {
    (cert.subject().iter_organizational_unit())
        .map(|ou| ou.as_str().unwrap().to_owned())
        .collect()
}

/// (serverAuth, clientAuth, any other purpose) of `cert`'s extendedKeyUsage.
fn eku(cert: &X509Certificate) -> (bool, bool, bool) {
    let e = cert
        .extended_key_usage()
        .unwrap()
        .expect("extendedKeyUsage")
        .value;
    let other = e.any || e.code_signing || e.email_protection || e.time_stamping;
    (
        e.server_auth,
        e.client_auth,
        other || e.ocsp_signing || !e.other.is_empty(),
    )
}

#[test]
fn certs_writes_a_ca_a_daemon_and_one_client_per_role() {
    let dir = TempDir::new("certs");
    let out = certs(
        &dir.0,
        &["--daemon-dns", "chaos.example.org", "--days", "30"],
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kubectl -n chaos-system create secret generic chaos-daemon-tls"),
        "{stdout}"
    );
    assert_eq!(mode(&dir.0), 0o700);
    for f in FILES {
        let want = if f.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&dir.0.join(f)), want, "{f}");
        assert!(stdout.contains(&format!("wrote {}", dir.0.join(f).display())));
    }

    let pems: Vec<Pem> = ["ca", "daemon", "operator", "observer"]
        .iter()
        .map(|n| pem(&dir.0.join(format!("{n}.pem"))))
        .collect();
    let [ca, daemon, operator, observer] = [0, 1, 2, 3].map(|i| pems[i].parse_x509().unwrap());
    assert!(ca.is_ca());
    assert_eq!(ca.subject(), ca.issuer());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for cert in [&ca, &daemon, &operator, &observer] {
        assert_eq!(cert.issuer(), ca.subject());
        let v = cert.validity();
        assert!(v.not_before.timestamp() < now && now < v.not_after.timestamp());
        let days = (v.not_after.timestamp() - now) as f64 / 86_400.0;
        assert!((29.9..=30.1).contains(&days), "{days} days");
    }
    for leaf in [&daemon, &operator, &observer] {
        assert!(!leaf.is_ca());
    }

    assert_eq!(eku(&daemon), (true, false, false));
    assert!(ous(&daemon).is_empty());
    let sans = daemon.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = (sans.general_names.iter())
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip {ip:?}"),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "chaos.example.org",
            "chaos-daemon.chaos-system.svc",
            "*.chaos-daemon.chaos-system.svc",
            "localhost",
            "ip [127, 0, 0, 1]",
        ]
    );
    for (client, role) in [(&operator, "operator"), (&observer, "observer")] {
        assert_eq!(eku(client), (false, true, false), "{role}");
        assert_eq!(ous(client), [role]);
        assert!(client.subject_alternative_name().unwrap().is_none());
    }
}

/// One existing file, any of them, refuses the run with its name and writes nothing; the
/// files already there are left as they were.
#[test]
fn certs_never_overwrites_a_file() {
    let dir = TempDir::new("certs-exists");
    std::fs::create_dir_all(&dir.0).unwrap();
    let existing = dir.0.join("observer-key.pem");
    std::fs::write(&existing, "mine").unwrap();
    let out = certs(&dir.0, &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} exists; refusing to overwrite it",
            existing.display()
        )),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "mine");

    // A second run into a complete directory: refused at the first file, nothing changed.
    let full = TempDir::new("certs-again");
    assert!(certs(&full.0, &[]).status.success());
    let before = std::fs::read(full.0.join("ca-key.pem")).unwrap();
    let again = certs(&full.0, &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("ca.pem exists"));
    assert_eq!(std::fs::read(full.0.join("ca-key.pem")).unwrap(), before);

    let zero = TempDir::new("certs-zero");
    let out = certs(&zero.0, &["--days", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!zero.0.exists());
}
