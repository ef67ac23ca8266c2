//! `updateRemoteUserUID`: give the container's remote user the local user's
//! UID and GID, so files in the bind-mounted workspace belong to the same
//! person on both sides.
//!
//! As the reference CLI does (spec: devcontainer-reference.md, "Container
//! creation"; CLI: `scripts/updateUID.Dockerfile`), this is a small image
//! built on top of the dev container's image, `<image>-uid`, whose one `RUN`
//! edits `/etc/passwd` and `/etc/group` and gives the user's home to the new
//! IDs. It applies on a Linux host, when the local user is not root, and
//! when the remote user (remoteUser ‖ containerUser ‖ the image's `USER`) is
//! a name other than root: a numeric user has no passwd entry to change.
//! The update is skipped when another user already has the local UID, and
//! the old GID is kept when the local GID belongs to another group, exactly
//! like the reference CLI (devcontainers/cli#494 explains why it does not
//! force them).
//!
//! Rootless Podman needs none of this: `--userns=keep-id` maps the local
//! user to the same UID inside (which the spec allows instead of the image
//! rebuild), so when yonder passes `keep-id` it skips the update.

use crate::engine::{Engine, EngineKind};
use crate::metadata::Merged;
use crate::up::UpError;

/// The RUN step, in the reference CLI's logic, for POSIX sh and busybox
/// (sed, chown; no usermod, which Alpine lacks). Build args: REMOTE_USER,
/// NEW_UID, NEW_GID.
const UPDATE_SCRIPT: &str = r#"eval $(sed -n "s/^${REMOTE_USER}:[^:]*:\([^:]*\):\([^:]*\):[^:]*:\([^:]*\).*/OLD_UID=\1;OLD_GID=\2;HOME_FOLDER=\3/p" /etc/passwd); \
    eval $(sed -n "s/^\([^:]*\):[^:]*:${NEW_UID}:.*/EXISTING_USER=\1/p" /etc/passwd); \
    eval $(sed -n "s/^\([^:]*\):[^:]*:${NEW_GID}:.*/EXISTING_GROUP=\1/p" /etc/group); \
    if [ -z "$OLD_UID" ]; then \
        echo "yonder: the remote user $REMOTE_USER is not in /etc/passwd; UID not updated."; \
    elif [ "$OLD_UID" = "$NEW_UID" -a "$OLD_GID" = "$NEW_GID" ]; then \
        echo "yonder: $REMOTE_USER already has $NEW_UID:$NEW_GID."; \
    elif [ "$OLD_UID" != "$NEW_UID" -a -n "$EXISTING_USER" ]; then \
        echo "yonder: UID $NEW_UID belongs to $EXISTING_USER in the image; $REMOTE_USER keeps $OLD_UID."; \
    else \
        if [ "$OLD_GID" != "$NEW_GID" -a -n "$EXISTING_GROUP" ]; then \
            echo "yonder: GID $NEW_GID belongs to group $EXISTING_GROUP in the image; keeping GID $OLD_GID."; \
            NEW_GID="$OLD_GID"; \
        fi; \
        echo "yonder: updating $REMOTE_USER from $OLD_UID:$OLD_GID to $NEW_UID:$NEW_GID."; \
        sed -i -e "s/^\(${REMOTE_USER}:[^:]*:\)[^:]*:[^:]*/\1${NEW_UID}:${NEW_GID}/" /etc/passwd; \
        if [ "$OLD_GID" != "$NEW_GID" ]; then \
            sed -i -e "s/^\([^:]*:[^:]*:\)${OLD_GID}:/\1${NEW_GID}:/" /etc/group; \
        fi; \
        chown -R $NEW_UID:$NEW_GID "$HOME_FOLDER"; \
    fi"#;

/// The local user and platform the update is planned for.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    pub linux: bool,
    pub uid: u32,
    pub gid: u32,
}

impl Host {
    pub fn current() -> Self {
        // SAFETY: getuid and getgid have no preconditions and cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Host {
            linux: cfg!(target_os = "linux"),
            uid,
            gid,
        }
    }
}

/// What the `-uid` image changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidUpdate {
    pub remote_user: String,
    /// The image's own `USER`, restored at the end (root when it has none).
    pub image_user: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user tools will run as, before the container exists: remoteUser,
/// else containerUser, else the image's `USER`, else root.
pub fn effective_remote_user(merged: &Merged, image_user: &str) -> String {
    merged
        .remote_user
        .clone()
        .or_else(|| merged.container_user.clone())
        .filter(|u| !u.is_empty())
        .or_else(|| (!image_user.is_empty()).then(|| image_user.to_string()))
        .unwrap_or_else(|| "root".into())
}

fn is_root_or_numeric(user: &str) -> bool {
    // `user:group` forms name the user first.
    let name = user.split(':').next().unwrap_or(user);
    name == "root" || name.chars().all(|c| c.is_ascii_digit())
}

