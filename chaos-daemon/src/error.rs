//! What kind of failure an error is, decided next to the error itself: each error type of the
//! daemon says its [`ErrorClass`] ([`Classify`]), and the gRPC edge turns a class into a status
//! code in a few lines (`grpc::status_of`).

/// The kinds of failure a caller must tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong (a field out of range, a malformed id): fix the request.
    Invalid,
    /// What the request names is not here (a target not on this node, an unknown experiment).
    NotFound,
    /// The request is fine but this node refuses it now: its config, its kernel, a protected
    /// target, the emergency-stop latch, an experiment that is not running.
    Refused,
    /// A limit is used up: the daily budget, the experiment slots.
    Exhausted,
    /// Something failed on the node (the kernel, the store): not the caller's fault.
    Internal,
}

/// An error that knows its [`ErrorClass`].
pub trait Classify {
    /// What kind of failure this is.
    fn class(&self) -> ErrorClass;
}
