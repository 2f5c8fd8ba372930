//! HTTP error responses in the kernel (`api_error_injection` with `fault.error_types`): the
//! statuses as the tc egress program writes them into a status line, and the server's port
//! range. The program and what it leaves alone are described in `chaos-ebpf/src/tc.rs`.

use chaos_api::experiment::{HttpError, HttpStatus};
use chaos_common::{HTTP_TIMEOUT, MAX_HTTP_STATUSES, TcConfig};

/// The HTTP program's configuration (the engine fills in the target and the generation).
pub fn config(http: &HttpError) -> TcConfig {
    let mut config = TcConfig::default();
    for (word, status) in config
        .http_statuses
        .iter_mut()
        .zip(http.error_types.iter().take(MAX_HTTP_STATUSES))
    {
        *word = status_word(*status);
        config.http_count += 1;
    }
    (config.http_port_lo, config.http_port_hi) =
        http.server_ports.map_or((0, u16::MAX), |p| (p.low, p.high));
    config
}

/// The 4 bytes after `HTTP/1.x` in the packet (`" 503"`), or [`HTTP_TIMEOUT`].
fn status_word(status: HttpStatus) -> u32 {
    match status {
        HttpStatus::Timeout => HTTP_TIMEOUT,
        HttpStatus::Code(code) => {
            let digit = |d: u16| b'0' + (d % 10) as u8;
            u32::from_ne_bytes([b' ', digit(code / 100), digit(code / 10), digit(code)])
        }
    }
}

#[cfg(test)]
mod tests {
    use chaos_api::experiment::PortRange;

    use super::*;

    #[test]
    fn statuses_are_the_bytes_of_the_status_line() {
        let c = config(&HttpError {
            error_types: vec![
                HttpStatus::Code(503),
                HttpStatus::Timeout,
                HttpStatus::Code(404),
            ],
            server_ports: Some(PortRange {
                low: 8080,
                high: 8081,
            }),
        });
        assert_eq!(c.http_count, 3);
        assert_eq!(c.http_statuses[0].to_ne_bytes(), *b" 503");
        assert_eq!(c.http_statuses[1], HTTP_TIMEOUT);
        assert_eq!(c.http_statuses[2].to_ne_bytes(), *b" 404");
        assert_eq!((c.http_port_lo, c.http_port_hi), (8080, 8081));
        let any = config(&HttpError {
            error_types: vec![HttpStatus::Code(500)],
            server_ports: None,
        });
        assert_eq!((any.http_port_lo, any.http_port_hi), (0, u16::MAX));
    }
}
