//! A stand-in GitHub runner for the drill workflow's scripts (tests/workflow.rs): a workspace,
//! RUNNER_TEMP and the job summary in a temporary directory, and first on PATH a kubectl that
//! answers as a kind cluster would and a chaos-ctl that records its calls and answers with what
//! the real chaos-ctl prints (rendered by chaos-ctl's own `render` module).

use std::{
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use chaos_api::{proto, state::State};
use chaos_ctl::render;
use serde_json::Value;

use crate::{job_env, step, support::TempDir, workflow};

/// chaos-ctl's exit code for a refusal (docs/CHAOS_ENGINEERING_V2.md, Troubleshooting).
pub const REFUSED: i32 = 3;

/// What the kubectl stand-in answers: a sample pod on the worker, and the daemon there.
pub const POD: &str = "frontend-7d9f8-abcde";
pub const POD_UID: &str = "8f3c9b6e-1d2a-4b5c-9e8f-0a1b2c3d4e5f";
const NODE: &str = "chaos-worker";
pub const DAEMON_POD: &str = "chaos-daemon-x7k2p";

/// A kubectl that answers the drill's lookups as a two-node kind cluster would, and refuses
/// anything else; `port-forward` runs until killed.
const KUBECTL: &str = r#"#!/bin/bash
printf '%s\n' "$*" >> "$STUB_DIR/kubectl.calls"
case "$*" in
  "-n chaos-system port-forward pod/@DAEMON@ 50051:50051") exec sleep 60 ;;
  "-n chaos-sample get pods -l app.kubernetes.io/name=frontend --field-selector=status.phase=Running -o jsonpath={.items[0].metadata.name}")
    printf '%s' @POD@ ;;
  "-n chaos-sample get pod @POD@ -o jsonpath={.metadata.uid}") printf '%s' @UID@ ;;
  "-n chaos-sample get pod @POD@ -o jsonpath={.spec.nodeName}") printf '%s' @NODE@ ;;
  "-n chaos-system get pods -l app.kubernetes.io/name=chaos-daemon --field-selector=spec.nodeName=@NODE@ -o jsonpath={.items[0].metadata.name}")
    printf '%s' @DAEMON@ ;;
  *) echo "kubectl stand-in: not a call of the drill: $*" >&2; exit 1 ;;
esac
"#;

/// A chaos-ctl that records each call (arguments separated by 0x1f) and answers `status` and
/// `report`, and `experiment` with STUB_RESULT, STUB_STDERR and exit code STUB_RC.
const CHAOS_CTL: &str = r#"#!/bin/bash
{ printf '%s\x1f' "$@"; printf '\n'; } >> "$STUB_DIR/chaos-ctl.calls"
for a in "$@"; do
  case "$a" in
    status) echo "no experiments running"; exit 0 ;;
    report) echo "report: $*"; exit 0 ;;
    experiment)
      printf '%s' "$STUB_RESULT"
      if [ -n "$STUB_STDERR" ]; then echo "$STUB_STDERR" >&2; fi
      exit "$STUB_RC" ;;
  esac
done
exit 64
"#;

/// A runner: a workspace, RUNNER_TEMP, and the stand-ins first on PATH; removed on drop.
pub struct Runner {
    dir: TempDir,
}

