//! The HTML report: one self-contained page (inline CSS, inline SVG, no script, nothing
//! fetched) with what the Markdown report shows and the charts of [`super::charts`].
//!
//! Stable hooks for tools and tests: `#summary` (table), `#outcome` with `#reason`,
//! `#violation`, `#observation-to-disarm`, `#disarm-time` (decision to disarm) and
//! `#impact-score`; `#budget` (table, rows
//! `.budget-experiment` and `.budget-daily`); `#timeline` (`li.event.event-<kind>`);
//! `#chart-faults` (a figure holding the SVG); for a database load `#database-load` with
//! `#load-summary` (table) and `#chart-load` (a figure holding the SVG); `#guards` (table, one
//! `tr.guard-row` per guard, `.violated` when it had red samples) and one `figure.guard-chart`
//! per guard (`#guard-chart-N` in the table's order, `data-guard` naming it). Every text from
//! the data is escaped.

use std::fmt::Write as _;

use super::{Report, ReportError, charts, latency_ms, num, percent, us_as_ms};

/// The post-mortem of one experiment as a self-contained HTML page.
pub fn html<'a>(report: impl Into<Report<'a>>) -> Result<String, ReportError> {
    let report = report.into();
    let r = report.row;
    let title = format!("Experiment {} ({})", esc(&r.id), esc(&r.name));
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
         <h1>{title} <span class=\"state state-{state}\">{state}</span></h1>\n",
        state = esc(r.state.as_str()),
    );
    summary(&mut s, &report);
    outcome(&mut s, &report);
    budget(&mut s, &report);
    timeline(&mut s, &report);
    let _ = write!(
        s,
        "<section id=\"faults\">\n<h2>Faults injected per second</h2>\n\
         <figure id=\"chart-faults\" class=\"chart\">\n{}<figcaption>From counter snapshot \
         deltas; dashed lines mark intensity steps, budget alerts and the rollback.\
         </figcaption>\n</figure>\n</section>\n",
        charts::faults(&report)?
    );
    load(&mut s, &report)?;
    guards(&mut s, &report)?;
    s.push_str("</body>\n</html>\n");
    Ok(s)
}

fn summary(s: &mut String, report: &Report) {
    let r = report.row;
    s.push_str("<section>\n<h2>Summary</h2>\n<table id=\"summary\">\n");
    let mut row = |field: &str, value: String| {
        let _ = writeln!(s, "<tr><th>{field}</th><td>{value}</td></tr>");
    };
    row("type", esc(&r.kind));
    row("target", format!("<code>{}</code>", esc(&r.target)));
    row("state", esc(r.state.as_str()));
    if let Some(d) = report.duration_s() {
        row("duration", format!("{d:.1} s"));
    }
    row(
        "events seen / matched",
        format!("{} / {}", r.seen, r.matched),
    );
    row("faults injected", r.injected.to_string());
    row("refused by the fault cap", r.capped.to_string());
    s.push_str("</table>\n</section>\n");
}

fn outcome(s: &mut String, report: &Report) {
    let (r, v) = (report.row, report.verdict);
    s.push_str("<section id=\"outcome\">\n<h2>Outcome</h2>\n");
    if !r.reason.is_empty() {
        let _ = writeln!(s, "<p id=\"reason\">Reason: {}</p>", esc(&r.reason));
    }
    if let Some(x) = &v.violation {
        let value = x
            .value
            .map_or_else(|| "unavailable".into(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "<p id=\"violation\">Rolled back by guard <b>{}</b>: {value} against objective \
             <code>{}</code>, observed at +{:.3} s.</p>",
            esc(&x.guard),
            esc(&x.objective),
            report.offset_s(x.observed_ms)
        );
        if let Some(us) = x.observation_to_disarm_us {
            let _ = writeln!(
                s,
                "<p id=\"observation-to-disarm\">Observation to disarm: <b>{}</b> from the \
                 violating observation to the kernel disarm.</p>",
                us_as_ms(us)
            );
        }
        let _ = writeln!(
            s,
            "<p id=\"disarm-time\">Decision to disarm: <b>{}</b> from the guard evaluation that \
             saw the violation to the kernel disarm.</p>",
            us_as_ms(x.decision_to_disarm_us)
        );
    }
    if let Some(score) = v.impact_score {
        let score = score.clamp(0.0, 1.0);
        let _ = writeln!(
            s,
            "<p>Impact score: <b id=\"impact-score\">{score:.2}</b> \
             <meter min=\"0\" max=\"1\" low=\"0.5\" high=\"0.8\" optimum=\"0\" value=\"{score:.3}\">\
             </meter> (0 = no impact, 1 = at a rollback threshold)</p>"
        );
    }
    s.push_str("</section>\n");
}

fn budget(s: &mut String, report: &Report) {
    let r = report.row;
    s.push_str(
        "<section>\n<h2>Budget</h2>\n<table id=\"budget\">\n\
         <tr><th>budget</th><th>spent</th><th>limit</th><th>used</th></tr>\n",
    );
    let mut row = |class: &str, label: &str, spent: f64, limit: f64| {
        let width = if limit > 0.0 {
            (100.0 * spent / limit).clamp(0.0, 100.0)
        } else {
            0.0
        };
        let _ = writeln!(
            s,
            "<tr class=\"{class}\"><td>{label}</td><td>{spent:.4}</td><td>{limit:.4}</td>\
             <td><span class=\"bar\"><span style=\"width:{width:.1}%\"></span></span> {}</td></tr>",
            percent(spent, limit)
        );
    };
    row("budget-experiment", "experiment", r.spent, r.budget);
    if let Some((spent, max)) = report.verdict.daily_budget {
        row("budget-daily", "daily (UTC)", spent, max);
    }
    s.push_str("</table>\n</section>\n");
}

fn timeline(s: &mut String, report: &Report) {
    s.push_str("<section>\n<h2>Timeline</h2>\n<ol id=\"timeline\">\n");
    for e in report.events {
        let kind: String = e
            .kind
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "<li class=\"event event-{kind}\"><time>+{:.3} s</time> <b>{}</b> {}</li>",
            report.offset_s(e.at_ms),
            esc(&e.kind),
            esc(&e.message)
        );
    }
    s.push_str("</ol>\n</section>\n");
}

