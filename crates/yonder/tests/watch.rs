//! File watching against a real daemon and real kernel events: the user
//! changes files under a watched tree and sees each change arrive.

mod common;

use common::*;
use futures::StreamExt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use yonder_client::watch::WatchEvent;
use yonder_client::{Client, RemoteStream};
use yonder_proto::paths::to_wire;
use yonder_proto::pb::{self, ErrorKind};

/// A watch and everything it has delivered so far.
struct Watching {
    stream: RemoteStream<WatchEvent>,
    seen: Vec<WatchEvent>,
}

impl Watching {
    async fn start(c: &Client, req: pb::WatchRequest) -> Self {
        let mut w = Self {
            stream: c.watch(req).await.expect("watch"),
            seen: Vec::new(),
        };
        let first = w.next().await;
        assert!(
            matches!(first, WatchEvent::Ready { .. }),
            "first event must be READY, got {first:?}"
        );
        w
    }

    async fn next(&mut self) -> WatchEvent {
        let ev = tokio::time::timeout(DEADLINE, self.stream.next())
            .await
            .expect("no watch event within the deadline")
            .expect("the watch stream ended")
            .expect("watch error");
        self.seen.push(ev.clone());
        ev
    }

    /// Reads events until one matches; panics after [`DEADLINE`] with what
    /// did arrive.
    async fn until(&mut self, what: &str, f: impl Fn(&WatchEvent) -> bool) -> WatchEvent {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(ev))) => {
                    self.seen.push(ev.clone());
                    if f(&ev) {
                        return ev;
                    }
                }
                Ok(other) => panic!(
                    "watch ended ({other:?}) waiting for {what}; saw {:#?}",
                    self.seen
                ),
                Err(_) => panic!("timed out waiting for {what}; saw {:#?}", self.seen),
            }
        }
    }
}

impl Watching {
    /// Reads events until each of `wanted` has arrived, in any order (the
    /// order of events about different directories is not promised).
    async fn until_all(&mut self, wanted: &[PathBuf]) {
        let mut missing: Vec<PathBuf> = wanted.to_vec();
        missing.retain(|p| !self.seen.iter().any(created(p.clone())));
        while !missing.is_empty() {
            let ev = self
                .until(
                    &format!("creation of {missing:?}"),
                    |e| matches!(e, WatchEvent::Created { path, .. } if missing.contains(path)),
                )
                .await;
            let WatchEvent::Created { path, .. } = ev else {
                unreachable!()
            };
            missing.retain(|m| *m != path);
        }
    }
}

fn req(root: &Path) -> pb::WatchRequest {
    pb::WatchRequest {
        path: to_wire(root),
        ..Default::default()
    }
}

fn created(p: PathBuf) -> impl Fn(&WatchEvent) -> bool {
    move |e| matches!(e, WatchEvent::Created { path, .. } if *path == p)
}

fn changed(p: PathBuf) -> impl Fn(&WatchEvent) -> bool {
    move |e| matches!(e, WatchEvent::Changed { path, .. } if *path == p)
}

fn removed(p: PathBuf) -> impl Fn(&WatchEvent) -> bool {
    move |e| matches!(e, WatchEvent::Removed { path, .. } if *path == p)
}

fn renamed(a: PathBuf, b: PathBuf) -> impl Fn(&WatchEvent) -> bool {
    move |e| matches!(e, WatchEvent::Renamed { from, to, .. } if *from == a && *to == b)
}

/// The daemon's kernel watches: `inotify wd:` lines in its fdinfo.
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(e.path()) {
            n += s.lines().filter(|l| l.starts_with("inotify wd:")).count();
        }
    }
    n
}

