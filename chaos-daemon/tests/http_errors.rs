//! HTTP error responses injected in the kernel (`api_error_injection` with
//! `fault.error_types`), as the clients of a real server see them: Debian's nginx runs in the
//! target cgroup and serves a file of known bytes, a second identical nginx runs outside every
//! test cgroup, and the test process is the client (a fresh connection per request,
//! `Connection: close`). At the configured fraction the client reads the configured status on
//! a response whose body is still the file, or, for `timeout`, no byte at all; everything else
//! is the file with status 200. TLS, a non-HTTP protocol on the faulted ports and a port
//! outside `server_ports` are byte-identical, and after the stop no program is left on the
//! cgroup or on `lo`'s egress.
//!
//! The tests run one at a time: each checks that the HTTP program is gone from `lo`'s egress
//! after its stop, which another test's running experiment would spoil.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chaos_api::experiment::{ApiError, Fault, HttpError, HttpStatus, PortRange};
use support::{
    nginx::{FILE, Fetched, Listen, Nginx, file_body, free_ports, get},
    *,
};

/// Size of the served file: more than one 64 KiB loopback segment, so that a response spans
/// segments that do not start with its status line.
const BODY_LEN: usize = 150_000;

/// Read timeout of the requests that must not time out.
const PATIENT: Duration = Duration::from_secs(5);

/// The HTTP fault: `error_types` on responses from `ports`.
fn http_fault(error_types: Vec<HttpStatus>, ports: (u16, u16)) -> Fault {
    Fault::ApiErrorInjection(ApiError::Http(HttpError {
        error_types,
        server_ports: Some(PortRange {
            low: ports.0,
            high: ports.1,
        }),
    }))
}

/// The HTTP error programs on `lo`'s egress.
fn lo_http_programs() -> Vec<String> {
    let mut found = egress_programs("lo");
    found.retain(|p| p.contains("http_eg_"));
    found
}

/// While the experiment runs: its program is on `lo`'s egress (so that the check after the
/// stop can fail).
fn assert_armed() {
    let programs = lo_http_programs();
    assert!(
        !programs.is_empty(),
        "no http_eg_ program on lo's egress while the experiment runs"
    );
}

/// After the stop: nothing on the cgroup, no HTTP program on `lo`.
fn assert_released(cg: &TestCgroup) {
    assert_eq!(cg.attached(), 0, "programs left on the target cgroup");
    assert_eq!(
        lo_http_programs(),
        Vec::<String>::new(),
        "HTTP programs left on lo's egress"
    );
}

/// What `n` GETs of [`FILE`] gave the client.
#[derive(Debug, Default)]
struct Seen {
    /// Complete responses whose body is the file, by status.
    by_status: BTreeMap<u16, u64>,
    /// Requests that got no byte within the read timeout.
    timed_out: u64,
    /// Anything else: a wrong body, a partial response, an error. With what came.
    wrong: Vec<String>,
}

impl Seen {
    fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }

    /// Panics when any request got something else than a complete response with the file's
    /// bytes or a clean timeout.
    fn assert_clean(&self, what: &str) {
        assert!(
            self.wrong.is_empty(),
            "{what}: {} requests got neither the file nor a clean timeout, e.g. {:?}",
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)]
        );
    }
}

/// `n` GETs of [`FILE`] from `port`, one after the other, each on a new connection.
fn fetch_n(port: u16, n: u64, read_timeout: Duration, body: &[u8]) -> Seen {
    let mut seen = Seen::default();
    for i in 0..n {
        match get(port, FILE, read_timeout) {
            Fetched::Response(r) if r.body == body => {
                *seen.by_status.entry(r.status).or_default() += 1;
            }
            Fetched::Response(r) => seen.wrong.push(format!(
                "request {i}: {} with a body of {} bytes that is not the file (first difference \
                 at {:?})",
                r.head,
                r.body.len(),
                r.body.iter().zip(body).position(|(a, b)| a != b)
            )),
            Fetched::TimedOut(got) if got.is_empty() => seen.timed_out += 1,
            other => seen
                .wrong
                .push(format!("request {i}: {}", other.describe())),
        }
    }
    seen
}

