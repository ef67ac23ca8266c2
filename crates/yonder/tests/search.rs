//! Text and file-name search against a real daemon, checked against the real
//! `rg` on the same trees: the user asks yonder what rg would answer, and
//! gets the same lines and the same match ranges.

mod common;

use common::*;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use yonder_client::search::{CaseMode, FindRequest, SearchEvent, SearchRequest, SearchStats};
use yonder_proto::paths::to_wire;
use yonder_proto::pb::ErrorKind;

/// A non-UTF-8 file name (0xff is never valid UTF-8).
const WEIRD_NAME: &[u8] = b"n\xffame \xc3\xa9.txt";

fn write(root: &Path, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A project as an editor would open it: a git repository (rg honours
/// .gitignore only inside one) with ignored files, hidden files, binaries,
/// nested directories and a name that is not UTF-8, all holding matches.
fn project(root: &Path) {
    std::fs::create_dir_all(root.join(".git")).unwrap();
    write(root, ".gitignore", "ignored/\n*.log\n");
    write(
        root,
        "a.txt",
        "hello world\nHello World\nHELLO\nhelloworld hello\nsay hello. hello, hello!\nnothing here\nhel.o and hello\n",
    );
    write(
        root,
        "src/main.rs",
        "fn main() {\n    println!(\"hello\");\n    let shell = 1; // Hello again\n}\n",
    );
    write(
        root,
        "src/lib.rs",
        "pub fn hellö() {}\n// hello hello hello\n",
    );
    write(
        root,
        "nested/deep/er/still/notes.md",
        "# Hello\n\ntext\nmore hello text\n",
    );
    write(root, "ignored/secret.txt", "hello from an ignored dir\n");
    write(root, "debug.log", "hello log\nHELLO log\n");
    write(root, ".hidden/h.txt", "hello hidden\n");
    write(root, ".env", "HELLO=1\nhello=2\n");
    write(root, ".ignore", "skipped-by-dot-ignore.txt\n");
    write(root, "skipped-by-dot-ignore.txt", "hello\n");
    // A match before a NUL in the first buffer, and a binary whose NUL
    // comes only after 200 KB of matching text (rg reports what it saw
    // before the NUL in that case).
    write(root, "small.bin", b"hello\x00\nhello again\n");
    let mut big = Vec::new();
    while big.len() < 200_000 {
        big.extend_from_slice(b"a line that says hello to the binary\n");
    }
    big.extend_from_slice(b"\x00\nhello after the nul\n");
    write(root, "big.bin", big);
    let mut weird = root.join("odd");
    std::fs::create_dir_all(&weird).unwrap();
    weird.push(OsStr::from_bytes(WEIRD_NAME));
    std::fs::write(&weird, "first hello\nno\nHello last\n").unwrap();
}

/// The rg flags of a case, turned into our request.
fn request(root: &Path, pattern: &str, flags: &[&str]) -> SearchRequest {
    let mut r = SearchRequest {
        path: to_wire(root),
        pattern: pattern.into(),
        respect_gitignore: true,
        ..Default::default()
    };
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match *f {
            "-i" => r.case_mode = CaseMode::CaseInsensitive as i32,
            "-S" => r.case_mode = CaseMode::CaseSmart as i32,
            "-w" => r.whole_word = true,
            "-F" => r.fixed_strings = true,
            "--hidden" => r.hidden = true,
            "--no-ignore" => r.respect_gitignore = false,
            "-g" => r.globs.push(it.next().unwrap().to_string()),
            "-C" => {
                let n = it.next().unwrap().parse().unwrap();
                r.context_before = n;
                r.context_after = n;
            }
            "--max-filesize" => r.max_file_size = it.next().unwrap().parse().unwrap(),
            other => panic!("no mapping for {other}"),
        }
    }
    r
}

/// (path, line number, match ranges) of one line; ranges empty for context.
type Line = (Vec<u8>, u64, Vec<(usize, usize)>);

#[derive(Debug, Default)]
struct Found {
    matches: BTreeSet<Line>,
    context: BTreeSet<Line>,
}

fn rg_text(v: &serde_json::Value) -> Vec<u8> {
    if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
        return t.as_bytes().to_vec();
    }
    base64_decode(v["bytes"].as_str().expect("text or bytes"))
}