#[tokio::test]
async fn the_user_creates_edits_renames_and_deletes_files_and_directories() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    std::fs::create_dir(root.join("sub")).unwrap();
    let mut w = Watching::start(&c, req(&root)).await;

    std::fs::write(root.join("a.txt"), "one").unwrap();
    w.until("a.txt created", created(root.join("a.txt"))).await;

    std::fs::write(root.join("a.txt"), "two, longer").unwrap();
    w.until("a.txt changed", changed(root.join("a.txt"))).await;

    std::fs::rename(root.join("a.txt"), root.join("sub/b.txt")).unwrap();
    w.until(
        "a.txt renamed to sub/b.txt",
        renamed(root.join("a.txt"), root.join("sub/b.txt")),
    )
    .await;

    std::fs::remove_file(root.join("sub/b.txt")).unwrap();
    w.until("sub/b.txt removed", removed(root.join("sub/b.txt")))
        .await;

    std::fs::create_dir(root.join("d")).unwrap();
    let ev = w.until("d created", created(root.join("d"))).await;
    assert!(matches!(ev, WatchEvent::Created { is_dir: true, .. }));

    // A renamed directory keeps its kernel watch; later events inside it
    // carry the new name.
    std::fs::rename(root.join("d"), root.join("e")).unwrap();
    w.until("d renamed to e", renamed(root.join("d"), root.join("e")))
        .await;
    std::fs::write(root.join("e/inside"), "x").unwrap();
    w.until("e/inside created", created(root.join("e/inside")))
        .await;

    std::fs::remove_file(root.join("e/inside")).unwrap();
    std::fs::remove_dir(root.join("e")).unwrap();
    w.until("e removed", removed(root.join("e"))).await;

    // A file created and deleted within the quiet period is no news at all.
    assert!(
        !w.seen
            .iter()
            .any(|e| matches!(e, WatchEvent::Overflow { .. })),
        "no overflow expected: {:#?}",
        w.seen
    );
}

#[tokio::test]
async fn ignored_globs_and_gitignored_paths_produce_no_events_and_no_watches() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    for dir in ["src", "node_modules/pkg", "build/obj", ".git/objects"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join(".gitignore"), "build/\n*.tmp\n").unwrap();
    let mut w = Watching::start(
        &c,
        pb::WatchRequest {
            ignore: vec!["node_modules".into()],
            use_gitignore: true,
            ..req(&root)
        },
    )
    .await;
    // Only the root and src cost a kernel watch.
    let pid = d.child.id();
    assert_eq!(inotify_watches(pid), 2);

    std::fs::write(root.join("node_modules/pkg/index.js"), "x").unwrap();
    std::fs::create_dir(root.join("node_modules/new")).unwrap();
    std::fs::write(root.join("build/obj/a.o"), "x").unwrap();
    std::fs::write(root.join("src/scratch.tmp"), "x").unwrap();
    std::fs::write(root.join(".git/objects/ab"), "x").unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}").unwrap();
    // The marker comes last; events are delivered in the order they happened,
    // so anything about the ignored paths would have arrived before it.
    std::fs::write(root.join("marker"), "").unwrap();
    w.until("src/main.rs created", created(root.join("src/main.rs")))
        .await;
    w.until("marker created", created(root.join("marker")))
        .await;
    let leaked: Vec<_> = w
        .seen
        .iter()
        .filter(|e| match e {
            WatchEvent::Created { path, .. }
            | WatchEvent::Changed { path, .. }
            | WatchEvent::Removed { path, .. } => {
                path.starts_with(root.join("node_modules"))
                    || path.starts_with(root.join("build"))
                    || path.starts_with(root.join(".git"))
                    || path.extension().is_some_and(|x| x == "tmp")
            }
            WatchEvent::Ready { .. } => false,
            _ => true,
        })
        .collect();
    assert!(leaked.is_empty(), "unexpected events: {leaked:#?}");
}

#[tokio::test]
async fn files_created_inside_a_fresh_subdirectory_are_reported() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    let mut w = Watching::start(&c, req(&root)).await;

    // All at once: the files exist before the daemon can add a watch for
    // the new directories, so only the scan of the new directory finds them.
    std::fs::create_dir_all(root.join("new/deeper")).unwrap();
    std::fs::write(root.join("new/a"), "a").unwrap();
    std::fs::write(root.join("new/deeper/b"), "b").unwrap();
    w.until_all(&[
        root.join("new"),
        root.join("new/deeper"),
        root.join("new/a"),
        root.join("new/deeper/b"),
    ])
    .await;

    // And the new directories are watched from then on.
    std::fs::write(root.join("new/deeper/c"), "c").unwrap();
    w.until("new/deeper/c created", created(root.join("new/deeper/c")))
        .await;
}

