//! The WSL target shares the SSH bootstrap (probe, install, proxy) through a
//! different command channel. WSL itself exists only on Windows, so this
//! test puts a stand-in `wsl.exe` on the channel: it checks the arguments
//! yonder passes and runs the command here, as WSL would inside the distro.
//! Everything after the channel (upload, cksum, rename, proxy, daemon) is
//! the real thing.

mod common;

use common::*;

#[test]
fn the_wsl_bootstrap_runs_through_its_command_channel() {
    let dir = tempfile::Builder::new().prefix("yw").tempdir().unwrap();
    let fake = dir.path().join("wsl.exe");
    std::fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -d ] || exit 97\necho \"$2\" >> \"$(dirname \"$0\")/distros\"\nshift 2\n[ \"$1\" = -e ] || exit 98\nshift\nexec \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let install = dir.path().join("install");
    let remote_run = dir.path().join("remote-run");
    let cli = || {
        let mut c = std::process::Command::new(YONDER);
        c.env("YONDER_WSL", &fake)
            .env("YONDER_RUNTIME_DIR", dir.path().join("run"))
            .env("YONDER_SERVER_INSTALL_PATH", &install)
            .env("YONDER_REMOTE_RUNTIME_DIR", &remote_run);
        c
    };
    let (code, out, err) = run(cli().args([
        "exec",
        "wsl://Fake-Distro",
        "--",
        "sh",
        "-c",
        "echo via-wsl",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, b"via-wsl\n");
    let bin = install.join(env!("CARGO_PKG_VERSION")).join("yonder");
    assert_eq!(
        sha256_file(&bin),
        sha256_file(std::path::Path::new(YONDER)),
        "installed through the channel"
    );
    let distros = std::fs::read_to_string(dir.path().join("distros")).unwrap();
    assert!(
        distros.lines().all(|l| l == "Fake-Distro") && distros.lines().count() >= 3,
        "{distros}"
    );
    // Second time: nothing uploaded again, same daemon.
    let (code, out, err) = run(cli().args(["info", "wsl://Fake-Distro", "--json"]));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let pid = v["daemon_pid"].as_u64().unwrap() as i32;
    // SAFETY: the pid of the daemon this test started through the channel.
    unsafe { libc::kill(pid, libc::SIGTERM) };
}
