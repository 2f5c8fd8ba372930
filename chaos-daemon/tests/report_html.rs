//! The HTML post-mortem report in a real browser: a synthetic report (an experiment rolled back
//! by its `error_rate` guard) rendered to a temporary file and opened in headless Chromium
//! (Debian's `chromium`), which dumps the DOM it parsed and takes a screenshot. The DOM must hold
//! the faults chart and one chart per guard as SVG with drawn lines, the guard table's rows and
//! the rollback reason as text (no element made of the data); the screenshot must show the
//! charts' own colours. Chromium runs with its own HOME and profile in the temp dir, every
//! network request sent to a closed loopback port, and is killed after 30 s.

mod support;

use std::{
    fs::File,
    io::BufReader,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chaos_daemon::report;
use support::TempDir;

#[allow(dead_code, reason = "the guard-less report is for the unit tests")]
mod fixture {
    use chaos_api::state::State;
    use chaos_daemon::report::{GuardSample, GuardSeries, Report, Verdict, Violation};
    use chaos_daemon::store::{EventRow, ExperimentRow, LoadSampleRow, SnapshotRow};

    include!("../src/report/fixture.rs");
}

/// How long Chromium may take for one page.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(30);
/// The screenshot's size: tall enough for the whole fixture page.
const WINDOW: (u32, u32) = (1024, 2600);

/// The fixture's report as HTML in `dir`; returns its path.
fn write_report(dir: &Path) -> PathBuf {
    let page = report::html(fixture::Fixture::new().report()).unwrap();
    let path = dir.join("report.html");
    std::fs::write(&path, page).unwrap();
    path
}

/// Debian's Chromium from PATH.
fn chromium() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .expect("chromium not found in PATH; install it: apt-get install chromium")
}

/// A Chromium process group, killed on drop.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser's zygote and renderers share its process group (its pid).
        // SAFETY: kill(2) with a negative pid signals only the group of the child we spawned.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// Runs headless Chromium on `page` with `args` in `dir`, stdout to `dir/stdout`; returns its
/// stdout. Fails with its stderr when it fails or outlives [`CHROMIUM_TIMEOUT`].
fn run_chromium(dir: &Path, page: &Path, args: &[String]) -> String {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let mut browser = Browser(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-breakpad",
                "--hide-scrollbars",
                "--proxy-server=http://127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .env("HOME", dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = browser.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < CHROMIUM_TIMEOUT,
            "chromium {args:?} still running after {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "chromium {args:?}: {status}; stderr:\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    std::fs::read_to_string(out).unwrap()
}

/// The part of `dom` from `start` to the next `end` (inclusive).
fn element<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("{start} not in the DOM:\n{dom}"));
    let len = dom[at..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end} after {start}"))
        + end.len();
    &dom[at..at + len]
}

#[test]
fn chromium_parses_the_charts_the_guard_table_and_the_reason() {
    let dir = TempDir::new("report-dom");
    let page = write_report(&dir.0);
    let dom = run_chromium(&dir.0, &page, &["--dump-dom".into()]);

    // The faults chart: an SVG with the rate's line, the step labels and their markers.
    let faults = element(&dom, "<figure id=\"chart-faults\"", "</figure>");
    assert!(
        faults.contains("<svg") && faults.contains("</svg>"),
        "{faults}"
    );
    assert!(faults.matches("<polyline").count() >= 3, "{faults}");
    for label in [
        "intensity 0.05",
        "intensity 0.10",
        "budget alert",
        "rollback",
    ] {
        assert!(faults.contains(label), "{label} not in the faults chart");
    }

    // One chart per guard, in the table's order, each with its value line and sample dots.
    let guards = fixture::Fixture::new().guards;
    assert_eq!(
        dom.matches("class=\"chart guard-chart\"").count(),
        guards.len()
    );
    for (i, guard) in guards.iter().enumerate() {
        let chart = element(
            &dom,
            &format!("<figure id=\"guard-chart-{i}\""),
            "</figure>",
        );
        assert!(
            chart.contains("<svg") && chart.contains("<polyline"),
            "{chart}"
        );
        // A dot per sample with a value, and the key's two.
        let dots = guard.samples.iter().filter(|s| s.value.is_some()).count() + 2;
        assert_eq!(chart.matches("<circle").count(), dots, "{chart}");
        let objective = guard.objective.replace('<', "&lt;").replace('>', "&gt;");
        assert!(chart.contains(&format!("threshold {objective}")), "{chart}");
    }
    let rolled_back = element(&dom, "<figure id=\"guard-chart-0\"", "</figure>");
    assert!(rolled_back.contains("rolled back"), "{rolled_back}");

    // The guard table: one row per guard, the HTML in the health guard's name kept as text.
    let table = element(&dom, "<table id=\"guards\">", "</table>");
    assert_eq!(table.matches("<tr class=\"guard-row").count(), 3, "{table}");
    assert_eq!(
        table.matches("<tr class=\"guard-row violated\">").count(),
        2
    );
    assert!(
        table.contains("<td>health https://x/healthz?a=1&amp;b=&lt;2&gt;|</td>"),
        "{table}"
    );

    // The reason, the violation and the disarm time as text; the data made no element.
    assert!(dom.contains(
        "<p id=\"reason\">Reason: rolled back: guard error_rate 0.08 breached &lt;= 0.01 &lt;script&gt;</p>"
    ));
    assert!(dom.contains("Rolled back by guard <b>error_rate</b>: 0.0800"));
    assert!(dom.contains("Decision to disarm: <b>0.412 ms</b>"));
    assert!(!dom.contains("<script") && !dom.contains("<drill"));
    assert!(
        dom.contains("<title>Experiment exp-42 (checkout &lt;drill&gt; &amp; \"friends\")</title>")
    );
}

#[test]
fn chromium_paints_the_charts() {
    let dir = TempDir::new("report-png");
    let page = write_report(&dir.0);
    let png = dir.0.join("report.png");
    run_chromium(&dir.0, &page, &[format!("--screenshot={}", png.display())]);

    let mut decoder = png::Decoder::new(BufReader::new(File::open(&png).unwrap()));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), WINDOW);
    let stride = info.color_type.samples();
    let count = |rgb: [u8; 3]| {
        pixels[..info.buffer_size()]
            .chunks(stride)
            .filter(|p| p[..3] == rgb)
            .count()
    };
    // Colours only the charts use (the page's CSS has none of them): the rate and value lines,
    // the thresholds and red samples, the green samples.
    let (line, red, green) = (
        count([31, 94, 170]),
        count([200, 30, 30]),
        count([30, 140, 60]),
    );
    assert!(line > 2000, "{line} pixels of the chart lines' blue");
    assert!(red > 1000, "{red} pixels of the thresholds' red");
    assert!(green > 100, "{green} pixels of the green samples");
    let white = count([255, 255, 255]);
    let total = pixels[..info.buffer_size()].len() / stride;
    assert!(
        white < total * 98 / 100,
        "{white} of {total} pixels white: a blank page"
    );
}