#[tokio::test]
async fn over_the_watch_cap_the_rest_is_polled_after_overflow_and_resync() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    for top in ["a", "b", "c"] {
        std::fs::create_dir_all(root.join(top).join("inner")).unwrap();
    }
    // Seven directories, two kernel watches allowed.
    let mut w = Watching::start(
        &c,
        pb::WatchRequest {
            max_watches: 2,
            poll_interval_ms: 100,
            ..req(&root)
        },
    )
    .await;
    let overflow = w
        .until("overflow", |e| matches!(e, WatchEvent::Overflow { .. }))
        .await;
    let WatchEvent::Overflow {
        path: polled,
        reason,
    } = overflow
    else {
        unreachable!()
    };
    assert!(polled.starts_with(&root), "{polled:?}");
    assert!(reason.contains("cap of 2"), "{reason}");
    w.until(
        "resync of the same subtree",
        |e| matches!(e, WatchEvent::Resync { path } if *path == polled),
    )
    .await;
    assert_eq!(inotify_watches(d.child.id()), 2);

    // Changes everywhere, including the polled parts, are still reported.
    for top in ["a", "b", "c"] {
        std::fs::write(root.join(top).join("inner/f"), "x").unwrap();
    }
    let files: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|top| root.join(top).join("inner/f"))
        .collect();
    w.until_all(&files).await;
    std::fs::write(root.join("c/inner/f"), "longer now").unwrap();
    w.until("c/inner/f changed", changed(root.join("c/inner/f")))
        .await;
    std::fs::rename(root.join("c/inner/f"), root.join("c/inner/g")).unwrap();
    w.until(
        "c/inner/f renamed to g",
        renamed(root.join("c/inner/f"), root.join("c/inner/g")),
    )
    .await;
    std::fs::remove_file(root.join("c/inner/g")).unwrap();
    w.until("c/inner/g removed", removed(root.join("c/inner/g")))
        .await;
}

/// Files created (and then deleted) while the client is not reading. Their
/// directory's path is about 3.5 KiB long, so few events fill the socket and
/// HTTP/2 buffers; then the call's queue and the daemon's held events fill,
/// and the rest overflows the kernel's queue of 16,384 events
/// (`fs.inotify.max_queued_events`; each new file is two events, each
/// deletion one). Measured: 12,000 files were just enough; this is margin.
const FLOOD_FILES: usize = 20_000;

#[tokio::test]
async fn a_client_that_stops_reading_gets_overflow_then_resync_and_polling() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    let mut deep = root.join("flood");
    for level in 0..13 {
        deep.push(format!("{level:02}{}", "d".repeat(250)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let mut w = Watching::start(
        &c,
        pb::WatchRequest {
            poll_interval_ms: 100,
            ..req(&root)
        },
    )
    .await;
    let queued: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        FLOOD_FILES * 2 >= queued + queued / 4,
        "the flood must exceed the kernel queue ({queued} events) with room to spare"
    );
    // This test runs on a current-thread runtime: while it creates files,
    // nothing reads the connection, as with a stalled client.
    for i in 0..FLOOD_FILES {
        std::fs::File::create(deep.join(i.to_string())).unwrap();
    }
    // Gone again before the client reads on: the kernel queue has overflowed
    // by now, and polling an empty tree afterwards is cheap.
    std::fs::remove_dir_all(root.join("flood")).unwrap();
    let ev = w
        .until(
            "overflow of the whole tree",
            |e| matches!(e, WatchEvent::Overflow { path, .. } if *path == root),
        )
        .await;
    let WatchEvent::Overflow { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("queue overflowed"), "{reason}");
    w.until(
        "resync of the whole tree",
        |e| matches!(e, WatchEvent::Resync { path } if *path == root),
    )
    .await;
    // The tree is polled now: no kernel watches, and changes still arrive.
    assert_eq!(inotify_watches(d.child.id()), 0);
    std::fs::write(root.join("after"), "x").unwrap();
    w.until("after created", created(root.join("after"))).await;
}

#[tokio::test]
async fn force_polling_reports_changes_without_kernel_watches() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    std::fs::create_dir(root.join("dir")).unwrap();
    let mut w = Watching::start(
        &c,
        pb::WatchRequest {
            force_polling: true,
            poll_interval_ms: 50,
            ..req(&root)
        },
    )
    .await;
    assert_eq!(inotify_watches(d.child.id()), 0);

    std::fs::write(root.join("dir/f"), "1").unwrap();
    w.until("dir/f created", created(root.join("dir/f"))).await;
    std::fs::write(root.join("dir/f"), "22").unwrap();
    w.until("dir/f changed", changed(root.join("dir/f"))).await;
    std::fs::rename(root.join("dir/f"), root.join("g")).unwrap();
    w.until(
        "dir/f renamed to g",
        renamed(root.join("dir/f"), root.join("g")),
    )
    .await;
    std::fs::remove_file(root.join("g")).unwrap();
    w.until("g removed", removed(root.join("g"))).await;
}