/// rg --json writes names that are not UTF-8 as `{"bytes": BASE64}`: a
/// dozen lines here instead of a dependency.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        for i in 0..data.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// What the real rg finds.
fn rg(root: &Path, pattern: &str, flags: &[&str]) -> Found {
    let out = Command::new("rg")
        .arg("--json")
        .args(flags)
        .arg("--")
        .arg(pattern)
        .arg(root)
        // rg roots -g globs at its working directory; yonder roots them at
        // the searched path (the server has no client directory).
        .current_dir(root)
        // No user config may change what rg does.
        .env_remove("RIPGREP_CONFIG_PATH")
        .output()
        .expect("run rg");
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "rg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = Found::default();
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let kind = v["type"].as_str().unwrap();
        if kind != "match" && kind != "context" {
            continue;
        }
        let d = &v["data"];
        let path = rg_text(&d["path"]);
        let n = d["line_number"].as_u64().unwrap();
        let ranges = d["submatches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["start"].as_u64().unwrap() as usize,
                    m["end"].as_u64().unwrap() as usize,
                )
            })
            .collect();
        if kind == "match" {
            f.matches.insert((path, n, ranges));
        } else {
            f.context.insert((path, n, Vec::new()));
        }
    }
    f
}

async fn grep_all(c: &yonder_client::Client, req: SearchRequest) -> (Found, SearchStats) {
    let mut s = c.grep(req).await.expect("grep");
    let mut f = Found::default();
    let mut stats = None;
    while let Some(ev) = s.next().await {
        match ev.expect("grep stream") {
            SearchEvent::Line(l) => {
                assert!(stats.is_none(), "a line after the stats");
                let key: Line = (
                    l.path.as_os_str().as_bytes().to_vec(),
                    l.line_number,
                    l.ranges.iter().map(|r| (r.start, r.end)).collect(),
                );
                if l.is_context {
                    assert!(key.2.is_empty());
                    f.context.insert(key);
                } else {
                    assert!(!key.2.is_empty(), "a match without ranges: {l:?}");
                    f.matches.insert(key);
                }
            }
            SearchEvent::Done(s) => stats = Some(s),
        }
    }
    (f, stats.expect("stats at the end"))
}

/// Searches like `rg` and asserts the same matches, context and match
/// count (the case must match something); returns rg's result and ours.
async fn assert_like_rg(
    c: &yonder_client::Client,
    root: &Path,
    pattern: &str,
    flags: &[&str],
) -> (Found, SearchStats) {
    let want = rg(root, pattern, flags);
    let (got, stats) = grep_all(c, request(root, pattern, flags)).await;
    assert!(
        !want.matches.is_empty(),
        "case {pattern} {flags:?} must match something"
    );
    assert_eq!(
        show(&got.matches),
        show(&want.matches),
        "matches for {pattern} {flags:?}"
    );
    assert_eq!(
        show(&got.context),
        show(&want.context),
        "context for {pattern} {flags:?}"
    );
    assert_eq!(stats.matched_lines, want.matches.len() as u64);
    (want, stats)
}

