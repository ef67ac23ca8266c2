//! Whole-tree transfers (`fs put/get` of a directory, `Fs.PutTree` /
//! `Fs.GetTree`) against a real daemon, locally and over a real sshd: byte
//! exact round trips with modes, times and links; hostile entry names
//! refused; per-file errors that name the file and spare the rest; an
//! interrupted upload that leaves whole files or nothing.

mod common;

use common::sshd::Sshd;
use common::*;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;
use yonder_proto::pb::{self, ErrorKind, tree_entry::Entry};

/// Everything a tree transfer must keep, per relative path: the type, the
/// mode, the mtime (files and directories, to the second: every file system
/// here keeps nanoseconds, but that is not the point) and the content or the
/// link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let name = e.file_name();
            assert!(
                !name.as_bytes().windows(8).any(|w| w == b".yonder-"),
                "a temp file was left behind: {}",
                e.path().display()
            );
            let v = if m.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(e.path()).unwrap().display()
                )
            } else if m.is_dir() {
                walk(root, &r, out);
                format!("dir {:o} {}", m.mode() & 0o7777, m.mtime())
            } else {
                format!(
                    "file {:o} {} {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    sha256_file(&e.path())
                )
            };
            out.insert(r, v);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// A tree with nested and empty directories, empty files, odd modes, a
/// non-UTF-8 name, links (one dangling, one to a directory) and one big
/// file among 400 small ones.
fn make_tree(src: &Path) {
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::create_dir_all(src.join("empty-dir")).unwrap();
    for i in 0..400 {
        std::fs::write(
            src.join(if i % 2 == 0 { "a" } else { "a/b" })
                .join(format!("f{i}.txt")),
            format!("small file {i}\n").repeat(i % 7),
        )
        .unwrap();
    }
    random_file(&src.join("a/b/c/big.bin"), (5 << 20) + 123);
    std::fs::write(src.join("empty"), "").unwrap();
    std::fs::write(src.join("a/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(src.join("a/run.sh"), PermissionsExt::from_mode(0o751)).unwrap();
    std::fs::write(src.join("a/private"), "secret").unwrap();
    std::fs::set_permissions(src.join("a/private"), PermissionsExt::from_mode(0o600)).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.txt");
    std::fs::write(src.join(odd), "latin-1 name").unwrap();
    symlink("a/run.sh", src.join("to-file")).unwrap();
    symlink("a/b", src.join("to-dir")).unwrap();
    symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    // A read-only directory must still be filled, then get its mode.
    std::fs::set_permissions(src.join("a/b/c"), PermissionsExt::from_mode(0o555)).unwrap();
    std::fs::set_permissions(src.join("empty-dir"), PermissionsExt::from_mode(0o711)).unwrap();
    // Old times, so "kept" cannot be "just written".
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    for f in ["a/b/c/big.bin", "empty", "a/run.sh"] {
        std::fs::File::options()
            .write(true)
            .open(src.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
}

/// Makes every directory writable again so the temp dirs can be removed.
fn unlock(root: &Path) {
    let _ = std::process::Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(root)
        .status();
}

fn ok(cmd: &mut std::process::Command) {
    let (code, _, err) = run(cmd);
    assert_eq!(code, 0, "{cmd:?} failed: {err}");
}

#[test]
fn a_tree_goes_up_and_down_byte_exact_with_modes_times_and_links() {
    let d = Daemon::start();
    let w = d.work();
    let src = w.join("src");
    make_tree(&src);
    // Directories get their times after their contents are written.
    let want = snapshot(&src);
    ok(d.cli()
        .args(["fs", "local", "put"])
        .arg(&src)
        .arg(w.join("up")));
    assert_eq!(snapshot(&w.join("up")), want, "uploaded tree");
    ok(d.cli()
        .args(["fs", "local", "get"])
        .arg(w.join("up"))
        .arg(w.join("down")));
    assert_eq!(snapshot(&w.join("down")), want, "downloaded tree");
    // Into an existing directory: `put src dir` makes dir/src, as cp -r does;
    // a second put replaces files in place and still matches.
    std::fs::create_dir(w.join("into")).unwrap();
    ok(d.cli()
        .args(["fs", "local", "put"])
        .arg(&src)
        .arg(w.join("into")));
    ok(d.cli()
        .args(["fs", "local", "put"])
        .arg(&src)
        .arg(w.join("into")));
    assert_eq!(snapshot(&w.join("into/src")), want, "put twice into a dir");
    for r in ["src", "up", "down", "into"] {
        unlock(&w.join(r));
    }
}

fn entry(e: Entry) -> pb::TreeEntry {
    pb::TreeEntry { entry: Some(e) }
}

fn file(path: &str, data: &str, eof: bool) -> pb::TreeEntry {
    entry(Entry::File(pb::TreeFile {
        path: path.as_bytes().to_vec().into(),
        mode: 0o644,
        data: data.as_bytes().to_vec().into(),
        eof,
        ..Default::default()
    }))
}

fn root() -> pb::TreeEntry {
    entry(Entry::Dir(pb::TreeDir {
        mode: 0o755,
        ..Default::default()
    }))
}

#[tokio::test]
async fn hostile_entry_names_are_refused_and_nothing_escapes_the_destination() {
    let d = Daemon::start();
    let c = d.client().await;
    assert!(c.supports_tree());
    let w = d.work();
    let outside = w.join("outside");
    std::fs::create_dir(&outside).unwrap();
    for bad in ["../escaped", "/tmp/escaped-abs", "ok/../../escaped", ""] {
        let batch = pb::TreeBatch {
            entries: vec![root(), file("fine", "kept", true), file(bad, "evil", true)],
        };
        let e = c
            .put_tree(w.join("dest"), || futures::stream::iter([batch.clone()]))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{bad:?}: {e}");
        if !bad.is_empty() {
            assert!(e.message.contains(bad), "the error names {bad:?}: {e}");
        }
        // What came before the hostile entry is complete.
        assert_eq!(std::fs::read(w.join("dest/fine")).unwrap(), b"kept");
    }
    assert!(!w.join("escaped").exists());
    assert!(!Path::new("/tmp/escaped-abs").exists());

    // Through a link the stream itself made: refused per entry, the rest
    // goes on.
    let batch = pb::TreeBatch {
        entries: vec![
            root(),
            entry(Entry::Symlink(pb::TreeSymlink {
                path: b"door".to_vec().into(),
                target: outside.as_os_str().as_bytes().to_vec().into(),
            })),
            file("door/pwned", "evil", true),
            file("after", "still written", true),
        ],
    };
    let s = c
        .put_tree(w.join("dest2"), || futures::stream::iter([batch.clone()]))
        .await
        .unwrap();
    assert_eq!(s.files, 1);
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].kind, ErrorKind::NotADirectory as i32);
    assert_eq!(
        s.errors[0].path,
        w.join("dest2/door").as_os_str().as_bytes()
    );
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert_eq!(
        std::fs::read(w.join("dest2/after")).unwrap(),
        b"still written"
    );
}

#[test]
fn a_file_that_cannot_be_written_is_named_and_the_rest_is_copied() {
    let d = Daemon::start();
    let w = d.work();
    let src = w.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(src.join(n), n).unwrap();
    }
    // At the destination a directory stands where file `b` goes (`put src
    // dst` into an existing `dst` writes `dst/src`, as cp -r does).
    for (cmd, top) in [("put", "up"), ("get", "down")] {
        let dest = w.join(top).join("src");
        std::fs::create_dir_all(dest.join("b/inside")).unwrap();
        let (code, _, err) = run(d
            .cli()
            .args(["fs", "local", cmd])
            .arg(&src)
            .arg(w.join(top)));
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(
            err.contains(&format!("{}", dest.join("b").display())),
            "{err}"
        );
        assert!(err.contains("1 entries were not copied"), "{err}");
        assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"a");
        assert_eq!(std::fs::read(dest.join("c")).unwrap(), b"c");
        assert!(dest.join("b/inside").is_dir(), "the directory is untouched");
    }
}

