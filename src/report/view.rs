//! The view model of the merged report: every decision (order, status,
//! scale, what is shown expanded) is made here, so the HTML template and
//! the terminal summary only lay it out.

use base64::Engine as _;

use super::read::{MAX_SCREENSHOT_BYTES, Run, read_bounded};
use super::summary::clean_block as clean;
use crate::driver::events::{Failure, RunResult, StepStatus};
use crate::driver::report::{RunReport, StepReport};

/// Everything shown, failing runs first.
pub struct Overview {
    pub runs: Vec<RunView>,
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    /// `3 runs: 2 passed, 1 failed`.
    pub headline: String,
    /// Whether every run passed.
    pub ok: bool,
}

/// One check build's run.
pub struct RunView {
    /// Anchor id (`run-1`), not derived from any input.
    pub id: String,
    pub name: String,
    /// Where it was read from (`reports/web-x86_64-linux`).
    pub label: String,
    pub passed: bool,
    /// `passed`, `failed`, `a VM failed`, `global timeout`, `interrupted`.
    pub verdict: &'static str,
    pub duration: String,
    pub started_at: String,
    /// `2 passed, 1 failed, 1 skipped`.
    pub counts: String,
    /// Run-level error (global timeout, VLAN switch, …).
    pub error: Option<String>,
    /// The failure to show first: the first failing step, else the first
    /// VM that failed to start.
    pub failure: Option<FailureView>,
    /// Further failures (VMs, other steps under `--keep-going`).
    pub more_failures: Vec<FailureView>,
    pub timeline: Option<Timeline>,
    /// Why there is no timeline (schema 1 reports have no times).
    pub no_timeline: Option<&'static str>,
    pub steps: Vec<StepRow>,
    pub screenshots: Vec<Screenshot>,
}

/// A failure with everything known about it.
pub struct FailureView {
    /// `step 3: client: must succeed: curl …` or `start of node server`.
    pub title: String,
    pub node: Option<String>,
    pub message: String,
    pub command: Option<String>,
    pub exit_status: Option<String>,
    pub output: Option<String>,
    pub output_note: Option<&'static str>,
    /// `systemctl status …`, `journalctl …`.
    pub details: Vec<(String, String)>,
    pub console: Option<String>,
}

/// A timeline drawn to scale: one lane per node, plus one for steps on
/// no node (`sleep`). Positions are percentages of the run's duration.
pub struct Timeline {
    pub lanes: Vec<Lane>,
    pub ticks: Vec<Tick>,
    /// The run's length, for the caption.
    pub span: String,
}

pub struct Lane {
    pub node: String,
    pub bars: Vec<Bar>,
}

pub struct Bar {
    /// `left:12.345%;width:3.2%` (numbers only).
    pub style: String,
    /// CSS class: `pass`, `fail`, `boot`, `bootfail`.
    pub class: &'static str,
    /// Short text drawn inside the bar.
    pub label: String,
    /// Tooltip: the whole description and the times.
    pub title: String,
}

pub struct Tick {
    pub style: String,
    pub label: String,
}

/// One row of the step table (subtests indented).
pub struct StepRow {
    pub number: String,
    /// `padding-left:1.5em` for nesting.
    pub indent: String,
    pub node: String,
    pub description: String,
    pub class: &'static str,
    pub status: &'static str,
    pub duration: String,
}

pub struct Screenshot {
    pub name: String,
    /// `data:image/png;base64,…`
    pub data_uri: String,
}

/// Builds the overview; failing runs first, each group in input order.
pub fn overview(runs: &[Run]) -> Overview {
    let mut views: Vec<RunView> = runs.iter().enumerate().map(|(i, r)| run_view(i, r)).collect();
    views.sort_by_key(|v| v.passed);
    let total = views.len();
    let passed = views.iter().filter(|v| v.passed).count();
    let failed = total - passed;
    Overview {
        headline: format!("{total} run(s): {passed} passed, {failed} failed"),
        ok: failed == 0,
        runs: views,
        total,
        passed,
        failed,
    }
}

fn verdict(r: RunResult) -> &'static str {
    match r {
        RunResult::Passed => "passed",
        RunResult::Failed => "failed",
        RunResult::VmFailed => "a VM failed",
        RunResult::TimedOut => "global timeout",
        RunResult::Interrupted => "interrupted",
    }
}

