//! The Kubernetes manifests of deploy/ (issue 11, test 4): every document of the kustomize base
//! is the Kubernetes type its `apiVersion` and `kind` claim (k8s-openapi), with no unknown or
//! misspelt field; `kubectl kustomize deploy/` builds the expected objects; the DaemonSet's
//! arguments point into its own mounts and ports; the config is the shipped one with exactly
//! the in-cluster differences deploy/chaos.yaml documents; the kind config is what kind reads.
//! deploy/sample/ (the drill workflow's sample app and Prometheus) is checked the same way as
//! a kustomization of its own, and against what the config and the drill expect of it.
//!
//! No unknown fields: k8s-openapi's types skip fields they do not know when they deserialize,
//! so each document is deserialized as its type, serialized back, and compared with the
//! document itself (both as JSON). A misspelt or misplaced field is missing from the round
//! trip and fails the comparison. Nothing is normalised: k8s-openapi keeps every value the
//! manifests set (explicit `false`s included), so the two must be equal as they are.
//!
//! The podman test of the image (issue 11, test 1) reads deploy/daemonset.yaml itself and runs
//! the daemon with its mounts, privileges and arguments; this file checks the manifests alone.

use std::{collections::BTreeSet, path::Path, process::Command};

use k8s_openapi::{
    Resource,
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount},
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
};
use serde::{Deserialize as _, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use support::TempDir;

mod support;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CTL: &str = env!("CARGO_BIN_EXE_chaos-ctl");

/// The files of deploy/ (top level) that are not Kubernetes objects, each with its own check
/// below. YAML in subdirectories is not part of the base: `safety/` is the config's, the
/// others (dashboards, rules, the image) have their own tests.
const NOT_OBJECTS: [&str; 3] = ["kustomization.yaml", "kind-config.yaml", "chaos.yaml"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML documents of `text` as JSON values.
fn documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `doc` through `T` and back, when `doc` claims to be a `T`.
fn through<T: Resource + DeserializeOwned + Serialize>(
    doc: &Value,
) -> Option<Result<Value, String>> {
    if doc["apiVersion"] != T::API_VERSION || doc["kind"] != T::KIND {
        return None;
    }
    Some(
        serde_json::from_value::<T>(doc.clone())
            .map(|typed| serde_json::to_value(typed).unwrap())
            .map_err(|e| format!("not a valid {}: {e}", T::KIND)),
    )
}

/// `doc`'s kind when it is the Kubernetes type it claims, with no field the type lacks; else
/// what is wrong.
fn typed(doc: &Value) -> Result<String, String> {
    let back = through::<Namespace>(doc)
        .or_else(|| through::<ServiceAccount>(doc))
        .or_else(|| through::<Service>(doc))
        .or_else(|| through::<ConfigMap>(doc))
        .or_else(|| through::<DaemonSet>(doc))
        .or_else(|| through::<Deployment>(doc))
        .or_else(|| through::<ClusterRole>(doc))
        .or_else(|| through::<ClusterRoleBinding>(doc))
        .or_else(|| through::<Role>(doc))
        .or_else(|| through::<RoleBinding>(doc))
        .unwrap_or_else(|| {
            Err(format!(
                "{} {} is not a type the base is expected to hold",
                doc["apiVersion"], doc["kind"]
            ))
        })?;
    match first_difference(doc, &back, String::new()) {
        Some(path) => Err(format!(
            "{} {}: {path} is not a field of the type (misspelt or misplaced?)",
            doc["kind"], doc["metadata"]["name"]
        )),
        None => Ok(doc["kind"].as_str().unwrap().to_owned()),
    }
}

/// [`typed`], panicking with `what` (the file) and the problem.
fn assert_typed(doc: &Value, what: &str) -> String {
    typed(doc).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The first path where `a` and `b` differ, `None` when they are equal.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(l, r, format!("{at}.{k}"))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (l, r))| first_difference(l, r, format!("{at}[{i}]"))),
        _ => (a != b).then_some(at),
    }
}

