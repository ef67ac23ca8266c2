//! The CLI as a user meets it: file commands, trees, JSON output, exit codes.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn ok(cmd: &mut std::process::Command) -> Vec<u8> {
    let (code, out, err) = run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {err}");
    out
}

#[test]
fn file_commands_work_and_fail_with_clear_errors() {
    let d = Daemon::start();
    let w = d.work();
    let fs = |args: &[&str]| {
        let mut c = d.cli();
        c.current_dir(&w).args(["fs", "local"]).args(args);
        c
    };
    ok(&mut fs(&["mkdir", "-p", "a/b/c"]));
    std::fs::write(w.join("a/hello.txt"), "hello\n").unwrap();
    assert_eq!(ok(&mut fs(&["cat", "a/hello.txt"])), b"hello\n");
    ok(&mut fs(&["cp", "a/hello.txt", "a/b"]));
    assert_eq!(std::fs::read(w.join("a/b/hello.txt")).unwrap(), b"hello\n");
    ok(&mut fs(&["mv", "a/b/hello.txt", "a/b/c/moved.txt"]));
    assert!(w.join("a/b/c/moved.txt").exists());
    ok(&mut fs(&["chmod", "600", "a/b/c/moved.txt"]));
    assert_eq!(
        std::fs::metadata(w.join("a/b/c/moved.txt")).unwrap().mode() & 0o777,
        0o600
    );
    ok(&mut fs(&["ln", "-s", "c/moved.txt", "a/b/link"]));
    assert_eq!(ok(&mut fs(&["readlink", "a/b/link"])), b"c/moved.txt\n");
    let real = ok(&mut fs(&["realpath", "a/b/link"]));
    assert_eq!(
        String::from_utf8(real).unwrap().trim(),
        std::fs::canonicalize(w.join("a/b/c/moved.txt"))
            .unwrap()
            .to_str()
            .unwrap()
    );

    let listing = String::from_utf8(ok(&mut fs(&["ls", "a/b"]))).unwrap();
    assert_eq!(listing, "c\nlink\n");
    let long = String::from_utf8(ok(&mut fs(&["ls", "-l", "a/b"]))).unwrap();
    assert!(
        long.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("link -> c/moved.txt")),
        "{long}"
    );

    let v: serde_json::Value =
        serde_json::from_slice(&ok(&mut fs(&["ls", "--json", "a"]))).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "hello.txt"]);
    assert_eq!(v[1]["size"], 6);
    let st: serde_json::Value =
        serde_json::from_slice(&ok(&mut fs(&["stat", "--json", "a/b/link"]))).unwrap();
    assert_eq!(st["type"], "symlink");
    assert_eq!(st["symlink_target"], "c/moved.txt");
    assert_eq!(st["symlink_target_type"], "file");

    // Errors: exit 1 and a message that names the path.
    let (code, _, err) = run(&mut fs(&["cat", "missing.txt"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("not found") && err.contains("missing.txt"),
        "{err}"
    );
    let (code, _, err) = run(&mut fs(&["rm", "a"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("directory not empty") && err.contains("-r"),
        "{err}"
    );
    let (code, _, err) = run(&mut fs(&["mkdir", "a"]));
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    ok(&mut fs(&["rm", "-f", "does-not-exist"]));
    ok(&mut fs(&["rm", "-r", "a"]));
    assert!(!w.join("a").exists());
}

#[test]
fn put_and_get_copy_whole_trees_with_modes_and_links() {
    let d = Daemon::start();
    let w = d.work();
    let src = w.join("src");
    std::fs::create_dir_all(src.join("deep/er")).unwrap();
    for i in 0..300 {
        std::fs::write(
            src.join("deep").join(format!("f{i}")),
            format!("file {i}\n"),
        )
        .unwrap();
    }
    std::fs::write(src.join("deep/er/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("deep/er/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(src.join("empty"), "").unwrap();
    std::os::unix::fs::symlink("deep/f1", src.join("link")).unwrap();
    std::fs::set_permissions(src.join("deep/er"), std::fs::Permissions::from_mode(0o750)).unwrap();

    ok(d.cli()
        .args(["fs", "local", "put"])
        .arg(&src)
        .arg(w.join("up")));
    ok(d.cli()
        .args(["fs", "local", "get"])
        .arg(w.join("up"))
        .arg(w.join("down")));
    for root in [w.join("up"), w.join("down")] {
        let diff = std::process::Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(&src)
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{}",
            String::from_utf8_lossy(&diff.stdout)
        );
        assert_eq!(
            std::fs::metadata(root.join("deep/er/run.sh"))
                .unwrap()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            std::fs::metadata(root.join("deep/er")).unwrap().mode() & 0o777,
            0o750
        );
        assert_eq!(
            std::fs::read_link(root.join("link")).unwrap(),
            std::path::Path::new("deep/f1")
        );
    }
    // Into an existing directory: lands under its own name, like cp.
    ok(d.cli()
        .args(["fs", "local", "put"])
        .arg(src.join("empty"))
        .arg(w.join("up/deep")));
    assert!(w.join("up/deep/empty").is_file());
    // stdin and stdout
    let mut child = d
        .cli()
        .args(["fs", "local", "put", "-"])
        .arg(w.join("from-stdin"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped in").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        ok(d.cli()
            .args(["fs", "local", "get"])
            .arg(w.join("from-stdin"))
            .arg("-")),
        b"piped in"
    );
}

#[test]
fn exit_codes_tell_usage_unreachable_and_failure_apart() {
    let d = Daemon::start();
    let (code, _, _) = run(d.cli().args(["fs"]));
    assert_eq!(code, 2, "usage error");
    let (code, _, err) = run(d.cli().args(["info", "-oProxyCommand=x"]));
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(d.cli().args(["info", "ftp://x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown scheme"), "{err}");
    for t in ["ssh://me@no-such-host.invalid:2222", "no-such-host.invalid"] {
        let (code, _, err) = run(d.cli().args(["info", t]));
        assert_eq!(code, 255, "{t}: {err}");
        assert!(err.contains("could not be resolved"), "{err}");
    }
    let (code, _, err) = run(d
        .cli()
        .args(["info", "wsl://Debian"])
        .env("YONDER_WSL", "/no/wsl.exe"));
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("/no/wsl.exe") && err.contains("Windows"),
        "{err}"
    );
    // Container targets that do not exist say so (and how to make them).
    let (code, _, err) = run(d
        .cli()
        .env(
            "CONTAINERS_CONF",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containers.conf"),
        )
        .args(["info", "container://yonder-no-such-container"]));
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("no container named"), "{err}");
    let (code, _, err) = run(d
        .cli()
        .current_dir(d.work())
        .args(["info", "devcontainer:."]));
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("Dev container config") && err.contains("not found"),
        "{err}"
    );
    // A runtime directory that cannot exist: the target is unreachable.
    let blocker = d.work().join("file");
    std::fs::write(&blocker, "").unwrap();
    let (code, _, err) = run(std::process::Command::new(YONDER)
        .env("YONDER_RUNTIME_DIR", blocker.join("run"))
        .args(["info", "local"]));
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("cannot reach local") && err.contains("runtime directory"),
        "{err}"
    );
    let (code, _, _) = run(d
        .cli()
        .args(["fs", "local", "stat", "/definitely/not/here"]));
    assert_eq!(code, 1);
}

#[test]
fn help_hides_the_server_and_completions_are_generated() {
    let (code, out, _) = run(std::process::Command::new(YONDER).arg("--help"));
    assert_eq!(code, 0);
    let help = String::from_utf8(out).unwrap();
    assert!(
        help.contains("exec") && help.contains("Exit codes"),
        "{help}"
    );
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("server ")),
        "{help}"
    );
    let (code, out, _) = run(std::process::Command::new(YONDER).args(["completions", "bash"]));
    assert_eq!(code, 0);
    assert!(String::from_utf8(out).unwrap().contains("_yonder"));
    let (code, out, _) = run(std::process::Command::new(YONDER).args(["server", "version"]));
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "yonder {} protocol {}\n",
            env!("CARGO_PKG_VERSION"),
            yonder_proto::PROTOCOL_VERSION
        )
    );
}
