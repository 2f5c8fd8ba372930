//! The drill workflow, .github/workflows/chaos-drills.yml (issue 11, test 6): its triggers and
//! inputs are the seed's; its one job installs the toolchain, builds the image, creates the
//! kind cluster from deploy/kind-config.yaml, loads the image, deploys deploy/ and
//! deploy/sample/, runs the drill, uploads the report and judges the drill, in that order,
//! with every action pinned to a commit; no `run:` script interpolates an expression; yamllint
//! (with the repository's .yamllint.yaml) and shellcheck accept it.
//!
//! The drill's and the verdict's scripts are run for real, by bash as GitHub runs them, with
//! stand-ins for kubectl (answering as a kind cluster would) and chaos-ctl (recording its
//! arguments and answering with what the real chaos-ctl prints, rendered by chaos-ctl's own
//! `render` module): the target is a frontend pod, reached through the daemon on its node;
//! `dry_run` adds `--dry-run`; the arguments the drill gives each experiment type parse in the
//! real chaos-ctl; the job fails when chaos-ctl exits 3 (refused) or fails, or when the
//! experiment ends other than `completed` (`--wait` exits 0 whatever the end).
//!
//! The workflow as a whole (kind, the image in the cluster, the daemons on GitHub's kernel) runs
//! only on GitHub. jq (the scripts read chaos-ctl's JSON with it), yamllint and shellcheck are
//! Debian packages: a test that needs a missing one is skipped, unless CHAOS_REQUIRE_KERNEL=1
//! (CI), which forbids skipping.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use chaos_api::{experiment::ExperimentType, state::State};
use runner::{Answer, DAEMON_POD, POD, POD_UID, REFUSED, drill, dry_run, ended, text, verdict};
use serde_json::{Value, json};

mod runner;
mod support;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const CTL: &str = env!("CARGO_BIN_EXE_chaos-ctl");
const WORKFLOW: &str = ".github/workflows/chaos-drills.yml";

fn read(path: &str) -> String {
    let path = Path::new(ROOT).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn workflow() -> Value {
    serde_norway::from_str(&read(WORKFLOW)).unwrap_or_else(|e| panic!("{WORKFLOW}: {e}"))
}

/// The workflow's one job.
fn job(wf: &Value) -> &Value {
    let jobs = wf["jobs"].as_object().unwrap();
    assert_eq!(jobs.len(), 1, "one job: {:?}", jobs.keys());
    jobs.values().next().unwrap()
}

fn steps(wf: &Value) -> &[Value] {
    job(wf)["steps"].as_array().unwrap()
}

/// The step named `name`.
fn step<'a>(wf: &'a Value, name: &str) -> &'a Value {
    let found = steps(wf).iter().find(|s| s["name"] == name);
    found.unwrap_or_else(|| panic!("no step named {name:?}"))
}

/// A step's commands: its script's lines with continuations joined, trimmed, comments and blank
/// lines dropped.
fn commands(step: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for raw in step["run"].as_str().unwrap_or_default().lines() {
        let trimmed = raw.trim();
        if line.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => line += &format!("{} ", part.trim_end()),
            None => {
                line += trimmed;
                out.push(std::mem::take(&mut line));
            }
        }
    }
    out
}

/// Whether `step` runs a command starting with `prefix`.
fn runs(step: &Value, prefix: &str) -> bool {
    commands(step).iter().any(|c| c.starts_with(prefix))
}

/// Whether `step` uses the action `name` (owner/repo).
fn uses(step: &Value, name: &str) -> bool {
    step["uses"]
        .as_str()
        .is_some_and(|u| u.split_once('@').is_some_and(|(n, _)| n == name))
}

/// Whether `tool` runs. When it does not, the caller skips its test, unless
/// CHAOS_REQUIRE_KERNEL=1 (CI), which forbids skipping.
fn have(tool: &str) -> bool {
    let runs = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        assert_ne!(
            std::env::var("CHAOS_REQUIRE_KERNEL").as_deref(),
            Ok("1"),
            "{tool} (Debian package {tool}) is not installed, and CHAOS_REQUIRE_KERNEL=1 forbids \
             skipping"
        );
        eprintln!("SKIP: {tool} is not installed");
    }
    runs
}