fn show(set: &BTreeSet<Line>) -> String {
    set.iter()
        .map(|(p, n, r)| format!("{}:{n}:{r:?}", String::from_utf8_lossy(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn grep_finds_what_rg_finds_for_every_option() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work().join("proj");
    project(&root);
    let cases: &[(&str, &[&str])] = &[
        ("hello", &[]),
        ("hello", &["-i"]),
        ("Hello", &["-S"]),
        ("hello", &["-S"]),
        ("hello", &["-w"]),
        ("hello", &["-w", "-i"]),
        ("hel.o", &["-F"]),
        ("hel.o", &[]),
        ("h[aeö]llö?\\w*", &[]),
        ("hello", &["-g", "*.txt"]),
        ("hello", &["-g", "!*.txt"]),
        ("hello", &["-g", "src/**", "-g", "!lib.rs"]),
        ("hello", &["--hidden"]),
        ("hello", &["--no-ignore"]),
        ("hello", &["--hidden", "--no-ignore", "-i"]),
        ("hello", &["-C", "1"]),
        ("hello", &["--max-filesize", "1000"]),
    ];
    for (pattern, flags) in cases {
        let (want, stats) = assert_like_rg(&c, &root, pattern, flags).await;
        let files: BTreeSet<_> = want.matches.iter().map(|m| &m.0).collect();
        assert_eq!(stats.files_matched, files.len() as u64);
        assert!(!stats.truncated);
    }

    // The tree's traps really were traps: each flag changed the answer.
    let default = rg(&root, "hello", &[]).matches;
    let has = |set: &BTreeSet<Line>, needle: &[u8]| {
        set.iter()
            .any(|m| m.0.windows(needle.len()).any(|w| w == needle))
    };
    assert!(!has(&default, b"ignored/"));
    assert!(!has(&default, b"debug.log"));
    assert!(!has(&default, b".hidden"));
    assert!(!has(&default, b"dot-ignore"));
    assert!(has(&default, WEIRD_NAME));
    assert!(has(
        &rg(&root, "hello", &["--no-ignore"]).matches,
        b"ignored/"
    ));
    assert!(has(&rg(&root, "hello", &["--hidden"]).matches, b".hidden"));
    // The binary with the NUL after 200 KB has matches before it, none
    // after; the one with an early NUL has none at all.
    assert!(has(&default, b"big.bin"));
    assert!(
        !default
            .iter()
            .any(|m| m.0.ends_with(b"big.bin") && m.1 > 5500)
    );
}

// Case-insensitive alternations of longer words take the server's own
// literal prefilter (see yonder-server's ops/search/prefilter.rs) instead of
// the regex engine's plan: the lines and ranges must still be rg's, across
// buffer refills, binary files, Unicode case folding and every flag that
// changes the regex.
#[tokio::test]
async fn case_insensitive_alternations_find_what_rg_finds() {
    let d = Daemon::start();
    let c = d.client().await;
    let root = d.work().join("words");
    write(
        &root,
        "a.txt",
        "Lattice and lanterns and LATTICE\nlatt lant lat lan\n\nthe lanternsmith\n\
         no match, but LATTICE.|Lanterns\nsome lattices, a LaNtErNs\n\u{212A}lattice \u{17F}\n",
    );
    // Matches on both sides of the searcher's buffer refills.
    let mut big = String::new();
    for i in 0..30_000 {
        match i % 7 {
            0 => big.push_str("filler line with latt and lant but no word\n"),
            3 => big.push_str("a Lattice here, lanterns there\n"),
            _ => big.push_str("plain text without the words\n"),
        }
    }
    write(&root, "big.txt", &big);
    write(&root, "bin.dat", b"lattice\n\x00lanterns\n");
    write(&root, "odd.txt", b"\xff lattice \xfe\nLANTERNS\xff\n");
    let cases: &[(&str, &[&str])] = &[
        ("Lattice|lanterns", &["-i"]),
        ("Lattice|lanterns", &["-S"]),
        ("lattice|lanterns", &["-S"]),
        ("lattice|lanterns", &["-i", "-w"]),
        ("lattice|lanterns", &["-i", "-C", "1"]),
        ("lattice.|lanterns", &["-i", "-F"]),
        ("lattice\\w*|lanterns", &["-i"]),
    ];
    for (pattern, flags) in cases {
        assert_like_rg(&c, &root, pattern, flags).await;
    }
}

#[tokio::test]
async fn context_lines_surround_each_match() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    write(&w, "f.txt", "1\n2\nmatch 3\n4\n5\n6\n7\nmatch 8\n9\n");
    let mut req = request(&w, "match", &[]);
    req.context_before = 2;
    req.context_after = 1;
    let mut s = c.grep(req).await.unwrap();
    let mut lines = Vec::new();
    while let Some(ev) = s.next().await {
        if let SearchEvent::Line(l) = ev.unwrap() {
            assert_eq!(*l.path, *w.join("f.txt"));
            lines.push((
                l.line_number,
                String::from_utf8(l.line.to_vec()).unwrap(),
                l.is_context,
                l.column(),
            ));
        }
    }
    let want = vec![
        (1, "1".to_string(), true, None),
        (2, "2".into(), true, None),
        (3, "match 3".into(), false, Some(1)),
        (4, "4".into(), true, None),
        (6, "6".into(), true, None),
        (7, "7".into(), true, None),
        (8, "match 8".into(), false, Some(1)),
        (9, "9".into(), true, None),
    ];
    assert_eq!(lines, want);
}

#[tokio::test]
async fn max_results_stops_the_search_and_says_so() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    for i in 0..40 {
        write(
            &w,
            format!("d{}/f{i}.txt", i % 4),
            "x hit\ny\nhit hit\n".repeat(5),
        );
    }
    let mut req = request(&w, "hit", &[]);
    req.max_results = 7;
    let (got, stats) = grep_all(&c, req).await;
    assert_eq!(got.matches.len(), 7);
    assert_eq!(stats.matched_lines, 7);
    assert!(stats.truncated);

    // A limit above the total is not a truncation.
    let mut req = request(&w, "hit", &[]);
    req.max_results = 10_000;
    let (got, stats) = grep_all(&c, req).await;
    assert_eq!(got.matches.len(), 40 * 10);
    assert_eq!((stats.matched_lines, stats.truncated), (400, false));
    assert_eq!((stats.files_searched, stats.files_matched), (40, 40));
}

#[tokio::test]
async fn max_file_size_skips_big_files() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    write(&w, "small.txt", "needle\n");
    write(&w, "big.txt", format!("needle\n{}", "x".repeat(10_000)));
    let mut req = request(&w, "needle", &[]);
    req.max_file_size = 5_000;
    let (got, stats) = grep_all(&c, req).await;
    let paths: Vec<_> = got.matches.iter().map(|m| m.0.clone()).collect();
    assert_eq!(
        paths,
        vec![w.join("small.txt").as_os_str().as_bytes().to_vec()]
    );
    assert_eq!(stats.files_searched, 1);
}

