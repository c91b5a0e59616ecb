//! The JSON plan: the contract between the generator (which embeds it in the
//! generated check) and nixvm-driver (which executes it). Both sides use these
//! types, so the format cannot drift.
//!
//! ```json
//! { "version": 1, "name": "health", "nodes": ["machine"], "globalTimeout": 3600,
//!   "steps": [ { "node": "machine", "timeout": 300.0,
//!                "action": { "waitForUnit": { "unit": "syshc.service" } } } ] }
//! ```

use serde::ser::{SerializeStruct, SerializeStructVariant, Serializer};
use serde::{Deserialize, Serialize};

use crate::spec::{Action, Step, TestSpec};

/// Format version; bumped on any incompatible change.
pub const PLAN_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    pub version: u32,
    pub name: String,
    /// Node names, sorted.
    pub nodes: Vec<String>,
    /// Seconds for the whole run; `None` leaves it to the driver configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_timeout: Option<u64>,
    /// Steps with `node` and `timeout` resolved (explicit or default).
    pub steps: Vec<Step>,
}

/// Errors reading a plan file.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("invalid plan JSON")]
    Json(#[from] serde_json::Error),
    #[error(
        "plan version {found} is not supported (this driver reads version {PLAN_VERSION}); regenerate with a matching nixvm-gen"
    )]
    Version { found: u32 },
}

impl Plan {
    /// Builds the plan of a validated description.
    pub fn from_spec(spec: &TestSpec) -> Plan {
        Plan {
            version: PLAN_VERSION,
            name: spec.name.clone(),
            nodes: spec.nodes.keys().cloned().collect(),
            global_timeout: spec.timeout,
            steps: spec.steps.iter().map(resolve).collect(),
        }
    }

    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text)?;
        if plan.version != PLAN_VERSION {
            return Err(PlanError::Version { found: plan.version });
        }
        Ok(plan)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("plan types always serialize")
    }
}

/// The plan of a validated description, borrowed from it: serializes to the
/// JSON value of [`Plan::from_spec`] of it, without copying every step first
/// (the generator embeds plans this way, as Nix literals).
///
/// Its fields (and its steps') come in Nix's attribute order, the byte
/// order of the names, not in [`Plan`]'s: a literal lists them so anyway,
/// and the literal's writer then has none to reorder. Only
/// `serde_json::to_string` of it would show the difference, and the plan
/// file the driver reads is `builtins.toJSON` of the literal (or
/// [`Plan::to_json`], whose order is [`Plan`]'s).
pub struct SpecPlan<'a>(pub &'a TestSpec);

impl Serialize for SpecPlan<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let spec = self.0;
        let mut plan = s.serialize_struct("Plan", 4 + usize::from(spec.timeout.is_some()))?;
        match &spec.timeout {
            Some(seconds) => plan.serialize_field("globalTimeout", seconds)?,
            None => plan.skip_field("globalTimeout")?,
        }
        plan.serialize_field("name", &spec.name)?;
        plan.serialize_field("nodes", &Nodes(spec))?;
        plan.serialize_field("steps", &Resolved(&spec.steps))?;
        plan.serialize_field("version", &PLAN_VERSION)?;
        plan.end()
    }
}

struct Nodes<'a>(&'a TestSpec);

impl Serialize for Nodes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.nodes.keys())
    }
}

/// Steps as [`resolve`] makes them.
struct Resolved<'a>(&'a [Step]);

impl Serialize for Resolved<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ResolvedStep))
    }
}

struct ResolvedStep<'a>(&'a Step);

impl Serialize for ResolvedStep<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let step = self.0;
        let timeout = step.effective_timeout();
        let fields = 1 + usize::from(step.node.is_some()) + usize::from(timeout.is_some());
        let mut out = s.serialize_struct("Step", fields)?;
        match &step.action {
            Action::Subtest { title, steps } => {
                out.serialize_field("action", &ResolvedSubtest { title, steps })?
            }
            action => out.serialize_field("action", action)?,
        }
        match &step.node {
            Some(node) => out.serialize_field("node", node)?,
            None => out.skip_field("node")?,
        }
        match &timeout {
            Some(seconds) => out.serialize_field("timeout", seconds)?,
            None => out.skip_field("timeout")?,
        }
        out.end()
    }
}

/// `Action::Subtest` with its steps resolved.
struct ResolvedSubtest<'a> {
    title: &'a str,
    steps: &'a [Step],
}

/// `Action::Subtest`'s position among the variants, which only binary
/// formats write (plans are JSON, and Nix literals of JSON).
const SUBTEST_VARIANT_INDEX: u32 = 35;

impl Serialize for ResolvedSubtest<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct_variant("Action", SUBTEST_VARIANT_INDEX, "subtest", 2)?;
        out.serialize_field("steps", &Resolved(self.steps))?;
        out.serialize_field("title", self.title)?;
        out.end()
    }
}

fn resolve(step: &Step) -> Step {
    let action = match &step.action {
        Action::Subtest { title, steps } => {
            Action::Subtest { title: title.clone(), steps: steps.iter().map(resolve).collect() }
        }
        other => other.clone(),
    };
    Step { node: step.node.clone(), timeout: step.effective_timeout(), action, span: None }
}
