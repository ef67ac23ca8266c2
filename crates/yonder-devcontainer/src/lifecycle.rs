//! Lifecycle commands: the three forms, run in the container (or on the
//! host for `initializeCommand`), stopping at the first failure.
//!
//! - a string runs through `/bin/sh -c`;
//! - an array runs directly, no shell;
//! - an object runs every entry in parallel; each entry's output is
//!   buffered and printed, prefixed with its name, when it finishes.

use crate::engine::Engine;
use crate::metadata::Origin;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// How much of a failed command's output the error repeats.
const TAIL_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(
        "{hook}{entry} from {origin} failed with {how}. Skipping any further user-provided commands.{}",
        if .tail.is_empty() { String::new() } else { format!("\nIts last output:\n{}", .tail) }
    )]
    Failed {
        hook: String,
        entry: String,
        origin: String,
        how: String,
        tail: String,
    },
    #[error("cannot run {hook} from {origin}: {source}")]
    Spawn {
        hook: String,
        origin: String,
        source: std::io::Error,
    },
}

/// An empty string, array or object means "no command".
pub fn is_empty_command(v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// The argv of a string or array command.
pub fn argv(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec!["/bin/sh".into(), "-c".into(), s.clone()]),
        Value::Array(a) => {
            let v: Vec<String> = a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect();
            (!v.is_empty()).then_some(v)
        }
        _ => None,
    }
}

/// Where commands run.
pub enum Place<'a> {
    /// On this machine, in `cwd` (initializeCommand).
    Host { cwd: &'a Path },
    /// In a container, as `user`, in `workdir`, with `env`.
    Container {
        engine: &'a Engine,
        id: &'a str,
        user: &'a str,
        workdir: &'a str,
        env: &'a [(String, String)],
        /// Shell code run after a command succeeds, in the same `exec`
        /// (writes the lifecycle markers without another round trip).
        after: Option<&'a str>,
    },
}

impl Place<'_> {
    fn command(&self, argv: &[String]) -> tokio::process::Command {
        match self {
            Place::Host { cwd } => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]).current_dir(cwd);
                c
            }
            Place::Container {
                engine,
                id,
                user,
                workdir,
                env,
                after,
            } => {
                let mut c = engine.command();
                c.args(["exec", "-u", user, "-w", workdir]);
                for (k, v) in env.iter() {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg(id);
                if let Some(after) = after {
                    // argv reaches "$@" unchanged: no quoting is involved.
                    let script =
                        format!("\"$@\"; rc=$?; if [ $rc -eq 0 ]; then {after}; fi; exit $rc");
                    c.args(["/bin/sh", "-c", &script, "sh"]);
                }
                c.args(argv);
                c
            }
        }
    }
}

fn tail(buf: &[u8]) -> String {
    let start = buf.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&buf[start..])
        .trim_end()
        .to_string()
}

/// Runs one argv; `prefix` set = buffer and print prefixed at the end.
async fn run_one(
    place: &Place<'_>,
    argv: &[String],
    prefix: Option<&str>,
) -> std::io::Result<(std::process::ExitStatus, Vec<u8>)> {
    let mut c = place.command(argv);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn()?;
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let live = prefix.is_none();
    let (a, b, status) = tokio::join!(collect(out, live), collect(err, live), child.wait());
    let mut all = a?;
    all.extend(b?);
    if let Some(p) = prefix {
        for line in String::from_utf8_lossy(&all).lines() {
            eprintln!("[{p}] {line}");
        }
    }
    Ok((status?, all))
}

/// Reads a stream to the end, echoing lines to stderr when `live`.
async fn collect(r: impl AsyncRead + Unpin, live: bool) -> std::io::Result<Vec<u8>> {
    let mut lines = BufReader::new(r);
    let mut all = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if lines.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if live {
            eprint!("{}", String::from_utf8_lossy(&line));
        }
        all.extend_from_slice(&line);
        if all.len() > 2 * TAIL_BYTES {
            all.drain(..all.len() - TAIL_BYTES);
        }
    }
    Ok(all)
}

fn how(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// Runs every command of one hook, in order; the first failure stops.
pub async fn run_hook(
    place: &Place<'_>,
    hook: &str,
    commands: &[Origin],
) -> Result<(), LifecycleError> {
    for Origin { command, origin } in commands {
        if is_empty_command(command) {
            continue;
        }
        let started = Instant::now();
        eprintln!("Running the {hook} from {origin}...");
        let spawn_err = |source| LifecycleError::Spawn {
            hook: hook.into(),
            origin: origin.clone(),
            source,
        };
        if let Some(obj) = command.as_object() {
            let mut runs = Vec::new();
            for (name, cmd) in obj {
                let Some(argv) = argv(cmd) else { continue };
                eprintln!("Running {name} of {hook} from {origin}...");
                runs.push(async move { (name.clone(), run_one(place, &argv, Some(name)).await) });
            }
            // Every entry runs to its end; then the first failure is reported.
            for (name, r) in futures_join_all(runs).await {
                let (status, out) = r.map_err(spawn_err)?;
                if !status.success() {
                    return Err(LifecycleError::Failed {
                        hook: hook.into(),
                        entry: format!(" ({name})"),
                        origin: origin.clone(),
                        how: how(&status),
                        tail: tail(&out),
                    });
                }
            }
        } else if let Some(argv) = argv(command) {
            let (status, out) = run_one(place, &argv, None).await.map_err(spawn_err)?;
            if !status.success() {
                return Err(LifecycleError::Failed {
                    hook: hook.into(),
                    entry: String::new(),
                    origin: origin.clone(),
                    how: how(&status),
                    tail: tail(&out),
                });
            }
        }
        eprintln!(
            "Finished the {hook} from {origin} in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Polls futures concurrently on the current task, keeping their order.
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::with_capacity(futs.len());
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("all ready")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn host_commands_in_each_form_and_the_first_failure_stops() {
        let d = tempfile::tempdir().unwrap();
        let place = Place::Host { cwd: d.path() };
        let o = |c: Value| Origin {
            command: c,
            origin: "devcontainer.json".into(),
        };
        run_hook(&place, "initializeCommand", &[o(json!("echo a > a.txt"))])
            .await
            .unwrap();
        // An array runs without a shell: the quotes reach the file name.
        run_hook(
            &place,
            "initializeCommand",
            &[o(json!(["touch", "b'q'.txt"]))],
        )
        .await
        .unwrap();
        run_hook(
            &place,
            "initializeCommand",
            &[o(
                json!({"one": "sleep 0.3; touch one", "two": ["touch", "two"]}),
            )],
        )
        .await
        .unwrap();
        for f in ["a.txt", "b'q'.txt", "one", "two"] {
            assert!(d.path().join(f).exists(), "{f}");
        }
        let e = run_hook(
            &place,
            "initializeCommand",
            &[o(json!("echo boom; exit 3")), o(json!("touch never"))],
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "initializeCommand from devcontainer.json failed with exit code 3. Skipping"
            ),
            "{e}"
        );
        assert!(e.to_string().contains("boom"), "{e}");
        assert!(!d.path().join("never").exists());
        let e = run_hook(
            &place,
            "initializeCommand",
            &[o(json!({"ok": "true", "bad": "exit 4"}))],
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("(bad)"), "{e}");
    }
}
