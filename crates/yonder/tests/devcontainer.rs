//! Dev containers against real Podman: `yonder up` from devcontainer.json,
//! the lifecycle, variables, reuse and change detection, and every yonder
//! command inside the container through `devcontainer:FOLDER`.
//!
//! The base image `localhost/yonder-test-base:bookworm-1` is a debootstrap'd
//! Debian that `scripts/setup` imports (no registry is reachable here).

mod common;

use common::devcontainer::{BASE, Project, containers_conf, podman};
use common::sshd::free_port;
use common::tmux::Tmux;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// The CLI's exit code, stdout and stderr.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let (code, out, err) = common::run(cmd);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

#[test]
fn up_runs_the_lifecycle_and_every_command_works_inside() {
    let p = Project::new(&format!(
        r#"{{
  // JSONC: comments and trailing commas
  "image": "{BASE}",
  "containerEnv": {{"GREETING": "hi from ${{localWorkspaceFolderBasename}}", "ID": "${{devcontainerId}}"}},
  "remoteEnv": {{"MYPATH": "${{containerEnv:PATH}}:/extra", "FROM_HOST": "${{localEnv:YONDER_TEST_VAR:unset}}"}},
  "initializeCommand": "echo init > initialized.txt",
  "onCreateCommand": "echo oncreate >> /tmp/log",
  "updateContentCommand": ["sh", "-c", "echo update >> /tmp/log"],
  "postCreateCommand": {{"a": "sleep 0.5; echo a-done >> /tmp/log", "b": ["sh", "-c", "echo b-done >> /tmp/log"]}},
  "postStartCommand": "echo start >> /tmp/log",
  "postAttachCommand": "echo attach >> /tmp/log",
}}"#
    ));
    p.write("src/main.rs", "fn main() { println!(\"needle\"); }\n");
    let v = p.up_ok(&[]);
    let name = p.path().file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(v["remoteUser"], "root");
    assert_eq!(v["remoteWorkspaceFolder"], format!("/workspaces/{name}"));
    assert_eq!(v["containerId"].as_str().unwrap().len(), 64, "{v}");
    // initializeCommand ran on the host, in the project folder.
    assert_eq!(
        std::fs::read_to_string(p.dir.path().join("initialized.txt")).unwrap(),
        "init\n"
    );
    // Every hook once, in order; the parallel pair both finished.
    let log = p.sh("cat /tmp/log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[..2], ["oncreate", "update"], "{log}");
    let mut pair = lines[2..4].to_vec();
    pair.sort();
    assert_eq!(pair, ["a-done", "b-done"], "{log}");
    assert_eq!(lines[4..], ["start", "attach"], "{log}");
    // Variables at each phase, and remoteEnv reaching yonder's processes.
    let env = p.sh("echo \"$GREETING|$MYPATH|${#ID}\"");
    assert_eq!(
        env.trim(),
        format!(
            "hi from {name}|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/extra|52"
        )
    );
    // The workspace is bind-mounted: fs, search and exec see the project.
    let ws = format!("/workspaces/{name}");
    let (code, out, err) =
        run(p
            .yonder()
            .args(["fs", &p.target(), "cat", &format!("{ws}/src/main.rs")]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("needle"));
    let (code, out, err) = run(p.yonder().args(["search", &p.target(), "needle", &ws]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("src/main.rs:1:"), "{out}");
    // A file written inside appears on the host (the same bind mount).
    let (code, _, err) =
        run(p
            .yonder()
            .args(["fs", &p.target(), "mkdir", &format!("{ws}/made-inside")]));
    assert_eq!(code, 0, "{err}");
    assert!(p.dir.path().join("made-inside").is_dir());

    // The server keeps its sockets in a folder shared with the host, so
    // connections after the first skip `podman exec`: the container's
    // daemon logs them as unix-socket connections, its log readable here.
    let run_dir = p.shared_root_run_dir();
    assert!(
        run_dir.join("daemon.sock").exists(),
        "{}",
        run_dir.display()
    );
    let (code, out, err) = run(p
        .yonder()
        .args(["exec", &p.target(), "--", "echo", "direct"]));
    assert_eq!((code, out.as_str()), (0, "direct\n"), "{err}");
    let log = std::fs::read_to_string(run_dir.join("daemon.log")).unwrap();
    assert!(log.contains("kind=\"unix\""), "{log}");

    // Re-up of the running container: the same container, only
    // postAttachCommand runs again.
    let v2 = p.up_ok(&[]);
    assert_eq!(v2["containerId"], v["containerId"]);
    assert_eq!(p.sh("grep -c attach /tmp/log").trim(), "2");
    assert_eq!(p.sh("grep -c oncreate /tmp/log").trim(), "1");
    // After a stop, up restarts it: postStart and postAttach again, the
    // once-per-container hooks not.
    let (code, _, err) = run(p
        .yonder()
        .args(["stop", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
    let v3 = p.up_ok(&[]);
    assert_eq!(v3["containerId"], v["containerId"]);
    let log = p.sh("cat /tmp/log");
    assert_eq!(log.matches("oncreate").count(), 1, "{log}");
    assert_eq!(log.matches("start").count(), 2, "{log}");
    assert_eq!(log.matches("attach").count(), 3, "{log}");

    // ps lists it; down removes it.
    let (code, out, _) = run(p.yonder().args(["ps", "--json"]));
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["containerId"] == v["containerId"]
                && c["folder"] == p.path().display().to_string()),
        "{list}"
    );
    let (code, _, err) = run(p
        .yonder()
        .args(["down", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
    let shared = run_dir.parent().unwrap();
    assert!(!shared.exists(), "down removes the shared folder");
    let (code, _, err) = run(p.yonder().args(["exec", &p.target(), "--", "true"]));
    assert_eq!(code, 255);
    assert!(err.contains("yonder up"), "{err}");
}

/// The host folders shared with containers: one left by a container removed
/// with `podman rm` (not `yonder down`) is swept by the next `up` once it
/// is old; a young one, one in use, and one without yonder's engine marker
/// stay.
#[test]
fn up_sweeps_the_folder_of_a_container_removed_behind_its_back() {
    let p = Project::base();
    let dc = p.state.path().join("dc");
    let folders = || -> std::collections::BTreeSet<std::path::PathBuf> {
        dc.read_dir().unwrap().flatten().map(|e| e.path()).collect()
    };
    let v = p.up_ok(&[]);
    let first = folders();
    assert_eq!(first.len(), 1, "{first:?}");
    let gone = first.iter().next().unwrap().clone();
    let id = v["containerId"].as_str().unwrap().to_string();
    let st = podman().args(["rm", "-f", &id]).status().unwrap();
    assert!(st.success());
    // Not yonder's (no marker), and a young orphan of this engine.
    let foreign = dc.join("not-ours");
    std::fs::create_dir(&foreign).unwrap();
    let young = dc.join("young");
    std::fs::create_dir(&young).unwrap();
    std::fs::copy(gone.join(".engine"), young.join(".engine")).unwrap();
    for d in [&gone, &foreign] {
        let st = Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(d)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let v2 = p.up_ok(&[]);
    assert_ne!(v2["containerId"], v["containerId"], "a new container");
    let now = folders();
    assert!(!now.contains(&gone), "the orphan is swept: {now:?}");
    assert!(now.contains(&foreign) && now.contains(&young), "{now:?}");
    assert_eq!(now.len(), 3, "plus the new container's: {now:?}");
    // A second `up` reuses the running container and keeps its folder.
    p.up_ok(&[]);
    assert_eq!(folders(), now);
}

#[test]
fn a_changed_config_is_detected_and_rebuild_or_remove_existing_recreate() {
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "containerEnv": {{"V": "1"}}}}"#
    ));
    let v1 = p.up_ok(&["--no-server"]);
    p.write(
        ".devcontainer/devcontainer.json",
        &format!(r#"{{"image": "{BASE}", "containerEnv": {{"V": "2"}}}}"#),
    );
    let (code, v2, err) = p.up(&["--no-server"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(v2["containerId"], v1["containerId"]);
    assert_eq!(v2["configChanged"], true, "{v2}");
    assert!(err.contains("--rebuild"), "{err}");
    let v3 = p.up_ok(&["--rebuild"]);
    assert_ne!(v3["containerId"], v1["containerId"]);
    assert_eq!(p.sh("echo $V").trim(), "2");
    let v4 = p.up_ok(&["--remove-existing", "--no-server"]);
    assert_ne!(v4["containerId"], v3["containerId"]);
}

#[test]
fn dockerfile_configs_build_with_args_and_target() {
    let p = Project::new(
        r#"{"build": {"dockerfile": "Dockerfile", "args": {"WHO": "${localWorkspaceFolderBasename}"}, "target": "dev"},
            "remoteUser": "dev", "workspaceFolder": "/src", "workspaceMount": "type=bind,source=${localWorkspaceFolder},target=/src"}"#,
    );
    p.write(
        ".devcontainer/Dockerfile",
        &format!(
            "FROM {BASE} AS dev\nARG WHO\nRUN useradd -m dev && echo \"built for $WHO\" > /built.txt\nFROM dev AS other\nRUN false\n"
        ),
    );
    let v = p.up_ok(&[]);
    assert_eq!(v["remoteUser"], "dev");
    assert_eq!(v["remoteWorkspaceFolder"], "/src");
    let name = p.path().file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(p.sh("cat /built.txt").trim(), format!("built for {name}"));
    // Tools run as remoteUser; the workspace is mounted where asked.
    assert_eq!(
        p.sh("id -un; ls /src/.devcontainer").trim(),
        "dev\nDockerfile\ndevcontainer.json"
    );
}

#[test]
fn a_failing_hook_stops_the_rest_and_says_which() {
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "onCreateCommand": "echo about-to-fail; exit 7", "postCreateCommand": "touch /tmp/never"}}"#
    ));
    let (code, v, err) = p.up(&["--no-server"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(v["outcome"], "error");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("onCreateCommand from devcontainer.json failed with exit code 7")
            && msg.contains("about-to-fail"),
        "{msg}"
    );
    let out = podman()
        .args(["ps", "-q", "--filter"])
        .arg(format!(
            "label=devcontainer.local_folder={}",
            p.path().display()
        ))
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let st = podman()
        .args(["exec", &id, "test", "-e", "/tmp/never"])
        .status()
        .unwrap();
    assert!(!st.success(), "postCreateCommand ran after a failure");
}

#[test]
fn malformed_config_gets_line_and_column_and_a_missing_engine_is_named() {
    let p = Project::new("{\n  \"image\": \"x\"\n  \"name\": \"no comma above\"\n}\n");
    let (code, v, _) = p.up(&[]);
    assert_eq!(code, 1);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.ends_with("devcontainer.json:3:3: expected ',' or '}', found '\"'"),
        "{msg}"
    );
    p.write(
        ".devcontainer/devcontainer.json",
        "{\"image\": \"x\", \"runArgs\": \"--init\"}",
    );
    let (code, out, err) = run(p
        .yonder()
        .args(["read-configuration", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("devcontainer.json:1:27: expected \"runArgs\" to be an array of strings"),
        "{err}"
    );
    // A typo is a warning with the closest name, not silence.
    p.write(
        ".devcontainer/devcontainer.json",
        "{\"image\": \"x\", \"postCreateComand\": \"x\"}",
    );
    let (code, _, err) = run(p
        .yonder()
        .args(["read-configuration", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("did you mean \"postCreateCommand\""), "{err}");
    // No engine at all: a clear message and the error JSON.
    let (code, v, _) = {
        let (code, out, err) = run(p
            .yonder()
            .env("PATH", "/nonexistent")
            .args(["up", "--workspace-folder"])
            .arg(p.path()));
        (
            code,
            serde_json::from_str::<Value>(out.trim()).unwrap(),
            err,
        )
    };
    assert_eq!(code, 1);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no container engine found"),
        "{v}"
    );
}

#[test]
fn read_configuration_substitutes_container_env_only_once_the_container_exists() {
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "remoteEnv": {{"CONTAINER_PATH": "${{containerEnv:PATH}}"}}}}"#
    ));
    let read = || {
        let (code, out, err) = run(p
            .yonder()
            .args(["read-configuration", "--json", "--workspace-folder"])
            .arg(p.path()));
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let before = read();
    assert_eq!(
        before["configuration"]["remoteEnv"]["CONTAINER_PATH"],
        "${containerEnv:PATH}"
    );
    p.up_ok(&["--no-server"]);
    let after = read();
    assert!(
        after["mergedConfiguration"]["remoteEnv"]["CONTAINER_PATH"]
            .as_str()
            .unwrap()
            .contains("/usr/bin"),
        "{after}"
    );
}

#[test]
fn attach_to_a_plain_running_container_and_two_dev_containers_at_once() {
    let name = format!("yonder-plain-{}", std::process::id());
    let st = podman()
        .args(["run", "-d", "--init", "--name", &name, BASE, "sleep", "600"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = podman().args(["rm", "-f", "-t", "0", &self.0]).output();
        }
    }
    let _rm = Rm(name.clone());
    let state = tempfile::tempdir().unwrap();
    let mut c = Command::new(common::YONDER);
    c.env("CONTAINERS_CONF", containers_conf())
        .env("YONDER_RUNTIME_DIR", state.path().join("run"))
        .args([
            "exec",
            &format!("container://{name}"),
            "--",
            "sh",
            "-c",
            "id -un; cat /etc/debian_version",
        ]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("root\n12."), "{out}");
    // As another user of the container: the server goes into that user's home.
    let st = podman()
        .args(["exec", &name, "useradd", "-m", "alice"])
        .status()
        .unwrap();
    assert!(st.success());
    let (code, out, err) = run(Command::new(common::YONDER)
        .env("CONTAINERS_CONF", containers_conf())
        .env("YONDER_RUNTIME_DIR", state.path().join("run"))
        .args([
            "exec",
            &format!("container://alice@{name}"),
            "--",
            "sh",
            "-c",
            "id -un; ls -d ~/.yonder/server/*",
        ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("alice\n/home/alice/.yonder/server/"),
        "{out}"
    );
    // A user whose home cannot be written gets told what to do.
    let (code, _, err) = run(Command::new(common::YONDER)
        .env("CONTAINERS_CONF", containers_conf())
        .env("YONDER_RUNTIME_DIR", state.path().join("run"))
        .args(["exec", &format!("container://nobody@{name}"), "--", "true"]));
    assert_eq!(code, 255);
    assert!(err.contains("YONDER_SERVER_INSTALL_PATH"), "{err}");
    // A container that does not exist.
    let (code, _, err) = run(Command::new(common::YONDER)
        .env("CONTAINERS_CONF", containers_conf())
        .args(["info", "container://no-such-container-yonder"]));
    assert_eq!(code, 255);
    assert!(err.contains("no container named"), "{err}");

    // Two projects, two containers, both usable at once.
    let a = Project::new(&format!(
        r#"{{"image": "{BASE}", "containerEnv": {{"WHO": "a"}}}}"#
    ));
    let b = Project::new(&format!(
        r#"{{"image": "{BASE}", "containerEnv": {{"WHO": "b"}}}}"#
    ));
    let (va, vb) = std::thread::scope(|s| {
        let ta = s.spawn(|| a.up_ok(&[]));
        let tb = s.spawn(|| b.up_ok(&[]));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert_ne!(va["containerId"], vb["containerId"]);
    assert_eq!(a.sh("echo $WHO").trim(), "a");
    assert_eq!(b.sh("echo $WHO").trim(), "b");
}

/// The reference CLI (@devcontainers/cli), installed by scripts/setup.
fn reference_cli() -> Command {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/devcontainer-cli/node_modules/.bin/devcontainer");
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    let mut c = Command::new(p);
    c.env("CONTAINERS_CONF", containers_conf());
    c
}

#[test]
fn yonder_and_the_reference_cli_reuse_each_others_containers() {
    let config = format!(
        r#"{{"image": "{BASE}", "postCreateCommand": "echo created >> /tmp/creations", "postAttachCommand": "echo attached >> /tmp/attaches"}}"#
    );
    // Made by the reference CLI, found and reused by yonder: the same
    // container, and its run-once markers are honoured.
    let a = Project::new(&config);
    let out = reference_cli()
        .args(["up", "--docker-path", "podman", "--workspace-folder"])
        .arg(a.path())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let theirs: Value = serde_json::from_str(line.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {line}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(theirs["outcome"], "success", "{theirs}");
    let ours = a.up_ok(&[]);
    assert_eq!(ours["containerId"], theirs["containerId"]);
    assert_eq!(
        ours["remoteWorkspaceFolder"],
        theirs["remoteWorkspaceFolder"]
    );
    assert_eq!(a.sh("cat /tmp/creations"), "created\n");
    assert_eq!(a.sh("cat /tmp/attaches"), "attached\nattached\n");

    // Made by yonder, found and reused by the reference CLI.
    let b = Project::new(&config);
    let ours = b.up_ok(&["--no-server"]);
    let out = reference_cli()
        .args(["up", "--docker-path", "podman", "--workspace-folder"])
        .arg(b.path())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let theirs: Value = serde_json::from_str(line.lines().last().unwrap_or("")).unwrap();
    assert_eq!(theirs["containerId"], ours["containerId"], "{theirs}");
    let out = reference_cli()
        .args(["exec", "--docker-path", "podman", "--workspace-folder"])
        .arg(b.path())
        .args(["cat", "/tmp/creations"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "created\n");
}

#[test]
fn local_features_install_in_order_with_options_env_and_hooks() {
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}",
            "features": {{"./second": {{}}, "./hello": {{"greeting": "hey there", "loud": true}}}},
            "onCreateCommand": "echo config >> /tmp/hooks"}}"#
    ));
    p.write(
        ".devcontainer/hello/devcontainer-feature.json",
        r#"{"id": "hello", "version": "1.0.0",
            "options": {"greeting": {"type": "string", "default": "hi"},
                        "loud": {"type": "boolean", "default": false},
                        "name": {"type": "string", "default": "world"}},
            "containerEnv": {"HELLO_HOME": "/opt/hello"},
            "onCreateCommand": "echo hello-feature >> /tmp/hooks"}"#,
    );
    p.write(
        ".devcontainer/hello/install.sh",
        "#!/bin/sh\nset -e\nmkdir -p /opt/hello\necho \"$GREETING $NAME loud=$LOUD user=$_REMOTE_USER\" > /opt/hello/said\necho hello >> /opt/order\n",
    );
    p.write(
        ".devcontainer/second/devcontainer-feature.json",
        r#"{"id": "second", "installsAfter": ["hello"]}"#,
    );
    p.write(
        ".devcontainer/second/install.sh",
        "#!/bin/sh\nset -e\ntest -f /opt/hello/said\necho second >> /opt/order\n",
    );
    p.up_ok(&[]);
    assert_eq!(
        p.sh("cat /opt/hello/said").trim(),
        "hey there world loud=true user=root"
    );
    assert_eq!(p.sh("cat /opt/order"), "hello\nsecond\n");
    assert_eq!(p.sh("echo $HELLO_HOME").trim(), "/opt/hello");
    // A feature's lifecycle command runs before devcontainer.json's.
    assert_eq!(p.sh("cat /tmp/hooks"), "hello-feature\nconfig\n");

    // A key without "./" gets the reference CLI's hint.
    p.write(
        ".devcontainer/devcontainer.json",
        &format!(r#"{{"image": "{BASE}", "features": {{"hello": {{}}}}}}"#),
    );
    let (code, v, _) = p.up(&["--remove-existing", "--no-server"]);
    assert_eq!(code, 1);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("prepend your Feature name with"),
        "{v}"
    );
}

#[test]
fn forward_ports_from_the_config_reach_a_server_in_the_container() {
    let port = free_port();
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "forwardPorts": [{port}], "portsAttributes": {{"{port}": {{"label": "perl echo"}}}}}}"#
    ));
    p.up_ok(&[]);
    // A one-shot server inside the container (perl is in Debian's minbase).
    let server = format!(
        "perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => \"127.0.0.1:{port}\", Listen => 5, ReuseAddr => 1) or die; print \"ready\\n\"; $|=1; $c = $s->accept; $l = <$c>; print $c \"echo:$l\"; close $c' "
    );
    let mut srv = p
        .yonder()
        .args(["exec", &p.target(), "--", "sh", "-c", &server])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(srv.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    // `yonder forward devcontainer:…` with no specs forwards forwardPorts,
    // to the same port number here.
    let mut fwd = p
        .yonder()
        .args(["forward", &p.target()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut fout = std::io::BufReader::new(fwd.stdout.take().unwrap());
    let mut announced = String::new();
    std::io::BufRead::read_line(&mut fout, &mut announced).unwrap();
    assert!(
        announced.contains(&format!("127.0.0.1:{port}")),
        "{announced}"
    );
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut sock, b"ping\n").unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut sock, &mut reply).unwrap();
    assert_eq!(reply, "echo:ping\n");
    let _ = fwd.kill();
    let _ = fwd.wait();
    assert!(srv.wait().unwrap().success());
    // exec starts in the workspace folder.
    let name = p.path().file_name().unwrap().to_string_lossy().to_string();
    assert_eq!(p.sh("pwd").trim(), format!("/workspaces/{name}"));
}