#[test]
fn http_503_at_the_configured_rate_and_bodies_intact() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "http-503");
    let engine = engine(&mount);
    let body = file_body(BODY_LEN);
    let ports = free_ports(2);
    let (inside_port, outside_port) = (ports[0], ports[1]);
    let inside = Nginx::start(Some(&cg.path), &[Listen::Http(inside_port)], &body);
    let outside = Nginx::start(None, &[Listen::Http(outside_port)], &body);
    let (n, p) = (1_000, 0.3);

    // The port range holds the outside nginx too: only the cgroup keeps it out.
    let fault = http_fault(vec![HttpStatus::Code(503)], (inside_port, outside_port));
    let started = Instant::now();
    let armed = engine.start(&spec(cg.target(), fault, p)).unwrap();
    assert_armed();
    let (seen_in, seen_out) = std::thread::scope(|s| {
        let outside = s.spawn(|| fetch_n(outside_port, n, PATIENT, &body));
        (
            fetch_n(inside_port, n, PATIENT, &body),
            outside.join().unwrap(),
        )
    });
    let c = engine.stop(armed).unwrap();
    eprintln!(
        "503 at p={p}: inside {seen_in:?}, outside {seen_out:?}, {} injected, in {:?}",
        c.injected,
        started.elapsed()
    );

    seen_in.assert_clean("inside");
    assert_eq!(
        seen_in.status(200) + seen_in.status(503),
        n,
        "inside: every response is 200 or 503, with the file's bytes: {seen_in:?}"
    );
    assert_rate(
        "503 fraction inside",
        seen_in.status(503) as f64 / n as f64,
        n,
        p,
        4.0,
    );
    assert_eq!(
        c.injected,
        seen_in.status(503),
        "the kernel's count of rewritten responses is the number of 503s the client read"
    );
    seen_out.assert_clean("outside");
    assert_eq!(
        seen_out.status(200),
        n,
        "outside the cgroup every response is 200 with the file: {seen_out:?}"
    );
    assert_released(&cg);

    // After the stop every response is 200 again.
    let after = fetch_n(inside_port, 50, PATIENT, &body);
    after.assert_clean("after the stop");
    assert_eq!(after.status(200), 50, "after the stop: {after:?}");
    drop((inside, outside));
}

#[test]
fn timeout_blackholes_that_fraction_of_responses() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "http-timeout");
    let engine = engine(&mount);
    let body = file_body(BODY_LEN);
    let ports = free_ports(2);
    let (inside_port, outside_port) = (ports[0], ports[1]);
    let inside = Nginx::start(Some(&cg.path), &[Listen::Http(inside_port)], &body);
    let outside = Nginx::start(None, &[Listen::Http(outside_port)], &body);
    // 4 sigma at p = 0.3 over 300 is 10.6 points; about 90 timeouts of 0.3 s.
    let (n, p) = (300, 0.3);
    let read_timeout = Duration::from_millis(300);

    let fault = http_fault(vec![HttpStatus::Timeout], (inside_port, outside_port));
    let started = Instant::now();
    let armed = engine.start(&spec(cg.target(), fault, p)).unwrap();
    assert_armed();
    let (seen_in, seen_out) = std::thread::scope(|s| {
        let outside = s.spawn(|| fetch_n(outside_port, n, read_timeout, &body));
        (
            fetch_n(inside_port, n, read_timeout, &body),
            outside.join().unwrap(),
        )
    });
    let c = engine.stop(armed).unwrap();
    eprintln!(
        "timeout at p={p}: inside {seen_in:?}, outside {seen_out:?}, {} injected, in {:?}",
        c.injected,
        started.elapsed()
    );

    seen_in.assert_clean("inside");
    assert_eq!(
        seen_in.status(200) + seen_in.timed_out,
        n,
        "inside: every request is 200 with the file, or gets no byte: {seen_in:?}"
    );
    assert_rate(
        "timed-out fraction inside",
        seen_in.timed_out as f64 / n as f64,
        n,
        p,
        4.0,
    );
    assert_eq!(
        c.injected, seen_in.timed_out,
        "the kernel's count of blackholed responses is the number of timeouts the client saw"
    );
    seen_out.assert_clean("outside");
    assert_eq!(
        seen_out.status(200),
        n,
        "outside the cgroup nothing times out: {seen_out:?}"
    );
    assert_released(&cg);

    // After the stop a new request is answered at once, and so are the ones after it.
    let t = Instant::now();
    let first = get(inside_port, FILE, read_timeout).response("the first request after the stop");
    let took = t.elapsed();
    assert_eq!(
        (first.status, first.body == body),
        (200, true),
        "first request after the stop: {}",
        first.head
    );
    assert!(took < read_timeout, "took {took:?}");
    let after = fetch_n(inside_port, 50, read_timeout, &body);
    after.assert_clean("after the stop");
    assert_eq!(after.status(200), 50, "after the stop: {after:?}");
    drop((inside, outside));
}