#[tokio::test]
async fn an_interrupted_tree_upload_leaves_whole_files_or_nothing() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    let dest = w.join("dest");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("half"), "the old content").unwrap();
    let first = pb::TreeBatch {
        entries: vec![
            root(),
            file("whole", "complete", true),
            file("half", "the first half of the new", false),
        ],
    };
    // One batch, then the sender hangs; dropping the call resets its stream.
    use futures::StreamExt;
    let batches = || futures::stream::iter([first.clone()]).chain(futures::stream::pending());
    let mut call = Box::pin(c.put_tree(&dest, batches));
    let start = std::time::Instant::now();
    while !dest.join("whole").exists() {
        assert!(start.elapsed() < DEADLINE, "the complete file never came");
        tokio::select! {
            r = &mut call => panic!("the call ended though more was to come: {r:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    drop(call);
    eventually("the temp file of the cut file is gone", || {
        std::fs::read_dir(&dest).unwrap().count() == 2
    })
    .await;
    assert_eq!(std::fs::read(dest.join("whole")).unwrap(), b"complete");
    assert_eq!(
        std::fs::read(dest.join("half")).unwrap(),
        b"the old content"
    );
    // The daemon is fine and serves the next call.
    c.stat(&dest, false).await.unwrap();
}

#[test]
fn a_tree_goes_up_and_down_over_ssh() {
    let s = Sshd::start();
    let src = s.dir.join("src");
    make_tree(&src);
    let want = snapshot(&src);
    ok(s.cli().args(["fs", "yt", "put"]).arg(&src).arg("tree-up"));
    let remote = s.remote_home().join("tree-up");
    assert_eq!(snapshot(&remote), want, "uploaded over ssh");
    ok(s.cli()
        .args(["fs", "yt", "get", "tree-up"])
        .arg(s.dir.join("down")));
    assert_eq!(snapshot(&s.dir.join("down")), want, "downloaded over ssh");
    s.ssh("chmod -R u+w tree-up && rm -rf tree-up");
    unlock(&src);
    unlock(&s.dir.join("down"));
}