/// Whether the container is run with `--userns=keep-id`: rootless Podman,
/// a non-root remote user, and no ID maps of the user's own in runArgs.
pub fn keep_id(kind: EngineKind, host: Host, remote_user: &str, run_args: &[String]) -> bool {
    kind == EngineKind::Podman
        && host.uid != 0
        && !is_root_or_numeric(remote_user)
        && !run_args
            .iter()
            .any(|x| x.starts_with("--uidmap") || x.starts_with("--gidmap"))
}

/// Whether (and how) to update the remote user's UID for `merged` on an
/// image whose `USER` is `image_user`.
pub fn plan(
    merged: &Merged,
    image_user: &str,
    kind: EngineKind,
    host: Host,
    run_args: &[String],
) -> Option<UidUpdate> {
    if merged.update_remote_user_uid == Some(false) || !host.linux || host.uid == 0 {
        return None;
    }
    let remote_user = effective_remote_user(merged, image_user);
    if is_root_or_numeric(&remote_user) || keep_id(kind, host, &remote_user, run_args) {
        return None;
    }
    Some(UidUpdate {
        remote_user: remote_user
            .split(':')
            .next()
            .unwrap_or(&remote_user)
            .to_string(),
        image_user: if image_user.is_empty() {
            "root".into()
        } else {
            image_user.into()
        },
        uid: host.uid,
        gid: host.gid,
    })
}

/// The Dockerfile of the `-uid` image.
pub fn dockerfile() -> String {
    format!(
        "ARG BASE_IMAGE\nFROM $BASE_IMAGE\nUSER root\nARG REMOTE_USER\nARG NEW_UID\nARG NEW_GID\nSHELL [\"/bin/sh\", \"-c\"]\nRUN {UPDATE_SCRIPT}\nARG IMAGE_USER\nUSER $IMAGE_USER\n"
    )
}

/// `localhost/` before an image name with no registry, for Podman, which
/// otherwise looks the `FROM` name up in its search registries
/// (microsoft/vscode-remote-release#9748).
fn from_name(kind: EngineKind, image: &str) -> String {
    let has_registry = image.starts_with("localhost/")
        || matches!((image.find('.'), image.find('/')), (Some(d), Some(s)) if d < s);
    if kind == EngineKind::Podman && !has_registry {
        format!("localhost/{image}")
    } else {
        image.to_string()
    }
}

