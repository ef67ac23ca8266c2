//! The browser workbench end to end: a real `yonder web TARGET DIR`, driven
//! in real headless Chromium (Debian's, through playwright-core) by
//! `web/e2e/workbench.mjs` (on `local`, over SSH and in a Podman dev
//! container) and `web/e2e/auth.mjs` (ssh's questions in the page), plus
//! the HTTP-level security checks in plain Rust, and the front end's unit
//! tests (Vitest). `scripts/setup` installs Chromium and Node and builds
//! `web/`.
//!
//! Screenshots of each view go to `target/web-screenshots/`.

mod common;

use common::sshd::Sshd;
use common::{DEADLINE, Daemon, free_port};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The browser script drives a dozen views, each step bounded by its own
/// 20 s timeout; this bounds the whole run on a slow, shared machine.
const E2E_TIMEOUT: Duration = Duration::from_secs(300);

fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/web-screenshots")
}

fn check_front_end_installed() {
    assert!(
        web_dir().join("node_modules/playwright-core").is_dir(),
        "web/node_modules is missing: run ./scripts/setup (it runs npm ci in web/)"
    );
}

/// `yonder web` as a child process, killed when dropped.
struct Web {
    child: Child,
    url: String,
    port: u16,
    token: String,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cli web TARGET FOLDER --no-open --port 0` and reads its URL.
fn start_web(cli: Command, target: &str, folder: &Path) -> Web {
    start_web_logging(cli, target, folder, Stdio::inherit())
}

/// [`start_web`] with yonder web's stderr going to `stderr`.
fn start_web_logging(mut cli: Command, target: &str, folder: &Path, stderr: Stdio) -> Web {
    let mut child = cli
        .args(["web", target])
        .arg(folder)
        .args(["--no-open", "--port", "0"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn yonder web");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(DEADLINE)
        .expect("yonder web printed no URL");
    let url = line.trim().to_string();
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected URL {url:?}"));
    let (port, q) = rest.split_once('/').expect("a path in the URL");
    let token = q.strip_prefix("?token=").expect("a token in the URL");
    assert_eq!(token.len(), 64, "a 256-bit token in hex");
    Web {
        port: port.parse().unwrap(),
        token: token.to_string(),
        url,
        child,
    }
}

/// One raw HTTP/1.1 request; returns the status and the response head.
fn http(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // Read the head only: a websocket upgrade keeps the connection open.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head)
}

const UPGRADE: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

fn ws_request(port: u16, cookie: Option<&str>, origin: &str) -> u16 {
    let cookie = cookie.map(|c| format!("yonder_session={c}"));
    let mut h: Vec<(&str, &str)> = UPGRADE.to_vec();
    h.push(("Origin", origin));
    if let Some(c) = &cookie {
        h.push(("Cookie", c));
    }
    http(port, "/ws", &h).0
}

/// A workspace with something to see, edit, search and quick-open.
fn workspace(w: &Path) {
    std::fs::create_dir_all(w.join("src")).unwrap();
    std::fs::create_dir_all(w.join("deeper")).unwrap();
    std::fs::write(w.join("hello.txt"), "hello from disk\n").unwrap();
    std::fs::write(
        w.join("src/main.rs"),
        "fn main() {\n    let needle_in_haystack = 1;\n}\n",
    )
    .unwrap();
    std::fs::write(w.join("deeper/deepfile.md"), "# deep\n").unwrap();
}

/// The user's story: open the page with the token, see the tree, edit and
/// save, meet a conflict, use a terminal that survives a reload, search,
/// quick open, create a file, forward a server started in the terminal. And
/// no one else gets in: no token, a used token, a foreign Origin or Host.
#[test]
fn workbench_end_to_end_in_chromium() {
    check_front_end_installed();
    let d = Daemon::start();
    let w = d.work().join("project");
    workspace(&w);
    let web = start_web(d.cli(), "local", &w);

    // Without the cookie nothing is served, the websocket included.
    assert_eq!(http(web.port, "/", &[]).0, 401);
    assert_eq!(http(web.port, "/?token=0000", &[]).0, 401);
    assert_eq!(
        ws_request(web.port, None, &format!("http://127.0.0.1:{}", web.port)),
        401
    );
    // A page on another name for this address (DNS rebinding) is refused.
    let (status, head) = http(web.port, "/", &[("Host", "evil.example")]);
    assert_eq!(status, 403);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'")
    );

    let stdout = run_browser_story(&web, &w, &screenshots_dir(), None);
    assert_saved_bytes(&w);
    // The browser's session cookie works, but not from a foreign Origin.
    let cookie = stdout
        .lines()
        .find_map(|l| l.strip_prefix("COOKIE="))
        .expect("the script prints the cookie");
    let own = format!("http://127.0.0.1:{}", web.port);
    let session = format!("yonder_session={cookie}");
    let (status, head) = http(web.port, "/", &[("Cookie", &session)]);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy")
    );
    assert_eq!(
        ws_request(web.port, Some(cookie), "http://evil.example"),
        403
    );
    assert_eq!(ws_request(web.port, Some(cookie), "null"), 403);
    assert_eq!(ws_request(web.port, Some(cookie), &own), 101);
    assert_eq!(
        ws_request(web.port, Some("0".repeat(64).as_str()), &own),
        401
    );
    // The token was for one use.
    assert_eq!(
        http(web.port, &format!("/?token={}", web.token), &[]).0,
        401
    );
}

/// Runs `web/e2e/workbench.mjs` against `web` serving `dir`; returns its
/// stdout (which carries the session cookie).
fn run_browser_story(web: &Web, dir: &Path, shots: &Path, break_link: Option<&str>) -> String {
    run_browser_story_with(web, dir, shots, break_link, None)
}

/// [`run_browser_story`] with the terminal's http server started by
/// `server_cmd` (`{PORT}` replaced) instead of python3's.
fn run_browser_story_with(
    web: &Web,
    dir: &Path,
    shots: &Path,
    break_link: Option<&str>,
    server_cmd: Option<&str>,
) -> String {
    let mut cmd = Command::new("node");
    if let Some(b) = break_link {
        cmd.env("YONDER_WEB_BREAK_LINK", b);
    }
    if let Some(c) = server_cmd {
        cmd.env("YONDER_WEB_SERVER_CMD", c);
    }
    let out = cmd
        .arg(web_dir().join("e2e/workbench.mjs"))
        .current_dir(web_dir())
        .env("YONDER_WEB_URL", &web.url)
        .env("YONDER_WEB_DIR", dir)
        .env("YONDER_WEB_SHOTS", shots)
        .env("YONDER_WEB_HTTP_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node (installed by scripts/setup)");
    let out = wait_with_timeout(out, E2E_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("E2E OK"),
        "the browser test failed (screenshots in {}):\n{stdout}\n{stderr}",
        shots.display()
    );
    for name in [
        "01-tree",
        "02-editor-dirty",
        "03-conflict",
        "04-terminal",
        "06-search",
        "08-ports",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "no screenshot {name}"
        );
    }
    stdout
}

/// The bytes the browser saved ("overwrite with mine" after the conflict),
/// the file it created, renamed and deleted, and the one dropped on it.
fn assert_saved_bytes(w: &Path) {
    assert_eq!(
        std::fs::read_to_string(w.join("hello.txt")).unwrap(),
        "hello from disk\nedited in the browser\nsecond edit\n"
    );
    assert!(!w.join("created.txt").exists() && !w.join("renamed.txt").exists());
    assert_eq!(
        std::fs::read_to_string(w.join("dropped.txt")).unwrap(),
        "dropped bytes\n"
    );
}

/// The same story on an SSH target (a private sshd on 127.0.0.1, the
/// non-root test user): tree, editor, conflict, terminal across a reload,
/// search, quick open and a forwarded server all go through ssh; and the
/// ssh connection is killed midway: the page shows "reconnecting", the
/// workbench reconnects, and the terminal carries on with nothing repeated.
#[test]
fn workbench_on_an_ssh_target() {
    check_front_end_installed();
    let s = Sshd::start();
    let name = format!("web-e2e-{}", s.port);
    let w = s.remote_home().join(&name);
    // Made by the remote user, so the files are theirs.
    s.ssh(&format!(
        "rm -rf {name} && mkdir -p {name}/src {name}/deeper && \
         printf 'hello from disk\\n' > {name}/hello.txt && \
         printf 'fn main() {{\\n    let needle_in_haystack = 1;\\n}}\\n' > {name}/src/main.rs && \
         printf '# deep\\n' > {name}/deeper/deepfile.md"
    ));
    let web = start_web(s.cli(), "yt", Path::new(&name));
    // Midway, the ssh processes carrying the link are killed (as a dropped
    // network would): the page shows the reconnect and carries on.
    let kill = format!("{}/ssh/", s.run_dir.display());
    run_browser_story(&web, &w, &screenshots_dir().join("ssh"), Some(&kill));
    assert_saved_bytes(&w);
    let _ = std::fs::remove_dir_all(&w);
}

/// The same story in a Podman dev container (`yonder up`, then `yonder web
/// devcontainer:DIR`): the workspace is bind-mounted at the same path, so
/// the bytes the browser saved are checked on this side. The test image has
/// no python3: the terminal's http server is a perl one-liner.
#[test]
fn workbench_in_a_dev_container() {
    const BASE: &str = "localhost/yonder-test-base:bookworm-1";
    /// An HTTP/1.0 server listing the current folder (perl-base is in the image).
    const PERL_SERVER: &str = r#"perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>"127.0.0.1",LocalPort=>{PORT},Listen=>5,ReuseAddr=>1) or die $!; while($c=$s->accept){while(<$c>){last if /^\r?$/} opendir(D,"."); $b=join("\n",sort readdir(D)); closedir(D); print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ".length($b)."\r\n\r\n$b"; close($c)}'"#;
    check_front_end_installed();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/containers.conf");
    let state = tempfile::tempdir().unwrap();
    let proj = tempfile::Builder::new().prefix("webdc").tempdir().unwrap();
    let p = std::fs::canonicalize(proj.path()).unwrap();
    workspace(&p);
    std::fs::create_dir_all(p.join(".devcontainer")).unwrap();
    std::fs::write(
        p.join(".devcontainer/devcontainer.json"),
        format!(
            r#"{{"image": "{BASE}", "workspaceMount": "source={0},target={0},type=bind", "workspaceFolder": "{0}"}}"#,
            p.display()
        ),
    )
    .unwrap();
    let cli = || {
        let mut c = Command::new(common::YONDER);
        c.env("CONTAINERS_CONF", &conf)
            .env("YONDER_STATE_DIR", state.path())
            .env("YONDER_RUNTIME_DIR", state.path().join("run"));
        c
    };
    struct Down(Command);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = self.0.output();
        }
    }
    let mut down = cli();
    down.args(["down", "--workspace-folder"]).arg(&p);
    let _down = Down(down);
    let up = cli()
        .args(["up", "--workspace-folder"])
        .arg(&p)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "yonder up: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let web = start_web(cli(), &format!("devcontainer:{}", p.display()), &p);
    run_browser_story_with(
        &web,
        &p,
        &screenshots_dir().join("devcontainer"),
        None,
        Some(PERL_SERVER),
    );
    assert_saved_bytes(&p);
}