/// Seconds for people: `0.42 s`, `12.3 s`, `4 min 05 s`.
pub fn human_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".to_owned();
    }
    if secs < 10.0 {
        format!("{secs:.2} s")
    } else if secs < 120.0 {
        format!("{secs:.1} s")
    } else {
        let whole = secs.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

fn run_view(index: usize, run: &Run) -> RunView {
    let r = &run.report;
    let mut failures = Vec::new();
    collect_failures(&r.steps, &mut failures);
    let mut failures: Vec<FailureView> =
        failures.into_iter().map(|(s, f)| failure_view(Some(s), f)).collect();
    failures.extend(r.vm_failures.iter().map(|f| failure_view(None, f)));
    let mut failures = failures.into_iter();
    let failure = failures.next();
    let s = &r.summary;
    let mut counts = format!("{} passed, {} failed", s.passed, s.failed);
    if s.skipped > 0 {
        counts.push_str(&format!(", {} skipped", s.skipped));
    }
    let (timeline, no_timeline) = match timeline(r) {
        Some(t) => (Some(t), None),
        None if r.schema_version < 2 => {
            (None, Some("no timeline: the report has schema version 1 (no times)"))
        }
        None => (None, Some("no timeline: no step or boot ran")),
    };
    let mut steps = Vec::new();
    step_rows(&r.steps, 0, &mut steps);
    RunView {
        id: format!("run-{}", index + 1),
        name: clean(&r.name),
        label: clean(&run.dir.display().to_string()),
        passed: r.result == RunResult::Passed,
        verdict: verdict(r.result),
        duration: human_secs(r.duration_secs),
        started_at: r.started_at.as_deref().map(clean).unwrap_or_default(),
        counts,
        error: r.error.as_deref().map(clean),
        failure,
        more_failures: failures.collect(),
        timeline,
        no_timeline,
        steps,
        screenshots: screenshots(run),
    }
}

/// Leaf steps that failed, in order (subtests carry no failure of their own).
fn collect_failures<'a>(steps: &'a [StepReport], out: &mut Vec<(&'a StepReport, &'a Failure)>) {
    for s in steps {
        if let Some(f) = &s.failure {
            out.push((s, f));
        }
        collect_failures(&s.steps, out);
    }
}

fn step_title(s: &StepReport) -> String {
    let number = s.number.map(|n| format!("step {n}: ")).unwrap_or_default();
    let node = s.node.as_ref().map(|n| format!("{n}: ")).unwrap_or_default();
    clean(&format!("{number}{node}{}", s.description))
}

fn failure_view(step: Option<&StepReport>, f: &Failure) -> FailureView {
    let title = match step {
        Some(s) => step_title(s),
        None => format!("start of node {}", f.node.as_deref().unwrap_or("?")),
    };
    // Text from guests may hold escape sequences: shown, never obeyed.
    FailureView {
        title: clean(&title),
        node: f.node.as_deref().map(clean),
        message: clean(&f.message),
        command: f.command.as_deref().map(clean),
        exit_status: f.exit_status.map(|c| c.to_string()),
        output: f
            .output
            .as_deref()
            .map(|o| if o.trim().is_empty() { "(empty)".to_owned() } else { clean(o) }),
        output_note: f.output_lossy.then_some("not valid UTF-8, shown with replacement characters"),
        details: f.details.iter().map(|d| (clean(&d.title), clean(&d.text))).collect(),
        console: (!f.console.is_empty()).then(|| clean(&f.console.join("\n"))),
    }
}

fn step_rows(steps: &[StepReport], depth: usize, out: &mut Vec<StepRow>) {
    for s in steps {
        let (class, status) = match s.status {
            StepStatus::Passed => ("pass", "passed"),
            StepStatus::Failed => ("fail", "FAILED"),
            StepStatus::Skipped => ("skip", "skipped"),
        };
        out.push(StepRow {
            number: s.number.map(|n| n.to_string()).unwrap_or_default(),
            indent: format!("padding-left:{}em", depth.min(20) as f64 * 1.5),
            node: s.node.as_deref().map(clean).unwrap_or_default(),
            description: clean(&s.description),
            class,
            status,
            duration: if s.status == StepStatus::Skipped {
                String::new()
            } else {
                human_secs(s.duration_secs)
            },
        });
        step_rows(&s.steps, depth + 1, out);
    }
}

/// Narrowest bar drawn, in percent, so instant steps stay visible.
const MIN_BAR: f64 = 0.4;

fn pct(x: f64, span: f64) -> f64 {
    let v = x / span * 100.0;
    if v.is_nan() { 0.0 } else { v.clamp(0.0, 100.0) }
}

fn bar_style(start: f64, end: f64, span: f64) -> String {
    let left = pct(start, span);
    let width = (pct(end, span) - left).max(MIN_BAR).min(100.0 - left + MIN_BAR);
    format!("left:{left:.3}%;width:{width:.3}%")
}