#[tokio::test]
async fn dropping_the_stream_releases_the_daemons_kernel_watches() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    for i in 0..20 {
        std::fs::create_dir(root.join(format!("d{i}"))).unwrap();
    }
    let pid = d.child.id();
    assert_eq!(inotify_watches(pid), 0);
    let w = Watching::start(&c, req(&root)).await;
    assert_eq!(inotify_watches(pid), 21);
    let w2 = Watching::start(&c, req(&root.join("d3"))).await;
    assert_eq!(inotify_watches(pid), 22);

    drop(w);
    eventually("the first watch's 21 kernel watches are released", || {
        inotify_watches(pid) == 1
    })
    .await;
    drop(w2);
    eventually("all kernel watches are released", || {
        inotify_watches(pid) == 0
    })
    .await;
    // The connection itself is fine.
    c.info().await.unwrap();
}

#[tokio::test]
async fn a_directory_moved_in_is_created_with_its_contents_and_moved_out_is_removed() {
    let d = Daemon::start();
    let c = d.client().await;
    let work = d.work();
    let (root, outside) = (work.join("root"), work.join("outside"));
    std::fs::create_dir_all(outside.join("pkg/src")).unwrap();
    std::fs::write(outside.join("pkg/src/lib.rs"), "x").unwrap();
    std::fs::create_dir(&root).unwrap();
    let mut w = Watching::start(&c, req(&root)).await;

    std::fs::rename(outside.join("pkg"), root.join("pkg")).unwrap();
    w.until_all(&[
        root.join("pkg"),
        root.join("pkg/src"),
        root.join("pkg/src/lib.rs"),
    ])
    .await;
    // Watched from then on.
    std::fs::write(root.join("pkg/src/main.rs"), "x").unwrap();
    w.until(
        "pkg/src/main.rs created",
        created(root.join("pkg/src/main.rs")),
    )
    .await;

    std::fs::rename(root.join("pkg"), outside.join("pkg")).unwrap();
    w.until("pkg removed", removed(root.join("pkg"))).await;
    // Its watches went with it: only the root's is left.
    eventually("the moved-out directories are no longer watched", || {
        inotify_watches(d.child.id()) == 1
    })
    .await;
}

#[tokio::test]
async fn a_symlinked_root_is_followed_and_reported_under_the_name_given() {
    let d = Daemon::start();
    let c = d.client().await;
    let work = d.work();
    std::fs::create_dir(work.join("real")).unwrap();
    std::os::unix::fs::symlink("real", work.join("link")).unwrap();
    let mut w = Watching::start(&c, req(&work.join("link"))).await;
    std::fs::write(work.join("real/f"), "x").unwrap();
    w.until("link/f created", created(work.join("link/f")))
        .await;
}

#[tokio::test]
async fn watching_a_missing_path_or_a_file_fails_naming_it() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work();
    let missing = root.join("missing");
    let e = c.watch(req(&missing)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.to_string().contains("missing"), "{e}");

    std::fs::write(root.join("file"), "x").unwrap();
    let e = c.watch(req(&root.join("file"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotADirectory);
    assert!(e.to_string().contains("file"), "{e}");

    let e = c
        .watch(pb::WatchRequest {
            ignore: vec!["{a".into()],
            ..req(&root)
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn cli_watch_json_prints_one_event_per_line() {
    let d = Daemon::start();
    let root = d.work();
    let mut child = d
        .cli()
        .current_dir(&root)
        .args(["fs", "local", "watch", "--json", "--ignore", "*.log", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> serde_json::Value {
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no line from `yonder fs local watch` for {what}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    let ready = next("ready");
    assert_eq!(ready["kind"], "ready");
    // The relative path "." means the current directory on `local`.
    assert_eq!(ready["path"], root.to_str().unwrap());

    std::fs::write(root.join("skip.log"), "x").unwrap();
    std::fs::write(root.join("hello.txt"), "x").unwrap();
    let ev = next("created");
    assert_eq!(ev["kind"], "created");
    assert_eq!(ev["path"], root.join("hello.txt").to_str().unwrap());
    assert_eq!(ev["is_dir"], false);

    std::fs::rename(root.join("hello.txt"), root.join("bye.txt")).unwrap();
    // The write was open-then-write: a test preempted between the two for
    // longer than the quiet period gets a separate `changed` too.
    let mut ev = next("renamed");
    while ev["kind"] == "changed" && ev["path"] == root.join("hello.txt").to_str().unwrap() {
        ev = next("renamed");
    }
    assert_eq!(ev["kind"], "renamed");
    assert_eq!(ev["path"], root.join("hello.txt").to_str().unwrap());
    assert_eq!(ev["new_path"], root.join("bye.txt").to_str().unwrap());

    let _ = child.kill();
    let _ = child.wait();
}
