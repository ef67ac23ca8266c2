//! File operations against a real daemon, through the client library and the
//! CLI, including every error kind a user can hit.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use yonder_client::{FileType, WriteOptions};
use yonder_proto::pb::ErrorKind;

#[tokio::test]
async fn stat_describes_files_directories_and_symlinks() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    std::fs::write(w.join("f"), "hello").unwrap();
    std::fs::set_permissions(w.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("f", w.join("link")).unwrap();
    std::os::unix::fs::symlink("missing", w.join("dangling")).unwrap();

    let f = c.stat(w.join("f"), false).await.unwrap();
    assert_eq!((f.file_type(), f.size, f.mode), (FileType::File, 5, 0o640));
    assert_eq!(f.inode, std::fs::metadata(w.join("f")).unwrap().ino());
    assert_eq!(
        c.stat(&w, false).await.unwrap().file_type(),
        FileType::Directory
    );

    let l = c.stat(w.join("link"), false).await.unwrap();
    assert_eq!(l.file_type(), FileType::Symlink);
    assert_eq!(l.symlink_target.as_deref(), Some(&b"f"[..]));
    assert_eq!(l.symlink_target_type(), FileType::File);
    assert_eq!(
        c.stat(w.join("link"), true).await.unwrap().file_type(),
        FileType::File
    );

    let g = c.stat(w.join("dangling"), false).await.unwrap();
    assert_eq!(g.symlink_target_type(), FileType::Unspecified);
    let e = c.stat(w.join("dangling"), true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.path, Some(w.join("dangling")));
}

#[tokio::test]
async fn listing_streams_a_big_directory_and_keeps_non_utf8_names() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work().join("big");
    std::fs::create_dir(&w).unwrap();
    for i in 0..2500 {
        std::fs::write(w.join(format!("f{i:05}")), "").unwrap();
    }
    let odd = OsStr::from_bytes(b"caf\xe9-\xff\xfe");
    std::fs::write(w.join(odd), "latin1").unwrap();
    std::fs::create_dir(w.join("sub")).unwrap();

    let entries = c.read_dir(&w, true).await.unwrap();
    assert_eq!(entries.len(), 2502);
    let odd_entry = entries
        .iter()
        .find(|e| e.name.as_ref() == odd.as_bytes())
        .expect("non-UTF-8 name listed");
    assert_eq!(odd_entry.metadata.as_ref().unwrap().size, 6);
    assert_eq!(
        entries
            .iter()
            .find(|e| &e.name[..] == b"sub")
            .unwrap()
            .file_type(),
        FileType::Directory
    );

    // The name goes back to the server unchanged and finds the same file.
    let path = w.join(OsStr::from_bytes(&odd_entry.name));
    assert_eq!(c.read_to_vec(&path).await.unwrap(), b"latin1");

    let empty = d.work().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(c.read_dir(&empty, false).await.unwrap().is_empty());

    let e = c.read_dir(w.join("f00001"), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotADirectory);
    assert_eq!(e.path, Some(w.join("f00001")));
}

#[tokio::test]
async fn read_honours_offset_and_length() {
    let d = Daemon::start();
    let c = d.client().await;
    let p = d.work().join("digits");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&p, &data).unwrap();
    let whole = c.read_to_vec(&p).await.unwrap();
    assert_eq!(whole, data);
    let mut s = c.read(&p, 300_000, Some(500_001)).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = s.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, &data[300_000..800_001]);
    let mut past_end = c.read(&p, 5_000_000, None).await.unwrap();
    assert!(past_end.next().await.is_none());
    let e = c.read_to_vec(d.work()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::IsADirectory);
}

