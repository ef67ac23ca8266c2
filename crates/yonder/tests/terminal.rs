//! Terminals that survive disconnects: real PTYs in the real daemon, driven
//! through the client library and through the CLI inside tmux.

mod common;

use common::*;
use std::time::{Duration, Instant};
use yonder_client::Client;
use yonder_client::terminal::{OpenTerminal, TerminalEvent, TerminalSession};

fn bash() -> OpenTerminal {
    OpenTerminal {
        program: Some("bash".into()),
        args: vec!["--norc".into(), "--noprofile".into()],
        rows: 24,
        cols: 80,
        ..Default::default()
    }
}

/// Reads a session until `pred` holds for everything read so far; returns
/// the output and the offset just past it.
async fn read_until(
    s: &mut TerminalSession,
    start: u64,
    pred: impl Fn(&str) -> bool,
) -> (String, u64) {
    let mut out = Vec::new();
    let mut next = start;
    let deadline = Instant::now() + DEADLINE;
    while !pred(&String::from_utf8_lossy(&out)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = tokio::time::timeout(left, s.next())
            .await
            .unwrap_or_else(|_| {
                panic!("timed out; got so far: {:?}", String::from_utf8_lossy(&out))
            })
            .expect("stream ended")
            .expect("terminal error");
        match ev {
            TerminalEvent::Data { offset, data } => {
                assert_eq!(offset, next, "output must be contiguous: no gap, no repeat");
                next += data.len() as u64;
                out.extend_from_slice(&data);
            }
            TerminalEvent::Lost(n) => panic!("lost {n} bytes"),
            TerminalEvent::Exit(st) => panic!(
                "exited early: {st:?}; output {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), next)
}

async fn wait_exit(s: &mut TerminalSession) -> yonder_client::ExitStatus {
    loop {
        match tokio::time::timeout(DEADLINE, s.next())
            .await
            .expect("exit in time")
        {
            Some(Ok(TerminalEvent::Exit(st))) => return st,
            Some(Ok(_)) => continue,
            other => panic!("no exit: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_command_keeps_running_across_a_dropped_client_and_the_seam_is_exact() {
    let d = Daemon::start();
    let c = d.client().await;
    let info = c.open_terminal(bash()).await.unwrap();
    let mut s = c.attach_terminal(&info.id, None).await.unwrap();
    // A loop that prints tick1..tick60 over about 3 seconds.
    s.writer()
        .write("for i in $(seq 1 60); do echo tick$i; sleep 0.05; done; echo DO\"\"NE\n")
        .await
        .unwrap();
    let (_, _) = read_until(&mut s, 0, |o| o.contains("tick3\r\n")).await;
    // The client goes away entirely (its connection too) mid-loop.
    drop(s);
    drop(c);

    let c = d.client().await;
    let list = c.list_terminals().await.unwrap();
    assert_eq!(list.len(), 1);
    // Re-attach from the start: the replay then live output, until DONE.
    let mut s = c.attach_terminal(&info.id, None).await.unwrap();
    let (all, end) = read_until(&mut s, 0, |o| o.contains("DONE\r\n")).await;
    for i in 1..=60 {
        assert_eq!(
            all.matches(&format!("tick{i}\r\n")).count(),
            1,
            "tick{i} must appear exactly once:\n{all}"
        );
    }
    // Resuming from a known offset sends exactly the rest.
    s.writer().write("echo af\"\"ter\n").await.unwrap();
    let (more, _) = read_until(&mut s, end, |o| o.contains("after\r\n")).await;
    assert!(!more.contains("tick"), "{more}");
    drop(s);
    let mut s = c.attach_terminal(&info.id, Some(end)).await.unwrap();
    let (resumed, _) = read_until(&mut s, end, |o| o.contains("after\r\n")).await;
    // Both start at the same offset; compare up to the marker (what follows
    // it, the next prompt, may or may not have arrived yet in either).
    let upto = |t: &str| t[..t.find("after\r\n").unwrap() + 7].to_string();
    assert_eq!(upto(&resumed), upto(&more));

    s.writer().write("exit 7\n").await.unwrap();
    let st = wait_exit(&mut s).await;
    assert_eq!(st.code, Some(7));
    let start = Instant::now();
    while !c.list_terminals().await.unwrap().is_empty() {
        assert!(start.elapsed() < DEADLINE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn resizes_reach_the_program() {
    let d = Daemon::start();
    let c = d.client().await;
    let info = c
        .open_terminal(OpenTerminal {
            rows: 30,
            cols: 100,
            ..bash()
        })
        .await
        .unwrap();
    let mut s = c.attach_terminal(&info.id, None).await.unwrap();
    s.writer().write("stty size\n").await.unwrap();
    let (_, off) = read_until(&mut s, 0, |o| o.contains("30 100")).await;
    s.writer().resize(40, 123).await.unwrap();
    s.writer().write("stty size\n").await.unwrap();
    read_until(&mut s, off, |o| o.contains("40 123")).await;
    assert_eq!(c.list_terminals().await.unwrap()[0].size.unwrap().cols, 123);
}

#[tokio::test]
async fn two_clients_share_one_terminal() {
    let d = Daemon::start();
    let (a, b) = (d.client().await, d.client().await);
    let info = a.open_terminal(bash()).await.unwrap();
    let mut sa = a.attach_terminal(&info.id, None).await.unwrap();
    let mut sb = b.attach_terminal(&info.id, None).await.unwrap();
    assert_eq!(b.list_terminals().await.unwrap()[0].attached, 2);
    sa.writer().write("echo from-$((40+1))-a\n").await.unwrap();
    let (_, oa) = read_until(&mut sa, 0, |o| o.contains("from-41-a")).await;
    let (_, ob) = read_until(&mut sb, 0, |o| o.contains("from-41-a")).await;
    sb.writer().write("echo from-$((40+2))-b\n").await.unwrap();
    read_until(&mut sa, oa, |o| o.contains("from-42-b")).await;
    read_until(&mut sb, ob, |o| o.contains("from-42-b")).await;
}

#[tokio::test]
async fn kill_ends_a_terminal_and_unknown_ids_are_not_found() {
    let d = Daemon::start();
    let c = d.client().await;
    // Killed right after a command, while bash goes back into readline: a
    // SIGHUP taken just before readline blocks is only seen at the next
    // signal, so the server repeats it. Several rounds to meet that window.
    for round in 0..6 {
        let info = c.open_terminal(bash()).await.unwrap();
        let mut s = c.attach_terminal(&info.id, None).await.unwrap();
        s.writer().write("echo up-$((1+1))\n").await.unwrap();
        read_until(&mut s, 0, |o| o.contains("up-2")).await;
        c.kill_terminal(&info.id, 0).await.unwrap();
        let st = wait_exit(&mut s).await;
        assert_eq!(st.signal, Some(libc::SIGHUP), "round {round}: {st:?}");
    }
    // A program that ignores SIGHUP is killed after the grace.
    let stubborn = OpenTerminal {
        program: Some("sh".into()),
        args: vec!["-c".into(), "trap '' HUP; echo armed; sleep 100".into()],
        rows: 24,
        cols: 80,
        ..Default::default()
    };
    let info = c.open_terminal(stubborn).await.unwrap();
    let mut s = c.attach_terminal(&info.id, None).await.unwrap();
    read_until(&mut s, 0, |o| o.contains("armed")).await;
    c.kill_terminal(&info.id, 0).await.unwrap();
    let st = wait_exit(&mut s).await;
    assert_eq!(st.signal, Some(libc::SIGKILL), "{st:?}");
    let e = c.attach_terminal("nope", None).await.unwrap_err();
    assert_eq!(e.kind, yonder_proto::pb::ErrorKind::NotFound);
    let e = c
        .open_terminal(OpenTerminal {
            cwd: Some("/no/such".into()),
            ..bash()
        })
        .await
        .unwrap_err();
    assert_eq!(e.path.as_deref(), Some(std::path::Path::new("/no/such")));
}

#[tokio::test]
async fn the_login_shell_is_the_default() {
    let d = Daemon::start();
    let c = d.client().await;
    let info = c
        .open_terminal(OpenTerminal {
            rows: 24,
            cols: 80,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut s = c.attach_terminal(&info.id, None).await.unwrap();
    // `$0` of a login shell starts with '-'.
    s.writer().write("echo \"zero=$0\"\n").await.unwrap();
    read_until(&mut s, 0, |o| o.contains("zero=-")).await;
}

#[tokio::test]
async fn a_detached_terminal_ends_after_the_grace_time_and_keeps_the_daemon_alive_until_then() {
    let mut d = Daemon::start_with(&["--terminal-grace", "2", "--idle-timeout", "1"], None);
    {
        let c = d.client().await;
        let info = c.open_terminal(bash()).await.unwrap();
        let s = c.attach_terminal(&info.id, None).await.unwrap();
        // Attached for longer than the grace: nothing happens.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(c.list_terminals().await.unwrap().len(), 1);
        drop(s);
    }
    // No client now, but a live terminal: the daemon must not idle out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(d.alive(), "the daemon idled out with a live terminal");
    // After the grace the terminal is hung up, and then the daemon idles out.
    eventually("daemon exits after the terminal ended", || !d.alive()).await;
}

fn tmux(args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux");
    assert!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Types `line` and Enter into tmux `session`.
fn type_line(sock: &str, session: &str, line: &str) {
    tmux(&["-S", sock, "send-keys", "-t", session, line, "Enter"]);
}

async fn pane_shows(socket: &str, session: &str, needle: &str) -> String {
    let start = Instant::now();
    loop {
        let text = tmux(&["-S", socket, "capture-pane", "-p", "-t", session]);
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "pane never showed {needle:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the yonder client running in tmux `session` (not the remote
/// shell) and returns the id of the terminal it had open, once the daemon
/// lists it as detached.
async fn kill_the_client_in(d: &Daemon, sock: &str, session: &str) -> String {
    let pid = tmux(&[
        "-S",
        sock,
        "display-message",
        "-p",
        "-t",
        session,
        "#{pane_pid}",
    ]);
    // The pane runs `sh -c …`; its child is our yonder client (via env exec).
    let st = std::process::Command::new("pkill")
        .args(["-KILL", "-P", pid.trim(), "-f", "shell local"])
        .status()
        .unwrap();
    assert!(st.success(), "no yonder client under the pane");
    let c = d.client().await;
    let start = Instant::now();
    loop {
        let list = c.list_terminals().await.unwrap();
        assert_eq!(list.len(), 1, "the terminal survives its client");
        if list[0].attached == 0 {
            return list[0].id.clone();
        }
        assert!(start.elapsed() < DEADLINE);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The user's story through the real CLI on a real terminal (tmux): open a
/// shell, start a long command, the client is killed, re-attach, see the
/// earlier output and the command still running; the window size arrives.
#[tokio::test]
async fn the_cli_shell_survives_a_killed_client() {
    let d = Daemon::start();
    let sock = d.dir.path().join("tmux.sock").display().to_string();
    let env = format!("YONDER_RUNTIME_DIR={}", d.run_dir().display());
    // The pane outlives the client, so a failure shows its message.
    let shell = format!(
        "env {env} {YONDER} shell local -- bash --norc --noprofile; echo shell-exit=$?; sleep 60"
    );
    tmux(&[
        "-S",
        &sock,
        "new-session",
        "-d",
        "-s",
        "one",
        "-x",
        "90",
        "-y",
        "25",
        &shell,
    ]);
    type_line(&sock, "one", "stty size; echo ready-$((2*21))");
    pane_shows(&sock, "one", "ready-42").await;
    pane_shows(&sock, "one", "25 90").await;
    type_line(
        &sock,
        "one",
        "for i in $(seq 1 40); do echo step$i; sleep 0.1; done",
    );
    pane_shows(&sock, "one", "step2").await;
    // Kill the yonder client process itself (not the remote shell).
    let id = kill_the_client_in(&d, &sock, "one").await;
    let attach =
        format!("env {env} {YONDER} terminals local attach {id}; echo client-exit=$?; sleep 30");
    tmux(&[
        "-S",
        &sock,
        "new-session",
        "-d",
        "-s",
        "two",
        "-x",
        "100",
        "-y",
        "50",
        &attach,
    ]);
    let text = pane_shows(&sock, "two", "step40").await;
    assert!(
        text.contains("ready-42"),
        "earlier output replayed:\n{text}"
    );
    type_line(&sock, "two", "stty size; exit 5");
    let text = pane_shows(&sock, "two", "client-exit=5").await;
    assert!(
        text.contains("50 100"),
        "the new window size reached the shell:\n{text}"
    );
    let _ = std::process::Command::new("tmux")
        .args(["-S", &sock, "kill-server"])
        .status();
    // The exit reaches the client before the registry forgets the terminal.
    let c = Client::connect_unix(&d.socket()).await.unwrap();
    let start = std::time::Instant::now();
    while !c.list_terminals().await.unwrap().is_empty() {
        assert!(
            start.elapsed() < DEADLINE,
            "the ended terminal stays listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Agent forwarding across a reconnect: the terminal's `SSH_AUTH_SOCK`
/// follows the session that attaches, so after the client is killed and a
/// new session (with an agent of its own) re-attaches, `ssh-add -l` in the
/// same shell lists the new session's key. The link goes with the terminal.
#[tokio::test]
async fn the_agent_socket_follows_the_session_that_attaches() {
    let d = Daemon::start();
    let (_a, a_sock) = agent_with_key(d.dir.path(), "key-a");
    let (_b, b_sock) = agent_with_key(d.dir.path(), "key-b");
    let sock = d.dir.path().join("tmux.sock").display().to_string();
    let env = format!("YONDER_RUNTIME_DIR={}", d.run_dir().display());
    let shell = format!(
        "env {env} SSH_AUTH_SOCK={} {YONDER} shell local -- bash --norc --noprofile; sleep 60",
        a_sock.display()
    );
    tmux(&["-S", &sock, "new-session", "-d", "-s", "one", &shell]);
    let show = |tag: &str| format!("ssh-add -l | grep -o 'key-.' | sed 's/^/{tag}=/'");
    type_line(&sock, "one", &show("first"));
    pane_shows(&sock, "one", "first=key-a").await;
    let id = kill_the_client_in(&d, &sock, "one").await;
    let link = d.run_dir().join(format!("agent-{id}.sock"));
    assert_eq!(std::fs::read_link(&link).unwrap(), a_sock);
    let attach = format!(
        "env {env} SSH_AUTH_SOCK={} {YONDER} terminals local attach {id}; echo client-exit=$?; sleep 30",
        b_sock.display()
    );
    tmux(&["-S", &sock, "new-session", "-d", "-s", "two", &attach]);
    pane_shows(&sock, "two", "first=key-a").await;
    type_line(&sock, "two", &show("second"));
    let text = pane_shows(&sock, "two", "second=key-b").await;
    assert!(!text.contains("second=key-a"), "{text}");
    type_line(&sock, "two", "exit 3");
    pane_shows(&sock, "two", "client-exit=3").await;
    let _ = std::process::Command::new("tmux")
        .args(["-S", &sock, "kill-server"])
        .status();
    eventually("the agent link goes with its terminal", || !link.exists()).await;
}