#[test]
fn stop_leaves_no_http_program_behind() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let (cg_a, cg_b) = (
        TestCgroup::new(&mount, "http-stop-a"),
        TestCgroup::new(&mount, "http-stop-b"),
    );
    let engine = engine(&mount);
    let body = file_body(BODY_LEN);
    let ports = free_ports(2);
    let (port_a, port_b) = (ports[0], ports[1]);
    let nginx_a = Nginx::start(Some(&cg_a.path), &[Listen::Http(port_a)], &body);
    let nginx_b = Nginx::start(Some(&cg_b.path), &[Listen::Http(port_b)], &body);
    let rounds = 10;
    let statuses = |port| fetch_n(port, rounds, PATIENT, &body);

    // Two experiments at once, one slot and one program each.
    let fault_a = http_fault(vec![HttpStatus::Code(503)], (port_a, port_b));
    let fault_b = http_fault(vec![HttpStatus::Code(502)], (port_a, port_b));
    let armed_a = engine.start(&spec(cg_a.target(), fault_a, 1.0)).unwrap();
    let armed_b = engine.start(&spec(cg_b.target(), fault_b, 1.0)).unwrap();
    let both = lo_http_programs();
    let (seen_a, seen_b) = (statuses(port_a), statuses(port_b));
    eprintln!("two experiments: {both:?}; a {seen_a:?}; b {seen_b:?}");
    assert_eq!(
        both.len(),
        2,
        "one HTTP program per experiment on lo: {both:?}"
    );
    assert_eq!(seen_a.status(503), rounds, "a: {seen_a:?}");
    assert_eq!(seen_b.status(502), rounds, "b: {seen_b:?}");

    // Stopping one removes its program only.
    let c_a = engine.stop(armed_a).unwrap();
    let one = lo_http_programs();
    let (seen_a, seen_b) = (statuses(port_a), statuses(port_b));
    eprintln!(
        "a stopped ({} injected): {one:?}; a {seen_a:?}; b {seen_b:?}",
        c_a.injected
    );
    assert_eq!(c_a.injected, rounds, "a's count");
    assert_eq!(cg_a.attached(), 0, "programs left on a's cgroup");
    assert_eq!(one.len(), 1, "b's program alone is left: {one:?}");
    assert_eq!(seen_a.status(200), rounds, "a after its stop: {seen_a:?}");
    assert_eq!(seen_b.status(502), rounds, "b still faulted: {seen_b:?}");

    let c_b = engine.stop(armed_b).unwrap();
    assert_eq!(c_b.injected, 2 * rounds, "b's count");
    assert_released(&cg_b);
    assert_released(&cg_a);
    let seen_b = statuses(port_b);
    assert_eq!(seen_b.status(200), rounds, "b after its stop: {seen_b:?}");
    drop((nginx_a, nginx_b));
}

