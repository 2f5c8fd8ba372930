//! `chaos-ctl certs --out DIR`: the mutual TLS material of a deployment (deploy/README.md).
//!
//! A CA (`ca.pem`, `ca-key.pem`), the daemons' certificate (`daemon.pem`, `daemon-key.pem`:
//! serverAuth, valid for the given DNS names, every pod behind the headless Service
//! (`*.chaos-daemon.chaos-system.svc`), `localhost` and 127.0.0.1, which a port-forward
//! reaches) and one client certificate per role (`operator.pem`, `observer.pem` and their
//! keys: clientAuth, exactly one subject OU, the role the daemon reads from it; see
//! docs/security.md). Keys are written mode 0600, certificates 0644, a new directory 0700;
//! an existing file is never overwritten, and when one exists nothing is written.

use std::{
    fs::OpenOptions,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::cli::CertsArgs;
use crate::exit;

/// The DNS names every daemon certificate holds besides `--daemon-dns`: any pod of the
/// DaemonSet's headless Service, and the address of a port-forward.
const DAEMON_NAMES: [&str; 4] = [
    "chaos-daemon.chaos-system.svc",
    "*.chaos-daemon.chaos-system.svc",
    "localhost",
    "127.0.0.1",
];

/// Certificates start an hour back, for clocks a little behind this one.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// The files written, in the order [`generate`] makes them; `*-key.pem` are private keys.
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

/// Writes the CA, the daemon's and the two roles' certificates and keys into `args.out`.
pub fn write(args: &CertsArgs, json: bool) -> anyhow::Result<()> {
    if args.days == 0 {
        return Err(exit::usage(
            "--days 0: a certificate must be valid for at least a day",
        ));
    }
    // Refused before anything is written: one existing file leaves the directory as it was.
    if let Some(f) = FILES.iter().find(|f| args.out.join(f).exists()) {
        return Err(exit::usage(format!(
            "{} exists; refusing to overwrite it (remove it or choose another --out)",
            args.out.join(f).display()
        )));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pems = generate(args).context("generating the certificates")?;
    let mut written = Vec::new();
    for (file, pem) in FILES.iter().zip(pems) {
        let path = args.out.join(file);
        let mode = if file.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        write_new(&path, &pem, mode)?;
        written.push(path);
    }
    print(&args.out, &written, json);
    Ok(())
}

/// The PEM texts of [`FILES`], in that order.
fn generate(args: &CertsArgs) -> Result<Vec<String>, rcgen::Error> {
    let now = OffsetDateTime::now_utc();
    let validity = |mut p: CertificateParams| {
        p.not_before = now - CLOCK_SKEW;
        p.not_after = now + Duration::from_secs(u64::from(args.days) * 86_400);
        p
    };

    let mut ca = validity(CertificateParams::new(Vec::<String>::new())?);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "chaos-ebpf CA");
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca, ca_key)?;
    let mut pems = vec![ca.pem(), ca_key_pem];

    let names: Vec<String> = (args.daemon_dns.iter().map(String::as_str))
        .chain(DAEMON_NAMES)
        .map(str::to_owned)
        .collect();
    let leaves = [
        (
            "chaos-daemon",
            names,
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "chaos-operator",
            vec![],
            Some("operator"),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        (
            "chaos-observer",
            vec![],
            Some("observer"),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ];
    for (cn, sans, ou, usage) in leaves {
        let mut p = validity(CertificateParams::new(sans)?);
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(ou) = ou {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, ou);
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        pems.push(p.signed_by(&key, &ca)?.pem());
        pems.push(key.serialize_pem());
    }
    Ok(pems)
}

/// Creates `path` with `mode` and writes `text`; fails if it exists.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// What was written, and the command that makes the DaemonSet's Secret of it.
fn print(out: &Path, written: &[PathBuf], json: bool) {
    let file = |name: &str| out.join(name).display().to_string();
    let secret = format!(
        "kubectl -n chaos-system create secret generic chaos-daemon-tls --from-file={} \
         --from-file={} --from-file={}",
        file("ca.pem"),
        file("daemon.pem"),
        file("daemon-key.pem")
    );
    if json {
        let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        println!(
            "{}",
            serde_json::json!({ "files": files, "secret": secret })
        );
        return;
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    println!("the DaemonSet's secret: {secret}");
}
