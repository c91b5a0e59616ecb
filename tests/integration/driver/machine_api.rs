//! The Machine API steps beyond commands and waits, for real on the
//! systemd stand-in guest: systemd jobs, state checks and queries (as root
//! and in a user's manager).

use nixvm_gen::spec::{Action, Expect};

use super::{Kind, failure_text, leaf_steps, statuses, step, succeed, vm_test};

const NODE: &str = "machine";

fn unit_step(timeout: f64, action: Action) -> nixvm_gen::spec::Step {
    step(NODE, timeout, action)
}

fn systemctl(query: &str, user: Option<&str>, expect: Expect, capture: Option<&str>) -> Action {
    Action::Systemctl {
        query: query.into(),
        user: user.map(Into::into),
        expect,
        capture: capture.map(Into::into),
    }
}

/// A user manager for `alice` without logind (the stand-in has no D-Bus):
/// `systemd --user` started as a transient system unit with her runtime
/// directory, and one user unit, so that the stock `su -l … systemctl
/// --user` reaches it.
const USER_MANAGER: &str = r#"useradd -m -u 1000 alice
install -d -o alice -m 700 /run/user/1000
install -d -o alice /home/alice/.config/systemd/user
cat > /home/alice/.config/systemd/user/agent.service <<'UNIT'
[Service]
ExecStart=/bin/sleep infinity
UNIT
chown -R alice /home/alice/.config
systemd-run --unit=alice-manager --uid=1000 -p Type=notify -p Delegate=yes -E XDG_RUNTIME_DIR=/run/user/1000 /lib/systemd/systemd --user"#;

#[test]
fn systemd_steps_on_systemd_guest() {
    let exit0 = || Expect { exit_code: Some(0.into()), ..Expect::default() };
    let Some(world) = vm_test(
        Kind::Systemd,
        &[NODE],
        vec![
            unit_step(120.0, Action::WaitForUnit { unit: "syshc.service".into(), user: None }),
            unit_step(60.0, Action::StopJob { unit: "syshc.service".into(), user: None }),
            unit_step(
                30.0,
                Action::RequireUnitState {
                    unit: "syshc.service".into(),
                    state: "inactive".into(),
                    user: None,
                },
            ),
            unit_step(30.0, Action::WaitForClosedPort { port: 3000.into(), addr: None }),
            unit_step(60.0, Action::StartJob { unit: "syshc.service".into(), user: None }),
            unit_step(
                30.0,
                Action::RequireUnitState { unit: "syshc.service".into(), state: "active".into(), user: None },
            ),
            unit_step(
                30.0,
                systemctl(
                    "is-active syshc.service",
                    None,
                    Expect { equals: Some("active".into()), ..exit0() },
                    Some("STATE"),
                ),
            ),
            succeed(NODE, 30.0, "test \"$STATE\" = active"),
            // Any exit status passes unless asked (inactive: 3), and a
            // unit that does not exist only warns in startJob.
            unit_step(30.0, systemctl("is-active never-starts.service", None, Expect::default(), None)),
            unit_step(30.0, Action::StartJob { unit: "no-such.service".into(), user: None }),
            // A user's manager, reached through `su -l` as the stock driver does.
            succeed(NODE, 60.0, USER_MANAGER),
            unit_step(60.0, Action::StartJob { unit: "agent.service".into(), user: Some("alice".into()) }),
            unit_step(
                30.0,
                Action::RequireUnitState {
                    unit: "agent.service".into(),
                    state: "active".into(),
                    user: Some("alice".into()),
                },
            ),
            unit_step(
                30.0,
                systemctl(
                    "is-active 'agent.service'",
                    Some("alice"),
                    Expect { equals: Some("active".into()), ..exit0() },
                    None,
                ),
            ),
            unit_step(60.0, Action::StopJob { unit: "agent.service".into(), user: Some("alice".into()) }),
            unit_step(
                30.0,
                Action::RequireUnitState {
                    unit: "agent.service".into(),
                    state: "inactive".into(),
                    user: Some("alice".into()),
                },
            ),
            // Fails: the state is checked once, without waiting.
            unit_step(
                30.0,
                Action::RequireUnitState {
                    unit: "never-starts.service".into(),
                    state: "active".into(),
                    user: None,
                },
            ),
        ],
    ) else {
        return;
    };
    let run = world.run();
    let expected: Vec<&str> = std::iter::repeat_n("passed", 16).chain(["failed"]).collect();
    assert_eq!(statuses(&run.report), expected, "every step but the last passes");
    assert_eq!(run.status.code(), Some(1));
    assert!(
        run.stderr.contains("`systemctl start no-such.service` exited with 5"),
        "the unchecked start_job is logged:\n{}",
        run.stderr
    );
    let failure = failure_text(leaf_steps(&run.report).last().unwrap());
    assert!(
        failure.contains(
            "expected unit 'never-starts.service' to be in state 'active' but it is in state 'inactive'"
        ),
        "{failure}"
    );
}