#[test]
fn compose_configs_start_the_project_and_connect_to_the_service() {
    let p = Project::new(
        r#"{"dockerComposeFile": ["docker-compose.yml"], "service": "app",
            "workspaceFolder": "/workspace", "containerEnv": {"ROLE": "primary"},
            "postCreateCommand": "echo created > /tmp/created"}"#,
    );
    p.write(
        ".devcontainer/docker-compose.yml",
        &format!(
            "version: \"3\"\nservices:\n  app:\n    image: {BASE}\n    command: sleep infinity\n    init: true\n    volumes:\n      - ..:/workspace\n  db:\n    image: {BASE}\n    command: sleep infinity\n    init: true\n"
        ),
    );
    p.write("hello.txt", "from the host\n");
    let v = p.up_ok(&[]);
    assert_eq!(v["remoteWorkspaceFolder"], "/workspace");
    assert_eq!(
        p.sh("cat hello.txt; echo $ROLE; cat /tmp/created"),
        "from the host\nprimary\ncreated\n"
    );
    // Both services run, in one project named after the folder.
    let project = format!(
        "{}_devcontainer",
        p.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
    );
    let out = podman()
        .args(["ps", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    assert_eq!(names.lines().count(), 2, "{names}");
    // Re-up reuses the container; down removes the project.
    assert_eq!(p.up_ok(&["--no-server"])["containerId"], v["containerId"]);
    let (code, _, err) = run(p
        .yonder()
        .args(["down", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
    let out = podman()
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

/// A real OCI registry (Debian's docker-registry, distribution 2.8) on
/// 127.0.0.1, stopped when dropped.
struct Registry {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/setup installs it)");
        let r = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + common::DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        r
    }

    fn upload(&self, name: &str, data: &[u8]) -> String {
        use sha2::Digest;
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .build()
            .into();
        let resp = agent
            .post(format!(
                "http://127.0.0.1:{}/v2/{name}/blobs/uploads/",
                self.port
            ))
            .send_empty()
            .unwrap();
        let loc = resp
            .headers()
            .get("location")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("http://127.0.0.1:{}{loc}", self.port)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        agent
            .put(format!("{url}{sep}digest={digest}"))
            .header("Content-Type", "application/octet-stream")
            .send(data)
            .unwrap();
        digest
    }

    /// Publishes a feature folder as the spec's OCI artifact.
    fn publish_feature(&self, name: &str, tag: &str, folder: &Path) {
        let out = Command::new("tar")
            .arg("-C")
            .arg(folder)
            .args(["-cf", "-", "."])
            .output()
            .unwrap();
        assert!(out.status.success());
        let layer = self.upload(name, &out.stdout);
        let config = self.upload(name, b"{}");
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.devcontainers", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.devcontainers.layer.v1+tar", "digest": layer,
                        "size": out.stdout.len(), "annotations": {"org.opencontainers.image.title": "feature.tgz"}}],
        });
        ureq::put(format!(
            "http://127.0.0.1:{}/v2/{name}/manifests/{tag}",
            self.port
        ))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send(manifest.to_string().as_bytes())
        .unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn oci_features_come_from_a_real_registry_and_are_cached() {
    let reg = Registry::start();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("devcontainer-feature.json"),
        r#"{"id": "greeter", "version": "1.2.0", "options": {"who": {"type": "string", "default": "registry"}}}"#,
    )
    .unwrap();
    std::fs::write(
        src.path().join("install.sh"),
        "#!/bin/sh\nset -e\necho \"greetings from the $WHO\" > /greeter\n",
    )
    .unwrap();
    reg.publish_feature("features/greeter", "1", src.path());
    let r = format!("127.0.0.1:{}/features/greeter:1", reg.port);
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "features": {{"{r}": {{"who": "test registry"}}}}}}"#
    ));
    let cache = tempfile::tempdir().unwrap();
    let up = |extra: &[&str]| {
        let (code, out, err) = run(p
            .yonder()
            .env("YONDER_CACHE_DIR", cache.path())
            .args(["up", "--no-server", "--workspace-folder"])
            .arg(p.path())
            .args(extra));
        (code, out, err)
    };
    let (code, out, err) = up(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.sh("cat /greeter"), "greetings from the test registry\n");
    // The registry goes away: the cached copy still brings a new container up.
    drop(reg);
    let (code, out, err) = up(&["--remove-existing"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("using the copy fetched earlier"), "{err}");
    assert_eq!(p.sh("cat /greeter"), "greetings from the test registry\n");
}