#[tokio::test]
async fn bad_patterns_globs_and_paths_are_typed_errors() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work();
    let e = c.grep(request(&w, "(unclosed", &[])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("unclosed group"), "{e}");

    let e = c.grep(request(&w, "x", &["-g", "a[b"])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.contains("a[b"), "{e}");

    let missing = w.join("no/such/dir");
    let e = c.grep(request(&missing, "x", &[])).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.path.as_deref(), Some(missing.as_path()));

    let e = c
        .find_all(FindRequest {
            path: to_wire(&missing),
            query: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.path.as_deref(), Some(missing.as_path()));
}

/// Bytes the process read through read(2) and friends, from /proc: a
/// deterministic measure of how much of the tree the daemon searched.
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/PID/io");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .expect("rchar")
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn dropping_the_stream_stops_the_walk_on_the_server() {
    let d = Daemon::start();
    let pid = d.child.id();
    let c = d.client().await;
    let w = d.work().join("big");
    // 8,000 files of 8 KiB, every line a match: 64 MiB of text, enough
    // that a walk which kept going after the drop would be plain to see.
    let content = "a matching line with a needle in it, and some padding text\n".repeat(140);
    for i in 0..8_000 {
        write(&w, format!("d{}/e{}/f{i}.txt", i % 20, i % 7), &content);
    }
    let tree_bytes = 8_000 * content.len() as u64;

    let before = bytes_read(pid);
    let mut s = c.grep(request(&w, "needle", &[])).await.unwrap();
    match s.next().await {
        Some(Ok(SearchEvent::Line(_))) => {}
        other => panic!("expected a first match, got {other:?}"),
    }
    drop(s);

    // The connection serves the next call at once: nothing is queued
    // behind the abandoned search.
    let t = std::time::Instant::now();
    c.stat(&w, false).await.unwrap();
    // (Generous: the abandoned walk's threads may still hold both cores.)
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // The daemon stops reading: its read counter settles...
    let mut last = bytes_read(pid);
    let start = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = bytes_read(pid);
        if now == last {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "the daemon kept reading");
        last = now;
    }
    // ...having read a small part of the tree (the queue and the HTTP/2
    // window bound what it could run ahead by), not all of it.
    let read = last - before;
    assert!(
        read < tree_bytes / 4,
        "read {read} of {tree_bytes} bytes after the client went away"
    );

    // Control: a search that is not dropped reads the whole tree, so the
    // measure above does see a walk.
    let before = bytes_read(pid);
    let (got, stats) = grep_all(&c, request(&w, "needle", &[])).await;
    assert_eq!(stats.files_searched, 8_000);
    assert_eq!(got.matches.len(), 8_000 * 140);
    assert!(bytes_read(pid) - before >= tree_bytes);
}