/// Builds `tag` from `base` with the update applied.
pub async fn build(engine: &Engine, base: &str, tag: &str, u: &UidUpdate) -> Result<(), UpError> {
    let ctx = crate::features::tempfile_dir()?;
    let df = ctx.join("updateUID.Dockerfile");
    std::fs::write(&df, dockerfile())
        .map_err(|e| UpError::Other(format!("cannot write {}: {e}", df.display())))?;
    eprintln!(
        "Giving {} the UID:GID {}:{} where the image allows ({tag})...",
        u.remote_user, u.uid, u.gid
    );
    let r = engine
        .run_visible(&[
            "build".to_string(),
            "-f".into(),
            df.display().to_string(),
            "-t".into(),
            tag.into(),
            "--build-arg".into(),
            format!("BASE_IMAGE={}", from_name(engine.kind, base)),
            "--build-arg".into(),
            format!("REMOTE_USER={}", u.remote_user),
            "--build-arg".into(),
            format!("NEW_UID={}", u.uid),
            "--build-arg".into(),
            format!("NEW_GID={}", u.gid),
            "--build-arg".into(),
            format!("IMAGE_USER={}", u.image_user),
            ctx.display().to_string(),
        ])
        .await;
    let _ = std::fs::remove_dir_all(&ctx);
    r?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Host = Host {
        linux: true,
        uid: 1234,
        gid: 1235,
    };

    fn merged(remote: Option<&str>, container: Option<&str>, update: Option<bool>) -> Merged {
        Merged {
            remote_user: remote.map(String::from),
            container_user: container.map(String::from),
            update_remote_user_uid: update,
            ..Merged::default()
        }
    }

    #[test]
    fn the_remote_user_comes_from_remote_then_container_then_image() {
        let m = merged(None, None, None);
        let p = plan(&m, "dev", EngineKind::Docker, USER, &[]).unwrap();
        assert_eq!(
            p,
            UidUpdate {
                remote_user: "dev".into(),
                image_user: "dev".into(),
                uid: 1234,
                gid: 1235
            }
        );
        let m = merged(None, Some("cu"), None);
        assert_eq!(
            plan(&m, "", EngineKind::Docker, USER, &[])
                .unwrap()
                .remote_user,
            "cu"
        );
        let m = merged(Some("ru"), Some("cu"), None);
        let p = plan(&m, "", EngineKind::Docker, USER, &[]).unwrap();
        assert_eq!(
            (p.remote_user.as_str(), p.image_user.as_str()),
            ("ru", "root")
        );
    }

    #[test]
    fn no_update_for_root_numeric_users_a_root_host_or_when_turned_off() {
        let docker = EngineKind::Docker;
        assert!(plan(&merged(None, None, None), "", docker, USER, &[]).is_none());
        assert!(plan(&merged(Some("root"), None, None), "dev", docker, USER, &[]).is_none());
        assert!(plan(&merged(Some("1000"), None, None), "", docker, USER, &[]).is_none());
        assert!(plan(&merged(Some("0:0"), None, None), "", docker, USER, &[]).is_none());
        let root = Host { uid: 0, ..USER };
        assert!(plan(&merged(Some("dev"), None, None), "", docker, root, &[]).is_none());
        let mac = Host {
            linux: false,
            ..USER
        };
        assert!(plan(&merged(Some("dev"), None, None), "", docker, mac, &[]).is_none());
        assert!(
            plan(
                &merged(Some("dev"), None, Some(false)),
                "",
                docker,
                USER,
                &[]
            )
            .is_none()
        );
        assert!(
            plan(
                &merged(Some("dev:staff"), None, Some(true)),
                "",
                docker,
                USER,
                &[]
            )
            .is_some()
        );
    }

    #[test]
    fn rootless_podman_uses_keep_id_instead_unless_run_args_map_ids() {
        let m = merged(Some("dev"), None, None);
        assert!(plan(&m, "", EngineKind::Podman, USER, &[]).is_none());
        assert!(keep_id(EngineKind::Podman, USER, "dev", &[]));
        let maps = vec!["--uidmap=0:1:1000".to_string()];
        assert!(!keep_id(EngineKind::Podman, USER, "dev", &maps));
        assert!(plan(&m, "", EngineKind::Podman, USER, &maps).is_some());
        assert!(!keep_id(EngineKind::Podman, USER, "root", &[]));
        assert!(!keep_id(EngineKind::Docker, USER, "dev", &[]));
    }

    #[test]
    fn podman_gets_localhost_before_registryless_names() {
        assert_eq!(
            from_name(EngineKind::Podman, "vsc-a-1"),
            "localhost/vsc-a-1"
        );
        assert_eq!(
            from_name(EngineKind::Podman, "localhost/x:1"),
            "localhost/x:1"
        );
        assert_eq!(
            from_name(EngineKind::Podman, "ghcr.io/a/b:1"),
            "ghcr.io/a/b:1"
        );
        assert_eq!(from_name(EngineKind::Docker, "vsc-a-1"), "vsc-a-1");
    }

    /// The script's logic in a real shell, over a fake /etc: the three
    /// outcomes the reference CLI has.
    #[test]
    fn the_update_script_changes_skips_and_keeps_the_gid_like_the_reference() {
        let run = |passwd: &str, group: &str, uid: u32, gid: u32| {
            let d = tempfile::tempdir().unwrap();
            let etc = d.path().join("etc");
            std::fs::create_dir_all(d.path().join("home/dev")).unwrap();
            std::fs::create_dir_all(&etc).unwrap();
            let home = d.path().join("home/dev");
            std::fs::write(
                etc.join("passwd"),
                passwd.replace("HOME", &home.display().to_string()),
            )
            .unwrap();
            std::fs::write(etc.join("group"), group).unwrap();
            let script = UPDATE_SCRIPT
                .replace("/etc/", &format!("{}/", etc.display()))
                // Not root here: chown is shown, not run.
                .replace("chown -R", "echo chown -R");
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .env("REMOTE_USER", "dev")
                .env("NEW_UID", uid.to_string())
                .env("NEW_GID", gid.to_string())
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                std::fs::read_to_string(etc.join("passwd")).unwrap(),
                std::fs::read_to_string(etc.join("group")).unwrap(),
            )
        };
        let passwd = "root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000::HOME:/bin/sh\nother:x:2000:2000::/h:/bin/sh\n";
        let group = "root:x:0:\ndev:x:1000:\nother:x:2000:\n";
        let (out, pw, gr) = run(passwd, group, 1500, 1501);
        assert!(out.contains("from 1000:1000 to 1500:1501"), "{out}");
        assert!(pw.contains("\ndev:x:1500:1501::"), "{pw}");
        assert!(gr.contains("\ndev:x:1501:"), "{gr}");
        assert!(out.contains("chown -R 1500:1501"), "{out}");
        // The UID belongs to someone else: nothing changes.
        let (out, pw, _) = run(passwd, group, 2000, 1501);
        assert!(out.contains("UID 2000 belongs to other"), "{out}");
        assert!(pw.contains("\ndev:x:1000:1000::"), "{pw}");
        // The GID belongs to another group: the UID changes, the GID stays.
        let (out, pw, gr) = run(passwd, group, 1500, 2000);
        assert!(out.contains("keeping GID 1000"), "{out}");
        assert!(pw.contains("\ndev:x:1500:1000::"), "{pw}");
        assert!(gr.contains("\ndev:x:1000:"), "{gr}");
    }
}