#[tokio::test]
async fn write_is_atomic_keeps_the_mode_and_follows_symlinks() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    let p = w.join("script.sh");
    std::fs::write(&p, "old").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o751)).unwrap();
    let reply = c
        .write_bytes(&p, WriteOptions::default(), "new content")
        .await
        .unwrap();
    assert_eq!(reply.bytes_written, 11);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "new content");
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o751);

    // Through a symlink: the link stays a link and its target changes.
    std::os::unix::fs::symlink("script.sh", w.join("via-link")).unwrap();
    c.write_bytes(w.join("via-link"), WriteOptions::default(), "linked")
        .await
        .unwrap();
    assert!(
        std::fs::symlink_metadata(w.join("via-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "linked");

    // New file with an explicit mode, and parents created on request.
    let deep = w.join("a/b/c.txt");
    let opts = WriteOptions {
        mode: Some(0o600),
        create_parents: true,
        ..Default::default()
    };
    c.write_bytes(&deep, opts, "deep").await.unwrap();
    assert_eq!(std::fs::metadata(&deep).unwrap().mode() & 0o777, 0o600);
    let e = c
        .write_bytes(w.join("x/y/z"), WriteOptions::default(), "")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.path, Some(w.join("x/y/z")));

    // No temp files left behind by any of this.
    let leftovers = yonder_temps(&w);
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_the_file_is_untouched() {
    let d = Daemon::start();
    let c = d.client().await;
    let p = d.work().join("doc.txt");
    std::fs::write(&p, "v1").unwrap();
    let v1 = c.stat(&p, false).await.unwrap().version;

    // The editor saves against the version it opened: fine.
    let opts = |v: &str| WriteOptions {
        if_version: Some(v.into()),
        ..Default::default()
    };
    let v2 = c
        .write_bytes(&p, opts(&v1), "v2 from editor")
        .await
        .unwrap()
        .metadata
        .unwrap()
        .version;
    assert_ne!(v1, v2);

    // Someone else changes the file; saving against the old version fails.
    std::fs::write(&p, "changed elsewhere").unwrap();
    let e = c
        .write_bytes(&p, opts(&v2), "v3 from editor")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(e.path, Some(p.clone()));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "changed elsewhere");

    // "Create only": refused when the file exists, works when it does not.
    let e = c.write_bytes(&p, opts(""), "x").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    c.write_bytes(d.work().join("fresh"), opts(""), "x")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_upload_that_breaks_off_leaves_the_file_as_it_was() {
    let d = Daemon::start();
    let c = d.client().await;
    let p = d.work().join("precious");
    std::fs::write(&p, "original").unwrap();
    // The data source fails after some chunks: the client cancels the call.
    let chunks = futures::stream::iter(vec![
        Ok(Bytes::from(vec![b'x'; 300_000])),
        Ok(Bytes::from(vec![b'y'; 300_000])),
        Err(std::io::Error::other("disk unplugged")),
    ]);
    let e = c
        .write(&p, WriteOptions::default(), chunks)
        .await
        .unwrap_err();
    assert!(e.message.contains("disk unplugged"), "{e}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "original");
    eventually("temp file removed", || yonder_temps(&d.work()).is_empty()).await;
}

#[tokio::test]
async fn mkdir_remove_rename_copy_chmod_symlink() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();

    c.mkdir(w.join("p/q/r"), true, None).await.unwrap();
    c.mkdir(w.join("p/q/r"), true, None).await.unwrap();
    assert_eq!(
        c.mkdir(w.join("p"), false, None).await.unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        c.mkdir(w.join("no/such"), false, None)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    std::fs::write(w.join("p/q/file"), "data").unwrap();
    assert_eq!(
        c.mkdir(w.join("p/q/file/sub"), true, None)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotADirectory
    );

    let e = c.remove(w.join("p"), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DirectoryNotEmpty);
    assert_eq!(e.path, Some(w.join("p")));

    // copy a tree, then the copy is independent of the original
    std::os::unix::fs::symlink("file", w.join("p/q/ln")).unwrap();
    std::fs::set_permissions(w.join("p/q/file"), std::fs::Permissions::from_mode(0o604)).unwrap();
    assert_eq!(
        c.copy(w.join("p"), w.join("p2"), false, false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::IsADirectory
    );
    c.copy(w.join("p"), w.join("p2"), true, false)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(w.join("p2/q/file")).unwrap(),
        "data"
    );
    assert_eq!(
        std::fs::metadata(w.join("p2/q/file")).unwrap().mode() & 0o777,
        0o604
    );
    assert_eq!(
        std::fs::read_link(w.join("p2/q/ln")).unwrap(),
        PathBuf::from("file")
    );
    assert_eq!(
        c.copy(w.join("p"), w.join("p2"), true, false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AlreadyExists
    );

    // rename without and with overwrite
    std::fs::write(w.join("a"), "A").unwrap();
    std::fs::write(w.join("b"), "B").unwrap();
    let e = c.rename(w.join("a"), w.join("b"), false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read_to_string(w.join("b")).unwrap(), "B");
    c.rename(w.join("a"), w.join("b"), true).await.unwrap();
    assert_eq!(std::fs::read_to_string(w.join("b")).unwrap(), "A");
    let e = c
        .rename(w.join("gone"), w.join("c"), true)
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.path, e.other_path),
        (ErrorKind::NotFound, Some(w.join("gone")), Some(w.join("c")))
    );

    c.chmod(w.join("b"), 0o4710).await.unwrap();
    assert_eq!(
        std::fs::metadata(w.join("b")).unwrap().mode() & 0o7777,
        0o4710
    );
    assert_eq!(
        c.chmod(w.join("nope"), 0o600).await.unwrap_err().kind,
        ErrorKind::NotFound
    );

    c.symlink("../b", w.join("p/up")).await.unwrap();
    assert_eq!(
        c.read_link(w.join("p/up")).await.unwrap(),
        PathBuf::from("../b")
    );
    assert_eq!(
        c.canonicalize(w.join("p/up")).await.unwrap(),
        std::fs::canonicalize(w.join("b")).unwrap()
    );
    assert_eq!(
        c.symlink("x", w.join("p/up")).await.unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        c.read_link(w.join("b")).await.unwrap_err().kind,
        ErrorKind::InvalidArgument
    );

    c.remove(w.join("p"), true).await.unwrap();
    assert!(!w.join("p").exists());
    assert_eq!(
        c.remove(w.join("p"), true).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // removing a symlink removes the link, not its target
    c.remove(w.join("p2/q/ln"), false).await.unwrap();
    assert!(w.join("p2/q/file").exists());
}

#[tokio::test]
async fn permission_denied_names_the_path() {
    // The daemon runs as the connecting user; as root that is everything, so
    // run it as `nobody` to meet a real EACCES.
    let user = is_root().then_some((65534, 65534));
    let d = Daemon::start_with(&[], user);
    let c = d.client().await;
    let secret = d.dir.path().join("secret");
    std::fs::create_dir(&secret).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    if !is_root() {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    } else {
        std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
    }
    let e = c.read_dir(&secret, false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert_eq!(e.path, Some(secret.clone()));
    let e = c
        .write_bytes(secret.join("f"), WriteOptions::default(), "x")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PermissionDenied);
    assert_eq!(e.path, Some(secret.join("f")));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[tokio::test]
async fn a_256_mib_file_goes_up_and_back_down_intact() {
    let d = Daemon::start();
    let w = d.work();
    let src = w.join("random.bin");
    random_file(&src, 256 << 20);
    let (code, _, err) = run(d
        .cli()
        .args(["fs", "local", "put"])
        .arg(&src)
        .arg(w.join("up.bin")));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(d
        .cli()
        .args(["fs", "local", "get"])
        .arg(w.join("up.bin"))
        .arg(w.join("down.bin")));
    assert_eq!(code, 0, "{err}");
    let want = sha256_file(&src);
    assert_eq!(sha256_file(&w.join("up.bin")), want);
    assert_eq!(sha256_file(&w.join("down.bin")), want);
}
