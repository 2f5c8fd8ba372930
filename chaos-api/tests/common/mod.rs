//! Helpers shared by the YAML model's test files; the fuzz tests' frame in [`fuzz`].

use chaos_api::{error::ModelError, experiment::Experiment};

#[allow(dead_code, reason = "only the fuzz test files use it")]
pub mod fuzz;

/// Asserts that `result` is an error at `path`, and that its Display starts with the path.
#[allow(dead_code, reason = "the fuzz test files do not use it")]
pub fn rejected_at<T: std::fmt::Debug>(result: Result<T, ModelError>, path: &str) -> ModelError {
    let error = match result {
        Ok(value) => panic!("expected an error at {path}, got {value:?}"),
        Err(error) => error,
    };
    assert_eq!(error.path(), Some(path), "wrong path in: {error}");
    assert!(
        error.to_string().starts_with(&format!("{path}: ")),
        "{error}"
    );
    error
}

/// Parses an experiment definition that must be valid.
#[allow(dead_code, reason = "only the experiment test files use it")]
pub fn parse(text: &str) -> Experiment {
    match Experiment::from_yaml(text) {
        Ok(experiment) => experiment,
        Err(error) => panic!("experiment must parse: {error}\n{text}"),
    }
}

/// Asserts that an experiment definition is rejected at `path`.
#[allow(dead_code, reason = "only the experiment test files use it")]
pub fn experiment_rejected_at(text: &str, path: &str) -> ModelError {
    rejected_at(Experiment::from_yaml(text), path)
}

/// Every shipped example (`chaos/experiments/*.yaml`) as (file name, text), sorted by name;
/// at least one per experiment type.
#[allow(dead_code, reason = "only some test files use it")]
pub fn examples() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../chaos/experiments");
    let mut examples: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("chaos/experiments exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("readable file");
            (name, text)
        })
        .collect();
    examples.sort();
    assert!(
        examples.len() >= chaos_api::experiment::ExperimentType::ALL.len(),
        "expected one example per type, found {}",
        examples.len()
    );
    examples
}

/// The repo's `chaos/chaos.yaml` as one document: its `slo_files` line replaced by the
/// definitions of `chaos/safety/http-slos.yaml` under `slos`, so it parses with
/// `ChaosConfig::from_yaml` exactly as `ChaosConfig::load` reads the file.
#[allow(dead_code, reason = "only the config test files use it")]
pub fn repo_config_inline() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaos");
    let config = std::fs::read_to_string(root.join("chaos.yaml")).unwrap();
    let slos = std::fs::read_to_string(root.join("safety/http-slos.yaml")).unwrap();
    let line = "  slo_files: ['safety/http-slos.yaml']\n";
    assert_eq!(
        config.matches(line).count(),
        1,
        "chaos.yaml names its SLO file once"
    );
    let indented: String = slos
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                "\n".to_owned()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    config.replace(line, &format!("  slos:\n{indented}"))
}

/// The repo's `chaos/chaos.yaml`, read from its file with its SLO files.
#[allow(dead_code, reason = "only the config test files use it")]
pub fn repo_config() -> chaos_api::config::ChaosConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaos/chaos.yaml");
    match chaos_api::config::ChaosConfig::load(&path) {
        Ok(config) => config,
        Err(error) => panic!("chaos/chaos.yaml must load: {error}"),
    }
}