/// The round trip finds a misspelt field, a misplaced one and a wrong type: the check of
/// every manifest below can fail.
#[test]
fn the_round_trip_catches_unknown_fields() {
    let good = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"clusterIP": "None", "ports": [{"name": "grpc", "port": 50051}]}
    });
    assert_eq!(typed(&good), Ok("Service".to_owned()));
    let mut misspelt = good.clone();
    misspelt["spec"]["ports"][0]["targetport"] = json!(1);
    let mut misplaced = good.clone();
    misplaced["metadata"]["clusterIP"] = json!("None");
    for (doc, path) in [
        (misspelt, ".spec.ports[0].targetport"),
        (misplaced, ".metadata.clusterIP"),
    ] {
        let e = typed(&doc).unwrap_err();
        assert!(e.contains(&format!("{path} is not a field")), "{e}");
    }
    let mut wrong_type = good.clone();
    wrong_type["spec"]["ports"][0]["port"] = json!("50051");
    assert!(
        typed(&wrong_type)
            .unwrap_err()
            .contains("not a valid Service")
    );
    let unexpected = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    assert!(
        typed(&unexpected)
            .unwrap_err()
            .contains("not a type the base")
    );
    let wrong_version = json!({"apiVersion": "apps/v1beta2", "kind": "DaemonSet"});
    assert!(typed(&wrong_version).is_err());
}

/// The kinds of the objects in the YAML files of the kustomization in `dir`, sorted: every
/// top-level YAML file of `dir` is one of its resources or one of `not_objects`, and every
/// document of the resources is its claimed type.
fn kinds_of_files(dir: &str, not_objects: &[&str]) -> Vec<String> {
    let kustomization = &documents(&read(&Path::new(dir).join("kustomization.yaml")), "k")[0];
    let resources: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .filter(|n| !not_objects.contains(&n.as_str()))
        .collect();
    assert_eq!(
        files, resources,
        "{dir}/*.yaml against the kustomization's resources"
    );

    let mut kinds = Vec::new();
    for file in &resources {
        for doc in documents(&read(&Path::new(dir).join(file)), file) {
            kinds.push(assert_typed(&doc, file));
        }
    }
    kinds.sort();
    kinds
}

/// The base's files: every top-level YAML file of deploy/ is a resource of kustomization.yaml
/// or one of [`NOT_OBJECTS`]; every document of the resources is its claimed type.
#[test]
fn every_manifest_is_its_kubernetes_type_with_no_unknown_field() {
    assert_eq!(kinds_of_files(DEPLOY, &NOT_OBJECTS), expected_kinds(false));
}

/// The kinds the base holds, sorted; with the generated ConfigMap when `built`.
fn expected_kinds(built: bool) -> Vec<String> {
    let mut kinds = vec![
        "ClusterRole",
        "ClusterRoleBinding",
        "DaemonSet",
        "Namespace",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceAccount",
    ];
    if built {
        kinds.push("ConfigMap");
    }
    kinds.sort();
    kinds.into_iter().map(str::to_owned).collect()
}

