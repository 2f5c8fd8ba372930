//! What a failure prints and which exit code it gets: 0 ok; 1 failure (daemon unreachable,
//! internal error); 2 usage error or invalid experiment; 3 refused by a daemon or by a config
//! checked offline (emergency stop latched, protected or missing target, a config limit,
//! permission, budget, no slot).

use chaos_api::error::escape_controls;
use chaos_ctl::client::{ConnectError, chain};

use crate::fanout::FanOutFailed;

pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const REFUSED: u8 = 3;

/// The command line, a file or the experiment it describes is wrong; the message says what.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error with `error`'s message.
pub fn usage(error: impl std::fmt::Display) -> anyhow::Error {
    UsageError(error.to_string()).into()
}

/// A config's refusal found offline (`validate -f X --config Y`): exit 3, as the daemon's
/// refusal of the same experiment would be.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The exit code of `e`: usage errors and invalid specs 2, refusals 3, everything else 1.
pub fn code(e: &anyhow::Error) -> u8 {
    if let Some(f) = e.downcast_ref::<FanOutFailed>() {
        return f.code;
    }
    if let Some(s) = e.downcast_ref::<tonic::Status>() {
        return match s.code() {
            tonic::Code::InvalidArgument => USAGE,
            tonic::Code::FailedPrecondition
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::ResourceExhausted
            | tonic::Code::NotFound => REFUSED,
            _ => FAILURE,
        };
    }
    if let Some(c) = e.downcast_ref::<ConnectError>() {
        return if c.is_usage() { USAGE } else { FAILURE };
    }
    if e.downcast_ref::<Refused>().is_some() {
        return REFUSED;
    }
    if e.downcast_ref::<UsageError>().is_some() {
        USAGE
    } else {
        FAILURE
    }
}

/// The one-line message of `e`: a daemon's answer with its status code (its control characters
/// shown, not obeyed), else the error chain.
pub fn text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<tonic::Status>() {
        Some(s) => {
            // A failure below gRPC (the daemon's TLS alert, a reset) says why only in its
            // sources, which usually repeat the message.
            let text = match std::error::Error::source(s).map(chain) {
                Some(causes) if causes.contains(s.message()) => causes,
                Some(causes) => format!("{}: {causes}", s.message()),
                None => s.message().to_owned(),
            };
            format!("{} ({:?})", escape_controls(&text), s.code())
        }
        None => format!("{e:#}"),
    }
}

/// Whether `e` is a daemon's NotFound (the target or the id is not on that node).
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemons_message_is_shown_with_its_code_and_never_obeyed() {
        let refused = tonic::Status::permission_denied("cert CN=eve\u{1b}[2J\u{7} may not");
        assert_eq!(
            text(&refused.into()),
            "cert CN=eve\\u{1b}[2J\\u{7} may not (PermissionDenied)"
        );
    }

    /// A transport failure as tonic reports it: `transport error`, the cause in its source.
    #[derive(Debug)]
    struct Transport(std::io::Error);

    impl std::fmt::Display for Transport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("transport error")
        }
    }

    impl std::error::Error for Transport {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_failure_below_grpc_names_its_cause_once() {
        let alert = std::io::Error::other("received fatal alert: UnknownCA");
        let status = tonic::Status::from_error(Box::new(Transport(alert)));
        assert_eq!(status.message(), "transport error");
        assert_eq!(
            text(&status.into()),
            "transport error: received fatal alert: UnknownCA (Unknown)"
        );
    }
}