/// ssh's questions are asked in the page: an SSH target whose host key is
/// unknown and where the user has no key, only a password. The browser
/// refuses the host key first (the page says why), retries, accepts it,
/// types a wrong password, then the right one, and the workbench opens.
/// The password is never in yonder web's output.
#[test]
fn ssh_questions_are_asked_in_the_page() {
    check_front_end_installed();
    let s = Sshd::start_with(&[
        "-o",
        "AuthorizedKeysFile=none",
        "-o",
        "PasswordAuthentication=yes",
    ]);
    let u = common::user::TempUser::create();
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).unwrap();
    let password = format!("pw-{}", hex::encode(rnd));
    u.set_password(&password);
    u.write("hello.txt", "hello\n", 0o644);
    let scratch = tempfile::tempdir().unwrap();
    let known_hosts = scratch.path().join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let cfg = scratch.path().join("config");
    std::fs::write(
        &cfg,
        format!(
            "Host ya\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  PubkeyAuthentication no\n  \
             PreferredAuthentications password\n  UserKnownHostsFile {}\n  StrictHostKeyChecking ask\n  \
             ConnectTimeout 10\n",
            s.port,
            u.name,
            known_hosts.display()
        ),
    )
    .unwrap();
    let log_path = scratch.path().join("web.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let web = start_web_logging(s.cli_with(&cfg), "ya", Path::new("."), log.into());
    let shots = screenshots_dir().join("auth");
    let out = Command::new("node")
        .arg(web_dir().join("e2e/auth.mjs"))
        .current_dir(web_dir())
        .env("YONDER_WEB_URL", &web.url)
        .env("YONDER_WEB_PASSWORD", &password)
        .env("YONDER_WEB_FILE", u.home.join("hello.txt"))
        .env("YONDER_WEB_SHOTS", &shots)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run node (installed by scripts/setup)");
    let out = wait_with_timeout(out, E2E_TIMEOUT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        out.status.success() && stdout.contains("E2E OK"),
        "the browser test failed (screenshots in {}):\n{stdout}\n{}\nyonder web said:\n{log}",
        shots.display(),
        String::from_utf8_lossy(&out.stderr),
    );
    // The terminal user is told where the questions went; the answers are
    // nowhere in the output, and the accepted key is in known_hosts.
    assert!(log.contains("answer it in the browser page"), "{log}");
    assert!(!log.contains(&password), "the password was logged:\n{log}");
    assert!(!log.contains("not-the-password"), "{log}");
    let known = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        known.contains("ssh-ed25519"),
        "the accepted host key: {known}"
    );
    for name in ["01-host-key", "02-refused", "03-password", "04-workbench"] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "no screenshot {name}"
        );
    }
    drop(web);
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    // Drain the pipes while waiting, so a chatty child never blocks.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t2 = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the browser test took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: t1.join().unwrap(),
        stderr: t2.join().unwrap(),
    }
}

/// The front end's logic (protocol client, tree, conflicts, terminal
/// offsets): Vitest, run here so that `cargo nextest` covers it.
#[test]
fn front_end_unit_tests_pass() {
    check_front_end_installed();
    let out = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(web_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run npm (installed by scripts/setup)");
    assert!(
        out.status.success(),
        "vitest failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
