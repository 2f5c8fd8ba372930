//! The daemon in a real container, run as the DaemonSet runs it: the image `cargo xtask image`
//! builds, started by podman with the pod spec of deploy/'s DaemonSet — its command and
//! arguments (`$(NODE_NAME)` expanded), privileges, host namespaces, every volume at its mount
//! path, the ConfigMap kustomize generates from deploy/chaos.yaml and a TLS Secret of test
//! certificates — and ready when its probes say so. A fault injected through chaos-ctl over
//! mutual TLS into a second, ordinary container by its container ID fails that container's
//! connects and no one else's (another container's, the host's); after `podman kill` of the
//! daemon nothing stays attached and the container connects again. This is the check that the
//! DaemonSet's mounts and privileges are right.
//!
//! The pod spec comes from `kubectl kustomize deploy/` (what `kubectl apply -k deploy/` applies)
//! and is translated field by field ([`mirror`]): a field the translation does not know fails
//! the test with its name, so a DaemonSet change this test cannot mirror is noticed. Fields only
//! Kubernetes acts on (scheduling, rollout, resources, service accounts, probe timing) are
//! skipped by name ([`KUBERNETES_ONLY`]). One deliberate difference: a hostPath outside /sys
//! (the state and socket directories) is a directory of the test's own, so the test never
//! shares a real daemon's state.

mod support;

use std::{
    collections::BTreeMap,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    http::get,
    pki::{Ca, Usage},
    *,
};

/// Connects per measurement.
const CONNECTS: u64 = 200;

/// The node name the DaemonSet's `spec.nodeName` field reference gives the daemon.
const NODE: &str = "chaos-container-test-node";

/// podman on these hosts: runc (crun refuses hybrid cgroups) and cgroupfs (no systemd).
const PODMAN: [&str; 4] = ["--runtime", "runc", "--cgroup-manager", "cgroupfs"];

/// Every container's ulimits: podman's defaults need CAP_SYS_RESOURCE, which these machines do
/// not grant (ENVIRONMENT.md). Not a DaemonSet field: Kubernetes leaves them to the runtime.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1000:1000",
];