impl Runner {
    pub fn new(name: &str) -> Self {
        let dir = TempDir::new(&format!("workflow-{name}"));
        for sub in ["bin", "work", "runner"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        let kubectl = KUBECTL
            .replace("@POD@", POD)
            .replace("@UID@", POD_UID)
            .replace("@NODE@", NODE)
            .replace("@DAEMON@", DAEMON_POD);
        for (name, text) in [("kubectl", kubectl.as_str()), ("chaos-ctl", CHAOS_CTL)] {
            let path = dir.0.join("bin").join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    /// Runs `step`'s script as GitHub's `shell: bash` does (`bash --noprofile --norc -eo
    /// pipefail FILE`) in the workspace, with `env` and nothing else of this process's
    /// environment but PATH.
    pub fn run(&self, step: &Value, env: &[(String, String)]) -> Output {
        let file = self.path("runner/step.sh");
        std::fs::write(&file, step["run"].as_str().unwrap()).unwrap();
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap()
        );
        Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail"])
            .arg(&file)
            .current_dir(self.path("work"))
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.dir.0)
            .env("RUNNER_TEMP", self.path("runner"))
            .env("GITHUB_STEP_SUMMARY", self.path("runner/summary.md"))
            .env("GITHUB_OUTPUT", self.path("runner/output"))
            .env("STUB_DIR", &self.dir.0)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The stand-in chaos-ctl's calls, each its arguments.
    pub fn ctl_calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(self.path("chaos-ctl.calls")).unwrap_or_default();
        text.lines()
            .map(|l| {
                l.strip_suffix('\x1f')
                    .unwrap_or(l)
                    .split('\x1f')
                    .map(str::to_owned)
                    .collect()
            })
            .collect()
    }

    /// The arguments of the one `experiment` call.
    pub fn experiment_call(&self) -> Vec<String> {
        let calls = self.ctl_calls();
        let mut found = calls.iter().filter(|c| c.iter().any(|a| a == "experiment"));
        let call = found.next().expect("no experiment call").clone();
        assert!(found.next().is_none(), "one experiment: {calls:?}");
        call
    }

    pub fn kubectl_calls(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path("kubectl.calls")).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    }

    /// A file the drill wrote in the workspace, if it exists.
    pub fn drill_file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path("work/drill").join(name)).ok()
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the chaos-ctl stand-in answers to `experiment`.
pub struct Answer {
    pub stdout: String,
    pub code: i32,
    pub stderr: String,
}

/// What `chaos-ctl --output json experiment ... --wait` prints when the experiment ended in
/// `state` for `reason` (the final status, as chaos-ctl renders it), exit 0.
pub fn ended(state: State, reason: &str) -> Answer {
    let status = proto::ExperimentStatus {
        id: "exp-0001".into(),
        name: "packet-loss".into(),
        experiment_type: "packet_loss".into(),
        target: format!("pod {POD_UID}"),
        state: state.to_proto() as i32,
        reason: reason.into(),
        ..Default::default()
    };
    Answer {
        stdout: render::one_status(&status, true),
        code: 0,
        stderr: String::new(),
    }
}

/// What `chaos-ctl --output json experiment ... --dry-run` prints: the plan and the pre-flight
/// checks, every one passed unless `refused` (then exit 3 with the refusal).
pub fn dry_run(refused: bool) -> Answer {
    let check = proto::Check {
        name: "critical SLOs healthy".into(),
        passed: !refused,
        detail: "error_rate = 0 (<= 0.01)".into(),
    };
    let r = proto::StartExperimentResponse {
        id: String::new(),
        plan: Some(proto::Plan::default()),
        preflight: vec![check],
    };
    Answer {
        stdout: render::started(&r, true, true),
        code: if refused { REFUSED } else { 0 },
        stderr: if refused {
            "chaos-ctl: pre-flight check failed: critical SLOs healthy (FailedPrecondition)".into()
        } else {
            String::new()
        },
    }
}

/// Runs the drill step for `inputs` with the stand-ins, chaos-ctl answering `answer`; the
/// runner (to inspect) and the env (for the verdict). The step itself must succeed: the
/// verdict is the next step's.
pub fn drill(name: &str, inputs: &Value, answer: &Answer) -> (Runner, Vec<(String, String)>) {
    let wf = workflow();
    let runner = Runner::new(name);
    let mut env = job_env(&wf, inputs);
    env.extend([
        ("STUB_RESULT".to_owned(), answer.stdout.clone()),
        ("STUB_STDERR".to_owned(), answer.stderr.clone()),
        ("STUB_RC".to_owned(), answer.code.to_string()),
    ]);
    let out = runner.run(step(&wf, "Run the drill"), &env);
    assert!(out.status.success(), "{name}: {}", text(&out));
    (runner, env)
}

/// The verdict step after [`drill`].
pub fn verdict(runner: &Runner, env: &[(String, String)]) -> Output {
    runner.run(step(&workflow(), "Judge the drill"), env)
}