#[tokio::test]
async fn find_ranks_the_closest_name_first_and_respects_ignores() {
    let d = Daemon::start();
    let c = d.client().await;
    let w = d.work().join("proj");
    project(&w);
    for (i, name) in [
        "src/domain/maintain.rs",
        "tests/main_test.rs",
        "docs/manual/index.rs",
        "src/ui/menu_action.rs",
        "main/readme.md",
    ]
    .iter()
    .enumerate()
    {
        write(&w, name, format!("{i}\n"));
    }
    for i in 0..300 {
        write(&w, format!("noise/n{i}/file{i}.txt"), "x");
    }
    let find = |query: &str, hidden: bool, ignore: bool| FindRequest {
        path: to_wire(&w),
        query: query.into(),
        max_results: 5,
        hidden,
        respect_gitignore: ignore,
        globs: vec![],
    };

    let r = c.find_all(find("main.rs", false, true)).await.unwrap();
    assert!(r.done);
    let paths: Vec<_> = r.results.iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths[0], Path::new("src/main.rs"), "{paths:?}");
    assert!(r.results.len() <= 5);
    assert!(r.results.windows(2).all(|p| p[0].score >= p[1].score));
    // Positions point at the matched bytes of the path.
    let first = &r.results[0];
    let bytes = first.path.as_os_str().as_bytes();
    let picked: Vec<u8> = first.positions.iter().map(|&p| bytes[p]).collect();
    assert_eq!(picked, b"main.rs");
    assert!(r.files_scanned >= 300);

    // Ignored and hidden files only on request.
    let names = |r: &yonder_client::search::FindUpdate| -> Vec<PathBuf> {
        r.results.iter().map(|r| r.path.clone()).collect()
    };
    let r = c.find_all(find("secret", false, true)).await.unwrap();
    assert!(names(&r).is_empty(), "{:?}", names(&r));
    let r = c.find_all(find("secret", false, false)).await.unwrap();
    assert_eq!(names(&r), vec![PathBuf::from("ignored/secret.txt")]);
    let r = c.find_all(find("hidden/h", false, true)).await.unwrap();
    assert!(names(&r).is_empty());
    let r = c.find_all(find("hidden/h", true, true)).await.unwrap();
    assert_eq!(names(&r), vec![PathBuf::from(".hidden/h.txt")]);

    // A non-UTF-8 name is found and its positions are byte offsets.
    let r = c.find_all(find("odd/ame", false, true)).await.unwrap();
    let weird = Path::new("odd").join(OsStr::from_bytes(WEIRD_NAME));
    assert_eq!(names(&r)[0], weird);
    let bytes = weird.as_os_str().as_bytes();
    let picked: Vec<u8> = r.results[0].positions.iter().map(|&p| bytes[p]).collect();
    assert_eq!(picked, b"odd/ame");

    // Globs narrow the candidates.
    let mut req = find("rs", false, true);
    req.globs = vec!["src/**".into()];
    req.max_results = 100;
    let r = c.find_all(req).await.unwrap();
    assert!(!r.results.is_empty());
    assert!(r.results.iter().all(|r| r.path.starts_with("src")));
}