/// The value of one operand of an expression: `inputs.NAME` (null when not given), `env.NAME`
/// (the job's env), or a literal ('text', a number, true, false).
fn operand(text: &str, inputs: &Value, env: &[(String, String)]) -> Value {
    if let Some(name) = text.strip_prefix("inputs.") {
        return inputs.get(name).cloned().unwrap_or(Value::Null);
    }
    if let Some(name) = text.strip_prefix("env.") {
        let found = env.iter().find(|(k, _)| k == name);
        return json!(found.unwrap_or_else(|| panic!("no env {name}")).1);
    }
    if let Some(s) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return json!(s);
    }
    serde_json::from_str(text)
        .unwrap_or_else(|_| panic!("an operand this test cannot evaluate: {text}"))
}

/// `value` as GitHub evaluates it for a run with `inputs` (none for a pull request): a plain
/// string, or `${{ A || B ... }}`, the first truthy operand, else the last, as a string.
fn evaluate(value: &Value, inputs: &Value, env: &[(String, String)]) -> String {
    let text = match value {
        Value::String(s) => s,
        other => return other.to_string(),
    };
    let Some(expression) = text.strip_prefix("${{").and_then(|t| t.strip_suffix("}}")) else {
        assert!(!text.contains("${{"), "an expression inside text: {text}");
        return text.clone();
    };
    let operands: Vec<Value> = expression
        .split("||")
        .map(|o| operand(o.trim(), inputs, env))
        .collect();
    let truthy = |v: &&Value| match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    };
    match operands
        .iter()
        .find(truthy)
        .unwrap_or(operands.last().unwrap())
    {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The job's env for a run with `inputs` (`{}`: a pull request).
fn job_env(wf: &Value, inputs: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (k, v) in job(wf)["env"].as_object().unwrap() {
        let value = evaluate(v, inputs, &env);
        env.push((k.clone(), value));
    }
    env
}

fn env_value<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    &env.iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn the_triggers_and_inputs_are_the_seeds() {
    let wf = workflow();
    assert_eq!(wf["name"], "Chaos Drills v2");
    let on = wf["on"].as_object().unwrap();
    let triggers: Vec<&String> = on.keys().collect();
    assert_eq!(triggers, ["pull_request", "workflow_dispatch"]);
    assert_eq!(on["pull_request"], json!({"branches": ["main", "develop"]}));
    // The seed's inputs, as it writes them: no defaults, no options.
    assert_eq!(
        on["workflow_dispatch"],
        json!({"inputs": {
            "experiment_type": {
                "description": "Type of chaos experiment", "required": true, "type": "string"
            },
            "budget": {
                "description": "Maximum budget for experiment", "required": false, "type": "number"
            },
            "duration": {
                "description": "Duration in minutes", "required": false, "type": "number"
            },
            "dry_run": {"description": "Dry run mode", "required": false, "type": "boolean"},
        }})
    );
}

/// A pull request (no inputs) runs a small real drill; a manual run takes its inputs.
#[test]
fn a_pull_request_runs_the_safe_defaults_and_a_manual_run_its_inputs() {
    let wf = workflow();
    let drill = |inputs: Value| {
        let env = job_env(&wf, &inputs);
        ["EXPERIMENT_TYPE", "BUDGET", "DURATION_MINUTES", "DRY_RUN"]
            .map(|k| env_value(&env, k).to_owned())
    };
    assert_eq!(drill(json!({})), ["packet_loss", "1", "1", "false"]);
    let manual = json!({
        "experiment_type": "dependency_failure", "budget": 2.5, "duration": 10, "dry_run": true
    });
    assert_eq!(drill(manual), ["dependency_failure", "2.5", "10", "true"]);
    let unset = json!({"experiment_type": "network_latency", "dry_run": false});
    assert_eq!(drill(unset), ["network_latency", "1", "1", "false"]);
}

/// One job on ubuntu-latest, every action pinned to a commit, and the steps in order: check out,
/// packages (buildah), cargo cache, toolchains (`cargo xtask setup`), the image (`cargo xtask
/// image`), kind from deploy/kind-config.yaml, the image loaded into it (the DaemonSet's image
/// name), deploy/ as deploy/README.md says, deploy/sample/, the drill, the report uploaded in
/// every case, the verdict, and diagnostics on failure.
#[test]
fn the_job_builds_loads_deploys_and_drills_in_order() {
    let wf = workflow();
    let job = job(&wf);
    assert_eq!(job["runs-on"], "ubuntu-latest");
    let env = job_env(&wf, &json!({}));
    let steps = steps(&wf);
    for s in steps.iter().filter_map(|s| s["uses"].as_str()) {
        let (_, commit) = s.split_once('@').unwrap();
        assert!(
            commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()),
            "{s}: pin actions to a commit"
        );
    }

    let daemonset = read("deploy/daemonset.yaml");
    let daemonset: Value = serde_norway::from_str(&daemonset).unwrap();
    let image = &daemonset["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(env_value(&env, "IMAGE"), image.as_str().unwrap());
    let kind_config: Value = serde_norway::from_str(&read("deploy/kind-config.yaml")).unwrap();

    type Check = fn(&Value, &[(String, String)]) -> bool;
    let order: [(&str, Check); 13] = [
        ("check out", |s, _| uses(s, "actions/checkout")),
        ("packages", |s, _| {
            commands(s)
                .iter()
                .any(|c| c.starts_with("sudo apt-get install") && c.contains(" buildah"))
        }),
        ("cargo cache", |s, _| {
            uses(s, "actions/cache")
                && s["with"]["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("~/.cargo/registry") && p.contains("target/"))
        }),
        ("toolchains", |s, _| {
            runs(s, "rustup toolchain install stable") && runs(s, "cargo xtask setup")
        }),
        ("image", |s, _| {
            commands(s).contains(&"cargo xtask image".to_owned())
        }),
        ("kind", |s, env| {
            uses(s, "helm/kind-action")
                && s["with"]["config"] == "deploy/kind-config.yaml"
                && s["with"]["version"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("v0."))
                && evaluate(&s["with"]["cluster_name"], &json!({}), env)
                    == env_value(env, "KIND_CLUSTER")
        }),
        ("load", |s, _| {
            runs(
                s,
                r#"buildah push "$IMAGE" "docker-archive:$RUNNER_TEMP/chaos-ebpf.tar:$IMAGE""#,
            ) && runs(
                s,
                r#"kind load image-archive "$RUNNER_TEMP/chaos-ebpf.tar" --name "$KIND_CLUSTER""#,
            )
        }),
        ("deploy", |s, _| {
            let c = commands(s);
            let at = |prefix: &str| c.iter().position(|l| l.starts_with(prefix));
            let steps = [
                at("chaos-ctl certs --out"),
                at("kubectl apply -f deploy/namespace.yaml"),
                at("kubectl -n chaos-system create secret generic chaos-daemon-tls"),
                at("kubectl apply -k deploy/"),
                at("kubectl -n chaos-system rollout status daemonset/chaos-daemon"),
            ];
            steps.iter().all(Option::is_some) && steps.is_sorted()
        }),
        ("sample", |s, _| runs(s, "kubectl apply -k deploy/sample/")),
        ("drill", |s, _| {
            s["id"] == "drill" && runs(s, r#"chaos-ctl "${conn[@]}" --output json experiment"#)
        }),
        ("report upload", |s, _| {
            uses(s, "actions/upload-artifact")
                && s["if"] == "always()"
                && s["with"]["path"] == "drill/"
        }),
        ("verdict", |s, _| runs(s, "rc=$(cat drill/exit-code)")),
        ("diagnostics", |s, _| {
            s["if"] == "failure()" && runs(s, r#"kubectl -n chaos-system logs "$p""#)
        }),
    ];
    let mut last = None;
    for (what, check) in order {
        let at = steps.iter().position(|s| check(s, &env));
        let at = at.unwrap_or_else(|| panic!("no {what} step as expected"));
        assert!(
            Some(at) > last,
            "the {what} step comes too early (step {at})"
        );
        last = Some(at);
    }
    assert_eq!(kind_config["name"], env_value(&env, "KIND_CLUSTER"));
}

/// Whether a script interpolates an expression: GitHub would paste the value into the shell
/// code before bash reads it (script injection). Values reach scripts through `env:`.
fn interpolates(script: &str) -> bool {
    script.contains("${{")
}

#[test]
fn no_script_interpolates_an_expression() {
    assert!(interpolates(r#"echo "${{ inputs.budget }}""#));
    assert!(interpolates("git log ${{github.event.pull_request.title}}"));
    assert!(!interpolates(r#"echo "$BUDGET" "${dry[@]}""#));
    for s in steps(&workflow()) {
        if let Some(run) = s["run"].as_str() {
            assert!(
                !interpolates(run),
                "step {}: pass the expression through env: and use the variable",
                s["name"]
            );
        }
    }
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == flag)?;
    args.get(at + 1).map(String::as_str)
}

/// A pull request's drill: a running frontend pod's UID and name, reached through a
/// port-forward to the daemon on that pod's node with the operator certificate, the defaults,
/// no dry run, `--wait` with JSON; then the three reports, into the artifact's directory and
/// the job summary. A manual dry run adds `--dry-run`, takes the inputs, and fetches no report
/// (a dry run has no experiment).
#[test]
fn the_drill_targets_a_frontend_pod_through_its_nodes_daemon_and_honours_dry_run() {
    if !have("jq") {
        return;
    }
    let (runner, env) = drill(
        "pr",
        &json!({}),
        &ended(State::Completed, "duration elapsed"),
    );
    let kubectl = runner.kubectl_calls();
    assert!(
        kubectl.contains(&format!(
            "-n chaos-system port-forward pod/{DAEMON_POD} 50051:50051"
        )),
        "{kubectl:#?}"
    );
    let args = runner.experiment_call();
    let certs = runner.path("runner/certs");
    let cert = |f: &str| certs.join(f).display().to_string();
    assert_eq!(flag(&args, "--daemon"), Some("https://localhost:50051"));
    assert_eq!(flag(&args, "--ca"), Some(cert("ca.pem").as_str()));
    assert_eq!(flag(&args, "--cert"), Some(cert("operator.pem").as_str()));
    assert_eq!(
        flag(&args, "--key"),
        Some(cert("operator-key.pem").as_str())
    );
    assert_eq!(flag(&args, "--output"), Some("json"));
    assert_eq!(flag(&args, "experiment"), Some("packet_loss"));
    assert_eq!(flag(&args, "--pod-uid"), Some(POD_UID));
    let pod_name = format!("chaos-sample/{POD}");
    assert_eq!(flag(&args, "--pod-name"), Some(pod_name.as_str()));
    assert_eq!(flag(&args, "--intensity"), Some("0.01"));
    assert_eq!(flag(&args, "--budget"), Some("1"));
    assert_eq!(flag(&args, "--duration"), Some("60s"));
    assert!(args.contains(&"--wait".to_owned()), "{args:?}");
    assert!(!args.contains(&"--dry-run".to_owned()), "{args:?}");
    // The reports of the experiment the final status names.
    let reports: Vec<Vec<String>> = runner
        .ctl_calls()
        .into_iter()
        .filter(|c| c.contains(&"report".to_owned()))
        .collect();
    assert_eq!(reports.len(), 3, "{reports:?}");
    for (file, format) in [
        ("report.md", None),
        ("report.html", Some("html")),
        ("report.json", Some("json")),
    ] {
        let call = reports.iter().find(|c| flag(c, "--format") == format);
        let call = call.unwrap_or_else(|| panic!("no report as {format:?}: {reports:?}"));
        assert_eq!(flag(call, "report"), Some("exp-0001"));
        let saved = runner.drill_file(file).unwrap_or_default();
        assert!(saved.contains(&call.join(" ")), "{file}: {saved}");
    }
    let summary = std::fs::read_to_string(runner.path("runner/summary.md")).unwrap();
    assert_eq!(Some(summary), runner.drill_file("report.md"));
    let out = verdict(&runner, &env);
    assert!(out.status.success(), "{}", text(&out));

    let inputs = json!({
        "experiment_type": "network_latency", "budget": 2.5, "duration": 0.5, "dry_run": true
    });
    let (runner, env) = drill("dry", &inputs, &dry_run(false));
    let args = runner.experiment_call();
    assert!(args.contains(&"--dry-run".to_owned()), "{args:?}");
    assert_eq!(flag(&args, "experiment"), Some("network_latency"));
    assert_eq!(flag(&args, "--budget"), Some("2.5"));
    assert_eq!(flag(&args, "--duration"), Some("30s"));
    assert!(flag(&args, "--latency-ms").is_some(), "{args:?}");
    let calls = runner.ctl_calls();
    assert!(
        !calls.iter().any(|c| c.contains(&"report".to_owned())),
        "{calls:?}"
    );
    assert!(
        runner
            .drill_file("result.json")
            .unwrap()
            .contains("\"dry_run\":true")
    );
    let out = verdict(&runner, &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Dry run"));
}

/// The arguments the drill gives every experiment type are a valid experiment for the real
/// chaos-ctl: with no daemon listening it fails to connect (exit 1), never with a usage error
/// (exit 2, checked before connecting).
#[test]
fn the_drill_gives_every_experiment_type_arguments_chaos_ctl_accepts() {
    if !have("jq") {
        return;
    }
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for kind in ExperimentType::ALL {
        let name = kind.as_str();
        let inputs = json!({"experiment_type": name, "budget": 60, "duration": 2});
        let (runner, _) = drill(name, &inputs, &ended(State::Completed, "duration elapsed"));
        // The same call, to a daemon that is not there (the connection flags replaced).
        let args = runner.experiment_call();
        let mut kept = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if ["--daemon", "--ca", "--cert", "--key"].contains(&a.as_str()) {
                it.next();
            } else {
                kept.push(a);
            }
        }
        let out = Command::new(CTL)
            .args(["--daemon", &closed])
            .args(kept)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {args:?}: {stderr}");
        assert!(stderr.contains("nothing listens there"), "{name}: {stderr}");
    }
}

/// The failure condition: the verdict passes only a drill that ended `completed` (or a dry
/// run whose pre-flight passed); it fails, naming why, when a guard rolled the drill back,
/// when it ended any other way, when chaos-ctl refused it (exit 3, dry runs included) and when
/// chaos-ctl failed.
#[test]
fn the_job_fails_when_the_drill_is_refused_rolled_back_or_cut_short() {
    if !have("jq") {
        return;
    }
    let judge = |name: &str, inputs: Value, answer: Answer| {
        let (runner, env) = drill(name, &inputs, &answer);
        let out = verdict(&runner, &env);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let rollback = "slo violation: error_rate = 0.2300 (objective <= 0.01)";
    for state in State::ALL.into_iter().filter(|s| s.is_final()) {
        let reason = match state {
            State::RolledBack => rollback.to_owned(),
            other => format!("ended {}", other.as_str()),
        };
        let (passed, stdout) = judge(state.as_str(), json!({}), ended(state, &reason));
        assert_eq!(passed, state == State::Completed, "{state}: {stdout}");
        assert!(stdout.contains(&reason), "{state}: {stdout}");
    }
    let (_, stdout) = judge("rolled", json!({}), ended(State::RolledBack, rollback));
    assert!(
        stdout.contains(&format!(
            "::error title=Drill rolled back by a guard::{rollback}"
        )),
        "{stdout}"
    );

    let refusal = "chaos-ctl: budget: 150 is not allowed; expected at most 100 \
                   (budget.max_experiment_cost) (FailedPrecondition)";
    let refused = Answer {
        stdout: String::new(),
        code: REFUSED,
        stderr: refusal.into(),
    };
    let (passed, stdout) = judge("refused", json!({}), refused);
    assert!(!passed);
    assert!(
        stdout.contains(&format!("::error title=Drill refused::{refusal}")),
        "{stdout}"
    );
    let dry = json!({"experiment_type": "packet_loss", "dry_run": true});
    let (passed, stdout) = judge("refused-dry", dry, dry_run(true));
    assert!(!passed);
    assert!(stdout.contains("::error title=Drill refused::"), "{stdout}");

    let unreachable = Answer {
        stdout: String::new(),
        code: 1,
        stderr: "chaos-ctl: cannot reach chaos-daemon at https://localhost:50051".into(),
    };
    let (passed, stdout) = judge("unreachable", json!({}), unreachable);
    assert!(!passed);
    assert!(stdout.contains("chaos-ctl failed (exit 1)"), "{stdout}");
}

/// yamllint, with the repository's relaxed .yamllint.yaml (documented there) and warnings as
/// errors, accepts the workflow and deploy/sample/; the same configuration still rejects a
/// `yes` for a boolean and an over-long line.
#[test]
fn yamllint_accepts_the_workflow() {
    if !have("yamllint") {
        return;
    }
    let config = Path::new(ROOT).join(".yamllint.yaml");
    let lint = |paths: &[PathBuf], stdin: Option<&str>| {
        let mut cmd = Command::new("yamllint");
        cmd.args(["--strict", "--format", "parsable", "-c"])
            .arg(&config)
            .args(paths);
        let Some(text) = stdin else {
            return cmd.output().unwrap();
        };
        let mut child = cmd
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let ours = [
        Path::new(ROOT).join(WORKFLOW),
        Path::new(ROOT).join("deploy/sample"),
    ];
    let out = lint(&ours, None);
    assert!(out.status.success(), "{}", text(&out));
    let bad = format!("on:\n  push: yes\nname: {}\n", "x".repeat(100));
    let out = lint(&[], Some(&bad));
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{found}");
    assert!(
        found.contains("(truthy)") && found.contains("(line-length)"),
        "{found}"
    );
}

/// shellcheck accepts every `run:` script as the bash GitHub runs it; it does reject an
/// unquoted expansion, so it checks something.
#[test]
fn shellcheck_accepts_every_script() {
    if !have("shellcheck") {
        return;
    }
    let check = |script: &str| {
        let mut child = Command::new("shellcheck")
            .args(["--shell=bash", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!check("rm $1\n").status.success());
    for s in steps(&workflow()) {
        if let Some(run) = s["run"].as_str() {
            let out = check(run);
            assert!(out.status.success(), "step {}: {}", s["name"], text(&out));
        }
    }
}