fn load(s: &mut String, report: &Report) -> Result<(), ReportError> {
    let Some(sum) = report.load_summary() else {
        return Ok(());
    };
    let _ = write!(
        s,
        "<section id=\"database-load\">\n<h2>Database load</h2>\n<table id=\"load-summary\">\n\
         <tr><th>sent</th><th>failed</th><th>peak target rate</th><th>peak achieved</th>\
         <th>max p95</th><th>max p99</th></tr>\n\
         <tr><td>{}</td><td>{} ({})</td><td>{:.1}/s</td><td>{:.1}/s</td><td>{}</td><td>{}</td>\
         </tr>\n</table>\n\
         <figure id=\"chart-load\" class=\"chart\">\n{}<figcaption>Queries per second sent \
         against the target rate, and the p95 latency of each second (from each query's intended \
         start: queueing included; broken where nothing finished); dashed lines mark steps, \
         budget alerts and the rollback.</figcaption>\n</figure>\n</section>\n",
        sum.sent,
        sum.failed,
        percent(sum.failed as f64, sum.sent as f64),
        sum.peak_rate,
        sum.peak_qps,
        latency_ms(sum.max_p95_us),
        latency_ms(sum.max_p99_us),
        charts::load(report)?
    );
    Ok(())
}

fn guards(s: &mut String, report: &Report) -> Result<(), ReportError> {
    if report.guards.is_empty() {
        return Ok(());
    }
    s.push_str(
        "<section>\n<h2>Guards</h2>\n<table id=\"guards\">\n<thead><tr><th>guard</th>\
         <th>kind</th><th>objective</th><th>baseline</th><th>min</th><th>max</th><th>last</th>\
         <th>samples</th><th>violations</th><th>unavailable</th></tr></thead>\n<tbody>\n",
    );
    for g in report.guards {
        let sum = g.summary();
        let class = if sum.violations > 0 { " violated" } else { "" };
        let _ = writeln!(
            s,
            "<tr class=\"guard-row{class}\"><td>{}</td><td>{}</td><td><code>{}</code></td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.name),
            esc(&g.kind),
            esc(&g.objective),
            num(report.baseline(&g.name)),
            num(sum.min),
            num(sum.max),
            num(sum.last),
            g.samples.len(),
            sum.violations,
            sum.unavailable
        );
    }
    s.push_str("</tbody>\n</table>\n");
    for (i, g) in report.guards.iter().enumerate() {
        let _ = write!(
            s,
            "<figure id=\"guard-chart-{i}\" class=\"chart guard-chart\" data-guard=\"{name}\">\n\
             {}<figcaption><b>{name}</b> ({kind}): value against its threshold \
             <code>{objective}</code>; red dots are red samples, crosses unavailable ones.\
             </figcaption>\n</figure>\n",
            charts::guard(report, g)?,
            name = esc(&g.name),
            kind = esc(&g.kind),
            objective = esc(&g.objective),
        );
    }
    s.push_str("</section>\n");
    Ok(())
}

