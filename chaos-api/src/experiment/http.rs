//! The `fault` of an `api_error_injection` experiment: the L4 socket errors ([`SocketError`])
//! or, when `fault.error_types` is given, HTTP error responses ([`HttpError`]): on a fraction of
//! the responses a plaintext HTTP/1.x server inside the target sends, the status code is
//! rewritten in the kernel (`HTTP/1.1 200` -> `503`), or the response's connection is
//! blackholed (`timeout`). This module owns both shapes ([`ApiError`]), the status list and
//! its checks.
//!
//! Not covered, and left alone: TLS, HTTP/2 and gRPC, a status line split across TCP segments,
//! pipelining, WebSocket upgrades.

use std::fmt;

use super::filter::PORTS_ALLOWED;
use super::{NetFilter, PortRange, Protocol, SocketError};
use crate::error::{ModelError, invalid};

/// Most entries of `fault.error_types`.
pub const MAX_ERROR_TYPES: usize = 8;

/// What `fault.error_types[i]` may be.
const ERROR_TYPE_ALLOWED: &str = "a 3-digit HTTP status code 100 to 599 (e.g. 503) or `timeout`";

/// `fault` of an `api_error_injection` experiment: which mechanism, and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// No `fault.error_types`: the target's socket calls fail with an errno (L4).
    Socket(SocketError),
    /// `fault.error_types`: the target's HTTP responses carry an error status or time out.
    Http(HttpError),
}

impl ApiError {
    /// Whether the HTTP responses are faulted (`fault.error_types` given), not the socket calls.
    pub fn is_http(&self) -> bool {
        matches!(self, Self::Http(_))
    }

    pub(super) fn validate(&self, filter: &NetFilter) -> Result<(), ModelError> {
        match self {
            Self::Socket(error) => error.validate(filter),
            Self::Http(error) => error.validate(filter),
        }
    }
}

/// The HTTP `fault` of an `api_error_injection` experiment (`fault.error_types` given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// `error_types`: what a faulted response becomes, one picked at random for each; 1 to
    /// [`MAX_ERROR_TYPES`] entries, no repeats. Required (it selects the HTTP fault).
    pub error_types: Vec<HttpStatus>,
    /// `server_ports`: the HTTP server's local listening port or range inside the target (the
    /// source port of the responses it sends). Default: any port.
    pub server_ports: Option<PortRange>,
}

impl HttpError {
    pub(super) fn validate(&self, filter: &NetFilter) -> Result<(), ModelError> {
        if self.error_types.is_empty() || self.error_types.len() > MAX_ERROR_TYPES {
            let value = if self.error_types.is_empty() {
                "[]".to_owned()
            } else {
                format!("{} entries", self.error_types.len())
            };
            return Err(invalid(
                "fault.error_types",
                value,
                format!(
                    "1 to {MAX_ERROR_TYPES} entries, each {ERROR_TYPE_ALLOWED} (omit \
                     fault.error_types for the L4 errors)"
                ),
            ));
        }
        for (index, status) in self.error_types.iter().enumerate() {
            let path = format!("fault.error_types[{index}]");
            if let HttpStatus::Code(code) = status
                && !(100..=599).contains(code)
            {
                return Err(invalid(path, code, ERROR_TYPE_ALLOWED));
            }
            if self.error_types[..index].contains(status) {
                return Err(invalid(path, status, "each error type at most once"));
            }
        }
        if let Some(ports) = self.server_ports
            && (ports.low == 0 || ports.low > ports.high)
        {
            return Err(invalid(
                "fault.server_ports",
                format!("\"{ports}\""),
                PORTS_ALLOWED,
            ));
        }
        if let Some(ports) = filter.ports {
            return Err(invalid(
                "filter.ports",
                format!("\"{ports}\""),
                "no filter.ports with fault.error_types: it is the client's (remote) port; use \
                 fault.server_ports for the HTTP server's port",
            ));
        }
        if !matches!(filter.protocol, Protocol::Tcp | Protocol::Any) {
            return Err(invalid(
                "filter.protocol",
                filter.protocol.as_str(),
                "tcp or any with fault.error_types (HTTP/1.x runs over TCP)",
            ));
        }
        Ok(())
    }
}

/// One entry of `fault.error_types`: a status code, or `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpStatus {
    /// The response's status code is rewritten to this one: 3 digits, 100 to 599.
    Code(u16),
    /// `timeout`: the rest of the response's connection is blackholed, so the client times
    /// out.
    Timeout,
}

impl HttpStatus {
    /// As written in YAML and in the proto: `"503"` or `"timeout"`.
    pub fn as_text(self) -> String {
        self.to_string()
    }

    /// The entry `text` (`"503"`, `"timeout"`), or the error at `fault.error_types[index]`.
    pub fn parse(index: usize, text: &str) -> Result<Self, ModelError> {
        if text == "timeout" {
            return Ok(Self::Timeout);
        }
        match text.parse::<u16>() {
            Ok(code)
                if text.len() == 3
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (100..=599).contains(&code) =>
            {
                Ok(Self::Code(code))
            }
            _ => Err(invalid(
                format!("fault.error_types[{index}]"),
                format!("{text:?}"),
                ERROR_TYPE_ALLOWED,
            )),
        }
    }
}

/// `503` or `timeout`.
impl fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "{code}"),
            Self::Timeout => f.write_str("timeout"),
        }
    }
}
