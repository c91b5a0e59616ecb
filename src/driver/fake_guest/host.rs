//! The steps between host and guest against the fake guest: `copyFromHost`
//! through the shared directory, and `forwardPort` through the fake QEMU's
//! `hostfwd_add` (a relay from the host port to the local one); and the
//! waits added with them, `waitForOpenUnixSocket` and `waitForShutdown`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn copy_from_host_copies_files_and_read_only_trees() {
    let Some(mut h) = harness("") else { return };
    let host = tempfile::tempdir().unwrap();
    // A read-only tree, as a store path is.
    let tree = host.path().join("share");
    std::fs::create_dir_all(tree.join("doc")).unwrap();
    std::fs::write(tree.join("doc/readme"), "hello\n").unwrap();
    std::fs::write(tree.join("run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(tree.join("run.sh"), std::fs::Permissions::from_mode(0o555)).unwrap();
    for dir in [tree.join("doc"), tree.clone()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let guest = h.machine().state_dir().join("guest-root");
    let target = guest.join("etc/app/share");
    h.ok(Action::CopyFromHost { source: tree.display().to_string(), target: target.display().to_string() });
    assert_eq!(std::fs::read_to_string(target.join("doc/readme")).unwrap(), "hello\n");
    let mode = std::fs::metadata(target.join("run.sh")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111, "the mode bits come along: {mode:o}");
    // The staging copy in the shared directory is gone, read-only or not.
    let shared = h.machine().shared_dir();
    let left: Vec<_> = std::fs::read_dir(&shared).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().starts_with("copy-")), "{left:?}");
    // A single file, to a path whose parents do not exist yet.
    let file = host.path().join("app.conf");
    std::fs::write(&file, "port = 3000\n").unwrap();
    let target = guest.join("srv/new/dir/app.conf");
    h.ok(Action::CopyFromHost { source: file.display().to_string(), target: target.display().to_string() });
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "port = 3000\n");
    // Refused: a relative source, or `..` (the check passes store paths).
    for bad in ["app.conf", "/nix/store/../etc/passwd"] {
        let f = h.failure(&step(
            Action::CopyFromHost { source: bad.into(), target: target.display().to_string() },
            10.0,
        ));
        assert!(f.message.contains("is not an absolute host path without `..`"), "{}", f.message);
    }
    let f = h.failure(&step(
        Action::CopyFromHost {
            source: host.path().join("missing").display().to_string(),
            target: "/x".into(),
        },
        10.0,
    ));
    assert!(f.message.starts_with("cannot copy"), "{}", f.message);
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(tree.join("doc"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A free local port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn forward_port_relays_a_host_port_and_logs_a_refused_rule() {
    let Some(mut h) = harness("") else { return };
    let service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let guest_port = service.local_addr().unwrap().port();
    let host_port = free_port();
    h.ok(Action::ForwardPort { host_port: host_port.into(), guest_port: guest_port.into() });
    let monitor = std::fs::read_to_string(h.machine().state_dir().join("monitor.log")).unwrap();
    assert!(monitor.contains(&format!("hostfwd_add tcp::{host_port}-:{guest_port}")), "{monitor}");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = service.accept().unwrap();
        conn.write_all(b"Healthy").unwrap();
    });
    let mut client = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    let mut got = String::new();
    client.read_to_string(&mut got).unwrap();
    server.join().unwrap();
    assert_eq!(got, "Healthy");
    // The host port is taken now: QEMU refuses the rule, which the stock
    // driver ignores; the step passes and the log says why.
    h.ok(Action::ForwardPort { host_port: host_port.into(), guest_port: guest_port.into() });
    let logged = text(&h.logged);
    assert!(logged.contains("Could not set up host forwarding rule"), "{logged}");
}

#[test]
fn wait_for_open_unix_socket_probes_with_nc() {
    let Some(mut h) = harness("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let wait = || Action::WaitForOpenUnixSocket { path: path.display().to_string(), datagram: false };
    let f = h.failure(&step(wait(), 1.0));
    assert!(f.message.starts_with("UNIX-domain stream socket"), "{}", f.message);
    assert_eq!(f.command.as_deref(), Some(format!("nc -z -U {}", path.display()).as_str()));
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    h.ok(wait());
}

#[test]
fn wait_for_shutdown_waits_for_a_power_off_the_guest_starts() {
    let Some(mut h) = harness("") else { return };
    // The fake's `poweroff` ends the fake QEMU, as a real power-off ends QEMU.
    h.ok(Action::Execute {
        command: "(sleep 0.3; poweroff) >/dev/null 2>&1 &".into(),
        expect: Expect::default(),
        capture: None,
    });
    h.ok(Action::WaitForShutdown);
    assert!(!h.machine().is_running(), "QEMU is gone");
    // A later command boots the node again, as in the stock driver.
    h.ok(Action::Start);
    h.ok(Action::Succeed { command: "true".into(), expect: Expect::default(), capture: None });
}