/// A TCP echo server in perl (Debian's essential `perl-base`), started inside `cgroup`: it
/// reads each connection to its end and writes the bytes back in one write. Killed on drop.
struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    const SCRIPT: &str = r#"
        use IO::Socket::INET;
        my $l = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
            Listen => 128, ReuseAddr => 1, Proto => "tcp") or die "listen: $@";
        $| = 1;
        print "ready\n";
        while (my $c = $l->accept) {
            binmode $c;
            local $/;
            my $d = <$c>;
            $d = "" unless defined $d;
            my $o = 0;
            while ($o < length $d) {
                my $w = syswrite($c, $d, length($d) - $o, $o);
                last unless defined $w;
                $o += $w;
            }
            close $c;
        }
    "#;

    fn start(cgroup: &Path, port: u16) -> Self {
        let perl = ["/usr/bin/perl", "/bin/perl"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("no perl: install perl-base");
        let mut cmd = Command::new(perl);
        cmd.args(["-e", Self::SCRIPT, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        start_in_cgroup(&mut cmd, cgroup);
        let mut child = cmd.spawn().expect("spawn perl");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n", "the perl echo server did not start");
        Self { child, port }
    }

    /// Sends `payload`, half-closes and returns what came back until the server's close.
    fn round_trip(&self, payload: &[u8]) -> Vec<u8> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect(addr).expect("connect to the echo server");
        s.set_read_timeout(Some(PATIENT)).unwrap();
        std::thread::scope(|sc| {
            let mut w = s.try_clone().unwrap();
            sc.spawn(move || {
                w.write_all(payload).unwrap();
                w.shutdown(Shutdown::Write).unwrap();
            });
            let mut back = Vec::new();
            s.read_to_end(&mut back)
                .unwrap_or_else(|e| panic!("echo of {} bytes: {e}", payload.len()));
            back
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The replies a non-HTTP service sends that come close to a status line, or hold one not at
/// the start: all must arrive as sent.
fn near_misses() -> Vec<(&'static str, Vec<u8>)> {
    let mut tls_like = vec![0x16, 0x03, 0x03, 0x00, 0x40];
    tls_like.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
    let mut status_inside = file_body(1_000);
    status_inside.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    vec![
        ("binary, 100 KB", file_body(100_000)),
        ("HTTP/2", b"HTTP/2 200 \r\nserver: x\r\n\r\n".to_vec()),
        ("HTTP/1.2", b"HTTP/1.2 200 OK\r\n\r\n".to_vec()),
        ("4 digits", b"HTTP/1.1 2000 OK\r\n\r\n".to_vec()),
        ("not digits", b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec()),
        ("leading space", b" HTTP/1.1 200 OK\r\n\r\n".to_vec()),
        ("lower case", b"http/1.1 200 OK\r\n\r\n".to_vec()),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec()),
        ("SMTP greeting", b"220 mail.example.com ESMTP\r\n".to_vec()),
        ("TLS record header", tls_like),
        ("status line 1000 bytes in", status_inside),
    ]
}

/// `curl -k` of [`FILE`] over HTTPS: the status and the body.
fn curl_https(port: u16, dir: &Path, i: usize) -> (String, Vec<u8>) {
    let curl = "/usr/bin/curl";
    assert!(Path::new(curl).exists(), "{curl} is missing: install curl");
    let out_file = dir.join(format!("curl-{i}.out"));
    let out = Command::new(curl)
        .args(["-sS", "-k", "--http1.1", "--max-time", "5", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}"])
        .arg(format!("https://127.0.0.1:{port}{FILE}"))
        .output()
        .expect("run curl");
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl https://127.0.0.1:{port}{FILE}: {} {status}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let body = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    (status, body)
}

#[test]
fn tls_and_non_http_traffic_on_the_server_ports_is_untouched() {
    let Some(mount) = kernel() else { return };
    let _serial = one_at_a_time();
    let cg = TestCgroup::new(&mount, "http-tls");
    let engine = engine(&mount);
    let body = file_body(BODY_LEN);
    // server_ports = [http, https, echo]; `plain` lies just above the range.
    let ports = free_ports(4);
    let (http, https, echo_port, plain) = (ports[0], ports[1], ports[2], ports[3]);
    let nginx = Nginx::start(
        Some(&cg.path),
        &[
            Listen::Http(http),
            Listen::Https(https),
            Listen::Http(plain),
        ],
        &body,
    );
    let echo = Echo::start(&cg.path, echo_port);
    let rounds = 30;

    let fault = http_fault(vec![HttpStatus::Code(500)], (http, echo_port));
    let started = Instant::now();
    let armed = engine.start(&spec(cg.target(), fault, 1.0)).unwrap();
    assert_armed();

    // The fault is live: every plain HTTP response on the range is a 500 (with the file).
    let before = fetch_n(http, rounds, PATIENT, &body);

    let mut https_ok = 0;
    for i in 0..rounds as usize {
        let (status, got) = curl_https(https, nginx.dir(), i);
        assert_eq!(status, "200", "HTTPS request {i}: status");
        assert!(
            got == body,
            "HTTPS request {i}: {} bytes that are not the file (first difference at {:?})",
            got.len(),
            got.iter().zip(&body).position(|(a, b)| a != b)
        );
        https_ok += 1;
    }

    let mut echoed = 0;
    for _ in 0..3 {
        for (what, payload) in near_misses() {
            let back = echo.round_trip(&payload);
            assert!(
                back == payload,
                "echo of {what}: sent {} bytes {:?}, got {} bytes {:?}",
                payload.len(),
                String::from_utf8_lossy(&payload[..payload.len().min(40)]),
                back.len(),
                String::from_utf8_lossy(&back[..back.len().min(40)])
            );
            echoed += 1;
        }
    }
    // And the echo server is in the target and the range: a real status line at the start of
    // its reply is rewritten.
    let rewritten = [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            &b"HTTP/1.1 500 OK\r\nContent-Length: 0\r\n\r\n"[..],
        ),
        (
            b"HTTP/1.0 404 Not Found\r\n\r\n",
            b"HTTP/1.0 500 Not Found\r\n\r\n",
        ),
    ];
    for (sent, expected) in rewritten {
        let back = echo.round_trip(sent);
        assert_eq!(
            String::from_utf8_lossy(&back),
            String::from_utf8_lossy(expected),
            "a status line echoed from inside the range"
        );
    }

    let outside_range = fetch_n(plain, rounds, PATIENT, &body);
    let after = fetch_n(http, rounds, PATIENT, &body);
    let c = engine.stop(armed).unwrap();
    eprintln!(
        "p=1 500: in range before {before:?}, after {after:?}; HTTPS {https_ok} x 200; \
         {echoed} echoes untouched; port {plain} outside the range {outside_range:?}; \
         {} injected, in {:?}",
        c.injected,
        started.elapsed()
    );

    for (what, seen) in [("before", &before), ("after", &after)] {
        seen.assert_clean(what);
        assert_eq!(
            seen.status(500),
            rounds,
            "{what} the checks every plain response in the range is 500: {seen:?}"
        );
    }
    outside_range.assert_clean("outside the range");
    assert_eq!(
        outside_range.status(200),
        rounds,
        "a port outside server_ports is untouched: {outside_range:?}"
    );
    assert_eq!(
        c.injected,
        2 * rounds + rewritten.len() as u64,
        "the kernel rewrote exactly the plain in-range responses and the echoed status lines"
    );
    assert_released(&cg);
    drop((echo, nginx));
}