#[test]
fn shell_and_watch_work_inside_the_dev_container() {
    let p = Project::new(&format!(r#"{{"image": "{BASE}"}}"#));
    p.up_ok(&[]);
    let name = p.path().file_name().unwrap().to_string_lossy().to_string();
    // A real terminal (tmux) running `yonder shell` into the container.
    let tmux = Tmux::new(p.state.path());
    let shell = format!(
        "env {} {} shell {} -- bash --norc --noprofile; echo shell-exit=$?; sleep 60",
        p.env_line(),
        common::YONDER,
        p.target()
    );
    tmux.start("dc", 90, 25, &shell);
    tmux.type_line("dc", "pwd; stty size; echo ready-$((2*21))");
    let text = tmux.wait_for("dc", "ready-42");
    assert!(text.contains(&format!("/workspaces/{name}")), "{text}");
    assert!(text.contains("25 90"), "{text}");
    tmux.type_line("dc", "exit 3");
    tmux.wait_for("dc", "shell-exit=3");

    // Watching the workspace inside the container sees a file made on the host.
    let ws = format!("/workspaces/{name}");
    let mut watch = p
        .yonder()
        .args(["fs", &p.target(), "watch", &ws, "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(watch.stdout.take().unwrap());
    // Keep making the file until the watch reports it (the watch starts
    // asynchronously; bounded by the deadline).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut out, &mut line).unwrap_or(0) > 0 {
            if line.contains("from-host.txt") {
                let _ = tx.send(line.clone());
                return;
            }
            line.clear();
        }
    });
    let start = std::time::Instant::now();
    let event = loop {
        p.write(
            &format!("from-host-{}.tmp", start.elapsed().as_millis()),
            "x",
        );
        p.write("from-host.txt", &format!("{:?}", start.elapsed()));
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(300)) {
            break l;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "no watch event for from-host.txt"
        );
    };
    assert!(event.contains(&format!("{ws}/from-host.txt")), "{event}");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn up_with_ssh_alias_lets_ssh_sftp_and_scp_into_the_container() {
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "containerEnv": {{"WHERE": "in-container"}}}}"#
    ));
    // A home of the test's own: yonder writes ~/.ssh/config entries there.
    let home = tempfile::tempdir().unwrap();
    let ssh_dir = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let key = ssh_dir.join("id_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let (code, out, err) = run(p
        .yonder()
        .env("HOME", home.path())
        .env("USER", "dev")
        .args(["up", "--ssh-alias", "dc", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
    // stdout stays one JSON line; the alias news goes to stderr.
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(err.contains("ssh dc"), "{err}");
    let ssh_config = ssh_dir.join("config");
    let env_for = |c: &mut Command| {
        c.env("HOME", home.path())
            .env("CONTAINERS_CONF", containers_conf())
            .env("YONDER_STATE_DIR", p.state.path())
            .env("YONDER_RUNTIME_DIR", p.state.path().join("run"));
    };
    let opts = |c: &mut Command| {
        c.arg("-F")
            .arg(&ssh_config)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
            ])
            .arg(&key);
    };
    let mut c = Command::new("ssh");
    opts(&mut c);
    env_for(&mut c);
    c.args(["dc", "echo $WHERE; cat /etc/debian_version; exit 7"]);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 7, "{out}\n{err}");
    assert!(out.starts_with("in-container\n12."), "{out}");
    // sftp into the workspace, and scp back.
    let name = p.path().file_name().unwrap().to_string_lossy().to_string();
    let local = home.path().join("up.txt");
    std::fs::write(&local, "through the bridge\n").unwrap();
    let batch = home.path().join("batch");
    std::fs::write(
        &batch,
        format!("cd /workspaces/{name}\nput {}\nls\n", local.display()),
    )
    .unwrap();
    let mut c = Command::new("sftp");
    c.arg("-F")
        .arg(&ssh_config)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .arg("-b")
        .arg(&batch)
        .arg("dc");
    env_for(&mut c);
    let (code, out, err) = run(&mut c);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(p.dir.path().join("up.txt")).unwrap(),
        "through the bridge\n"
    );
    let back = home.path().join("back.txt");
    let mut c = Command::new("scp");
    c.arg("-F")
        .arg(&ssh_config)
        .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i"])
        .arg(&key)
        .arg(format!("dc:/workspaces/{name}/up.txt"))
        .arg(&back);
    env_for(&mut c);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "through the bridge\n"
    );
}

