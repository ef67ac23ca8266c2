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

/// `yonder server bulk` (the far end of the bulk channel) on its own, as
/// ssh would start it: one request on stdin, the greeting and reply on
/// stdout. A good read and write, then what a broken or hostile client can
/// send: each gets a typed error, the destination is never touched and no
/// temp file stays behind.
#[test]
fn the_bulk_server_serves_one_file_and_refuses_bad_requests_cleanly() {
    use prost::Message;
    use std::io::Write;
    use yonder_proto::bulk::MAGIC;
    use yonder_proto::pb;
    let dir = tempfile::tempdir().unwrap();
    let bulk = |input: &[u8]| -> (i32, Vec<u8>, String) {
        let mut c = std::process::Command::new(YONDER)
            .args(["server", "bulk"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The server may answer and exit before reading everything.
        let _ = c.stdin.take().unwrap().write_all(input);
        let out = c.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let framed = |m: &pb::BulkRequest| {
        let body = m.encode_to_vec();
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend(body);
        v
    };
    // The greeting, then one reply; what follows it.
    let reply = |out: &[u8]| -> (pb::BulkReply, Vec<u8>) {
        assert!(out.starts_with(MAGIC), "{:?}", String::from_utf8_lossy(out));
        let rest = &out[MAGIC.len()..];
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let r = pb::BulkReply::decode(&rest[4..4 + len]).unwrap();
        (r, rest[4 + len..].to_vec())
    };
    let path = |p: &std::path::Path| bytes::Bytes::from(p.as_os_str().as_encoded_bytes().to_vec());
    let dest = dir.path().join("dest.bin");
    let data: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();

    // A write of 3 MiB, then a read of it back.
    let mut input = framed(&pb::BulkRequest {
        path: path(&dest),
        write: true,
        size: data.len() as u64,
        mode: Some(0o600),
        offset: 0,
    });
    input.extend_from_slice(&data);
    let (code, out, err) = bulk(&input);
    assert_eq!(code, 0, "{err}");
    let (r, rest) = reply(&out);
    assert!(r.error.is_none(), "{r:?}");
    assert_eq!(r.metadata.unwrap().size, data.len() as u64);
    assert!(rest.is_empty());
    assert!(std::fs::read(&dest).unwrap() == data);
    assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o600);
    let (code, out, err) = bulk(&framed(&pb::BulkRequest {
        path: path(&dest),
        ..Default::default()
    }));
    assert_eq!(code, 0, "{err}");
    let (r, rest) = reply(&out);
    assert_eq!(r.metadata.unwrap().size, data.len() as u64);
    assert!(rest == data, "the file's bytes follow the reply exactly");
    // A resumed read: the whole file's metadata, then the bytes from the offset.
    let (code, out, err) = bulk(&framed(&pb::BulkRequest {
        path: path(&dest),
        offset: 1_000_000,
        ..Default::default()
    }));
    assert_eq!(code, 0, "{err}");
    let (r, rest) = reply(&out);
    assert_eq!(r.metadata.unwrap().size, data.len() as u64);
    assert!(rest == data[1_000_000..], "the tail from the offset");

    let untouched = |what: &str| {
        assert!(
            std::fs::read(&dest).unwrap() == data,
            "{what}: destination changed"
        );
        let temps = yonder_temps(dir.path());
        assert!(temps.is_empty(), "{what}: temp files left: {temps:?}");
    };
    let refused = |input: &[u8], kind: pb::ErrorKind, words: &str| {
        let (code, out, err) = bulk(input);
        assert_eq!(code, 1, "{words}: {err}");
        let (r, _) = reply(&out);
        let e = r
            .error
            .clone()
            .unwrap_or_else(|| panic!("{words}: no error in {r:?}"));
        assert_eq!(e.kind(), kind, "{e:?}");
        assert!(e.message.contains(words), "{e:?}");
    };

    // An upload cut short: the announced size never arrives.
    let mut short = framed(&pb::BulkRequest {
        path: path(&dest),
        write: true,
        size: data.len() as u64,
        mode: None,
        offset: 0,
    });
    short.extend_from_slice(&data[..1000]);
    refused(&short, pb::ErrorKind::Cancelled, "the file was not changed");
    untouched("a short upload");
    // Garbage, a header announcing 4 GiB, a request cut inside its body.
    refused(
        b"GET / HTTP/1.1\r\n\r\n",
        pb::ErrorKind::InvalidArgument,
        "no valid request",
    );
    refused(
        &[0xff, 0xff, 0xff, 0xff],
        pb::ErrorKind::InvalidArgument,
        "limit",
    );
    refused(
        &[0, 0, 0, 9, 1, 2],
        pb::ErrorKind::InvalidArgument,
        "no valid request",
    );
    untouched("bad requests");
    // Reads of what is not a regular file, or not there.
    refused(
        &framed(&pb::BulkRequest {
            path: path(dir.path()),
            ..Default::default()
        }),
        pb::ErrorKind::InvalidArgument,
        "not a regular file",
    );
    refused(
        &framed(&pb::BulkRequest {
            path: path(&dir.path().join("missing")),
            ..Default::default()
        }),
        pb::ErrorKind::NotFound,
        "",
    );
    refused(
        &framed(&pb::BulkRequest {
            path: path(&dest),
            offset: data.len() as u64 + 1,
            ..Default::default()
        }),
        pb::ErrorKind::InvalidArgument,
        "past the end",
    );
    // A write over a directory, and a path with a NUL byte.
    refused(
        &framed(&pb::BulkRequest {
            path: path(dir.path()),
            write: true,
            size: 0,
            mode: None,
            offset: 0,
        }),
        pb::ErrorKind::IsADirectory,
        "directory",
    );
    refused(
        &framed(&pb::BulkRequest {
            path: bytes::Bytes::from_static(b"/tmp/a\0b"),
            ..Default::default()
        }),
        pb::ErrorKind::InvalidArgument,
        "NUL",
    );
    untouched("refused requests");
}