/// Fields only Kubernetes acts on, by where they are: skipped, by name.
const KUBERNETES_ONLY: &[(&str, &[&str])] = &[
    ("DaemonSet", &["metadata"]),
    (
        "DaemonSet.spec",
        &[
            "selector",
            "updateStrategy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ],
    ),
    ("DaemonSet.spec.template", &["metadata"]),
    (
        "pod",
        &[
            "serviceAccountName",
            "serviceAccount",
            "automountServiceAccountToken",
            "nodeSelector",
            "tolerations",
            "affinity",
            "priorityClassName",
        ],
    ),
    ("container", &["imagePullPolicy", "resources"]),
    (
        "probe",
        &[
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
];

#[test]
fn the_daemonset_in_a_real_container_faults_only_the_container_it_targets() {
    let Some(mount) = kernel() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let manifests = yaml_documents(&run(
        "kubectl",
        &["kustomize", root.join("deploy").to_str().unwrap()],
    ));
    let daemonsets: Vec<&Value> = manifests
        .iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .collect();
    assert_eq!(daemonsets.len(), 1, "deploy/ builds one DaemonSet");

    // Declared first, dropped last: the containers go before their directories.
    let dir = TempDir::new("container");
    let mut created = Created::default();
    let tag = format!("localhost/chaos-ebpf:test-{}", unique());
    created.image = Some(tag.clone());
    let started = Instant::now();
    build_image(&root, &tag);
    eprintln!("cargo xtask image took {:.1?}", started.elapsed());

    // The TLS Secret: test certificates at the paths the daemon's arguments name.
    let pki = dir.0.join("pki");
    std::fs::create_dir(&pki).unwrap();
    let ca = Ca::new(&pki, "ca");
    ca.issue(&pki, "server", "chaos-daemon", &[], Usage::Server, false);
    let operator = &["operator"][..];
    ca.issue(&pki, "operator", "operator", operator, Usage::Client, false);
    let read = |name: &str| std::fs::read(pki.join(name)).unwrap();
    let tls = [
        ("--tls-cert", read("server.pem")),
        ("--tls-key", read("server.key")),
        ("--client-ca", read("ca.pem")),
    ];
    let pod = mirror(daemonsets[0], &manifests, &dir.0, &tls).unwrap_or_else(|unmirrored| {
        panic!(
            "the DaemonSet has fields this test cannot run in podman (teach mirror() in \
             chaos-daemon/tests/container.rs, or list a Kubernetes-only field in \
             KUBERNETES_ONLY):\n  {}",
            unmirrored.join("\n  ")
        )
    });
    assert_eq!(
        pod.image.split(':').next(),
        tag.split(':').next(),
        "the DaemonSet runs another image than `cargo xtask image` builds"
    );

    // The daemon, as the kubelet would start it.
    let daemon = format!("chaos-test-daemon-{}", unique());
    created.containers.push(daemon.clone());
    let mut run_daemon = vec!["run", "--detach", "--name", &daemon];
    run_daemon.extend(ULIMITS);
    run_daemon.extend(pod.options.iter().map(String::as_str));
    run_daemon.push(&tag);
    run_daemon.extend(pod.args.iter().map(String::as_str));
    eprintln!("podman {}", run_daemon.join(" "));
    podman(&run_daemon);
    let port_of = |port: u16| -> u16 {
        if pod.host_network {
            return port;
        }
        let published = podman(&["port", &daemon, &format!("{port}/tcp")]);
        published
            .rsplit(':')
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("podman port {daemon} {port}: {published}"))
    };
    // Ready as the kubelet decides it: every probe answers 2xx or 3xx.
    let probes: Vec<(String, String)> = pod
        .probes
        .iter()
        .map(|(field, path, port)| {
            let port = pod.ports.get(port).copied().unwrap_or_else(|| {
                port.parse()
                    .unwrap_or_else(|_| panic!("{field}: no port named {port}"))
            });
            (
                field.clone(),
                format!("http://127.0.0.1:{}{path}", port_of(port)),
            )
        })
        .collect();
    assert!(
        !probes.is_empty(),
        "the DaemonSet has no readiness probe to wait for"
    );
    eventually("the daemon's probes pass", Duration::from_secs(60), || {
        let running = podman(&["inspect", "--format", "{{.State.Running}}", &daemon]);
        assert_eq!(running, "true", "the daemon container stopped");
        probes
            .iter()
            .all(|(_, url)| get(url).is_ok_and(|(status, _)| (200..400).contains(&status)))
            .then_some(())
    });
    eprintln!("daemon ready {:.1?} after the start", started.elapsed());

    let grpc = flag(&pod.args, "--tcp")
        .and_then(|addr| addr.rsplit(':').next()?.parse().ok())
        .expect("the daemon serves gRPC with mutual TLS (--tcp ADDR)");
    let https = format!("https://127.0.0.1:{}", port_of(grpc));
    let path = |name: &str| pki.join(name).display().to_string();
    let (ca_pem, cert, key) = (path("ca.pem"), path("operator.pem"), path("operator.key"));
    let ctl_tls = |args: &[&str]| -> serde_json::Value {
        let tls = [
            "--daemon", &https, "--ca", &ca_pem, "--cert", &cert, "--key", &key,
        ];
        let out = ctl(&[&tls[..], &["--output", "json"], args].concat());
        assert!(out.status.success(), "chaos-ctl {args:?}: {out:?}");
        json(&String::from_utf8_lossy(&out.stdout))
    };
    assert_eq!(ctl_tls(&["status"])["node"], NODE, "$(NODE_NAME) expanded");

    // Two ordinary containers with the same workload: a TCP listener on their own loopback,
    // connected to by `podman exec`, which runs in the container's cgroup.
    let rootfs = dir.0.join("workload-rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    std::fs::copy(static_workload(), rootfs.join("chaos-workload")).unwrap();
    let [target, bystander] = ["target", "bystander"].map(|role| {
        let name = format!("chaos-test-{role}-{}", unique());
        created.containers.push(name.clone());
        Workload::start(name, &rootfs, &mount)
    });
    for w in [&target, &bystander] {
        assert_eq!(w.connects().ok(), CONNECTS, "{} before the fault", w.name);
    }
    let host_server = TcpServer::start("127.0.0.1:0");
    let count = CONNECTS.to_string();
    let on_host = || {
        workload(
            None,
            &["connect", "--to", &host_server.to(), "--count", &count],
        )
    };

    let started = ctl_tls(&[
        "experiment",
        "dependency_failure",
        "--container",
        &target.id,
        "--errno",
        "ECONNREFUSED",
        "--calls",
        "connect",
        "--intensity",
        "1",
        "--duration",
        "5m",
        // The ConfigMap's SLOs query the cluster's Prometheus, which is not here: the
        // experiment runs under the health checks only, which have no endpoint to probe.
        "--guard",
        "health_checks",
        "--baseline",
        "0s",
    ]);
    assert_eq!(
        started["plan"]["cgroup"].as_str().map(Path::new),
        Some(target.cgroup.as_path()),
        "the daemon resolved the container ID to the container's cgroup: {started}"
    );
    let inside = target.connects();
    assert_eq!(
        (inside.get("ECONNREFUSED"), inside.ok()),
        (CONNECTS, 0),
        "inside the target container: {inside:?}"
    );
    let other = bystander.connects();
    assert_eq!(other.ok(), CONNECTS, "another container: {other:?}");
    let host = on_host();
    assert_eq!(host.ok(), CONNECTS, "the host: {host:?}");
    assert!(target.attached() > 0, "the fault's programs are attached");
    assert_eq!(bystander.attached(), 0);
    // The socket directory is the host's: a node-local chaos-ctl reaches the daemon there.
    let socket = flag(&pod.args, "--socket").expect("the daemon's --socket");
    let host_socket = pod.host_path(Path::new(&socket));
    let local = ctl(&[
        "--daemon",
        &format!("unix://{}", host_socket.display()),
        "--output",
        "json",
        "status",
    ]);
    assert!(local.status.success(), "{local:?}");
    let local = json(&String::from_utf8_lossy(&local.stdout));
    assert_eq!(local["experiments"][0]["id"], started["id"], "{local}");

    // The daemon killed: its programs go with it, and the container connects again.
    podman(&["kill", &daemon]);
    assert_eq!(podman(&["wait", &daemon]), "137", "SIGKILL ends the daemon");
    eventually(
        "nothing attached to the target container",
        Duration::from_secs(10),
        || (target.attached() == 0).then_some(()),
    );
    let after = target.connects();
    assert_eq!(
        after.ok(),
        CONNECTS,
        "after the daemon was killed: {after:?}"
    );
    eprintln!(
        "inside {inside:?}, other container {other:?}, host {host:?}, after the kill {after:?}"
    );
}

/// The translation refuses what it cannot run, naming each field, and skips the
/// Kubernetes-only ones; no kernel or podman needed.
#[test]
fn a_daemonset_field_podman_cannot_mirror_fails_the_test_by_name() {
    let dir = TempDir::new("container-mirror");
    let ds = yaml_documents(
        "kind: DaemonSet
apiVersion: apps/v1
metadata: {name: d}
spec:
  selector: {}
  template:
    metadata: {labels: {a: b}}
    spec:
      tolerations: [{operator: Exists}]
      hostAliases: [{ip: 10.0.0.1, hostnames: [x]}]
      containers:
        - name: c
          image: localhost/chaos-ebpf:latest
          args: [serve, --node, $(NODE_NAME), $$(NODE_NAME)]
          env: [{name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
          resources: {limits: {cpu: '1'}}
          securityContext: {privileged: true, runAsUser: 1000}
          livenessProbe: {exec: {command: [true]}, periodSeconds: 5}
          volumeMounts: [{name: scratch, mountPath: /tmp}]
      volumes: [{name: scratch, emptyDir: {}}]
",
    );
    let errors = mirror(&ds[0], &[], &dir.0, &[]).err().unwrap();
    assert_eq!(
        errors,
        [
            r#"pod.hostAliases: [{"hostnames":["x"],"ip":"10.0.0.1"}]"#,
            "container.securityContext.runAsUser: 1000",
            r#"probe.exec: {"command":[true]}"#,
            r#"volume.emptyDir: {}"#,
        ]
    );
    let expanded = expand(
        "--node $(NODE_NAME) $$(NODE_NAME) $(OTHER)",
        &BTreeMap::from([("NODE_NAME".to_string(), "n1".to_string())]),
    );
    assert_eq!(expanded, "--node n1 $(NODE_NAME) $(OTHER)");
}

/// A next number for unique names, with the test's PID.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `podman ARGS` on these hosts: its stdout, trimmed, or why it failed.
fn try_podman(args: &[&str]) -> Result<String, String> {
    let out = Command::new("podman")
        .args(PODMAN)
        .args(args)
        .output()
        .map_err(|e| format!("run podman: {e} (apt-get install podman runc)"))?;
    if !out.status.success() {
        return Err(format!(
            "podman {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn podman(args: &[&str]) -> String {
    try_podman(args).unwrap_or_else(|e| panic!("{e}"))
}

/// The containers and the image the test made: removed on drop, also when the test fails
/// (after printing the containers' logs).
#[derive(Default)]
struct Created {
    containers: Vec<String>,
    image: Option<String>,
}

impl Drop for Created {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let logs = Command::new("podman")
                    .args(PODMAN)
                    .args(["logs", c])
                    .output();
                if let Ok(logs) = logs {
                    eprintln!(
                        "--- podman logs {c}:\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    );
                }
            }
            let _ = try_podman(&["rm", "--force", "--time", "0", c]);
        }
        if let Some(image) = &self.image {
            let _ = try_podman(&["rmi", image]);
        }
    }
}

/// Builds the image as users do, `cargo xtask image` (here with a tag of the test's own). Its
/// output is shown when it fails.
fn build_image(root: &Path, tag: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["xtask", "image", "--tag", tag])
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo xtask image --tag {tag}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The static chaos-workload `cargo xtask image` builds with the image's binaries.
fn static_workload() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_BIN_EXE_chaos-daemon"))
        .parent()
        .and_then(Path::parent)
        .unwrap();
    let p = target_dir.join("x86_64-unknown-linux-musl/release/chaos-workload");
    assert!(
        p.exists(),
        "{} is missing: cargo xtask image builds it",
        p.display()
    );
    p
}

/// Every document of a multi-document YAML stream.
fn yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("kustomize's YAML"))
        .collect()
}

/// The value after `name` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// An ordinary container running `chaos-workload tcp-listen` on its own loopback.
struct Workload {
    name: String,
    id: String,
    port: u16,
    /// Its cgroup on the host.
    cgroup: PathBuf,
}

impl Workload {
    fn start(name: String, rootfs: &Path, mount: &Path) -> Self {
        let mut args = vec!["run", "--detach", "--name", &name];
        args.extend(ULIMITS);
        let rootfs = rootfs.to_str().unwrap();
        args.extend(["--rootfs", rootfs, "/chaos-workload", "tcp-listen"]);
        let id = podman(&args);
        let port = eventually("the workload listens", Duration::from_secs(10), || {
            podman(&["logs", &name])
                .lines()
                .find_map(|l| l.strip_prefix("ready ")?.parse().ok())
        });
        let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &name]);
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let relative = cgroups
            .lines()
            .find_map(|l| l.strip_prefix("0::/"))
            .expect("a cgroup2 entry");
        let cgroup = mount.join(relative);
        assert!(cgroup.ends_with(format!("libpod-{id}")), "{cgroup:?}");
        Self {
            name,
            id,
            port,
            cgroup,
        }
    }

    /// `chaos-workload connect` inside the container, to its listener.
    fn connects(&self) -> Tally {
        let to = format!("127.0.0.1:{}", self.port);
        let count = CONNECTS.to_string();
        let out = podman(&[
            "exec",
            &self.name,
            "/chaos-workload",
            "connect",
            "--to",
            &to,
            "--count",
            &count,
        ]);
        Tally::parse(out.lines().last().unwrap_or(""))
    }

    fn attached(&self) -> usize {
        attached_count(&self.cgroup)
    }
}

/// The DaemonSet's pod as `podman run` runs it.
struct Pod {
    /// The options before the image.
    options: Vec<String>,
    /// The container's arguments, after the image (`$(VAR)` expanded).
    args: Vec<String>,
    image: String,
    /// containerPort by port name.
    ports: BTreeMap<String, u16>,
    host_network: bool,
    /// HTTP probes: (field, path, port name or number).
    probes: Vec<(String, String, String)>,
    /// Host directory by mount path, of the hostPath volumes.
    host_paths: Vec<(PathBuf, PathBuf)>,
}

impl Pod {
    /// Where a path inside the container is on the host, through a hostPath volume.
    fn host_path(&self, inside: &Path) -> PathBuf {
        self.host_paths
            .iter()
            .find_map(|(at, host)| Some(host.join(inside.strip_prefix(at).ok()?)))
            .unwrap_or_else(|| panic!("{} is on no hostPath volume", inside.display()))
    }
}

/// The fields of `object` (at `at`, e.g. `container`) that are neither `handled` nor
/// Kubernetes-only, as errors.
fn unknown_fields(object: &Value, at: &str, handled: &[&str], errors: &mut Vec<String>) {
    let skipped = KUBERNETES_ONLY
        .iter()
        .find(|(place, _)| *place == at)
        .map_or(&[][..], |(_, fields)| *fields);
    for key in object.as_object().into_iter().flat_map(|o| o.keys()) {
        if !handled.contains(&key.as_str()) && !skipped.contains(&key.as_str()) {
            errors.push(format!("{at}.{key}: {}", object[key]));
        }
    }
}

/// Kubernetes' `$(VAR)` expansion of a command or argument (`$$` is a literal `$`; an unknown
/// variable stays as written).
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some((name, after)) = rest
            .strip_prefix("$(")
            .and_then(|r| r.split_once(')'))
            .filter(|(name, _)| env.contains_key(*name))
        {
            out.push_str(&env[name]);
            rest = after;
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out + rest
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Translates the DaemonSet's pod into `podman run` options, writing its ConfigMap and Secret
/// volumes under `work` as the kubelet does (files from the rendered ConfigMap in
/// `manifests`; the Secret's files are `tls`, by the daemon flag whose path they are at).
/// Errs with every field it cannot mirror.
fn mirror(
    ds: &Value,
    manifests: &[Value],
    work: &Path,
    tls: &[(&str, Vec<u8>)],
) -> Result<Pod, Vec<String>> {
    let mut errors = Vec::new();
    unknown_fields(
        ds,
        "DaemonSet",
        &["apiVersion", "kind", "spec"],
        &mut errors,
    );
    unknown_fields(&ds["spec"], "DaemonSet.spec", &["template"], &mut errors);
    let template = &ds["spec"]["template"];
    unknown_fields(template, "DaemonSet.spec.template", &["spec"], &mut errors);
    let spec = &template["spec"];
    let pod_fields = [
        "containers",
        "volumes",
        "hostPID",
        "hostNetwork",
        "hostIPC",
        "terminationGracePeriodSeconds",
    ];
    unknown_fields(spec, "pod", &pod_fields, &mut errors);
    let mut options: Vec<String> = Vec::new();
    let mut opt = |o: &[&str]| options.extend(o.iter().map(|s| s.to_string()));
    if spec["hostPID"] == true {
        opt(&["--pid", "host"]);
    }
    if spec["hostIPC"] == true {
        opt(&["--ipc", "host"]);
    }
    let host_network = spec["hostNetwork"] == true;
    if host_network {
        opt(&["--network", "host"]);
    }
    if let Some(grace) = spec["terminationGracePeriodSeconds"].as_u64() {
        opt(&["--stop-timeout", &grace.to_string()]);
    }
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let [c] = &containers[..] else {
        errors.push(format!(
            "pod.containers: {} containers, the test runs one",
            containers.len()
        ));
        return Err(errors);
    };
    let container_fields = [
        "name",
        "image",
        "command",
        "args",
        "env",
        "ports",
        "securityContext",
        "volumeMounts",
        "readinessProbe",
        "livenessProbe",
        "startupProbe",
    ];
    unknown_fields(c, "container", &container_fields, &mut errors);

    let mut env = BTreeMap::new();
    for e in c["env"].as_array().into_iter().flatten() {
        unknown_fields(
            e,
            "container.env",
            &["name", "value", "valueFrom"],
            &mut errors,
        );
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => expand(v, &env),
            (_, Value::String(f)) if f == "spec.nodeName" => NODE.to_string(),
            _ => {
                errors.push(format!("container.env {name}: {e}"));
                continue;
            }
        };
        opt(&["--env", &format!("{name}={value}")]);
        env.insert(name, value);
    }
    let command: Vec<String> = strings(&c["command"])
        .iter()
        .map(|s| expand(s, &env))
        .collect();
    if !command.is_empty() {
        opt(&["--entrypoint", &serde_json::to_string(&command).unwrap()]);
    }
    let args: Vec<String> = strings(&c["args"])
        .iter()
        .map(|s| expand(s, &env))
        .collect();

    let security = &c["securityContext"];
    let security_fields = ["privileged", "readOnlyRootFilesystem"];
    unknown_fields(
        security,
        "container.securityContext",
        &security_fields,
        &mut errors,
    );
    if security["privileged"] == true {
        opt(&["--privileged"]);
    }
    if security["readOnlyRootFilesystem"] == true {
        // Kubernetes adds no writable /tmp or /run the way podman's --read-only does.
        opt(&["--read-only", "--read-only-tmpfs=false"]);
    }

    let mut ports = BTreeMap::new();
    for p in c["ports"].as_array().into_iter().flatten() {
        let fields = ["name", "containerPort", "protocol"];
        unknown_fields(p, "container.ports", &fields, &mut errors);
        let port = p["containerPort"].as_u64().unwrap_or_default();
        let protocol = p["protocol"].as_str().unwrap_or("TCP").to_lowercase();
        if !host_network {
            opt(&["--publish", &format!("127.0.0.1::{port}/{protocol}")]);
        }
        if let Some(name) = p["name"].as_str() {
            ports.insert(name.to_string(), u16::try_from(port).unwrap());
        }
    }

    let mut probes = Vec::new();
    for field in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let probe = &c[field];
        if probe.is_null() {
            continue;
        }
        unknown_fields(probe, "probe", &["httpGet"], &mut errors);
        let http = &probe["httpGet"];
        unknown_fields(
            http,
            "probe.httpGet",
            &["path", "port", "scheme"],
            &mut errors,
        );
        if !matches!(http["scheme"].as_str(), None | Some("HTTP")) {
            errors.push(format!("{field}.httpGet.scheme: {}", http["scheme"]));
        }
        let port = match &http["port"] {
            Value::String(name) => name.clone(),
            other => other.to_string(),
        };
        let path = http["path"].as_str().unwrap_or("/").to_string();
        probes.push((field.to_string(), path, port));
    }

    // The volumes at their mount paths. ConfigMap and Secret volumes are written as the kubelet
    // writes them, read-only, with a directory for every mount nested in them.
    let volumes: BTreeMap<&str, &Value> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default(), v))
        .collect();
    let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
    let mount_paths: Vec<PathBuf> = mounts
        .iter()
        .map(|m| PathBuf::from(m["mountPath"].as_str().unwrap_or_default()))
        .collect();
    let tls_files: Vec<(PathBuf, &[u8])> = tls
        .iter()
        .filter_map(|(flag_name, content)| {
            let path = flag(&args, flag_name);
            if path.is_none() {
                errors.push(format!("container.args: no {flag_name}"));
            }
            Some((PathBuf::from(path?), content.as_slice()))
        })
        .collect();
    let mut host_paths = Vec::new();
    for (m, at) in mounts.iter().zip(&mount_paths) {
        let fields = ["name", "mountPath", "readOnly", "mountPropagation"];
        unknown_fields(m, "container.volumeMounts", &fields, &mut errors);
        let name = m["name"].as_str().unwrap_or_default();
        let Some(volume) = volumes.get(name) else {
            errors.push(format!("container.volumeMounts {name}: no such volume"));
            continue;
        };
        let kinds = ["name", "hostPath", "configMap", "secret"];
        unknown_fields(volume, "volume", &kinds, &mut errors);
        let mut read_only = m["readOnly"] == true;
        let source = if let Some(host) = volume["hostPath"].as_object() {
            let path = PathBuf::from(host["path"].as_str().unwrap_or_default());
            let source = if path.starts_with("/sys") {
                path
            } else {
                work.join("host")
                    .join(path.strip_prefix("/").unwrap_or(&path))
            };
            match host.get("type").and_then(Value::as_str) {
                None | Some("") => {}
                Some("Directory") if source.is_dir() => {}
                Some("DirectoryOrCreate") => std::fs::create_dir_all(&source).unwrap(),
                other => errors.push(format!(
                    "volume {name}: hostPath {} of type {other:?}",
                    source.display()
                )),
            }
            host_paths.push((at.clone(), source.clone()));
            source
        } else {
            let Some(files) = atomic_volume(name, volume, at, manifests, &tls_files, &mut errors)
            else {
                continue;
            };
            read_only = true;
            let source = work.join("volumes").join(name);
            for (path, content, mode) in files {
                let file = source.join(&path);
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(&file, content).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            // The kubelet makes the mount points of the volumes mounted inside this one.
            for nested in mount_paths.iter().filter_map(|p| p.strip_prefix(at).ok()) {
                std::fs::create_dir_all(source.join(nested)).unwrap();
            }
            source
        };
        let propagation = match m["mountPropagation"].as_str() {
            None | Some("None") => "rprivate",
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            Some(other) => {
                errors.push(format!("volumeMount {name}: mountPropagation {other}"));
                continue;
            }
        };
        let mode = if read_only { "ro" } else { "rw" };
        let spec = format!("{}:{}:{mode},{propagation}", source.display(), at.display());
        opt(&["--volume", &spec]);
    }
    let image = c["image"].as_str().unwrap_or_default().to_string();
    if errors.is_empty() {
        Ok(Pod {
            options,
            args,
            image,
            ports,
            host_network,
            probes,
            host_paths,
        })
    } else {
        Err(errors)
    }
}

