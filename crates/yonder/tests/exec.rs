//! Running programs: argv arrives intact, output is never lost, exit codes
//! and signals come back, and dropping the call kills the program.

mod common;

use bytes::Bytes;
use common::*;
use std::ffi::OsString;
use yonder_client::{ExecRequest, ProcessEvent};
use yonder_proto::pb::ErrorKind;

const AWKWARD_ARGS: [&str; 9] = [
    "two words",
    "",
    "'single'",
    "\"double\"",
    "line\nbreak",
    "$HOME `id` $(id)",
    "back\\slash",
    "*",
    " leading and trailing ",
];

/// The daemon outlives the shell that started it: each `yonder … local`
/// gives the programs it starts its own environment (a variable exported
/// since, an activated virtualenv's PATH), as each ssh session does.
#[test]
fn local_programs_get_the_environment_of_the_cli_that_asked() {
    let d = Daemon::start();
    let echo = |mark| session_mark(d.cli(), "local", mark);
    assert_eq!(echo(Some("first")), "[first]\n");
    assert_eq!(echo(Some("second")), "[second]\n");
    assert_eq!(echo(None), "[]\n", "nothing left from earlier clients");
}

#[test]
fn the_cli_passes_argv_exactly_and_propagates_exit_codes() {
    let d = Daemon::start();
    // printf '%s\0' prints each argument NUL-terminated: any re-splitting or
    // quoting damage shows up as a different byte string.
    let (code, out, err) = run(d
        .cli()
        .args(["exec", "local", "--", "printf", "%s\\0"])
        .args(AWKWARD_ARGS));
    assert_eq!(code, 0, "{err}");
    let got: Vec<&[u8]> = out.split(|b| *b == 0).collect();
    let mut want: Vec<&[u8]> = AWKWARD_ARGS.iter().map(|a| a.as_bytes()).collect();
    want.push(b"");
    assert_eq!(got, want);

    let (code, _, _) = run(d.cli().args(["exec", "local", "--", "sh", "-c", "exit 42"]));
    assert_eq!(code, 42);
    let (code, _, _) = run(d
        .cli()
        .args(["exec", "local", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(code, 128 + 15);
    let (code, _, err) = run(d
        .cli()
        .args(["exec", "local", "--", "no-such-program-here"]));
    assert_eq!(code, 127);
    assert!(err.contains("no-such-program-here"), "{err}");
}

#[test]
fn the_cli_sets_cwd_and_env_and_forwards_stdin() {
    let d = Daemon::start();
    let w = d.work();
    let (code, out, err) = run(d.cli().args(["exec", "local", "--cwd"]).arg(&w).args([
        "--env",
        "GREETING=hi there",
        "--",
        "sh",
        "-c",
        "pwd; echo \"$GREETING\"",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("{}\nhi there\n", w.display())
    );

    let (code, _, err) =
        run(d
            .cli()
            .args(["exec", "local", "--cwd", "/no/such/dir", "--", "true"]));
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/dir"), "{err}");

    use std::io::Write;
    let mut child = d
        .cli()
        .args(["exec", "local", "--", "tr", "a-z", "A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through the pipe\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"THROUGH THE PIPE\n");
}

#[tokio::test]
async fn the_library_keeps_argv_bytes_that_are_not_utf8() {
    use std::os::unix::ffi::OsStringExt;
    let d = Daemon::start();
    let c = d.client().await;
    let odd = OsString::from_vec(b"\xff\xfe-\x01".to_vec());
    let out = c
        .exec(ExecRequest::new("printf").args([OsString::from("%s"), odd]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out.stdout, b"\xff\xfe-\x01");
}

/// 100,000 lines on stdout and 100,000 on stderr, 20 times: every byte
/// arrives, in order, on the right stream.
#[tokio::test]
async fn no_output_is_lost() {
    let d = Daemon::start();
    let c = d.client().await;
    let want_out: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    let want_err: String = (1..=100_000).map(|i| format!("e{i}\n")).collect();
    for round in 0..20 {
        let req = ExecRequest::new("sh")
            .args(["-c", "seq 1 100000 & seq 1 100000 | sed s/^/e/ >&2; wait"]);
        let out = c.exec(req).await.unwrap().output().await.unwrap();
        assert!(out.status.success(), "round {round}: {:?}", out.status);
        assert!(
            out.stdout == want_out.as_bytes(),
            "round {round}: stdout differs ({} bytes)",
            out.stdout.len()
        );
        assert!(
            out.stderr == want_err.as_bytes(),
            "round {round}: stderr differs ({} bytes)",
            out.stderr.len()
        );
    }
}

#[tokio::test]
async fn stdin_signals_and_exit_status_through_the_library() {
    let d = Daemon::start();
    let c = d.client().await;
    let p = c.exec(ExecRequest::new("cat")).await.unwrap();
    let ctl = p.control();
    ctl.write_stdin(Bytes::from_static(b"echo me\n"))
        .await
        .unwrap();
    let out = p.output().await.unwrap();
    assert_eq!(out.stdout, b"echo me\n");

    let mut p = c.exec(ExecRequest::new("sleep").arg("100")).await.unwrap();
    p.control().signal(libc::SIGKILL).await.unwrap();
    let mut status = None;
    while let Some(ev) = p.next_event().await {
        if let ProcessEvent::Exit(s) = ev.unwrap() {
            status = Some(s);
        }
    }
    let status = status.unwrap();
    assert_eq!((status.code, status.signal), (None, Some(libc::SIGKILL)));
    assert_eq!(status.as_shell_code(), 137);

    let e = c
        .exec(ExecRequest::new("/no/such/program"))
        .await
        .unwrap_err();
    assert_names_the_missing_program(&e);
}

/// A program that reads no stdin while the client floods it still gets
/// its signal at once: the signal is its own call, not a message queued
/// behind megabytes of stdin (as a Ctrl-C must not be).
#[tokio::test]
async fn a_signal_overtakes_stdin_the_program_is_not_reading() {
    let d = Daemon::start();
    let c = d.client().await;
    let mut p = c.exec(ExecRequest::new("sleep").arg("100")).await.unwrap();
    let ctl = p.control();
    let flood = {
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            // 64 MiB at most: far beyond the pipe, the server's stream
            // window and the client's queue, so the writes block.
            for _ in 0..1024 {
                if ctl.write_stdin(chunk.clone()).await.is_err() {
                    break;
                }
            }
        })
    };
    // Until the flood is stuck: no write has gone through for a while.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(
        !flood.is_finished(),
        "64 MiB went into a program reading none"
    );
    tokio::time::timeout(DEADLINE, ctl.signal(libc::SIGTERM))
        .await
        .expect("the signal waited behind stdin")
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, async {
        while let Some(ev) = p.next_event().await {
            if let ProcessEvent::Exit(s) = ev.unwrap() {
                return Some(s);
            }
        }
        None
    })
    .await
    .expect("the program did not end after its signal")
    .expect("an exit status");
    assert_eq!((status.code, status.signal), (None, Some(libc::SIGTERM)));
    flood.abort();
    // A program that has ended takes signals quietly (nothing to reach),
    // and its pid is no longer signalled by the server.
    ctl.signal(libc::SIGTERM).await.unwrap();
}

#[tokio::test]
async fn dropping_a_running_program_kills_it() {
    let d = Daemon::start();
    let c = d.client().await;
    let pidfile = d.work().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let mut p = c
        .exec(ExecRequest::new("sh").args(["-c", &script]))
        .await
        .unwrap();
    let pid = read_pid(&pidfile).await;
    assert!(pid_alive(pid));
    // Read nothing more: just drop the call.
    let _ = &mut p;
    drop(p);
    eventually("the program is killed", || !pid_alive(pid)).await;
    // The connection is still good.
    assert!(c.info().await.is_ok());
}

/// A client on the daemon's machine gets the program's own pipes over the
/// fd socket: stdin in, stdout and stderr apart, signals, exit status, a
/// clear error for a missing program, and dropping it kills the program.
#[tokio::test]
async fn a_local_client_holds_the_programs_pipes_itself() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start();
    let plain = d.client().await;
    assert!(
        plain
            .exec_direct(&ExecRequest::new("true"))
            .await
            .unwrap()
            .is_none(),
        "without the fd socket: no direct path"
    );
    let fdpass = d.run_dir().join("fdpass.sock");
    let c = plain.with_fdpass(fdpass.clone());

    // 3 MiB through `cat` and back, stderr apart, exit code 7.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut p = c
        .exec_direct(&ExecRequest::new("sh").args(["-c", "cat; echo err >&2; exit 7"]))
        .await
        .unwrap()
        .expect("a direct program");
    let mut stdin = p.stdin.take().unwrap();
    let input = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&input).await.unwrap();
        // Dropping closes the program's stdin.
    });
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (a, b) = tokio::join!(
        p.stdout.read_to_end(&mut out),
        p.stderr.read_to_end(&mut err)
    );
    a.unwrap();
    b.unwrap();
    writer.await.unwrap();
    assert!(out == data, "stdout is stdin, byte for byte");
    assert_eq!(err, b"err\n");
    let status = p.wait().await.unwrap();
    assert_eq!((status.code, status.signal), (Some(7), None));
    assert!(
        d.log()
            .contains("started a program whose pipes a local client holds")
    );

    // A signal through the daemon.
    let mut p = c
        .exec_direct(&ExecRequest::new("sleep").arg("100"))
        .await
        .unwrap()
        .unwrap();
    p.control().signal(libc::SIGTERM).await.unwrap();
    let status = p.wait().await.unwrap();
    assert_eq!((status.code, status.signal), (None, Some(libc::SIGTERM)));

    // A missing program: the same typed error as `exec`.
    let e = c
        .exec_direct(&ExecRequest::new("/no/such/program"))
        .await
        .unwrap_err();
    assert_names_the_missing_program(&e);

    // Dropping it kills the program.
    let pidfile = d.work().join("direct-pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let p = c
        .exec_direct(&ExecRequest::new("sh").args(["-c", &script]))
        .await
        .unwrap()
        .unwrap();
    let pid = read_pid(&pidfile).await;
    assert_eq!(pid, p.pid, "the daemon reports the program's pid");
    assert!(pid_alive(pid));
    drop(p);
    eventually("the program is killed", || !pid_alive(pid)).await;

    // Hostile requests close their own connection only.
    for junk in [
        &b"X\xff\xff\xff\xff"[..],
        b"X\x00\x00\x00\x03\xff\xff\xff",
        b"X\x00\x00\x00\x00",
    ] {
        let mut raw = tokio::net::UnixStream::connect(&fdpass).await.unwrap();
        raw.write_all(junk).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            raw.read_to_end(&mut rest),
        )
        .await
        .unwrap();
        assert!(rest.is_empty() || rest[0] == b'N', "{junk:?}: {rest:?}");
    }
    let mut p = c
        .exec_direct(&ExecRequest::new("true"))
        .await
        .unwrap()
        .unwrap();
    assert!(p.wait().await.unwrap().success());
}

/// The pid a test script wrote to `path` (`echo $$ > path`), once written.
async fn read_pid(path: &std::path::Path) -> u32 {
    eventually("pid file", || {
        std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The typed error for `/no/such/program`: not found, naming it.
fn assert_names_the_missing_program(e: &yonder_client::RemoteError) {
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(
        e.path.as_deref(),
        Some(std::path::Path::new("/no/such/program"))
    );
}