/// Text escaped for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page's style. Its colours differ from the charts' so that a screenshot tells them apart.
const CSS: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; font-size: 0.92em; }
th { background: #f4f4f4; }
code { font-size: 0.95em; }
.state { font-size: 0.7em; padding: 0.15em 0.5em; border-radius: 0.3em; background: #e4e4e4; }
.state-completed { background: #d6f0dc; } .state-rolled_back, .state-failed { background: #f7d4d4; }
.state-stopped, .state-emergency_stopped, .state-aborted { background: #f7e6c8; }
#violation, #observation-to-disarm, #disarm-time { color: #a01818; }
.bar { display: inline-block; width: 8em; height: 0.7em; background: #eee; vertical-align: middle; }
.bar span { display: block; height: 100%; background: #5b8bd0; }
#timeline { padding-left: 1.2em; } #timeline time { color: #666; font-family: monospace; }
.event-step b { color: #5a2d91; } .event-budget_alert b { color: #b86e00; }
.event-rollback b { color: #b00020; }
tr.violated td:first-child { color: #b00020; font-weight: bold; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.85em; color: #555; }
";

#[cfg(test)]
mod tests {
    use super::super::{GuardSample, GuardSeries, fixture};
    use super::*;

    fn rendered() -> String {
        html(fixture::Fixture::new().report()).unwrap()
    }

    #[test]
    fn data_text_is_escaped() {
        let page = rendered();
        assert!(!page.contains("<drill>") && !page.contains("<script>") && !page.contains("<2>"));
        assert!(page.contains("checkout &lt;drill&gt; &amp; &quot;friends&quot;"));
        assert!(page.contains(&format!(
            "<p id=\"reason\">Reason: {}</p>",
            esc(fixture::REASON)
        )));
        assert_eq!(esc("a<'>\"&"), "a&lt;&#39;&gt;&quot;&amp;");
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = rendered();
        for external in ["<script", "<link", "src=", "@import", "url("] {
            assert!(!page.contains(external), "{external}");
        }
        // The SVG namespace is an identifier, not a fetch; no other URL but the data's own.
        let urls: Vec<_> = page
            .match_indices("http")
            .map(|(i, _)| &page[i..i + 12])
            .collect();
        assert!(
            urls.iter()
                .all(|u| *u == "http://www.w" || *u == "https://x/he"),
            "{urls:?}"
        );
    }

    #[test]
    fn it_has_the_faults_chart_one_chart_and_row_per_guard_and_the_outcome() {
        let page = rendered();
        assert_eq!(page.matches("<svg").count(), 4);
        assert!(page.contains("<figure id=\"chart-faults\" class=\"chart\">\n<svg"));
        for i in 0..3 {
            assert!(page.contains(&format!(
                "<figure id=\"guard-chart-{i}\" class=\"chart guard-chart\""
            )));
        }
        assert_eq!(page.matches("<tr class=\"guard-row").count(), 3);
        assert_eq!(page.matches("<tr class=\"guard-row violated\">").count(), 2);
        assert!(page.contains(
            "<p id=\"observation-to-disarm\">Observation to disarm: <b>100.412 ms</b> from the \
             violating observation to the kernel disarm.</p>\n<p id=\"disarm-time\">Decision to \
             disarm: <b>0.412 ms</b> from the guard evaluation that saw the violation to the \
             kernel disarm.</p>"
        ));
        assert!(page.contains("<b id=\"impact-score\">0.62</b>"));
        assert!(page.contains("<tr class=\"budget-daily\"><td>daily (UTC)</td><td>3.5000</td>"));
        assert!(page.contains("<li class=\"event event-budget_alert\"><time>+4.000 s</time>"));
        assert!(page.contains("class=\"state state-stopped\""));
    }

    #[test]
    fn a_run_with_nothing_recorded_yet_still_renders_its_charts() {
        let f = fixture::Fixture::new();
        let unavailable = GuardSeries {
            samples: vec![GuardSample {
                at_ms: f.row.started_ms,
                value: None,
                ok: false,
            }],
            ..f.guards[0].clone()
        };
        let guards = [
            unavailable,
            GuardSeries {
                samples: Vec::new(),
                ..f.guards[1].clone()
            },
        ];
        let page = html(Report {
            events: &[],
            snapshots: &[],
            guards: &guards,
            ..f.report()
        })
        .unwrap();
        assert_eq!(page.matches("<svg").count(), 3);
        assert!(page.contains("<td>-</td><td>-</td><td>-</td><td>1</td><td>1</td><td>1</td>"));
    }

    #[test]
    fn a_database_load_has_its_summary_and_chart_after_the_faults() {
        let page = html(fixture::Fixture::database_load().report()).unwrap();
        assert_eq!(page.matches("<svg").count(), 5);
        let at = |needle: &str| page.find(needle).expect(needle);
        assert!(at("id=\"chart-faults\"") < at("<section id=\"database-load\">"));
        assert!(at("<section id=\"database-load\">") < at("id=\"guards\""));
        assert!(page.contains(
            "<tr><td>1300</td><td>23 (1.8%)</td><td>500.0/s</td><td>488.0/s</td>\
             <td>180.0 ms</td><td>350.0 ms</td></tr>"
        ));
        assert!(page.contains("<figure id=\"chart-load\" class=\"chart\">\n<svg"));
        assert!(!rendered().contains("database-load"));
    }

    #[test]
    fn without_guard_data_there_is_no_guard_section_and_still_a_chart() {
        let page = html(fixture::Fixture::new().without_guards()).unwrap();
        assert!(!page.contains("id=\"guards\"") && !page.contains("id=\"violation\""));
        assert_eq!(page.matches("<svg").count(), 1);
        assert!(!page.contains("budget-daily"));
    }
}