/// The files of the ConfigMap or Secret volume `name` mounted at `at`: the ConfigMap's data from
/// the rendered `manifests`; the Secret holds the TLS files (`tls_files`, by their path in the
/// container) under its mount. `None` for another kind of volume.
fn atomic_volume(
    name: &str,
    volume: &Value,
    at: &Path,
    manifests: &[Value],
    tls_files: &[(PathBuf, &[u8])],
    errors: &mut Vec<String>,
) -> Option<Vec<(String, Vec<u8>, u32)>> {
    if let Some(cm) = volume.get("configMap") {
        let wanted = &cm["name"];
        let Some(config_map) = manifests
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == *wanted)
        else {
            errors.push(format!("volume {name}: no ConfigMap {wanted} in deploy/"));
            return None;
        };
        let data: BTreeMap<String, Vec<u8>> = config_map["data"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().unwrap_or_default().as_bytes().to_vec(),
                )
            })
            .collect();
        return Some(atomic_files(name, cm, &data, errors));
    }
    let secret = volume.get("secret")?;
    // The files by their path in the volume, then (with items) by the key an item puts there.
    let by_path: BTreeMap<String, Vec<u8>> = tls_files
        .iter()
        .filter_map(|(path, content)| {
            let relative = path.strip_prefix(at).ok()?.to_str()?.to_string();
            Some((relative, content.to_vec()))
        })
        .collect();
    let data = match secret["items"].as_array() {
        None => by_path,
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let content = by_path.get(i["path"].as_str()?)?;
                Some((i["key"].as_str()?.to_string(), content.clone()))
            })
            .collect(),
    };
    Some(atomic_files(name, secret, &data, errors))
}