/// `copyFromHost` through the real 9p `/tmp/shared` (a file, and a
/// read-only tree as a store path is), `forwardPort` through QEMU's user
/// network (the guest reaches the host as 10.0.2.2 and comes back in through
/// the rule to its own health endpoint), `waitForOpenUnixSocket` on systemd's
/// socket, and `waitForShutdown` after a power-off the guest starts.
#[test]
fn host_steps_on_systemd_guest() {
    use std::os::unix::fs::PermissionsExt;
    let host = tempfile::Builder::new().prefix("nvt-host-").tempdir_in("/tmp").unwrap();
    let file = host.path().join("app.conf");
    std::fs::write(&file, "port = 3000\n").unwrap();
    let tree = host.path().join("tree");
    std::fs::create_dir_all(tree.join("doc")).unwrap();
    std::fs::write(tree.join("doc/readme"), "hello\n").unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(tree.join("doc"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o555)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let copy = |source: &std::path::Path, target: &str| Action::CopyFromHost {
        source: source.display().to_string(),
        target: target.into(),
    };
    let healthy = Expect { contains: vec!["Healthy".into()], ..Expect::default() };
    let Some(world) = vm_test(
        Kind::Systemd,
        &[NODE],
        vec![
            unit_step(120.0, Action::WaitForUnit { unit: "syshc.service".into(), user: None }),
            unit_step(30.0, copy(&file, "/etc/app/app.conf")),
            succeed(NODE, 30.0, "test \"$(cat /etc/app/app.conf)\" = 'port = 3000'"),
            unit_step(30.0, copy(&tree, "/srv/tree")),
            succeed(
                NODE,
                30.0,
                "test \"$(cat /srv/tree/doc/readme)\" = hello && test \"$(/srv/tree/run.sh)\" = ran",
            ),
            unit_step(30.0, Action::ForwardPort { host_port: port.into(), guest_port: 3000.into() }),
            unit_step(
                60.0,
                Action::WaitUntilSucceeds {
                    command: format!("curl --fail --silent --max-time 5 http://10.0.2.2:{port}/"),
                    expect: healthy,
                    capture: None,
                },
            ),
            // systemd's own socket; then a power-off the guest starts itself.
            unit_step(
                30.0,
                Action::WaitForOpenUnixSocket { path: "/run/systemd/private".into(), datagram: false },
            ),
            unit_step(
                30.0,
                Action::Execute {
                    command: "(sleep 1; systemctl poweroff) >/dev/null 2>&1 &".into(),
                    expect: Expect::default(),
                    capture: None,
                },
            ),
            unit_step(120.0, Action::WaitForShutdown),
            unit_step(300.0, Action::Start),
            unit_step(120.0, Action::WaitForUnit { unit: "syshc.service".into(), user: None }),
        ],
    ) else {
        return;
    };
    let run = world.run();
    assert_eq!(statuses(&run.report), ["passed"; 12], "driver output above");
    assert_eq!(run.status.code(), Some(0));
    for dir in [tree.join("doc"), tree.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
