//! PromQL for the observability test: the metric names an expression selects (a small
//! tokenizer, not a parser: it skips what cannot be a metric name), the selector of a Grafana
//! template query, and Grafana's variables replaced so that promtool can parse an expression.

use std::collections::BTreeSet;

/// The aggregation operators, which may precede their `by`/`without` clause.
const AGGREGATIONS: [&str; 12] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
/// Keywords followed by a parenthesised label list.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Binary operators and modifiers spelled as words, and the number literals.
const KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "offset", "bool", "atan2", "inf", "nan",
];

/// The index just past the string literal opening at `i`.
fn skip_string(s: &[char], i: usize) -> usize {
    let quote = s[i];
    let mut j = i + 1;
    while j < s.len() && s[j] != quote {
        // Raw (backtick) strings have no escapes.
        j += if s[j] == '\\' && quote != '`' { 2 } else { 1 };
    }
    j + 1
}

/// The index just past the bracket that closes the one at `i`, strings skipped.
fn skip_group(s: &[char], i: usize) -> usize {
    let (open, close) = (s[i], matching(s[i]));
    let mut depth = 0;
    let mut j = i;
    while j < s.len() {
        match s[j] {
            '"' | '\'' | '`' => {
                j = skip_string(s, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    panic!("unbalanced {open} in {:?}", s.iter().collect::<String>());
}

fn matching(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        '{' => '}',
        _ => unreachable!("not a bracket: {open}"),
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The next word of `s` from `i` on, after white space.
fn next_word(s: &[char], i: usize) -> String {
    s[i..]
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| is_ident(**c))
        .collect()
}

/// The metric names PromQL expression `expr` selects: its identifiers that are not inside a
/// string, a comment, label matchers (`{...}`), a range or subquery (`[...]`) or the label list
/// of by/without/on/ignoring/group_left/group_right, and are not numbers, durations, Grafana
/// variables (`$x`, `${x}`), keywords, or function and aggregation names (followed by `(`, or by
/// `by`/`without` for an aggregation).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let s: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&s, i);
        } else if c == '#' {
            i = s[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(s.len(), |n| i + n);
        } else if c == '{' {
            let matchers: String = s[i..skip_group(&s, i)].iter().collect();
            assert!(
                !matchers.contains("__name__"),
                "{expr}: select by the metric's name, not by __name__, so that it is checked"
            );
            i = skip_group(&s, i);
        } else if c == '[' {
            i = skip_group(&s, i);
        } else if c == '$' {
            i += 1;
            if s.get(i) == Some(&'{') {
                i = skip_group(&s, i);
            } else {
                while i < s.len() && is_ident(s[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // Numbers (1e-6, 0x1f, 0.95) and durations (5m, 1h30m).
            i += 1;
            while i < s.len()
                && (is_ident(s[i])
                    || s[i] == '.'
                    || (matches!(s[i], '+' | '-') && matches!(s[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if is_ident(c) {
            let start = i;
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
            let word: String = s[start..i].iter().collect();
            let lower = word.to_ascii_lowercase();
            let mut next = i;
            while next < s.len() && s[next].is_whitespace() {
                next += 1;
            }
            let call = s.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&lower.as_str()) {
                if call {
                    i = skip_group(&s, next);
                }
            } else if KEYWORDS.contains(&lower.as_str()) || call {
                // An operator, a function or an aggregation.
            } else if AGGREGATIONS.contains(&lower.as_str())
                && matches!(next_word(&s, i).as_str(), "by" | "without")
            {
                // `sum by (x) (...)`.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The selector of a Grafana template query `label_values(SELECTOR, LABEL)` (none for
/// `label_values(LABEL)`); other queries as they are.
pub fn template_selector(query: &str) -> Option<String> {
    let Some(args) = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
    else {
        return Some(query.to_owned());
    };
    // The label is the last argument; commas inside the selector are in its braces or strings.
    let s: Vec<char> = args.chars().collect();
    let (mut i, mut last_comma) = (0, None);
    while i < s.len() {
        match s[i] {
            '"' | '\'' | '`' => i = skip_string(&s, i),
            '{' | '(' | '[' => i = skip_group(&s, i),
            ',' => {
                last_comma = Some(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    last_comma.map(|c| s[..c].iter().collect())
}

/// `expr` with Grafana's variables replaced so that Prometheus can parse it: `$__...` intervals
/// by `1m`, other variables (only in regex matchers) by `.+`.
pub fn as_promql(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let (name, after) = match tail.strip_prefix('{') {
            Some(braced) => {
                let end = braced.find('}').expect("closed ${");
                (&braced[..end], &braced[end + 1..])
            }
            None => {
                let end = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
                (&tail[..end], &tail[end..])
            }
        };
        out.push_str(if name.starts_with("__") { "1m" } else { ".+" });
        rest = after;
    }
    out + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_the_selectors_of_an_expression() {
        let cases: [(&str, &[&str]); 8] = [
            (
                r#"histogram_quantile(0.99, sum by (le, cause) (rate(a_seconds_bucket{job=~"$job", x="}"}[$__rate_interval])))"#,
                &["a_seconds_bucket"],
            ),
            (
                "sum without (reason) (increase(a_total[5m] offset 1h)) > 0 and on (job, instance) b == 1 or absent(up{job=\"x\"})",
                &["a_total", "b", "up"],
            ),
            (
                "max(x) by (instance) / ignoring(le) group_left(foo) y unless z",
                &["x", "y", "z"],
            ),
            (
                r#"label_replace(m, "dst", "$1", "src", "(.*)") * on() group_right vector(1)"#,
                &["m"],
            ),
            (
                "count(g != g) * 1e-6 + rate(c[1m:10s]) / .5 - 0x1F + Inf",
                &["c", "g"],
            ),
            (
                "sum(rate(x_sum[5m])) by (le) # a comment naming not_a_metric\n/ sum(rate(x_count[5m]))",
                &["x_count", "x_sum"],
            ),
            (
                "topk by (a) (3, rec:rule:rate5m) or count_values without (b) (\"v\", k)",
                &["k", "rec:rule:rate5m"],
            ),
            ("sum(${__range} and $instance)", &[]),
        ];
        for (expr, want) in cases {
            let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(metric_names(expr), want, "{expr}");
        }
        assert_eq!(
            template_selector(r#"label_values(m{a=~"x,y"}, instance)"#).as_deref(),
            Some(r#"m{a=~"x,y"}"#)
        );
        assert_eq!(template_selector("label_values(job)"), None);
        assert_eq!(
            as_promql(r#"rate(m{i=~"$instance", j="${job}"}[$__rate_interval])"#),
            r#"rate(m{i=~".+", j=".+"}[1m])"#
        );
    }
}
