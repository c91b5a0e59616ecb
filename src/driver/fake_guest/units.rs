//! The systemd steps against the fake guest (its stub `systemctl` keeps
//! unit states in files, its stub `su` runs a user's command in a clean
//! environment as `su -l` does).

use super::*;

fn state(h: &Harness, unit: &str) -> String {
    std::fs::read_to_string(h.units().join(unit)).unwrap_or_default().trim().to_owned()
}

fn systemctl(query: &str, user: Option<&str>, expect: Expect, capture: Option<&str>) -> Action {
    Action::Systemctl {
        query: query.into(),
        user: user.map(Into::into),
        expect,
        capture: capture.map(Into::into),
    }
}

fn exit(code: i32) -> Expect {
    Expect { exit_code: Some(code.into()), ..Expect::default() }
}

#[test]
fn jobs_start_and_stop_units_and_states_are_required() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::StartJob { unit: "web.service".into(), user: None });
    assert_eq!(state(&h, "web.service"), "active");
    h.ok(Action::RequireUnitState { unit: "web.service".into(), state: "active".into(), user: None });
    h.ok(Action::StopJob { unit: "web.service".into(), user: None });
    assert_eq!(state(&h, "web.service"), "inactive");
    let f = h.failure(&step(
        Action::RequireUnitState { unit: "web.service".into(), state: "active".into(), user: None },
        10.0,
    ));
    assert_eq!(
        f.message,
        "expected unit 'web.service' to be in state 'active' but it is in state 'inactive'"
    );
    // As the stock start_job, a failing `systemctl start` does not fail the
    // step; the driver says so in the log.
    h.ok(Action::StartJob { unit: "missing.service".into(), user: None });
    let logged = text(&h.logged);
    assert!(
        logged.contains(
            "`systemctl start missing.service` exited with 5 (not checked, as by the stock driver)"
        ),
        "{logged}"
    );
}

#[test]
fn systemctl_checks_status_and_output_only_when_asked() {
    let Some(mut h) = harness("") else { return };
    // Any exit status passes by default (`is-active` of an inactive unit: 3).
    h.ok(systemctl("is-active web.service", None, Expect::default(), None));
    let f = h.failure(&step(systemctl("is-active web.service", None, exit(0), None), 10.0));
    assert_eq!(f.message, "command `systemctl is-active web.service` exited with 3, expected 0");
    assert_eq!(f.command.as_deref(), Some("systemctl is-active web.service"));
    h.ok(systemctl("start web.service", None, exit(0), None));
    h.ok(systemctl(
        "is-active web.service",
        None,
        Expect { equals: Some("active".into()), ..exit(0) },
        Some("STATE"),
    ));
    // The capture reaches later commands, systemctl's among them.
    h.ok(Action::Succeed {
        command: "test \"$STATE\" = active".into(),
        expect: Expect::default(),
        capture: None,
    });
    std::fs::write(h.units().join("other.service"), "failed").unwrap();
    h.ok(Action::Execute {
        command: "echo other.service".into(),
        expect: Expect::default(),
        capture: Some("U".into()),
    });
    h.ok(systemctl(
        "is-active \"$U\"",
        None,
        Expect { equals: Some("failed".into()), ..Expect::default() },
        None,
    ));
}

#[test]
fn a_users_manager_is_reached_through_su() {
    let Some(mut h) = harness("") else { return };
    h.ok(Action::StartJob { unit: "agent.service".into(), user: Some("alice".into()) });
    let user_units = h.units().join("user-alice");
    assert_eq!(std::fs::read_to_string(user_units.join("agent.service")).unwrap().trim(), "active");
    assert_eq!(state(&h, "agent.service"), "", "not the system manager's unit");
    h.ok(Action::RequireUnitState {
        unit: "agent.service".into(),
        state: "active".into(),
        user: Some("alice".into()),
    });
    h.ok(systemctl(
        "is-active agent.service",
        Some("alice"),
        Expect { equals: Some("active".into()), ..exit(0) },
        None,
    ));
    // `'` in a user's query survives the stock `$'…'` quoting.
    h.ok(systemctl("is-active 'agent.service'", Some("alice"), exit(0), None));
    h.ok(Action::StopJob { unit: "agent.service".into(), user: Some("alice".into()) });
    assert_eq!(std::fs::read_to_string(user_units.join("agent.service")).unwrap().trim(), "inactive");
    // `su -l` starts from a clean environment: captures do not reach it
    // (docs/descriptions.md says so).
    h.ok(Action::Execute {
        command: "echo secret".into(),
        expect: Expect::default(),
        capture: Some("C".into()),
    });
    let f = h.failure(&step(
        systemctl(
            "is-active \"${C:-unset}\"",
            Some("alice"),
            Expect { equals: Some("secret".into()), ..Expect::default() },
            None,
        ),
        10.0,
    ));
    assert!(f.output.as_deref().unwrap_or_default().contains("inactive"), "{f:?}");
}
