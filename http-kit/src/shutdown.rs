//! What stops a server process: SIGTERM, SIGINT, or the death of the process that started it.
//!
//! `residency up` starts the nodes and the gateway with [`PARENT_PID_ENV`] set to its own pid.
//! A child whose parent is then another process (it was re-parented: `up` died, even by
//! SIGKILL, which `up` cannot catch) drains and exits like on SIGTERM, so a killed `up` leaves
//! no orphans. This is a poll of `getppid` every [`PARENT_POLL`] (no `unsafe`
//! `PR_SET_PDEATHSIG`); processes started by anything else (systemd, Kubernetes) do not set the
//! variable and only react to signals.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The environment variable holding the pid of the parent to outlive not.
pub const PARENT_PID_ENV: &str = "RESIDENCY_PARENT_PID";

/// How often the parent is looked at.
pub const PARENT_POLL: Duration = Duration::from_millis(250);

/// Cancels `token` on SIGTERM, SIGINT, or when the parent named by [`PARENT_PID_ENV`] is gone.
/// Must be called inside a Tokio runtime.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn watch(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let parent = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|p| p.parse::<u32>().ok());
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            () = parent_gone(parent) => "the parent process exited",
        };
        // Cancel before logging: if stdout/stderr are closed pipes, a log write must not be
        // able to stop the shutdown.
        token.cancel();
        tracing::info!(trigger = why, "shutdown requested; draining");
    });
    Ok(())
}

/// Resolves once this process's parent is no longer `parent`; never without one.
async fn parent_gone(parent: Option<u32>) {
    let Some(parent) = parent else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(PARENT_POLL);
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_parent_that_is_not_ours_counts_as_gone_and_none_never_does() {
        // Our real parent is not pid 1 under the test runner, so "parent 1" is gone at once…
        let mine = std::os::unix::process::parent_id();
        let other = if mine == 1 { 2 } else { 1 };
        tokio::time::timeout(Duration::from_secs(2), parent_gone(Some(other)))
            .await
            .expect("a different parent is noticed within a poll");
        // …while the real parent is not, and no parent never resolves.
        assert!(
            tokio::time::timeout(PARENT_POLL * 3, parent_gone(Some(mine)))
                .await
                .is_err()
        );
        assert!(tokio::time::timeout(PARENT_POLL * 3, parent_gone(None))
            .await
            .is_err());
    }
}