/// The files of a ConfigMap or Secret volume `source` (its `items` or every key of `data`):
/// (path in the volume, content, mode).
fn atomic_files(
    name: &str,
    source: &Value,
    data: &BTreeMap<String, Vec<u8>>,
    errors: &mut Vec<String>,
) -> Vec<(String, Vec<u8>, u32)> {
    let fields = ["name", "secretName", "items", "defaultMode"];
    unknown_fields(source, &format!("volume {name}"), &fields, errors);
    let mode = |v: &Value| v.as_u64().and_then(|m| u32::try_from(m).ok());
    let default_mode = mode(&source["defaultMode"]).unwrap_or(0o644);
    let Some(items) = source["items"].as_array() else {
        return data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect();
    };
    let mut files = Vec::new();
    for item in items {
        unknown_fields(
            item,
            &format!("volume {name} item"),
            &["key", "path", "mode"],
            errors,
        );
        let key = item["key"].as_str().unwrap_or_default();
        let path = item["path"].as_str().unwrap_or(key).to_string();
        match data.get(key) {
            Some(content) => {
                let m = mode(&item["mode"]).unwrap_or(default_mode);
                files.push((path, content.clone(), m));
            }
            None => errors.push(format!("volume {name}: no key {key} for {path}")),
        }
    }
    files
}
