//! `yonder fs TARGET …`.

use crate::cli::{FsArgs, FsOp};
use crate::connect;
use crate::format;
use crate::progress::Progress;
use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use yonder_client::{Client, FileType, RemoteError, WriteOptions};
use yonder_proto::pb::ErrorKind;

/// Files transferred at once in a tree copy: enough to hide per-file round
/// trips, few enough not to exhaust file descriptors on either side.
const TREE_PARALLELISM: usize = 16;

/// Chunks (256 KiB each) queued between receiving a download and writing it.
const WRITE_QUEUE: usize = 8;

pub async fn run(run_dir: Option<&Path>, args: FsArgs) -> anyhow::Result<()> {
    let (target, client) = connect(run_dir, &args.target).await?;
    // On `local`, relative paths mean the current directory; elsewhere they
    // mean the home directory (the daemon's working directory), as in scp.
    let local = target.is_local();
    let rp = |p: &Path| -> anyhow::Result<PathBuf> {
        if local && p.is_relative() {
            Ok(std::path::absolute(p)?)
        } else {
            Ok(p.to_path_buf())
        }
    };
    match args.op {
        FsOp::Ls {
            path,
            long,
            all,
            json,
        } => ls(&client, &rp(&path)?, &path, long, all, json).await,
        FsOp::Stat { path, follow, json } => {
            let m = client.stat(rp(&path)?, follow).await?;
            format::print_stat(&path, &m, json)
        }
        FsOp::Cat { paths } => {
            let mut out = tokio::io::stdout();
            for p in paths {
                let mut s = client.read(rp(&p)?, 0, None).await?;
                while let Some(chunk) = s.next().await {
                    out.write_all(&chunk?).await?;
                }
            }
            out.flush().await?;
            Ok(())
        }
        FsOp::Put { local: src, remote } => put(&client, &src, &rp(&remote)?).await,
        FsOp::Get { remote, local: dst } => get(&client, &rp(&remote)?, &dst).await,
        FsOp::Rm {
            paths,
            recursive,
            force,
        } => {
            for p in paths {
                match client.remove(rp(&p)?, recursive).await {
                    Err(e) if force && e.kind == ErrorKind::NotFound => {}
                    Err(e) if e.kind == ErrorKind::DirectoryNotEmpty => {
                        return Err(anyhow::Error::new(e)
                            .context("use -r to remove a directory and its contents"));
                    }
                    r => r?,
                }
            }
            Ok(())
        }
        FsOp::Mv {
            from,
            to,
            no_clobber,
        } => {
            let (from, to) = (rp(&from)?, rp(&to)?);
            let to = into_dir(&client, &from, to).await;
            Ok(client.rename(&from, &to, !no_clobber).await?)
        }
        FsOp::Cp {
            from,
            to,
            recursive,
            no_clobber,
        } => {
            let (from, to) = (rp(&from)?, rp(&to)?);
            let to = into_dir(&client, &from, to).await;
            Ok(client.copy(&from, &to, recursive, !no_clobber).await?)
        }
        FsOp::Mkdir {
            paths,
            parents,
            mode,
        } => {
            for p in paths {
                client.mkdir(rp(&p)?, parents, mode).await?;
            }
            Ok(())
        }
        FsOp::Chmod { mode, paths } => {
            for p in paths {
                client.chmod(rp(&p)?, mode).await?;
            }
            Ok(())
        }
        FsOp::Ln {
            symbolic: _,
            target: t,
            link,
        } => Ok(client.symlink(&t, rp(&link)?).await?),
        op @ FsOp::Watch { .. } => crate::watch_cmd::run(&client, local, op).await,
        FsOp::Readlink { path } => print_path(&client.read_link(rp(&path)?).await?),
        FsOp::Realpath { path } => print_path(&client.canonicalize(rp(&path)?).await?),
    }
}

fn print_path(p: &Path) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(p.as_os_str().as_bytes())?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `mv a dir` and `cp a dir` put `a` inside `dir`, as the Unix tools do.
async fn into_dir(client: &Client, from: &Path, to: PathBuf) -> PathBuf {
    match (client.stat(&to, true).await, from.file_name()) {
        (Ok(m), Some(name)) if m.file_type() == FileType::Directory => to.join(name),
        _ => to,
    }
}

