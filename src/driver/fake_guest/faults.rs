//! Fault classes against the fake guest (docs/reliability.md): for each,
//! the error names the node and the phase, the reports are written, the exit
//! code is the documented one and no process the run started survives it
//! (checked by pid and process group, see [`Survivors`]).

use super::survivors::Survivors;
use super::*;

fn report_json(fake: &FakeRun) -> serde_json::Value {
    serde_json::from_str(&fake.output("report.json")).unwrap()
}

/// Megabytes of output from a failing command reach neither the log nor the
/// reports whole: they are cut to 64 KiB with a marker, keeping the end.
#[test]
fn megabytes_of_output_are_cut_in_the_reports() {
    let flood = "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo the-end; exit 1";
    let Some(fake) = FakeRun::new("", vec![succeed(flood)]) else { return };
    let survivors = Survivors::watch(fake.tmp.path());
    let (outcome, log) = fake.run(&Abort::never());
    survivors.assert_none_left(2);
    assert_eq!(outcome.exit_code(), crate::exit_codes::STALE_OR_FAILED);
    let json = fake.output("report.json");
    assert!(json.len() < 100_000, "report.json is {} bytes", json.len());
    let report = report_json(&fake);
    let output = report["steps"][0]["failure"]["output"].as_str().unwrap();
    assert!(output.len() <= 64 * 1024 + 200, "{} bytes", output.len());
    assert!(output.contains("cut by nixvm-driver: "), "the cut is marked");
    assert!(output.contains("of 3000009 bytes left out"), "and sized");
    assert!(output.trim_end().ends_with("the-end"), "the end is kept");
    assert!(fake.output("junit.xml").len() < 200_000);
    assert!(text(&log).len() < 200_000, "the log got {} bytes", text(&log).len());
}
