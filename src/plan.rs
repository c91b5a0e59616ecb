//! The JSON plan: the contract between the generator (which embeds it in the
//! generated check) and nixvm-driver (which executes it). Both sides use these
//! types, so the format cannot drift.
//!
//! ```json
//! { "version": 1, "name": "health", "nodes": ["machine"], "globalTimeout": 3600,
//!   "steps": [ { "node": "machine", "timeout": 300.0,
//!                "action": { "waitForUnit": { "unit": "syshc.service" } } } ] }
//! ```

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

fn resolve(step: &Step) -> Step {
    let action = match &step.action {
        Action::Subtest { title, steps } => {
            Action::Subtest { title: title.clone(), steps: steps.iter().map(resolve).collect() }
        }
        other => other.clone(),
    };
    Step { node: step.node.clone(), timeout: step.effective_timeout(), action, span: None }
}