/// `kubectl kustomize deploy/` (kubectl's built-in kustomize) builds the base: the expected
/// objects, each its type, every namespaced one in chaos-system, the DaemonSet mounting the
/// generated (hash-named) ConfigMap, which holds deploy/chaos.yaml and its SLO file.
#[test]
fn kubectl_kustomize_builds_the_base() {
    let built = kustomize(DEPLOY);
    let mut kinds: Vec<String> = built.iter().map(|d| assert_typed(d, "built")).collect();
    kinds.sort();
    assert_eq!(kinds, expected_kinds(true));
    for doc in &built {
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
        if !cluster_scoped.contains(&doc["kind"].as_str().unwrap()) {
            assert_eq!(doc["metadata"]["namespace"], "chaos-system", "{doc:#}");
        }
    }
    let of = |kind: &str| built.iter().find(|d| d["kind"] == kind).unwrap();
    let config = of("ConfigMap");
    let name = config["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("chaos-config-"), "{name}");
    let volumes = &of("DaemonSet")["spec"]["template"]["spec"]["volumes"];
    let mounted = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config");
    assert_eq!(mounted.unwrap()["configMap"]["name"], name);
    assert_eq!(
        config["data"]["chaos.yaml"],
        read(&Path::new(DEPLOY).join("chaos.yaml"))
    );
    assert_eq!(
        config["data"]["http-slos.yaml"],
        read(&Path::new(DEPLOY).join("safety/http-slos.yaml"))
    );
}

/// The objects `kubectl kustomize dir` (kubectl's built-in kustomize) builds.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .output()
        .expect("kubectl (Debian package kubectl) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8(out.stdout).unwrap(), "kubectl kustomize")
}

/// The DaemonSet's container: its arguments as `--flag value` pairs.
fn daemon_args(ds: &DaemonSet) -> Vec<(String, String)> {
    let c = &ds
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(
        c.command.as_deref(),
        Some(&["/usr/local/bin/chaos-daemon".to_owned()][..])
    );
    let args = c.args.as_ref().unwrap();
    assert_eq!(args[0], "serve");
    args[1..]
        .chunks(2)
        .map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default()))
        .collect()
}

