//! One JUnit file for many runs: each run's suite as the driver writes it
//! (`driver::report::junit::suite`), rebuilt from its `report.json` so
//! every run is described the same way.

use quick_junit::Report;
use std::collections::BTreeMap;

use super::read::Run;
use crate::driver::report::junit::{duration, suite};

pub fn render(runs: &[Run]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *count.entry(r.report.name.as_str()).or_default() += 1;
    }
    let mut junit = Report::new("nixvm-gen report");
    let mut total = 0.0;
    for r in runs {
        // The same test on two systems: tell the suites apart by directory.
        let name = if count[r.report.name.as_str()] > 1 {
            format!("{} ({})", r.report.name, r.dir.display())
        } else {
            r.report.name.clone()
        };
        junit.add_test_suite(suite(&r.report, name));
        total += r.report.duration_secs.max(0.0);
    }
    junit.set_time(duration(total));
    junit.to_string().unwrap_or_else(|e| format!("<!-- cannot serialize JUnit report: {e} -->\n"))
}