#[test]
fn doctor_checks_the_engine_a_test_container_and_file_sharing() {
    let p = Project::new(&format!(r#"{{"image": "{BASE}"}}"#));
    let home = tempfile::tempdir().unwrap();
    let (_, out, err) = run(p
        .yonder()
        .current_dir(p.path())
        .env("HOME", home.path())
        .args(["doctor", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let status = |id: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no {id} check: {v}"))
    };
    assert_eq!(status("container-engine-answers"), "ok");
    assert_eq!(status("container-runs"), "ok");
    assert_eq!(status("container-file-sharing"), "ok");
    // An engine that does not answer is a problem with a fix.
    let (code, out, _) = run(p
        .yonder()
        .current_dir(p.path())
        .env("HOME", home.path())
        .env("YONDER_DOCKER_PATH", "/bin/false")
        .args(["doctor", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let answers = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "container-engine-answers")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(answers["status"], "problem");
    assert_eq!(code, 1);
}

/// A rootful Podman's Docker-compatible API on a socket in a temp folder
/// that any user may reach, so a non-root user drives it with the Docker
/// CLI (`DOCKER_HOST=unix://…`). Stopped when dropped.
struct PodmanService {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl PodmanService {
    fn start() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("podman.sock");
        let child = podman()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + common::DEADLINE;
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "podman system service did not listen on {}",
                sock.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        PodmanService { child, dir }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.dir.path().join("podman.sock").display())
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `yonder` run as `u`, with the Docker CLI on PATH (a client only) driving
/// the rootful Podman service, and state in the user's home.
fn yonder_as(u: &common::user::TempUser, svc: &PodmanService) -> Command {
    let mut c = u.command(common::YONDER);
    c.env("DOCKER_HOST", svc.docker_host())
        .env("YONDER_DOCKER_PATH", "docker")
        .env("YONDER_STATE_DIR", u.home.join(".yonder-state"))
        .env("YONDER_RUNTIME_DIR", u.home.join(".yonder-run"));
    c
}

/// A project owned by `u`, whose image has the user `dev` (UID 4321) as its
/// `USER`, plus whatever `extra` Dockerfile lines add.
fn uid_project(u: &common::user::TempUser, extra: &str) -> Project {
    let p = Project::new(
        r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev",
            "postCreateCommand": "id -u > /tmp/hook-uid"}"#,
    );
    p.write(
        ".devcontainer/Dockerfile",
        &format!(
            "FROM {BASE}\nRUN groupadd -g 4321 dev && useradd -m -u 4321 -g 4321 -s /bin/sh dev\n{extra}USER dev\n"
        ),
    );
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(p.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    p
}

#[test]
fn uid_update_gives_the_remote_user_the_local_uid_through_the_docker_cli() {
    let svc = PodmanService::start();
    let u = common::user::TempUser::create();
    assert_ne!(
        u.uid, 4321,
        "the test needs a host UID other than the image's"
    );
    let p = uid_project(&u, "");
    let (code, out, err) = run(yonder_as(&u, &svc)
        .args(["up", "--docker-path", "docker", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{out}\n{err}");
    let v: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["remoteUser"], "dev", "{v}");
    assert!(err.contains("-uid"), "the -uid image was not built: {err}");
    // Inside, as the remote user: the host user's UID and GID, a home of
    // its own, and a workspace it can write, whose files the host user owns.
    let target = p.target();
    let (code, out, err) = run(yonder_as(&u, &svc).args([
        "exec",
        &target,
        "--",
        "sh",
        "-c",
        "id -un; id -u; id -g; stat -c %u:%g \"$HOME\" \"$HOME/.bashrc\"; cat /tmp/hook-uid; echo hi > written-inside",
    ]));
    assert_eq!(code, 0, "{err}");
    let ids = format!("{}:{}", u.uid, u.gid);
    assert_eq!(
        out,
        format!("dev\n{}\n{}\n{ids}\n{ids}\n{}\n", u.uid, u.gid, u.uid),
        "{err}"
    );
    let made = p.dir.path().join("written-inside");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&made).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (u.uid, u.gid));

    // updateRemoteUserUID false: the image's UID stays.
    let q = uid_project(&u, "");
    q.write(
        ".devcontainer/devcontainer.json",
        r#"{"build": {"dockerfile": "Dockerfile"}, "remoteUser": "dev", "updateRemoteUserUID": false}"#,
    );
    let (code, out, err) = run(yonder_as(&u, &svc)
        .args([
            "up",
            "--no-server",
            "--docker-path",
            "docker",
            "--workspace-folder",
        ])
        .arg(q.path()));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("-uid"), "{err}");
    let id = serde_json::from_str::<Value>(out.lines().last().unwrap()).unwrap()["containerId"]
        .as_str()
        .unwrap()
        .to_string();
    let o = podman()
        .args(["exec", "-u", "dev", &id, "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "4321\n");
}

#[test]
fn uid_update_is_skipped_when_another_image_user_has_the_local_uid() {
    let svc = PodmanService::start();
    let u = common::user::TempUser::create();
    let p = uid_project(
        &u,
        &format!("RUN useradd -M -u {} -s /bin/sh taken\n", u.uid),
    );
    let (code, out, err) = run(yonder_as(&u, &svc)
        .args([
            "up",
            "--no-server",
            "--docker-path",
            "docker",
            "--workspace-folder",
        ])
        .arg(p.path()));
    assert_eq!(code, 0, "{out}\n{err}");
    // The -uid image was built (its RUN step's own message is not asserted:
    // a cached layer prints nothing), and left dev's IDs alone.
    assert!(err.contains("-uid)..."), "{err}");
    let id = serde_json::from_str::<Value>(out.lines().last().unwrap()).unwrap()["containerId"]
        .as_str()
        .unwrap()
        .to_string();
    let o = podman()
        .args([
            "exec",
            "-u",
            "dev",
            &id,
            "sh",
            "-c",
            "id -u; id -g; cat /tmp/hook-uid",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "4321\n4321\n4321\n");
}

#[test]
fn features_install_into_a_compose_service_built_from_its_dockerfile() {
    let p = Project::new(
        r#"{"dockerComposeFile": "docker-compose.yml", "service": "app",
            "workspaceFolder": "/workspace",
            "features": {"./hello": {"greeting": "compose says hi"}}}"#,
    );
    p.write(
        ".devcontainer/docker-compose.yml",
        &format!(
            "version: \"3\"\nservices:\n  app:\n    build:\n      context: .\n      dockerfile: app.Dockerfile\n      args:\n        FLAVOUR: built\n    command: [\"sleep\", \"infinity\"]\n    volumes:\n      - ..:/workspace\n  db:\n    image: {BASE}\n    command: sleep infinity\n    init: true\n"
        ),
    );
    p.write(
        ".devcontainer/app.Dockerfile",
        &format!("FROM {BASE}\nARG FLAVOUR\nRUN echo \"$FLAVOUR\" > /flavour\n"),
    );
    p.write(
        ".devcontainer/hello/devcontainer-feature.json",
        r#"{"id": "hello", "options": {"greeting": {"type": "string", "default": "hi"}},
            "containerEnv": {"HELLO_HOME": "/opt/hello"},
            "entrypoint": "/usr/local/share/hello-init.sh",
            "postCreateCommand": "echo feature-hook > /tmp/feature-hook"}"#,
    );
    p.write(
        ".devcontainer/hello/install.sh",
        "#!/bin/sh\nset -e\nmkdir -p /opt/hello\necho \"$GREETING\" > /opt/hello/said\nprintf '#!/bin/sh\\necho ran > /tmp/entrypoint-ran\\n' > /usr/local/share/hello-init.sh\nchmod +x /usr/local/share/hello-init.sh\n",
    );
    p.write("hello.txt", "from the host\n");
    let (code, v, err) = p.up(&[]);
    assert_eq!(code, 0, "{v}\n{err}");
    // The service's own Dockerfile (with its build arg), the feature's
    // install script, its containerEnv and its lifecycle hook, and the
    // compose file's volume: all in the one service container.
    assert_eq!(
        p.sh("cat /flavour /opt/hello/said; echo $HELLO_HOME; cat /tmp/feature-hook hello.txt"),
        "built\ncompose says hi\n/opt/hello\nfeature-hook\nfrom the host\n",
        "{err}"
    );
    // The feature's entrypoint ran, then the service's own command
    // (overrideCommand is false for compose), which the wrapper exec'd.
    assert_eq!(
        p.sh("cat /tmp/entrypoint-ran; tr '\\0' ' ' < /proc/1/cmdline"),
        "ran\nsleep infinity "
    );
    // The container runs the extended image and says which features it has.
    let out = podman()
        .args([
            "inspect",
            "--format",
            "{{.ImageName}} {{index .Config.Labels \"devcontainer.metadata\"}}",
            v["containerId"].as_str().unwrap(),
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("-features"), "{out}");
    assert!(out.contains("\"id\":\"hello\""), "{out}");
    // Re-up reuses the container; down removes the project.
    assert_eq!(p.up_ok(&["--no-server"])["containerId"], v["containerId"]);
    let (code, _, err) = run(p
        .yonder()
        .args(["down", "--workspace-folder"])
        .arg(p.path()));
    assert_eq!(code, 0, "{err}");
}

/// Python's http.server on 127.0.0.1 serving `dir`; stopped when dropped.
struct HttpServer {
    child: std::process::Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 (scripts/setup installs it)");
        let deadline = std::time::Instant::now() + common::DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        HttpServer { child, port }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tarball_url_features_are_fetched_checked_and_cached() {
    let src = tempfile::tempdir().unwrap();
    let feature = src.path().join("feature");
    std::fs::create_dir_all(&feature).unwrap();
    std::fs::write(
        feature.join("devcontainer-feature.json"),
        r#"{"id": "tarred", "options": {"word": {"type": "string", "default": "plain"}}}"#,
    )
    .unwrap();
    std::fs::write(
        feature.join("install.sh"),
        "#!/bin/sh\nset -e\necho \"tarball says $WORD\" > /tarred\n",
    )
    .unwrap();
    let served = src.path().join("www");
    std::fs::create_dir_all(&served).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&feature)
        .arg("-czf")
        .arg(served.join("devcontainer-feature-tarred.tgz"))
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    // The same archive under another feature's name: refused.
    std::fs::copy(
        served.join("devcontainer-feature-tarred.tgz"),
        served.join("devcontainer-feature-other.tgz"),
    )
    .unwrap();
    let http = HttpServer::start(&served);
    let url = format!(
        "http://127.0.0.1:{}/devcontainer-feature-tarred.tgz",
        http.port
    );
    let p = Project::new(&format!(
        r#"{{"image": "{BASE}", "features": {{"{url}": {{"word": "hello"}}}}}}"#
    ));
    let cache = tempfile::tempdir().unwrap();
    let up = |extra: &[&str]| {
        run(p
            .yonder()
            .env("YONDER_CACHE_DIR", cache.path())
            .args(["up", "--no-server", "--workspace-folder"])
            .arg(p.path())
            .args(extra))
    };
    let (code, out, err) = up(&[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.sh("cat /tarred"), "tarball says hello\n");
    // The server goes away: the cached download still builds a new container.
    drop(http);
    let (code, out, err) = up(&["--remove-existing"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("using the copy fetched earlier"), "{err}");
    assert_eq!(p.sh("cat /tarred"), "tarball says hello\n");

    // Refusals name the feature and what to do.
    let http = HttpServer::start(&served);
    for (key, expect) in [
        (
            format!(
                "http://127.0.0.1:{}/devcontainer-feature-other.tgz",
                http.port
            ),
            "its devcontainer-feature.json says \\\"id\\\": \\\"tarred\\\"",
        ),
        (
            "http://example.invalid/devcontainer-feature-x.tgz".to_string(),
            "https only",
        ),
        (
            format!("http://127.0.0.1:{}/feature.tgz", http.port),
            "devcontainer-feature-<id>.tgz",
        ),
    ] {
        p.write(
            ".devcontainer/devcontainer.json",
            &format!(r#"{{"image": "{BASE}", "features": {{"{key}": {{}}}}}}"#),
        );
        let (code, out, err) = up(&["--remove-existing"]);
        assert_eq!(code, 1, "{key}: {out}\n{err}");
        assert!(out.contains(expect), "{key}: {out}\n{err}");
    }
}

#[test]
fn uid_update_on_a_compose_service_through_docker_compose() {
    let svc = PodmanService::start();
    let u = common::user::TempUser::create();
    // The service's image has `dev` (4321); its name comes from .env, which
    // compose (and yonder, reading the file) interpolate.
    let mut rnd = [0u8; 4];
    getrandom::fill(&mut rnd).unwrap();
    let image = format!("localhost/yonder-test-uid-dev:{}", hex::encode(rnd));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {BASE}\nRUN groupadd -g 4321 dev && useradd -m -u 4321 -g 4321 -s /bin/sh dev\n"
        ),
    )
    .unwrap();
    let st = podman()
        .args(["build", "-q", "-t", &image])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let p = Project::new(
        r#"{"dockerComposeFile": "docker-compose.yml", "service": "app",
            "workspaceFolder": "/workspace", "remoteUser": "dev"}"#,
    );
    p.write(
        ".devcontainer/docker-compose.yml",
        "version: \"3\"\nservices:\n  app:\n    image: ${DEV_IMAGE:-missing}\n    command: sleep infinity\n    volumes:\n      - ..:/workspace\n",
    );
    p.write(".devcontainer/.env", &format!("DEV_IMAGE={image}\n"));
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", u.uid, u.gid))
        .arg(p.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let compose = |args: &[&str]| {
        let (code, out, err) = run(yonder_as(&u, &svc)
            .env("YONDER_DOCKER_COMPOSE_PATH", "docker-compose")
            .args(args)
            .args(["--docker-path", "docker", "--workspace-folder"])
            .arg(p.path()));
        assert_eq!(code, 0, "{args:?}: {out}\n{err}");
        (out, err)
    };
    let (out, err) = compose(&["up", "--no-server"]);
    assert!(err.contains("-uid"), "{err}");
    let id = serde_json::from_str::<Value>(out.lines().last().unwrap()).unwrap()["containerId"]
        .as_str()
        .unwrap()
        .to_string();
    let o = podman()
        .args(["exec", "-u", "dev", &id, "sh", "-c"])
        .arg("id -u; id -g; stat -c %u:%g \"$HOME\"; touch /workspace/from-dev")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{0}\n{1}\n{0}:{1}\n", u.uid, u.gid),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(p.dir.path().join("from-dev"))
            .unwrap()
            .uid(),
        u.uid
    );
    compose(&["down"]);
    let _ = podman().args(["rmi", "-f", &image]).output();
}