/// The DaemonSet as the daemon needs it: every path argument lies in a mount that provides it
/// (the config and TLS files are keys of the ConfigMap and Secret items), the listeners'
/// ports are the container's named ports that the probes and the Service use, the node name
/// comes from the downward API, and the privileges and host mounts of docs/adr/0018 are there.
#[test]
fn the_daemonset_arguments_match_its_mounts_ports_and_privileges() {
    let text = read(&Path::new(DEPLOY).join("daemonset.yaml"));
    let ds: DaemonSet = serde_norway::from_str(&text).unwrap();
    let args = daemon_args(&ds);
    let arg = |flag: &str| {
        let found: Vec<&String> = args
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v)
            .collect();
        assert_eq!(found.len(), 1, "{flag} once in {args:?}");
        found[0].clone()
    };
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("localhost/chaos-ebpf:latest"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(pod.host_pid, Some(true));
    assert_ne!(pod.host_network, Some(true));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.privileged, Some(true));

    // Mount path -> (volume, read-only); volume -> its source.
    let mounts = c.volume_mounts.as_ref().unwrap();
    let volumes = pod.volumes.as_ref().unwrap();
    let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap();
    let mount_at = |path: &str| {
        let m = mounts.iter().find(|m| m.mount_path == path);
        m.unwrap_or_else(|| panic!("nothing mounted at {path}"))
    };
    let host_path = |path: &str| {
        let m = mount_at(path);
        let hp = volume(&m.name).host_path.as_ref().unwrap();
        (hp.path.clone(), m.read_only == Some(true))
    };
    for dir in ["/sys/fs/cgroup", "/sys/fs/bpf", "/sys/kernel/btf"] {
        assert_eq!(host_path(dir).0, dir);
    }
    assert!(host_path("/sys/kernel/btf").1, "BTF is only read");
    assert!(
        host_path("/sys/fs/bpf").1,
        "nothing is pinned (docs/adr/0003)"
    );
    assert!(
        !host_path("/sys/fs/cgroup").1,
        "cgroups are written (attach, kill, pressure)"
    );
    // The state (the journal a restart undoes) and the socket survive the pod.
    assert_eq!(
        host_path(&arg("--state-dir")),
        ("/var/lib/chaos".to_owned(), false)
    );
    let socket = Path::new(&arg("--socket")).to_owned();
    let socket_dir = socket.parent().unwrap().to_str().unwrap();
    assert_eq!(host_path(socket_dir), ("/run/chaos".to_owned(), false));

    // A file argument: a key of the ConfigMap or Secret mounted at its directory.
    let provided = |file: &str, source: &str| {
        let path = Path::new(file);
        let dir = path.parent().unwrap().to_str().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let m = mount_at(dir);
        assert_eq!(m.read_only, Some(true), "{dir} read-only");
        let v = volume(&m.name);
        let items = match source {
            "configMap" => v.config_map.as_ref().unwrap().items.clone(),
            _ => v.secret.as_ref().unwrap().items.clone(),
        };
        let items = items.unwrap();
        assert!(
            items.iter().any(|i| i.path == name && i.key == name),
            "{file} in {source}"
        );
    };
    provided(&arg("--config"), "configMap");
    for flag in ["--tls-cert", "--tls-key", "--client-ca"] {
        provided(&arg(flag), "secret");
    }
    let tls = volume(&mount_at("/etc/chaos/tls").name)
        .secret
        .clone()
        .unwrap();
    assert_eq!(tls.secret_name.as_deref(), Some("chaos-daemon-tls"));
    assert_eq!(tls.default_mode, Some(0o400));
    // The config's SLO file, relative to it, is mounted beside it.
    let config_items = volume("config").config_map.clone().unwrap().items.unwrap();
    assert!(
        config_items
            .iter()
            .any(|i| i.path == "safety/http-slos.yaml")
    );

    // Listeners: on every address of the pod, at the named ports the probes and Service use.
    let port = |name: &str| {
        let ports = c.ports.as_ref().unwrap();
        ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .unwrap()
            .container_port
    };
    assert_eq!(arg("--tcp"), format!("0.0.0.0:{}", port("grpc")));
    assert_eq!(
        arg("--metrics-addr"),
        format!("0.0.0.0:{}", port("metrics"))
    );
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some("/healthz"));
        let named = serde_json::to_value(&get.port).unwrap();
        assert_eq!(named, "metrics");
    }
    let service: Service =
        serde_norway::from_str(&read(&Path::new(DEPLOY).join("service.yaml"))).unwrap();
    let spec = service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    let sports: Vec<(String, i32)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        sports,
        [
            ("grpc".to_owned(), port("grpc")),
            ("metrics".to_owned(), port("metrics"))
        ]
    );
    assert_eq!(
        spec.selector,
        ds.spec.as_ref().unwrap().selector.match_labels
    );

    // The node name from the downward API.
    assert_eq!(arg("--node"), "$(NODE_NAME)");
    let env = c
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "spec.nodeName");

    // Every Linux node, whatever its taints; requests and limits set.
    let selector = pod.node_selector.as_ref().unwrap();
    assert_eq!(
        selector.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    let tolerations = pod.tolerations.as_ref().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );
    let resources = c.resources.as_ref().unwrap();
    for r in [&resources.requests, &resources.limits] {
        let r = r.as_ref().unwrap();
        assert!(r.contains_key("cpu") && r.contains_key("memory"), "{r:?}");
    }
}

/// The Secret made as `chaos-ctl certs` says (and deploy/README.md shows), run with kubectl's
/// client-side dry run, is the one the DaemonSet mounts, holding every file it reads.
#[test]
fn the_secret_chaos_ctl_certs_describes_is_the_one_the_daemonset_mounts() {
    let dir = TempDir::new("manifests-certs");
    let out_dir = &dir.0;
    let made = Command::new(CTL)
        .args([
            "--output",
            "json",
            "certs",
            "--out",
            out_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let answer: Value = serde_json::from_slice(&made.stdout).unwrap();
    let words: Vec<&str> = answer["secret"].as_str().unwrap().split(' ').collect();
    assert_eq!(words[0], "kubectl");
    let dry = Command::new("kubectl")
        .args(&words[1..])
        .args(["--dry-run=client", "-o", "json"])
        .env("KUBECONFIG", out_dir.join("no-cluster"))
        .output()
        .unwrap();
    let secret: Secret = serde_json::from_slice(&dry.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&dry.stderr)));
    let ds: DaemonSet =
        serde_norway::from_str(&read(&Path::new(DEPLOY).join("daemonset.yaml"))).unwrap();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let tls = pod
        .volumes
        .unwrap()
        .into_iter()
        .find_map(|v| v.secret)
        .unwrap();
    assert_eq!(secret.metadata.name, tls.secret_name);
    assert_eq!(secret.metadata.namespace.as_deref(), Some("chaos-system"));
    let data = secret.data.unwrap();
    for item in tls.items.unwrap() {
        let file = std::fs::read(out_dir.join(&item.key)).unwrap();
        assert_eq!(
            data.get(&item.key).map(|b| &b.0),
            Some(&file),
            "{}",
            item.key
        );
    }
}

