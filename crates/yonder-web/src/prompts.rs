//! ssh's questions, asked in the page.
//!
//! Connecting to an SSH target may need the user: a password, a key
//! passphrase, a 2FA code, or a yes/no on an unknown host key. ssh asks
//! through yonder's askpass ([`yonder_target::askpass`]); for `yonder web`
//! its [`Prompter`] lands here. Each question waits in [`Prompts`] until a
//! page answers it (every open page shows it; the first answer wins and the
//! others close their dialog) or cancels it (ssh then gives up on that
//! method, as with Ctrl-D in a terminal).
//!
//! Answers are never logged or kept: the one answer goes to ssh and is
//! dropped.

use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::{oneshot, watch};
use yonder_target::askpass::{Prompt, Prompter};

struct Pending {
    id: u64,
    prompt: Prompt,
    answer: oneshot::Sender<Option<String>>,
}

/// The questions waiting for a page.
#[derive(Default)]
pub struct Prompts {
    next: AtomicU64,
    pending: Mutex<Vec<Pending>>,
    /// Bumped on every change; pages re-read [`Prompts::list`].
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("pending", &lock(&self.pending).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Prompts {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The prompter to connect with: its questions go to the pages.
    pub fn prompter(self: &Arc<Self>, target: String) -> Prompter {
        let weak: Weak<Self> = Arc::downgrade(self);
        Prompter::new(Arc::new(move |prompt: Prompt| {
            let weak = weak.clone();
            let target = target.clone();
            Box::pin(async move {
                let this = weak.upgrade()?;
                // Someone running `yonder web` in a terminal should know
                // why nothing happens: the question waits in the page.
                let first = prompt.text.lines().last().unwrap_or_default().trim();
                eprintln!("yonder web: {target} asks \"{first}\": answer it in the browser page");
                let rx = this.add(prompt);
                drop(this);
                rx.await.ok().flatten()
            })
        }))
    }

    fn add(&self, prompt: Prompt) -> oneshot::Receiver<Option<String>> {
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        lock(&self.pending).push(Pending {
            id,
            prompt,
            answer: tx,
        });
        self.changed.send_modify(|n| *n += 1);
        rx
    }

    /// The waiting questions: `[{id, text, secret}]`, oldest first. (ssh
    /// gives up on a question by ending askpass: its entry then goes away
    /// with the next change.)
    pub fn list(&self) -> Value {
        let mut p = lock(&self.pending);
        p.retain(|q| !q.answer.is_closed());
        Value::Array(
            p.iter()
                .map(|q| json!({"id": q.id, "text": q.prompt.text, "secret": q.prompt.secret}))
                .collect(),
        )
    }

    /// Answers question `id` (`None`: cancel). False when it is no longer
    /// waiting (another page answered it first).
    pub fn answer(&self, id: u64, answer: Option<String>) -> bool {
        let q = {
            let mut p = lock(&self.pending);
            let Some(i) = p.iter().position(|q| q.id == id) else {
                return false;
            };
            p.remove(i)
        };
        self.changed.send_modify(|n| *n += 1);
        q.answer.send(answer).is_ok()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_question_waits_for_one_answer() {
        let p = Prompts::new();
        let prompter = p.prompter("yt".into());
        let mut changes = p.subscribe();
        let asked = tokio::spawn(async move {
            prompter
                .ask(Prompt::new("yondertest@127.0.0.1's password: "))
                .await
        });
        changes.changed().await.unwrap();
        let list = p.list();
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert_eq!(list[0]["secret"], true);
        let id = list[0]["id"].as_u64().unwrap();
        assert!(p.answer(id, Some("hunter2".into())));
        // A second page answering the same question is too late.
        assert!(!p.answer(id, Some("other".into())));
        assert_eq!(asked.await.unwrap().as_deref(), Some("hunter2"));
        assert_eq!(p.list(), json!([]));
    }

    #[tokio::test]
    async fn a_host_key_question_is_not_secret_and_can_be_cancelled() {
        let p = Prompts::new();
        let prompter = p.prompter("yt".into());
        let mut changes = p.subscribe();
        let asked = tokio::spawn(async move {
            prompter
                .ask(Prompt::new(
                    "The authenticity of host '[127.0.0.1]:2222' can't be established.\n\
                     Are you sure you want to continue connecting (yes/no/[fingerprint])? ",
                ))
                .await
        });
        changes.changed().await.unwrap();
        let list = p.list();
        assert_eq!(list[0]["secret"], false);
        assert!(p.answer(list[0]["id"].as_u64().unwrap(), None));
        assert_eq!(asked.await.unwrap(), None);
    }
}
