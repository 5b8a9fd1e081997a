//! `--hot-reload`: watch the config file and bring the running servers in line with it; and
//! SIGHUP, which reads it again whether or not it is watched (the daemon convention that
//! operators and `systemctl reload` expect; unhandled, a SIGHUP would kill the proxy).
//!
//! The directory holding the file is watched, not the file itself: editors that save by writing
//! a new file and renaming it over the old one replace the inode a file watch would follow.
//! Events are debounced (a save is often several writes), then the file is read and validated
//! exactly as at start-up. A file that became invalid is reported with the same one-line
//! message and changes nothing; a valid one is applied by [`Fleet::apply`]: added servers
//! start, removed ones stop after their calls in flight, changed ones are replaced the same
//! way, unchanged ones are not touched. Only the servers are reloaded; other settings (the
//! monitor's thresholds, flags) are read at start-up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{ServerConfig, parse_config_file};
use crate::upstream::fleet::Fleet;

/// How long the file must be quiet before it is read.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Watches `path` until `stop`, applying each valid change to `fleet`. `running` is the
/// server list the fleet was started with. With `watch_files` false, only SIGHUP reads the
/// file again.
///
/// The path is kept as given and read through on every change, never canonicalised once: a
/// Kubernetes ConfigMap mounts `config.json -> ..data/config.json` with `..data` a symlink that
/// the kubelet swaps atomically, so the file the path resolves to changes while the path's own
/// directory only sees `..data` replaced. Both the path's directory and the directory its
/// target is in now are watched; the second is re-resolved after every event.
pub async fn watch(
    path: PathBuf,
    fleet: Arc<Fleet>,
    running: Vec<ServerConfig>,
    stop: CancellationToken,
    watch_files: bool,
) {
    let file = match std::path::absolute(&path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "reload: cannot resolve the config file; it will not be reloaded");
            return;
        }
    };
    let Some(dir) = file.parent().map(PathBuf::from) else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(8);
    // Kept so that `rx` stays open when no file watcher holds a sender.
    let _sender = tx.clone();
    let mut debouncer = if watch_files {
        file_watcher(&dir, tx)
    } else {
        None
    };
    // The directory the symlinks lead to, when that is another one.
    let mut target_dir: Option<PathBuf> = None;
    let mut follow_target = |debouncer: &mut Option<Debouncer>| {
        let Some(debouncer) = debouncer.as_mut() else {
            return;
        };
        let now = file
            .canonicalize()
            .ok()
            .and_then(|f| f.parent().map(PathBuf::from))
            .filter(|d| dir.canonicalize().ok().as_ref() != Some(d));
        if now == target_dir {
            return;
        }
        if let Some(old) = target_dir.take() {
            // It may be gone already (the kubelet removes the old data directory).
            let _ = debouncer.unwatch(&old);
        }
        if let Some(new) = now {
            match debouncer.watch(&new, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %new.display(), "hot reload: watching the directory the config file links to");
                    target_dir = Some(new);
                }
                Err(e) => {
                    tracing::warn!(dir = %new.display(), error = %e, "hot reload: cannot watch the directory the config file links to; edits made there in place are not seen");
                }
            }
        }
    };
    follow_target(&mut debouncer);
    if debouncer.is_some() {
        tracing::info!(file = %file.display(), "hot reload: watching the config file");
    }
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot handle SIGHUP; it will not reload the config");
            None
        }
    };
    let mut running = running;
    let mut last_error: Option<String> = None;
    loop {
        tokio::select! {
            event = rx.recv() => if event.is_none() { return },
            () = hangup(&mut hangups) => {
                tracing::info!(file = %file.display(), "SIGHUP: reading the config file again");
            }
            _ = stop.cancelled() => return,
        }
        follow_target(&mut debouncer);
        tracing::debug!(file = %file.display(), "reload: reading the config file");
        let parsed = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || parse_config_file(&file)).await
        };
        let servers = match parsed {
            Ok(Ok(config)) => config.servers,
            Ok(Err(e)) => {
                // The same line as at start-up, once per distinct problem, and nothing changes.
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        "hot reload: {message}; the running servers are kept as they were"
                    );
                    last_error = Some(message);
                }
                continue;
            }
            Err(_) => continue,
        };
        last_error = None;
        if servers == running {
            continue;
        }
        let summary = fleet.apply(&servers).await;
        tracing::info!(
            added = ?summary.added,
            removed = ?summary.removed,
            changed = ?summary.changed,
            unchanged = summary.unchanged.len(),
            "hot reload: config applied"
        );
        running = servers;
    }
}

type Debouncer = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// A watcher of `dir` that sends on `tx` after each debounced change, or `None` (logged) when
/// the system cannot watch it; SIGHUP still reloads then.
fn file_watcher(dir: &std::path::Path, tx: tokio::sync::mpsc::Sender<()>) -> Option<Debouncer> {
    let debouncer = notify_debouncer_full::new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            let touched = match result {
                // Reading the file is an event too (access); only changes count, or each read
                // would schedule the next. Any change in a watched directory may be the one
                // that matters (a symlink on the way to the file swapped), so the file is read
                // again and applied only if its servers differ from the running ones.
                Ok(events) => events
                    .iter()
                    .any(|e| !matches!(e.event.kind, notify::EventKind::Access(_))),
                Err(_) => true,
            };
            if touched {
                // Full means a reload is already queued; one is enough.
                let _ = tx.try_send(());
            }
        },
    );
    let mut debouncer = match debouncer {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "hot reload: cannot watch files on this system");
            return None;
        }
    };
    if let Err(e) = debouncer.watch(dir, RecursiveMode::NonRecursive) {
        tracing::error!(dir = %dir.display(), error = %e, "hot reload: cannot watch the config's directory");
        return None;
    }
    Some(debouncer)
}

/// The next SIGHUP; never, when it cannot be handled.
async fn hangup(signals: &mut Option<Signal>) {
    match signals {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