#[tokio::test]
async fn cli_prints_like_rg_and_exits_like_rg() {
    let d = Daemon::start();
    let w = d.work().join("proj");
    project(&w);

    // Same lines as `rg --no-heading --column`, run from the same place.
    for flags in [&[][..], &["-i", "-g", "!*.bin"][..], &["-C", "1"][..]] {
        let (code, out, err) = run(d
            .cli()
            .current_dir(&w)
            .args(["search", "local", "hello"])
            .args(flags));
        assert_eq!(code, 0, "{err}");
        let want = Command::new("rg")
            .args(["--no-heading", "--column", "--color", "never"])
            .args(flags)
            .arg("hello")
            .current_dir(&w)
            .env_remove("RIPGREP_CONFIG_PATH")
            .output()
            .unwrap();
        let lines = |b: &[u8]| -> BTreeSet<Vec<u8>> {
            b.split(|c| *c == b'\n')
                .filter(|l| !l.is_empty() && *l != b"--")
                // rg's note after the matches it saw before a NUL; yonder
                // has no such line (the protocol carries no warnings).
                .filter(|l| !l.windows(12).any(|w| w == b"WARNING: sto"))
                .map(|l| l.to_vec())
                .collect()
        };
        assert_eq!(
            lines(&out),
            lines(&want.stdout),
            "flags {flags:?}:\n{}",
            String::from_utf8_lossy(&out)
        );
        // The non-UTF-8 name is printed as its raw bytes, as rg does.
        assert!(out.windows(WEIRD_NAME.len()).any(|x| x == WEIRD_NAME));
    }

    // Exactly the format, on a known line; a relative PATH is kept in it.
    let (code, out, _) = run(d
        .cli()
        .current_dir(&w)
        .args(["search", "local", "println", "src"]));
    assert_eq!(code, 0);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "src/main.rs:2:5:    println!(\"hello\");\n"
    );

    // Nothing found: exit 1 and no output, like rg.
    let (code, out, _) =
        run(d
            .cli()
            .current_dir(&w)
            .args(["search", "local", "no-such-text-anywhere"]));
    assert_eq!((code, out.len()), (1, 0));

    // Errors name their cause.
    let (code, _, err) = run(d.cli().current_dir(&w).args(["search", "local", "(x"]));
    assert_eq!(code, 1);
    assert!(err.contains("unclosed group"), "{err}");
    let (code, _, err) = run(d.cli().args(["search", "local", "x", "/no/such/dir"]));
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/dir"), "{err}");

    // --json: one object per line, then the summary; -m limits.
    let (code, out, err) = run(d
        .cli()
        .current_dir(&w)
        .args(["search", "local", "--json", "-m", "3", "hello"]));
    assert_eq!(code, 0, "{err}");
    let objs: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 4);
    for o in &objs[..3] {
        assert_eq!(o["type"], "match");
        let text = o["text"].as_str().unwrap();
        let [s, e] = [&o["ranges"][0][0], &o["ranges"][0][1]].map(|v| v.as_u64().unwrap());
        assert_eq!(&text[s as usize..e as usize], "hello");
        assert_eq!(o["column"].as_u64().unwrap(), s + 1);
    }
    assert_eq!(objs[3]["type"], "summary");
    assert_eq!(objs[3]["matched_lines"], 3);
    assert_eq!(objs[3]["truncated"], true);

    // `| head -1`: the reader leaves early (200 KB of matches in big.bin
    // overflow the pipe); yonder leaves quietly with 0, as rg does.
    let mut child = d
        .cli()
        .current_dir(&w)
        .args(["search", "local", "hello"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    // find: best first, relative to the path; exit 1 when nothing fits.
    let (code, out, err) = run(d
        .cli()
        .current_dir(&w)
        .args(["find", "local", "mainrs", "-n", "1"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), "src/main.rs\n");
    let (code, out, _) = run(d
        .cli()
        .current_dir(&w)
        .args(["find", "local", "--json", "notes"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v[0]["path"], "nested/deep/er/still/notes.md");
    let (code, _, _) = run(d.cli().current_dir(&w).args(["find", "local", "zzzqqq"]));
    assert_eq!(code, 1);
}