/// deploy/chaos.yaml is chaos/chaos.yaml but for the two in-cluster values its header names,
/// its SLO file is the shipped one, and chaos-ctl accepts it as a config.
#[test]
fn the_configmap_config_is_the_shipped_one_with_in_cluster_values() {
    let yaml = |path: &str| documents(&read(&Path::new(ROOT).join(path)), path).remove(0);
    let (mut deploy, shipped) = (yaml("deploy/chaos.yaml"), yaml("chaos/chaos.yaml"));
    let prometheus = deploy["monitoring"]["prometheus"].as_object_mut().unwrap();
    assert_eq!(
        prometheus.remove("url"),
        Some(json!("http://prometheus.monitoring.svc:9090"))
    );
    assert_eq!(shipped["monitoring"]["prometheus"].get("url"), None);
    let channels = &mut deploy["rollback"]["notification_channels"];
    assert_eq!(*channels, json!([]));
    *channels = shipped["rollback"]["notification_channels"].clone();
    assert_eq!(
        first_difference(&deploy, &shipped, String::new()),
        None,
        "deploy/chaos.yaml differs from chaos/chaos.yaml beyond the in-cluster values"
    );
    assert_eq!(
        read(&Path::new(ROOT).join("deploy/safety/http-slos.yaml")),
        read(&Path::new(ROOT).join("chaos/safety/http-slos.yaml"))
    );
    let config = Path::new(DEPLOY).join("chaos.yaml");
    let out = Command::new(CTL)
        .args(["validate", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// deploy/kind-config.yaml is a kind v1alpha4 Cluster with one control plane and one worker,
/// and only keys kind reads.
#[test]
fn the_kind_config_has_a_control_plane_and_a_worker() {
    let kind = &documents(&read(&Path::new(DEPLOY).join("kind-config.yaml")), "kind")[0];
    assert_eq!(kind["kind"], "Cluster");
    assert_eq!(kind["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let keys: BTreeSet<&str> = kind
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        keys.is_subset(&BTreeSet::from(["kind", "apiVersion", "name", "nodes"])),
        "{keys:?}"
    );
    assert_eq!(
        kind["nodes"],
        json!([{"role": "control-plane"}, {"role": "worker"}])
    );
}

/// deploy/sample/: the drill workflow's sample app and Prometheus, a kustomization of its own.
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sample");

/// The kinds deploy/sample/ holds, sorted; with the generated ConfigMap when `built`.
fn sample_kinds(built: bool) -> Vec<String> {
    let mut kinds = vec!["Deployment"; 5];
    kinds.extend(["Namespace"; 2]);
    kinds.extend(["Service"; 5]);
    if built {
        kinds.push("ConfigMap");
    }
    kinds.sort();
    kinds.into_iter().map(str::to_owned).collect()
}

/// deploy/sample/ is its own kustomization: every YAML file is one of its resources (or
/// Prometheus' config, which its configMapGenerator reads), every document its type, and
/// `kubectl kustomize deploy/sample` builds them in the namespaces chaos-sample and
/// monitoring, Prometheus mounting the generated (hash-named) ConfigMap with prometheus.yml.
#[test]
fn the_sample_is_its_own_kustomization() {
    let not_objects = ["kustomization.yaml", "prometheus.yml"];
    assert_eq!(kinds_of_files(SAMPLE, &not_objects), sample_kinds(false));
    let built = kustomize(SAMPLE);
    let mut kinds: Vec<String> = built.iter().map(|d| assert_typed(d, "built")).collect();
    kinds.sort();
    assert_eq!(kinds, sample_kinds(true));
    for doc in built.iter().filter(|d| d["kind"] != "Namespace") {
        let ns = &doc["metadata"]["namespace"];
        assert!(ns == "chaos-sample" || ns == "monitoring", "{doc:#}");
    }
    let config = built.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let name = config["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("prometheus-config-"), "{name}");
    assert_eq!(config["metadata"]["namespace"], "monitoring");
    assert_eq!(
        config["data"]["prometheus.yml"],
        read(&Path::new(SAMPLE).join("prometheus.yml"))
    );
    let prometheus = object(&built, "Deployment", "monitoring", "prometheus");
    let volumes = prometheus["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    assert!(
        volumes.iter().any(|v| v["configMap"]["name"] == name),
        "{volumes:?}"
    );
}

/// The built object of `kind` named `name` in `namespace`.
fn object<'a>(built: &'a [Value], kind: &str, namespace: &str, name: &str) -> &'a Value {
    built
        .iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["namespace"] == namespace
                && d["metadata"]["name"] == name
        })
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name}"))
}

