//! Helpers shared by the YAML model's test files.

use chaos_api::{error::ModelError, experiment::Experiment};

/// Asserts that `result` is an error at `path`, and that its Display starts with the path.
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