async fn ls(
    client: &Client,
    path: &Path,
    shown: &Path,
    long: bool,
    all: bool,
    json: bool,
) -> anyhow::Result<()> {
    let meta = client.stat(path, true).await?;
    let mut out = std::io::stdout().lock();
    if meta.file_type() != FileType::Directory {
        let m = client.stat(path, false).await?;
        if json {
            serde_json::to_writer_pretty(&mut out, &[format::json_metadata(shown, &m)])?;
            writeln!(out)?;
        } else {
            write_entry(&mut out, shown.as_os_str().as_bytes(), &m, long)?;
        }
        return Ok(());
    }
    let mut entries = client.read_dir(path, long || json).await?;
    entries.retain(|e| all || !e.name.starts_with(b"."));
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let items: Vec<_> = entries
            .iter()
            .filter_map(|e| {
                e.metadata.as_ref().map(|m| {
                    format::json_metadata(Path::new(std::ffi::OsStr::from_bytes(&e.name)), m)
                })
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &items)?;
        writeln!(out)?;
        return Ok(());
    }
    for e in &entries {
        match (&e.metadata, long) {
            (Some(m), true) => write_entry(&mut out, &e.name, m, true)?,
            _ => {
                out.write_all(&e.name)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

fn write_entry(
    out: &mut impl Write,
    name: &[u8],
    m: &yonder_client::Metadata,
    long: bool,
) -> std::io::Result<()> {
    if long {
        let t = format::utc(m.mtime_ns);
        write!(
            out,
            "{} {:>5} {:>5} {:>12} {} ",
            format::mode_string(m.file_type(), m.mode),
            m.uid,
            m.gid,
            m.size,
            &t[..19]
        )?;
    }
    out.write_all(name)?;
    if long && let Some(t) = &m.symlink_target {
        out.write_all(b" -> ")?;
        out.write_all(t)?;
    }
    out.write_all(b"\n")
}

// ------------------------------------------------------------------ put

/// One thing to create on the target in a tree upload.
enum Item {
    Dir { rel: PathBuf, mode: u32 },
    File { rel: PathBuf, mode: u32, size: u64 },
    Link { rel: PathBuf, target: PathBuf },
}

fn walk_local(root: &Path, rel: &Path, out: &mut Vec<Item>) -> anyhow::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let m = std::fs::symlink_metadata(e.path())
            .with_context(|| format!("reading {}", e.path().display()))?;
        if m.is_dir() {
            out.push(Item::Dir {
                rel: r.clone(),
                mode: m.mode() & 0o7777,
            });
            walk_local(root, &r, out)?;
        } else if m.file_type().is_symlink() {
            out.push(Item::Link {
                rel: r,
                target: std::fs::read_link(e.path())?,
            });
        } else if m.is_file() {
            out.push(Item::File {
                rel: r,
                mode: m.mode() & 0o7777,
                size: m.len(),
            });
        } else {
            eprintln!(
                "yonder: skipping {} (not a file, directory or symlink)",
                e.path().display()
            );
        }
    }
    Ok(())
}

async fn upload_file(
    client: &Client,
    src: &Path,
    dst: &Path,
    mode: u32,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if use_bulk(client, size) {
        let p = progress.clone();
        let sent = client
            .bulk_write(
                dst,
                file.try_clone()?,
                size,
                Some(mode),
                Arc::new(move |n| p.step(n)),
            )
            .await?;
        if sent.is_some() {
            return Ok(());
        }
    }
    // Reads run on one blocking thread feeding a bounded queue, as downloads
    // write: each chunk is read straight into the buffer that is sent (no
    // zeroing, no copy out of tokio::fs::File's own buffer, no thread hop
    // per chunk), and the disk read overlaps sending the previous chunk.
    // After a dropped connection the upload starts over: a new reader of the
    // file opened again (its own offset, whatever a reader still winding
    // down does), and the progress bar goes back by what the last counted.
    let mut first = Some(file);
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let chunks = || {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(WRITE_QUEUE);
        let p = progress.clone();
        let before = counted.swap(0, std::sync::atomic::Ordering::Relaxed);
        p.step(-(before as i64));
        let counted = counted.clone();
        let file = first.take().map_or_else(|| std::fs::File::open(src), Ok);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let file = match file {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let chunk = yonder_proto::limits::DATA_CHUNK;
            loop {
                // read_to_end fills spare capacity without zeroing it; `take`
                // keeps each chunk to one message.
                let mut buf = Vec::with_capacity(chunk);
                match (&file).take(chunk as u64).read_to_end(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        p.add(n as u64);
                        counted.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                        if tx.blocking_send(Ok(buf.into())).is_err() {
                            return; // the upload failed or was dropped
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    };
    // Like cp and rsync: atomic, but no fsync per file (that made a tree of
    // 10,000 small files five times slower than rsync).
    let opts = WriteOptions {
        mode: Some(mode),
        skip_fsync: true,
        ..Default::default()
    };
    client.write_again(dst, opts, chunks).await?;
    Ok(())
}

/// Whether a file of `size` bytes goes on the bulk channel (a session of
/// its own beside the main connection, see `yonder_proto::bulk`): when the
/// target has one, the file is large enough to be worth one more session,
/// and `YONDER_BULK=off` does not turn it off.
fn use_bulk(client: &Client, size: u64) -> bool {
    client.has_bulk()
        && size >= yonder_proto::bulk::MIN_SIZE
        && std::env::var_os("YONDER_BULK").is_none_or(|v| v != "off")
}

async fn put(client: &Client, src: &Path, dst: &Path) -> anyhow::Result<()> {
    if src == Path::new("-") {
        client
            .write_from(dst, WriteOptions::default(), tokio::io::stdin())
            .await?;
        return Ok(());
    }
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
    let dst_is_dir =
        matches!(client.stat(dst, true).await, Ok(m) if m.file_type() == FileType::Directory);
    let name = src.file_name();
    let dest = match (dst_is_dir, name) {
        (true, Some(n)) => dst.join(n),
        _ => dst.to_path_buf(),
    };
    if meta.is_file() {
        let progress = Arc::new(Progress::new(Some(meta.len()), "upload"));
        upload_file(client, src, &dest, meta.mode() & 0o7777, &progress).await?;
        progress.finish();
        return Ok(());
    }
    if !meta.is_dir() {
        bail!("{} is not a file or directory", src.display());
    }
    if client.supports_tree() {
        return crate::fs_tree::put_dir(client, src, &dest).await;
    }
    let mut items = Vec::new();
    walk_local(src, Path::new(""), &mut items)?;
    let total: u64 = items
        .iter()
        .map(|i| {
            if let Item::File { size, .. } = i {
                *size
            } else {
                0
            }
        })
        .sum();
    let progress = Arc::new(Progress::new(Some(total), "upload"));
    match client.mkdir(&dest, false, Some(0o700)).await {
        Err(e) if e.kind == ErrorKind::AlreadyExists => {}
        r => r?,
    }
    // Directories first, in walk order (parents before children), then files
    // in parallel. Directories are created private and get their real mode at
    // the end, so a read-only directory can still be filled.
    for item in &items {
        match item {
            Item::Dir { rel, .. } => match client.mkdir(dest.join(rel), false, Some(0o700)).await {
                Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                r => r?,
            },
            Item::Link { rel, target } => match client.symlink(target, dest.join(rel)).await {
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    client.remove(dest.join(rel), false).await?;
                    client.symlink(target, dest.join(rel)).await?;
                }
                r => r?,
            },
            Item::File { .. } => {}
        }
    }
    futures::stream::iter(items.iter().filter_map(|i| match i {
        Item::File { rel, mode, .. } => Some((rel, *mode)),
        _ => None,
    }))
    .map(|(rel, mode)| {
        let progress = progress.clone();
        let dest = &dest;
        async move { upload_file(client, &src.join(rel), &dest.join(rel), mode, &progress).await }
    })
    .buffer_unordered(TREE_PARALLELISM)
    .try_collect::<Vec<()>>()
    .await?;
    for item in items.iter().rev() {
        if let Item::Dir { rel, mode } = item {
            client.chmod(dest.join(rel), *mode).await?;
        }
    }
    client.chmod(&dest, meta.mode() & 0o7777).await?;
    progress.finish();
    Ok(())
}

// ------------------------------------------------------------------ get

/// Downloads one remote file to `dst` through a temp file and a rename, so
/// an interrupted download never leaves a half-written file behind.
async fn download_file(
    client: &Client,
    src: &Path,
    dst: &Path,
    mode: u32,
    size: u64,
    progress: &Arc<Progress>,
) -> anyhow::Result<()> {
    let dir = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dst
        .file_name()
        .with_context(|| format!("{} is not a file name", dst.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".yonder-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = async {
        let f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let bulk = if use_bulk(client, size) {
            let p = progress.clone();
            client
                .bulk_read(src, f.try_clone()?, Arc::new(move |n| p.step(n)))
                .await?
        } else {
            None
        };
        let f = match bulk {
            Some(_) => f,
            None => fill_over_main_connection(client, src, f, progress)
                .await
                .with_context(|| format!("writing {}", dst.display()))?,
        };
        f.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("writing {}", dst.display()))?;
        drop(f);
        // No fsync per file, like cp and rsync; the rename keeps it atomic.
        tokio::fs::rename(&tmp, dst)
            .await
            .with_context(|| format!("cannot replace {}", dst.display()))?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads the remote file `src` into `f` through the main connection (an
/// HTTP/2 stream); `f` back when all of it is written.
async fn fill_over_main_connection(
    client: &Client,
    src: &Path,
    mut f: std::fs::File,
    progress: &Progress,
) -> anyhow::Result<std::fs::File> {
    let mut s = client.read(src, 0, None).await?;
    // Writes run on one blocking thread fed by a bounded queue: no thread
    // hop and no copy per chunk (tokio::fs::File does both), and the disk
    // write overlaps receiving the next chunk.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(WRITE_QUEUE);
    let writer = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            std::io::Write::write_all(&mut f, &chunk[..])?;
        }
        Ok::<_, std::io::Error>(f)
    });
    while let Some(chunk) = s.next().await {
        let chunk = chunk?;
        let n = chunk.len() as u64;
        if tx.send(chunk).await.is_err() {
            break; // the writer failed: its result says why
        }
        progress.add(n);
    }
    drop(tx);
    Ok(writer.await??)
}

async fn get(client: &Client, src: &Path, dst: &Path) -> anyhow::Result<()> {
    if dst == Path::new("-") {
        let mut out = tokio::io::stdout();
        let mut s = client.read(src, 0, None).await?;
        while let Some(c) = s.next().await {
            out.write_all(&c?).await?;
        }
        out.flush().await?;
        return Ok(());
    }
    let meta = client.stat(src, true).await?;
    let dest = match (dst.is_dir(), src.file_name()) {
        (true, Some(n)) => dst.join(n),
        _ => dst.to_path_buf(),
    };
    match meta.file_type() {
        FileType::File => {
            let progress = Arc::new(Progress::new(Some(meta.size), "download"));
            download_file(client, src, &dest, meta.mode, meta.size, &progress).await?;
            progress.finish();
            Ok(())
        }
        FileType::Directory if client.supports_tree() => {
            crate::fs_tree::get_dir(client, src, &dest).await
        }
        FileType::Directory => {
            // Breadth-first over the remote tree, creating local directories
            // as we go and collecting files to fetch in parallel.
            let mut files = Vec::new();
            let mut dirs = vec![(PathBuf::new(), meta.mode)];
            let mut queue = std::collections::VecDeque::from([PathBuf::new()]);
            create_local_dir(&dest)?;
            while let Some(rel) = queue.pop_front() {
                let entries = client.read_dir(src.join(&rel), true).await?;
                for e in entries {
                    let Some(m) = e.metadata else { continue };
                    let r = rel.join(std::ffi::OsStr::from_bytes(&e.name));
                    match m.file_type() {
                        FileType::Directory => {
                            create_local_dir(&dest.join(&r))?;
                            dirs.push((r.clone(), m.mode));
                            queue.push_back(r);
                        }
                        FileType::File => files.push((r, m.mode, m.size)),
                        FileType::Symlink => {
                            let target = std::ffi::OsStr::from_bytes(
                                m.symlink_target.as_deref().unwrap_or_default(),
                            );
                            let l = dest.join(&r);
                            let _ = std::fs::remove_file(&l);
                            std::os::unix::fs::symlink(target, &l)
                                .with_context(|| format!("creating {}", l.display()))?;
                        }
                        _ => eprintln!(
                            "yonder: skipping {} (not a file, directory or symlink)",
                            src.join(&r).display()
                        ),
                    }
                }
            }
            let total = files.iter().map(|f| f.2).sum();
            let progress = Arc::new(Progress::new(Some(total), "download"));
            futures::stream::iter(files.iter())
                .map(|(r, mode, size)| {
                    let (from, to) = (src.join(r), dest.join(r));
                    let progress = &progress;
                    async move { download_file(client, &from, &to, *mode, *size, progress).await }
                })
                .buffer_unordered(TREE_PARALLELISM)
                .try_collect::<Vec<()>>()
                .await?;
            for (r, mode) in dirs.iter().rev() {
                let d = dest.join(r);
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(*mode))
                    .with_context(|| format!("chmod {}", d.display()))?;
            }
            progress.finish();
            Ok(())
        }
        _ => Err(
            RemoteError::new(ErrorKind::InvalidArgument, "not a file or directory")
                .with_path(src)
                .into(),
        ),
    }
}

fn create_local_dir(d: &Path) -> anyhow::Result<()> {
    match std::fs::create_dir(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", d.display())),
    }
}
