//! The DaemonSet's TLS material and probe with a real daemon (deploy/README.md): the files
//! `chaos-ctl certs` writes, given to the daemon's `--tls-cert`, `--tls-key` and `--client-ca`
//! as the Secret gives them, let the operator certificate start, read and stop and the observer
//! certificate read but not start (each OU is its role, each extendedKeyUsage clientAuth, the
//! daemon's certificate valid for localhost and 127.0.0.1, which a port-forward reaches); the
//! probes' `GET /healthz` on the metrics address answers 200.

mod support;

use std::process::{Command, Output};

use support::{http::get, pki::tls_daemon_with, *};

#[test]
fn chaos_ctl_certs_make_the_roles_of_a_mutual_tls_deployment() {
    let Some(mount) = kernel() else { return };
    let dir = TempDir::new("deploy-tls");
    let certs = dir.0.join("certs");
    let made = ctl(&["certs", "--out", certs.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    let file = |name: &str| certs.join(name);
    let files = [file("daemon.pem"), file("daemon-key.pem"), file("ca.pem")];
    let (mut daemon, addr) = tls_daemon_with(&dir.0, &files, &["--metrics-addr", "127.0.0.1:0"]);
    let metrics = daemon.next_line();
    let metrics = metrics
        .strip_prefix("metrics on ")
        .and_then(|l| l.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line: {metrics}"));

    // `chaos-ctl --daemon ADDR` with the files of `role`.
    let as_role = |role: &str, addr: &str, args: &[&str]| -> Output {
        let (cert, key) = (
            file(&format!("{role}.pem")),
            file(&format!("{role}-key.pem")),
        );
        let tls = [file("ca.pem"), cert, key].map(|p| p.display().to_string());
        Command::new(ctl_bin())
            .args(["--daemon", addr, "--ca", &tls[0], "--cert", &tls[1]])
            .args(["--key", &tls[2], "--output", "json"])
            .args(args)
            .output()
            .unwrap()
    };
    let cg = TestCgroup::new(&mount, "deploy-tls");
    let start = [
        "experiment",
        "packet_loss",
        "--cgroup",
        cg.path.to_str().unwrap(),
        "--duration",
        "60",
        "--intensity",
        "0",
    ];

    // The operator starts; the observer sees it, over the name and over 127.0.0.1.
    let id = started_id(&as_role("operator", &addr, &start));
    assert!(cg.attached() > 0);
    let by_ip = addr.replace("localhost", "127.0.0.1");
    for a in [&addr, &by_ip] {
        let status = as_role("observer", a, &["status"]);
        assert!(status.status.success(), "{status:?}");
        assert!(String::from_utf8_lossy(&status.stdout).contains(&id));
    }

    // The observer may not start: refused by role (3), naming its certificate.
    let (code, err) = failed(&as_role("observer", &addr, &start));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("PermissionDenied") && err.contains("CN=chaos-observer"),
        "{err}"
    );

    // The operator stops; nothing stays attached.
    let stop = as_role("operator", &addr, &["stop", &id]);
    assert!(stop.status.success(), "{stop:?}");
    cg.released();

    // The DaemonSet's readiness and liveness probes.
    let (status, body) = get(&format!("{metrics}/healthz")).unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    daemon.terminate();
}