/// The containerPort of the port named `name` of a Deployment's first container.
fn container_port(deployment: &Value, name: &str) -> i64 {
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    let port = ports.as_array().unwrap().iter().find(|p| p["name"] == name);
    port.unwrap_or_else(|| panic!("no port {name}"))["containerPort"]
        .as_i64()
        .unwrap()
}

/// What the drill and the daemons' config rely on: deploy/chaos.yaml's Prometheus URL is the
/// sample's Prometheus Service; promtool accepts its config, which scrapes every second (the
/// SLOs' [10s] windows need 2.5 s or less) each frontend pod through a headless Service that
/// lists them ready or not; the sample's containers run chaos-workload from the DaemonSet's
/// image; every `$(NAME_SERVICE_HOST)` / `$(NAME_SERVICE_PORT)` in their arguments names a
/// Service of their namespace with a cluster IP (else the kubelet leaves the reference as it
/// is); and the frontend pods are named as the config's pod_deletion patterns allow.
#[test]
fn the_sample_is_what_the_drill_and_the_config_expect() {
    let built = kustomize(SAMPLE);
    let chaos = &documents(&read(&Path::new(DEPLOY).join("chaos.yaml")), "chaos.yaml")[0];

    // http://NAME.NAMESPACE.svc:PORT
    let url = chaos["monitoring"]["prometheus"]["url"].as_str().unwrap();
    let (host, port) = url
        .strip_prefix("http://")
        .and_then(|a| a.split_once(':'))
        .unwrap();
    let port: i64 = port.parse().unwrap();
    let [name, namespace, "svc"] = host.split('.').collect::<Vec<_>>()[..] else {
        panic!("{url} is not a Service's address");
    };
    let service = object(&built, "Service", namespace, name);
    let prometheus = object(&built, "Deployment", namespace, "prometheus");
    let sport = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("{url}: the Service has no port {port}"));
    let target = sport["targetPort"].as_str().unwrap();
    assert_eq!(container_port(prometheus, target), port);
    let labels = &prometheus["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/name"],
        labels["app.kubernetes.io/name"]
    );
    let image = prometheus["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.starts_with("prom/prometheus:v2.53."),
        "pinned: {image}"
    );

    // Prometheus' config.
    let config = Path::new(SAMPLE).join("prometheus.yml");
    let out = Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(&config)
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(out.status.success(), "{out:?}");
    let config = &documents(&read(&config), "prometheus.yml")[0];
    let every = |v: &Value| humantime::parse_duration(v.as_str().unwrap()).unwrap();
    assert!(every(&config["global"]["scrape_interval"]) <= std::time::Duration::from_millis(2500));
    let jobs = config["scrape_configs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0].get("scrape_interval"),
        None,
        "the global interval applies"
    );
    let sd = &jobs[0]["dns_sd_configs"][0];
    let (svc, ns) = sd["names"][0]
        .as_str()
        .unwrap()
        .strip_suffix(".svc")
        .and_then(|n| n.split_once('.'))
        .unwrap();
    let pods = object(&built, "Service", ns, svc);
    assert_eq!(pods["spec"]["clusterIP"], "None", "one A record per pod");
    assert_eq!(pods["spec"]["publishNotReadyAddresses"], true);
    let frontend = object(&built, "Deployment", ns, "frontend");
    assert_eq!(
        pods["spec"]["selector"],
        frontend["spec"]["selector"]["matchLabels"]
    );
    let target = pods["spec"]["ports"][0]["targetPort"].as_str().unwrap();
    assert_eq!(Some(container_port(frontend, target)), sd["port"].as_i64());

    // The sample's workloads: chaos-workload from the daemon's image, Service variables that
    // exist.
    let ds: DaemonSet =
        serde_norway::from_str(&read(&Path::new(DEPLOY).join("daemonset.yaml"))).unwrap();
    let daemon_image = ds.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    let mut references = 0;
    for d in built.iter().filter(|d| {
        d["kind"] == "Deployment"
            && d["metadata"]["namespace"] == "chaos-sample"
            && d["metadata"]["name"] != "redis"
    }) {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], daemon_image.as_str());
        assert_eq!(c["command"], json!(["/usr/local/bin/chaos-workload"]));
        for arg in c["args"].as_array().unwrap() {
            for var in arg.as_str().unwrap().split("$(").skip(1) {
                let var = var.split(')').next().unwrap();
                let service = var
                    .strip_suffix("_SERVICE_HOST")
                    .or_else(|| var.strip_suffix("_SERVICE_PORT"))
                    .unwrap_or_else(|| panic!("$({var}) is not a Service variable"))
                    .to_lowercase()
                    .replace('_', "-");
                let s = object(&built, "Service", "chaos-sample", &service);
                assert_ne!(s["spec"]["clusterIP"], "None", "{service} has no variables");
                references += 1;
            }
        }
    }
    assert!(
        references >= 4,
        "the dependency and the load's target: {references}"
    );

    // The drill's database_load presses the sample's Redis: a pinned image behind the Service
    // the workflow names.
    let workflow = read(&Path::new(DEPLOY).join("../.github/workflows/chaos-drills.yml"));
    let address = workflow
        .split("--engine redis --address ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the drill's database_load address");
    let (host, port) = address.split_once(':').unwrap();
    let [name, namespace, "svc"] = host.split('.').collect::<Vec<_>>()[..] else {
        panic!("{address} is not a Service's address");
    };
    let service = object(&built, "Service", namespace, name);
    let redis = object(&built, "Deployment", namespace, name);
    let sport = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"].as_i64().map(|p| p.to_string()).as_deref() == Some(port))
        .unwrap_or_else(|| panic!("{address}: the Service has no port {port}"));
    let target = sport["targetPort"].as_str().unwrap();
    assert_eq!(container_port(redis, target).to_string(), port);
    let image = redis["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(image.starts_with("redis:7.4"), "pinned: {image}");

    // pod_deletion may kill the frontend's pods (NAME-<hash>-<id>).
    let patterns = &chaos["experiment_types"]["pod_deletion"]["parameters"]["pods"];
    let pod = format!(
        "{}-7d9f8-abcde",
        frontend["metadata"]["name"].as_str().unwrap()
    );
    assert!(
        patterns.as_array().unwrap().iter().any(|p| {
            let p = p.as_str().unwrap();
            p.strip_suffix('*')
                .is_some_and(|prefix| pod.starts_with(prefix))
        }),
        "{pod} against {patterns}"
    );
}
