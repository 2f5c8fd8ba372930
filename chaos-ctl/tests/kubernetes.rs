//! chaos-ctl's Kubernetes mode against a Kubernetes API stand-in: a local HTTP server answering
//! discovery and the pod endpoints with real k8s-openapi objects, honouring `labelSelector` and
//! `fieldSelector` server-side. The real `kubectl` reads it first (so the stand-in speaks the
//! protocol), then chaos-ctl: selector resolution, the blast radius, the pods skipped and why,
//! one daemon per node; and with two real chaos-daemons (TLS, on 127.0.0.2 and 127.0.0.3, the
//! stand-in's daemon pod IPs) each node's experiment carries exactly that node's pod UIDs and
//! container IDs, and `emergency-stop` reaches both.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Output, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Node, NodeStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroupList, APIResource, APIResourceList, APIVersions, ListMeta, ObjectMeta,
    ServerAddressByClientCIDR,
};
use serde_json::{Value, json};
use support::TempDir;

/// The chaos-ctl under test.
fn ctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chaos-ctl"))
}

/// `chaos-daemon`, built next to chaos-ctl by `cargo test` (the workspace builds both), or
/// `$CHAOS_BIN_DIR/chaos-daemon`.
fn daemon_bin() -> PathBuf {
    let p = match std::env::var_os("CHAOS_BIN_DIR") {
        Some(dir) => Path::new(&dir).join("chaos-daemon"),
        None => ctl_bin().with_file_name("chaos-daemon"),
    };
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p chaos-daemon`",
        p.display()
    );
    p
}

// ---------------------------------------------------------------------------------------------
// The cluster the stand-in serves.

/// A pod of the stand-in: its uid and container IDs are random per test run.
#[derive(Clone)]
struct PodDef {
    ns: &'static str,
    name: &'static str,
    labels: &'static [(&'static str, &'static str)],
    node: Option<&'static str>,
    phase: &'static str,
    ip: Option<&'static str>,
    uid: String,
    /// (name, 64 hex digits).
    containers: Vec<(&'static str, String)>,
}

const DAEMON_LABEL: (&str, &str) = ("app.kubernetes.io/name", "chaos-daemon");

/// `n` random hex digits.
fn hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

/// A random pod uid (a UUID, as the API server gives pods).
fn uid() -> String {
    let h = hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl PodDef {
    fn new(
        ns: &'static str,
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
        node: Option<&'static str>,
        phase: &'static str,
        ip: Option<&'static str>,
    ) -> Self {
        Self {
            ns,
            name,
            labels,
            node,
            phase,
            ip,
            uid: uid(),
            containers: vec![("app", hex(64)), ("sidecar", hex(64))],
        }
    }

    fn container(&self, name: &str) -> &str {
        &self.containers.iter().find(|c| c.0 == name).unwrap().1
    }

    fn object(&self) -> Pod {
        let started = self.phase == "Running";
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.into()),
                namespace: Some(self.ns.into()),
                uid: Some(self.uid.clone()),
                resource_version: Some("1".into()),
                labels: Some(
                    self.labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: self.node.map(Into::into),
                containers: self
                    .containers
                    .iter()
                    .map(|(name, _)| Container {
                        name: (*name).into(),
                        image: Some("registry.example/app:1".into()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(self.phase.into()),
                pod_ip: self.ip.map(Into::into),
                container_statuses: Some(
                    self.containers
                        .iter()
                        .map(|(name, id)| ContainerStatus {
                            name: (*name).into(),
                            image: "registry.example/app:1".into(),
                            image_id: String::new(),
                            ready: started,
                            restart_count: 0,
                            container_id: started.then(|| format!("containerd://{id}")),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    /// The value of a field selector's field.
    fn field(&self, field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some(self.name.into()),
            "metadata.namespace" => Some(self.ns.into()),
            "spec.nodeName" => Some(self.node.unwrap_or("").into()),
            "status.phase" => Some(self.phase.into()),
            _ => None,
        }
    }
}

/// The stand-in's cluster: nodes a and b run a daemon (127.0.0.2, 127.0.0.3), c's daemon pod
/// failed; in shop, three Running `app=web` pods on a, a and b, one on c, one Pending, and a
/// db pod; a pod in kube-system.
fn cluster() -> Vec<PodDef> {
    const WEB: &[(&str, &str)] = &[("app", "web")];
    const DB: &[(&str, &str)] = &[("app", "db")];
    const DAEMON: &[(&str, &str)] = &[DAEMON_LABEL];
    vec![
        PodDef::new(
            "shop",
            "web-1",
            WEB,
            Some("node-a"),
            "Running",
            Some("10.0.1.1"),
        ),
        PodDef::new(
            "shop",
            "web-2",
            WEB,
            Some("node-a"),
            "Running",
            Some("10.0.1.2"),
        ),
        PodDef::new(
            "shop",
            "web-3",
            WEB,
            Some("node-b"),
            "Running",
            Some("10.0.2.1"),
        ),
        PodDef::new(
            "shop",
            "web-4",
            WEB,
            Some("node-c"),
            "Running",
            Some("10.0.3.1"),
        ),
        PodDef::new("shop", "web-5", WEB, None, "Pending", None),
        PodDef::new(
            "shop",
            "db-1",
            DB,
            Some("node-a"),
            "Running",
            Some("10.0.1.9"),
        ),
        PodDef::new(
            "kube-system",
            "coredns-1",
            WEB,
            Some("node-a"),
            "Running",
            None,
        ),
        PodDef::new(
            "chaos-system",
            "chaos-daemon-a",
            DAEMON,
            Some("node-a"),
            "Running",
            Some("127.0.0.2"),
        ),
        PodDef::new(
            "chaos-system",
            "chaos-daemon-b",
            DAEMON,
            Some("node-b"),
            "Running",
            Some("127.0.0.3"),
        ),
        PodDef::new(
            "chaos-system",
            "chaos-daemon-c",
            DAEMON,
            Some("node-c"),
            "Failed",
            Some("127.0.0.4"),
        ),
    ]
}

fn find<'a>(pods: &'a [PodDef], name: &str) -> &'a PodDef {
    pods.iter().find(|p| p.name == name).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The API server stand-in.

/// The Kubernetes API stand-in on 127.0.0.1: discovery (`/version`, `/api`, `/apis`,
/// `/api/v1`), pods (list in a namespace or all, get) and nodes, with label and field
/// selectors; every request line is recorded. Stopped on drop.
struct ApiServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    fn start(pods: Vec<PodDef>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping) = (requests.clone(), stop.clone());
        let pods = Arc::new(pods);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (log, pods) = (log.clone(), pods.clone());
                std::thread::spawn(move || serve(conn, port, &pods, &log));
            }
        });
        Self {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// A kubeconfig in `dir` pointing at the stand-in.
    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: \
             {}\nusers:\n- name: tester\n  user: {{}}\ncontexts:\n- name: stand-in\n  context:\n    \
             cluster: stand-in\n    user: tester\n    namespace: default\ncurrent-context: \
             stand-in\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers the requests of one connection (keep-alive) until the client closes it.
fn serve(conn: TcpStream, port: u16, pods: &[PodDef], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let length = headers
            .get("content-length")
            .map_or(0, |l| l.parse().unwrap_or(0));
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        log.lock().unwrap().push(format!("{method} {target}"));
        if target.contains("/portforward?") {
            return port_forward(out, target, &headers, pods);
        }
        let (status, value) = if method == "GET" {
            answer(target, port, pods)
        } else {
            (
                405,
                status_object(405, "MethodNotAllowed", "read-only stand-in"),
            )
        };
        let body = value.to_string();
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Method Not Allowed",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: \
             {}\r\n\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A pod's port-forward as the API server serves it to kube-rs: a WebSocket upgrade
/// (`v4.channel.k8s.io`), then per port a data channel (0) and an error channel (1), each
/// opened by a frame holding the port (little-endian), every frame prefixed by its channel.
/// The pod's port is dialed at its pod IP.
fn port_forward(
    mut conn: TcpStream,
    target: &str,
    headers: &BTreeMap<String, String>,
    pods: &[PodDef],
) {
    let (path, query) = target.split_once('?').unwrap();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["api", "v1", "namespaces", ns, "pods", name, "portforward"] = segments.as_slice() else {
        return;
    };
    let port: u16 = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("ports="))
        .and_then(|p| p.parse().ok())
        .unwrap();
    let ip = pods
        .iter()
        .find(|p| p.ns == *ns && p.name == *name)
        .and_then(|p| p.ip)
        .unwrap();
    let key = headers.get("sec-websocket-key").unwrap();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    write!(
        conn,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    )
    .unwrap();
    let mut pod = TcpStream::connect((ip, port)).unwrap();
    let tick = Some(std::time::Duration::from_millis(5));
    conn.set_read_timeout(tick).unwrap();
    pod.set_read_timeout(tick).unwrap();
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(conn, tungstenite::protocol::Role::Server, None);
    let [lo, hi] = port.to_le_bytes();
    for channel in [0u8, 1] {
        ws.send(tungstenite::Message::binary(vec![channel, lo, hi]))
            .unwrap();
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Binary(data)) if data.first() == Some(&0) => {
                if pod.write_all(&data[1..]).is_err() {
                    return;
                }
            }
            Ok(tungstenite::Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
        match pod.read(&mut buf) {
            Ok(0) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                return;
            }
            Ok(n) => {
                let mut frame = Vec::with_capacity(n + 1);
                frame.push(0);
                frame.extend_from_slice(&buf[..n]);
                if ws.send(tungstenite::Message::binary(frame)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// A `Status` object, as the API server fails requests.
fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// `%XX` and `+` decoded.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// `k=v,k2=v2` (also `==`, and `!=`) as (key, value, equal) terms; None when malformed.
fn terms(selector: &str) -> Option<Vec<(String, String, bool)>> {
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                Some((k.trim().into(), v.trim().into(), false))
            } else {
                let (k, v) = t.split_once("==").or_else(|| t.split_once('='))?;
                Some((k.trim().into(), v.trim().into(), true))
            }
        })
        .collect()
}

/// The answer to `GET target`.
fn answer(target: &str, port: u16, pods: &[PodDef]) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ok = |v: Value| (200, v);
    match segments.as_slice() {
        ["version"] => ok(json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                                 "platform": "linux/amd64"})),
        ["api"] => ok(serde_json::to_value(APIVersions {
            versions: vec!["v1".into()],
            server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
                client_cidr: "0.0.0.0/0".into(),
                server_address: format!("127.0.0.1:{port}"),
            }],
        })
        .unwrap()),
        ["apis"] => ok(serde_json::to_value(APIGroupList { groups: vec![] }).unwrap()),
        ["api", "v1"] => {
            let resource = |name: &str, singular: &str, kind: &str, namespaced: bool| APIResource {
                name: name.into(),
                singular_name: singular.into(),
                kind: kind.into(),
                namespaced,
                verbs: ["get", "list"].map(String::from).to_vec(),
                short_names: Some(vec![name[..2].into()]),
                ..Default::default()
            };
            ok(serde_json::to_value(APIResourceList {
                group_version: "v1".into(),
                resources: vec![
                    resource("pods", "pod", "Pod", true),
                    resource("nodes", "node", "Node", false),
                ],
            })
            .unwrap())
        }
        ["api", "v1", "nodes"] => {
            let mut names: Vec<&str> = pods.iter().filter_map(|p| p.node).collect();
            names.sort_unstable();
            names.dedup();
            let items = names.iter().map(|n| node(n)).collect();
            ok(serde_json::to_value(k8s_openapi::List::<Node> {
                items,
                metadata: ListMeta::default(),
            })
            .unwrap())
        }
        ["api", "v1", "nodes", name] => {
            if pods.iter().any(|p| p.node == Some(*name)) {
                ok(serde_json::to_value(node(name)).unwrap())
            } else {
                (
                    404,
                    status_object(404, "NotFound", &format!("nodes \"{name}\" not found")),
                )
            }
        }
        ["api", "v1", "pods"] => list(pods, None, &params),
        ["api", "v1", "namespaces", ns, "pods"] => list(pods, Some(ns), &params),
        ["api", "v1", "namespaces", ns, "pods", name] => {
            match pods.iter().find(|p| p.ns == *ns && p.name == *name) {
                Some(p) => ok(serde_json::to_value(p.object()).unwrap()),
                None => (
                    404,
                    status_object(404, "NotFound", &format!("pods \"{name}\" not found")),
                ),
            }
        }
        _ => (
            404,
            status_object(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        ),
    }
}

/// A Ready node.
fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(NodeStatus::default()),
        ..Default::default()
    }
}

/// A PodList of `ns` (all namespaces: None) filtered by `labelSelector` and `fieldSelector`.
fn list(pods: &[PodDef], ns: Option<&str>, params: &BTreeMap<String, String>) -> (u16, Value) {
    let selector = |key: &str| terms(params.get(key).map_or("", String::as_str));
    let (Some(labels), Some(fields)) = (selector("labelSelector"), selector("fieldSelector"))
    else {
        return (400, status_object(400, "BadRequest", "unparsable selector"));
    };
    if let Some((field, ..)) = fields.iter().find(|(f, ..)| pods[0].field(f).is_none()) {
        return (
            400,
            status_object(
                400,
                "BadRequest",
                &format!("field label not supported: {field}"),
            ),
        );
    }
    let items = pods
        .iter()
        .filter(|p| ns.is_none_or(|ns| p.ns == ns))
        .filter(|p| {
            labels.iter().all(|(k, v, eq)| {
                let has = p.labels.iter().any(|(pk, pv)| pk == k && pv == v);
                has == *eq
            })
        })
        .filter(|p| {
            fields
                .iter()
                .all(|(f, v, eq)| (p.field(f).as_deref() == Some(v.as_str())) == *eq)
        })
        .map(PodDef::object)
        .collect();
    (
        200,
        serde_json::to_value(k8s_openapi::List::<Pod> {
            items,
            metadata: ListMeta {
                resource_version: Some("1".into()),
                ..Default::default()
            },
        })
        .unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// Running chaos-ctl and kubectl.

/// `chaos-ctl certs --out DIR/certs`: the CA, the daemons' and the operator's certificates.
fn certs(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    let made = Command::new(ctl_bin())
        .args(["certs", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    certs
}

/// `--ca`, `--cert` and `--key` of the operator.
fn operator(certs: &Path) -> Vec<String> {
    let file = |name: &str| certs.join(name).display().to_string();
    vec![
        "--ca".into(),
        file("ca.pem"),
        "--cert".into(),
        file("operator.pem"),
        "--key".into(),
        file("operator-key.pem"),
    ]
}

/// `chaos-ctl --kubeconfig K --output json ARGS`.
fn ctl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(ctl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--output", "json"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The pods of a resolution's `targets` or `skipped`, as `ns/name`.
fn pods_of(resolution: &Value, list: &str) -> Vec<String> {
    resolution[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pod"].as_str().unwrap().to_owned())
        .collect()
}

/// The reason a pod was skipped.
fn reason<'a>(resolution: &'a Value, pod: &str) -> &'a str {
    resolution["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["pod"] == pod)
        .unwrap_or_else(|| panic!("{pod} not skipped: {resolution}"))["reason"]
        .as_str()
        .unwrap()
}

#[test]
fn kubectl_reads_the_stand_in() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubectl is missing (TEST_PACKAGES has it)"
        );
        eprintln!("SKIP: kubectl is not installed");
        return;
    }
    let dir = TempDir::new("kube-kubectl");
    std::fs::create_dir_all(&dir.0).unwrap();
    let api = ApiServer::start(cluster());
    let kubeconfig = api.kubeconfig(&dir.0);
    let kubectl = |args: &[&str]| {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(dir.0.join("cache"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\nrequests: {:#?}",
            String::from_utf8_lossy(&out.stderr),
            api.requests()
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let web = kubectl(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "json"]);
    assert_eq!(names(&web), ["web-1", "web-2", "web-3", "web-4", "web-5"]);
    // The objects are real Pods: kubectl kept them whole.
    let first: Pod = serde_json::from_value(web["items"][0].clone()).unwrap();
    assert_eq!(
        first.spec.and_then(|s| s.node_name).as_deref(),
        Some("node-a")
    );
    let running = kubectl(&[
        "get",
        "pods",
        "-n",
        "chaos-system",
        "-l",
        "app.kubernetes.io/name=chaos-daemon",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "json",
    ]);
    assert_eq!(names(&running), ["chaos-daemon-a", "chaos-daemon-b"]);
    let one = kubectl(&["get", "pod", "-n", "shop", "db-1", "-o", "json"]);
    assert_eq!(one["metadata"]["labels"]["app"], "db");
    let nodes = kubectl(&["get", "nodes", "-o", "json"]);
    assert_eq!(names(&nodes), ["node-a", "node-b", "node-c"]);
    // kubectl discovered the API before listing.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /api/v1?") || r == "GET /api/v1"),
        "{requests:#?}"
    );
}

/// chaos-ctl's resolution with nothing listening at the daemon pod IPs' port: nothing starts,
/// each node's failure and the resolution are reported.
#[test]
fn selectors_blast_radius_and_skipped_pods() {
    let dir = TempDir::new("kube-resolve");
    std::fs::create_dir_all(&dir.0).unwrap();
    let pods = cluster();
    let api = ApiServer::start(pods.clone());
    let kubeconfig = api.kubeconfig(&dir.0);
    let tls = operator(&certs(&dir.0));
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    // A port nothing listens on at 127.0.0.2 and 127.0.0.3.
    let port = {
        let l = TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let kube = |args: &[&str]| {
        ctl(
            &kubeconfig,
            &[&["--daemon-port", &port], &tls[..], args].concat(),
        )
    };
    let experiment = |extra: &[&str]| {
        let head = ["experiment", "packet_loss", "--intensity", "0", "--dry-run"];
        kube(&[&head[..], extra].concat())
    };

    // A database load runs from one pod: a selector choosing three is refused before any
    // daemon is asked; --max-pods 1 passes resolution (and then meets the daemons' refusal or,
    // here, no daemon).
    let load = |extra: &[&str]| {
        let head = [
            "experiment",
            "database_load",
            "--engine",
            "redis",
            "--address",
            "127.0.0.1:6379",
            "--profile",
            "point_reads",
            "--rate",
            "10",
            "--dry-run",
            "--selector",
            "app=web",
            "-n",
            "shop",
        ];
        kube(&[&head[..], extra].concat())
    };
    let out = load(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("database_load runs from exactly one pod, and 3 were chosen"),
        "{err}"
    );
    let out = load(&["--max-pods", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("exactly one pod"), "{err}");

    // Selector: the server filters by label (db-1 never appears); the Pending pod and the pod
    // on a node whose daemon pod is not Running are skipped with the reason.
    let out = experiment(&["--selector", "app=web", "-n", "shop"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let answer = stdout_json(&out);
    let r = &answer["resolution"];
    assert_eq!(
        pods_of(r, "targets"),
        ["shop/web-1", "shop/web-2", "shop/web-3"]
    );
    assert_eq!(pods_of(r, "skipped"), ["shop/web-4", "shop/web-5"]);
    assert_eq!(
        reason(r, "shop/web-4"),
        "no Running chaos-daemon pod on node node-c"
    );
    assert_eq!(reason(r, "shop/web-5"), "phase Pending, not Running");
    let targets = r["targets"].as_array().unwrap();
    for (t, name) in targets.iter().zip(["web-1", "web-2", "web-3"]) {
        assert_eq!(t["uid"], find(&pods, name).uid.as_str());
        assert_eq!(t["node"], find(&pods, name).node.unwrap());
    }
    // One experiment per node with a daemon, at the daemon pod's IP, named for the Service.
    let nodes = answer["nodes"].as_array().unwrap();
    let summary: Vec<(&str, &str, usize)> = nodes
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap(),
                n["addr"].as_str().unwrap(),
                n["pods"].as_array().unwrap().len(),
            )
        })
        .collect();
    let (a, b) = (
        format!("https://127.0.0.2:{port}"),
        format!("https://127.0.0.3:{port}"),
    );
    assert_eq!(
        summary,
        [("node-a", a.as_str(), 2), ("node-b", b.as_str(), 1)]
    );
    for n in nodes {
        assert_eq!(n["ok"], false);
        assert!(
            n["error"].as_str().unwrap().contains("connection refused"),
            "{n}"
        );
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 2 daemons did not answer ok"), "{err}");
    // The daemon pods were listed server-side by label and phase.
    let requests = api.requests();
    assert!(
        requests.iter().any(
            |r| r.starts_with("GET /api/v1/namespaces/chaos-system/pods?")
                && r.contains("fieldSelector=status.phase%3DRunning")
        ),
        "{requests:#?}"
    );

    // Blast radius: --max-pods, --percent (rounded down), both (the smaller wins).
    for (flags, chosen, why) in [
        (&["--max-pods", "2"][..], 2, "--max-pods 2"),
        (&["--percent", "50"][..], 1, "--percent 50 of 3"),
        (
            &["--percent", "100", "--max-pods", "1"][..],
            1,
            "--max-pods 1",
        ),
        (&["--percent", "10"][..], 1, "--percent 10 of 3"),
    ] {
        let out = experiment(&[&["--selector", "app=web", "-n", "shop"], flags].concat());
        let r = &stdout_json(&out)["resolution"];
        let all = ["shop/web-1", "shop/web-2", "shop/web-3"];
        assert_eq!(pods_of(r, "targets"), all[..chosen], "{flags:?}");
        for over in &all[chosen..] {
            assert_eq!(reason(r, over), format!("over the blast radius ({why})"));
        }
    }

    // --pod: a protected namespace and a missing pod are skipped; --container targets that
    // container's ID (its runtime prefix dropped); a pod without it is skipped.
    let out = experiment(&[
        "--pod",
        "kube-system/coredns-1",
        "--pod",
        "shop/web-3",
        "--pod",
        "shop/gone",
        "--container",
        "app",
    ]);
    let r = &stdout_json(&out)["resolution"];
    assert_eq!(pods_of(r, "targets"), ["shop/web-3"]);
    assert_eq!(
        r["targets"][0]["container_id"],
        find(&pods, "web-3").container("app")
    );
    assert_eq!(reason(r, "shop/gone"), "not found");
    assert_eq!(
        reason(r, "kube-system/coredns-1"),
        "namespace kube-system is protected (--protected-namespaces)"
    );
    let out = experiment(&["--pod", "shop/web-1", "--container", "proxy"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let r = &stdout_json(&out)["resolution"];
    assert_eq!(reason(r, "shop/web-1"), "no container proxy");

    // pod_deletion with the chaos config: only its name patterns, at most its max_pods.
    let config = dir.0.join("chaos.yaml");
    std::fs::write(
        &config,
        "experiment_types:\n  pod_deletion:\n    parameters:\n      pods: ['web-2', 'web-3']\n      \
         max_pods: 1\n",
    )
    .unwrap();
    let out = kube(&[
        "experiment",
        "pod_deletion",
        "--dry-run",
        "--selector",
        "app=web",
        "-n",
        "shop",
        "--config",
        config.to_str().unwrap(),
    ]);
    let r = &stdout_json(&out)["resolution"];
    assert_eq!(pods_of(r, "targets"), ["shop/web-2"]);
    assert!(reason(r, "shop/web-1").contains("experiment_types.pod_deletion.parameters.pods"));
    assert_eq!(
        reason(r, "shop/web-3"),
        "over the blast radius (pod_deletion max_pods 1 (--config))"
    );

    // Bad input is named.
    let out = experiment(&["--pod", "web-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pod \"web-1\": expected NAMESPACE/NAME")
    );
    let out = experiment(&["--cgroup", "/app.slice", "--max-pods", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-pods chooses among the pods of --pod or --selector"),
        "{err}"
    );
    let out = experiment(&["--selector", "app=web", "-n", "shop", "--percent", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 0 and at most 100"));
}

// ---------------------------------------------------------------------------------------------
// Two real daemons.

/// Root and a cgroup2 mount (the daemons attach programs); else the test is skipped, or fails
/// when `CHAOS_REQUIRE_KERNEL=1` (CI).
fn cgroup2_mount() -> Option<PathBuf> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let mount = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split_whitespace().nth(4).map(PathBuf::from));
    match (root, mount) {
        (true, Some(m)) => Some(m),
        (root, mount) => {
            let why = format!("root: {root}, cgroup2: {mount:?}");
            assert!(
                std::env::var("CHAOS_REQUIRE_KERNEL").as_deref() != Ok("1"),
                "kernel test cannot run ({why}) but CHAOS_REQUIRE_KERNEL=1"
            );
            eprintln!("SKIP: needs root and cgroup2 ({why})");
            None
        }
    }
}

/// The pods' cgroups as kubelet's cgroupfs driver lays them out
/// (`kubepods/besteffort/pod<uid>/<container id>`), under a test cgroup; removed on drop.
struct PodCgroups {
    root: PathBuf,
    dirs: Vec<PathBuf>,
}

impl PodCgroups {
    fn new(mount: &Path, pods: &[PodDef]) -> Self {
        let root = mount.join(format!("chaos-test-kube-{}", std::process::id()));
        let qos = root.join("kubepods").join("besteffort");
        let mut dirs = vec![root.clone(), root.join("kubepods"), qos.clone()];
        for pod in pods {
            let dir = qos.join(format!("pod{}", pod.uid));
            dirs.push(dir.clone());
            for (_, id) in &pod.containers {
                dirs.push(dir.join(id));
            }
        }
        let made = Self { root, dirs };
        for d in &made.dirs {
            std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        made
    }
}

impl Drop for PodCgroups {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// A chaos-daemon serving mutual TLS on `addr`, its stdout kept open (it logs there); killed
/// on drop.
struct Daemon(
    Child,
    #[allow(dead_code, reason = "held open")] BufReader<ChildStdout>,
);

impl Daemon {
    fn start(dir: &Path, node: &str, addr: &str, certs: &Path) -> Self {
        let state = dir.join(node);
        std::fs::create_dir_all(&state).unwrap();
        let mut child = Command::new(daemon_bin())
            .arg("serve")
            .arg("--socket")
            .arg(state.join("daemon.sock"))
            .arg("--state-dir")
            .arg(state.join("state"))
            .args(["--node", node, "--tcp", addr])
            .arg("--tls-cert")
            .arg(certs.join("daemon.pem"))
            .arg("--tls-key")
            .arg(certs.join("daemon-key.pem"))
            .arg("--client-ca")
            .arg(certs.join("ca.pem"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening"),
            "daemon {node} did not start: {line:?}"
        );
        Self(child, stdout)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn each_nodes_daemon_gets_that_nodes_pods_and_emergency_stop_reaches_all() {
    let Some(mount) = cgroup2_mount() else { return };
    let dir = TempDir::new("kube-daemons");
    std::fs::create_dir_all(&dir.0).unwrap();
    let certs = certs(&dir.0);
    let pods = cluster();
    let _cgroups = PodCgroups::new(&mount, &pods);
    let api = ApiServer::start(pods.clone());
    let kubeconfig = api.kubeconfig(&dir.0);
    let port = {
        let l = TcpListener::bind("127.0.0.2:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _a = Daemon::start(&dir.0, "node-a", &format!("127.0.0.2:{port}"), &certs);
    let _b = Daemon::start(&dir.0, "node-b", &format!("127.0.0.3:{port}"), &certs);
    let tls = operator(&certs);
    let port = port.to_string();
    let kube = |args: &[&str]| {
        let mut all: Vec<&str> = vec!["--daemon-port", &port];
        all.extend(tls.iter().map(String::as_str));
        all.extend(args);
        ctl(&kubeconfig, &all)
    };
    let ok = |out: &Output| {
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(out)
    };
    // Each daemon's own status (by its answer in the fan-out), as text.
    let status_of = |node: &str| -> String {
        let all = ok(&kube(&["status"]));
        all.as_array()
            .unwrap()
            .iter()
            .find(|d| d["daemon"].as_str().unwrap().starts_with(node))
            .unwrap_or_else(|| panic!("no answer of {node}: {all}"))["answer"]
            .to_string()
    };
    let uid = |name: &str| find(&pods, name).uid.clone();

    // A real start: a harmless fault (packets to a port nothing uses) on every web pod.
    let started = ok(&kube(&[
        "experiment",
        "dependency_failure",
        "--intensity",
        "1",
        "--ports",
        "9",
        "--duration",
        "120",
        "--selector",
        "app=web",
        "-n",
        "shop",
        "--max-faults",
        "9",
    ]));
    let nodes = started["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{started}");
    assert!(
        nodes
            .iter()
            .all(|n| n["ok"] == true && !n["id"].as_str().unwrap().is_empty())
    );
    // --max-faults 9 over 3 targets: 6 for node-a's two, 3 for node-b's one.
    let caps: Vec<&Value> = nodes.iter().map(|n| &n["max_faults"]).collect();
    assert_eq!(caps, [&json!(6), &json!(3)]);
    let (a, b) = (status_of("node-a"), status_of("node-b"));
    for (status, mine, others) in [
        (
            &a,
            ["web-1", "web-2"].as_slice(),
            ["web-3", "web-4"].as_slice(),
        ),
        (
            &b,
            ["web-3"].as_slice(),
            ["web-1", "web-2", "web-4"].as_slice(),
        ),
    ] {
        for pod in mine {
            assert!(status.contains(&uid(pod)), "{pod} missing: {status}");
        }
        for pod in others {
            assert!(!status.contains(&uid(pod)), "{pod} present: {status}");
        }
    }
    // `stop ID` in Kubernetes mode finds the node that runs it.
    for n in nodes {
        let stopped = kube(&["stop", n["id"].as_str().unwrap()]);
        assert!(stopped.status.success(), "{stopped:?}");
    }

    // `report ID` finds the node that ran it: node-a's report lists both its pods.
    let id_a = nodes[0]["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let out = kube(&["report", id_a, "--format", "json"]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(
        report.status.success() && text.contains(&uid("web-1")) && text.contains(&uid("web-2")),
        "{report:?}"
    );
    assert!(!text.contains(&uid("web-3")), "{text}");

    // All or nothing: node-b's daemon latched (through its own socket) refuses, so node-a's
    // experiment, which started, is stopped again (no longer running); the refusal is the exit
    // code.
    let socket_b = format!("unix://{}", dir.0.join("node-b/daemon.sock").display());
    let latch = |args: &[&str]| {
        let out = Command::new(ctl_bin())
            .args(["--daemon", &socket_b])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    latch(&["emergency-stop", "--reason", "node-b only"]);
    let refused = kube(&[
        "experiment",
        "packet_loss",
        "--intensity",
        "0",
        "--selector",
        "app=web",
        "-n",
        "shop",
    ]);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let answer = stdout_json(&refused);
    let (node_a, node_b) = (&answer["nodes"][0], &answer["nodes"][1]);
    assert_eq!(
        (&node_a["ok"], &node_b["ok"]),
        (&json!(true), &json!(false))
    );
    assert_eq!(node_a["rolled_back"], "stopped", "{answer}");
    let id = node_a["id"].as_str().unwrap();
    let status_a = status_of("node-a");
    assert!(!status_a.contains(id), "{id} still running: {status_a}");
    latch(&["emergency-stop", "--clear"]);

    // --container: each node's dry run resolves those containers' cgroups (its pre-flight lists
    // them).
    let planned = ok(&kube(&[
        "experiment",
        "packet_loss",
        "--intensity",
        "0",
        "--dry-run",
        "--selector",
        "app=web",
        "-n",
        "shop",
        "--container",
        "sidecar",
    ]));
    let plans: Vec<String> = planned["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["answer"].to_string())
        .collect();
    let sidecar = |name: &str| find(&pods, name).container("sidecar").to_owned();
    assert!(plans[0].contains(&sidecar("web-1")) && plans[0].contains(&sidecar("web-2")));
    assert!(!plans[0].contains(&sidecar("web-3")), "{}", plans[0]);
    assert!(plans[1].contains(&sidecar("web-3")) && !plans[1].contains(&sidecar("web-1")));

    // The wrapper script in Kubernetes mode: an experiment through --selector and `status`
    // reach both nodes (tables).
    let script = |args: &[&str]| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/chaos-engineering.sh");
        let out = Command::new(script)
            .args(args)
            .args(["--daemon-port", &port])
            .env("CHAOS_CTL", ctl_bin())
            .env("CHAOS_KUBECONFIG", &kubeconfig)
            .env("CHAOS_CA", certs.join("ca.pem"))
            .env("CHAOS_CERT", certs.join("operator.pem"))
            .env("CHAOS_KEY", certs.join("operator-key.pem"))
            .env("CHAOS_TARGET", "--cgroup /replaced/by/the/selector")
            .env_remove("CHAOS_DAEMON")
            .env_remove("CHAOS_DAEMONS")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let dry = script(&[
        "experiment",
        "packet_loss",
        "--intensity",
        "0",
        "--dry-run",
        "--selector",
        "app=web",
        "-n",
        "shop",
    ]);
    assert!(
        dry.contains("shop/web-4") && dry.contains("no Running chaos-daemon pod on node node-c"),
        "{dry}"
    );
    for node in ["node-a", "node-b"] {
        let head = format!("== {node} (chaos-system/chaos-daemon-{})", &node[5..]);
        assert!(dry.contains(&head), "{dry}");
        assert!(script(&["status"]).contains(&head));
    }

    // --port-forward: the same through the API server's port-forward to each daemon pod (the
    // certificate checked against localhost).
    let forwarded = ok(&kube(&["--port-forward", "status"]));
    let labels: Vec<&str> = forwarded
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["daemon"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        [
            "node-a (chaos-system/chaos-daemon-a)",
            "node-b (chaos-system/chaos-daemon-b)"
        ]
    );
    let planned = ok(&kube(&[
        "--port-forward",
        "experiment",
        "packet_loss",
        "--intensity",
        "0",
        "--dry-run",
        "--pod",
        "shop/web-3",
    ]));
    assert!(
        planned["nodes"][0]["addr"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(
        planned["nodes"][0]["answer"]
            .to_string()
            .contains(&uid("web-3"))
    );
    let requests = api.requests();
    for pod in ["chaos-daemon-a", "chaos-daemon-b"] {
        let path =
            format!("GET /api/v1/namespaces/chaos-system/pods/{pod}/portforward?&ports={port}");
        assert!(requests.contains(&path), "{path}: {requests:#?}");
    }

    // emergency-stop reaches both daemons, and --clear lifts both latches.
    let stopped = ok(&kube(&["emergency-stop", "--reason", "kube drill"]));
    assert_eq!(stopped.as_array().unwrap().len(), 2, "{stopped}");
    for node in ["node-a", "node-b"] {
        let status = status_of(node);
        assert!(status.contains("kube drill"), "{node}: {status}");
    }
    ok(&kube(&["emergency-stop", "--clear"]));
    for node in ["node-a", "node-b"] {
        assert!(
            !status_of(node).contains("kube drill"),
            "{node} still latched"
        );
    }
}
