//! Checks that need more than one description or the flake: node and module
//! names, duplicates, empty step lists. Fills in implicit step nodes.

use crate::diagnostic::Diagnostic;
use crate::spec::TestSpec;

/// Validates all descriptions against each other and against the names of
/// the flake's `nixosModules`. Resolves `node` of steps in one-node tests.
pub fn validate(tests: &mut [TestSpec], module_names: &[String]) -> Vec<Diagnostic> {
    let _ = (tests, module_names);
    todo!("spec::validate")
}