fn timeline(r: &RunReport) -> Option<Timeline> {
    let mut leaves = Vec::new();
    leaf_steps(&r.steps, &mut leaves);
    let timed: Vec<&StepReport> = leaves.into_iter().filter(|s| s.start_secs.is_some()).collect();
    if timed.is_empty() && r.boots.is_empty() {
        return None;
    }
    let ends = timed.iter().filter_map(|s| s.end_secs).chain(r.boots.iter().map(|b| b.end_secs));
    let span = ends.fold(r.duration_secs, f64::max);
    let span = if span.is_finite() && span > 0.0 { span } else { 1.0 };
    // Lanes: the nodes in report order, then any node only the steps name,
    // then the steps on no node.
    let mut lanes: Vec<Lane> = r.nodes.iter().map(|n| Lane { node: clean(n), bars: Vec::new() }).collect();
    let lane = |lanes: &mut Vec<Lane>, node: &str| -> usize {
        let node = clean(node);
        if let Some(i) = lanes.iter().position(|l| l.node == node) {
            return i;
        }
        lanes.push(Lane { node, bars: Vec::new() });
        lanes.len() - 1
    };
    for b in &r.boots {
        let i = lane(&mut lanes, &b.node);
        let what = if b.ok { "boot" } else { "boot (failed)" };
        lanes[i].bars.push(Bar {
            style: bar_style(b.start_secs, b.end_secs, span),
            class: if b.ok { "boot" } else { "bootfail" },
            label: what.to_owned(),
            title: format!(
                "{}: {what}, {} (from {} to {})",
                clean(&b.node),
                human_secs(b.end_secs - b.start_secs),
                human_secs(b.start_secs),
                human_secs(b.end_secs)
            ),
        });
    }
    for s in timed {
        let start = s.start_secs.unwrap_or(0.0);
        let end = s.end_secs.unwrap_or(start + s.duration_secs);
        let i = lane(&mut lanes, s.node.as_deref().unwrap_or("(no node)"));
        let failed = s.status == StepStatus::Failed;
        lanes[i].bars.push(Bar {
            style: bar_style(start, end, span),
            class: if failed { "fail" } else { "pass" },
            label: s.number.map(|n| n.to_string()).unwrap_or_default(),
            title: format!(
                "{}{}, {} (from {} to {})",
                step_title(s),
                if failed { " — FAILED" } else { "" },
                human_secs(end - start),
                human_secs(start),
                human_secs(end)
            ),
        });
    }
    lanes.retain(|l| !l.bars.is_empty());
    Some(Timeline { lanes, ticks: ticks(span), span: human_secs(span) })
}

fn leaf_steps<'a>(steps: &'a [StepReport], out: &mut Vec<&'a StepReport>) {
    for s in steps {
        if s.steps.is_empty() && s.action != "subtest" {
            out.push(s);
        }
        leaf_steps(&s.steps, out);
    }
}

/// Axis ticks at 1, 2 or 5 × 10^k seconds, 5 to 9 of them.
fn ticks(span: f64) -> Vec<Tick> {
    let raw = span / 8.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let mut out = Vec::new();
    let mut t = 0.0;
    while t <= span + 1e-9 && out.len() < 20 {
        out.push(Tick { style: format!("left:{:.3}%", pct(t, span)), label: human_secs(t) });
        t += step;
    }
    out
}

/// PNG screenshots the steps wrote, inlined; others (PPM, missing, too
/// large) are left out.
fn screenshots(run: &Run) -> Vec<Screenshot> {
    let mut leaves = Vec::new();
    leaf_steps(&run.report.steps, &mut leaves);
    let mut out = Vec::new();
    for file in leaves.iter().flat_map(|s| &s.files) {
        // Only plain names inside the run's directory.
        if file.contains('/') || file.starts_with('.') || !file.ends_with(".png") {
            continue;
        }
        let Ok(bytes) = read_bounded(&run.dir.join(file), MAX_SCREENSHOT_BYTES) else { continue };
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            continue;
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        out.push(Screenshot { name: file.clone(), data_uri: format!("data:image/png;base64,{data}") });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_span() {
        let labels: Vec<String> = ticks(12.3).into_iter().map(|t| t.label).collect();
        assert_eq!(labels, ["0.00 s", "2.00 s", "4.00 s", "6.00 s", "8.00 s", "10.0 s", "12.0 s"]);
        for span in [0.05, 1.0, 5.01, 9.99, 3600.0, 86_400.0] {
            let n = ticks(span).len();
            assert!((5..=9).contains(&n), "{span}: {n} ticks");
        }
    }

    #[test]
    fn bars_stay_inside_the_lane() {
        assert_eq!(bar_style(0.0, 0.0, 10.0), "left:0.000%;width:0.400%");
        assert_eq!(bar_style(5.0, 7.5, 10.0), "left:50.000%;width:25.000%");
        assert_eq!(bar_style(-3.0, 1e9, 10.0), "left:0.000%;width:100.000%");
        assert_eq!(bar_style(f64::NAN, 1.0, 10.0), "left:0.000%;width:10.000%");
    }

    #[test]
    fn durations_for_people() {
        assert_eq!(human_secs(0.4219), "0.42 s");
        assert_eq!(human_secs(12.34), "12.3 s");
        assert_eq!(human_secs(245.0), "4 min 05 s");
        assert_eq!(human_secs(f64::NAN), "?");
    }
}
