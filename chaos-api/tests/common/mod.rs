//! Helpers shared by the YAML model's test files.

use chaos_api::error::ModelError;

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
