//! Child processes of the stack: spawning with labelled log lines (`[eu] ...`, also kept in
//! `<dir>/logs/<label>.log`), readiness with a deadline and visible progress, supervision
//! (a child that dies after the start is restarted with backoff: 1 s doubling to 30 s, ±20 %
//! jitter, back to 1 s once it has run for a minute), and an orderly stop: SIGTERM, wait up
//! to a grace period, then SIGKILL.
//!
//! No orphans: children are spawned with `kill_on_drop`, so any way out of `up` short of
//! SIGKILL (error, panic, signal) ends them; each runs in its own process group, so a
//! terminal's Ctrl-C reaches only `up`, which then stops the gateway before the nodes. A
//! SIGKILLed `up` cannot clean up, so each child watches it instead: `RESIDENCY_PARENT_PID`
//! tells the child its parent's pid, and the child drains and exits as soon as its parent
//! is another process (`residency_http::shutdown`; no `unsafe` `PR_SET_PDEATHSIG`). As a
//! last resort the children's pids are recorded in `<dir>/run.json`, and the next `up` on the
//! same directory stops any that are still running before it starts.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::http::Http;
use super::UpError;

/// How long a child may take to exit after SIGTERM before it is killed.
pub(super) const GRACE: Duration = Duration::from_secs(15);
/// The same for children left over by a killed `up`: their log pipes are gone, and a process
/// whose shutdown path writes to a broken stderr may never finish it, so wait less.
const STALE_GRACE: Duration = Duration::from_secs(3);

/// The first restart delay, doubled after each quick death up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A child that ran this long before dying starts again from [`MIN_BACKOFF`].
const STABLE_AFTER: Duration = Duration::from_secs(60);

struct Running {
    label: String,
    program: PathBuf,
    args: Vec<String>,
    /// `None` while the child waits for its restart.
    child: Option<Child>,
    logs: Vec<JoinHandle<()>>,
    started: Instant,
    /// When a dead child starts again.
    restart_at: Option<tokio::time::Instant>,
    /// The delay of the next restart.
    backoff: Duration,
    restarts: u32,
}

/// The running children, in start order.
pub(super) struct Supervisor {
    dir: PathBuf,
    children: Vec<Running>,
}

/// What `run.json` records: this `up` and its children.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RunFile {
    up_pid: u32,
    children: Vec<(String, u32, PathBuf)>,
}

impl Supervisor {
    /// A supervisor writing logs under `<dir>/logs`.
    ///
    /// # Errors
    /// When the log directory cannot be created.
    pub(super) fn new(dir: &Path) -> anyhow::Result<Self> {
        super::material::private_dir(&dir.join("logs"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            children: Vec::new(),
        })
    }

    /// Spawns `program args…` labelled `label`.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub(super) fn spawn(
        &mut self,
        label: &str,
        program: &Path,
        args: &[&str],
    ) -> anyhow::Result<u32> {
        let mut running = Running {
            label: label.to_owned(),
            program: program.to_path_buf(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            child: None,
            logs: Vec::new(),
            started: Instant::now(),
            restart_at: None,
            backoff: MIN_BACKOFF,
            restarts: 0,
        };
        let pid = launch(&self.dir, &mut running)?;
        self.children.push(running);
        self.record()?;
        Ok(pid)
    }

    fn record(&self) -> anyhow::Result<()> {
        let run = RunFile {
            up_pid: std::process::id(),
            children: self
                .children
                .iter()
                .filter_map(|c| {
                    let pid = c.child.as_ref()?.id()?;
                    Some((c.label.clone(), pid, c.program.clone()))
                })
                .collect(),
        };
        super::material::write_private(&self.dir.join("run.json"), &serde_json::to_vec(&run)?)
    }

    /// Polls `url` until it answers 200, the child labelled `label` exits, or `deadline`
    /// passes. Prints progress every few seconds.
    ///
    /// # Errors
    /// [`UpError::ChildFailed`] when the child exited or never became ready.
    pub(super) async fn wait_ready(
        &mut self,
        label: &str,
        url: &str,
        deadline: Duration,
        http: &Http,
    ) -> Result<(), UpError> {
        let start = Instant::now();
        let mut next_note = Duration::from_secs(3);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        println!("  waiting for [{label}] {url} …");
        loop {
            tick.tick().await;
            let child = self
                .children
                .iter_mut()
                .find(|c| c.label == label)
                .ok_or_else(|| UpError::Failed(anyhow::anyhow!("no child {label}")))?;
            let exited = match child.child.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                return Err(UpError::ChildFailed(format!(
                    "{label} exited during start ({}); its log is above and in {}",
                    describe(status),
                    self.dir.join("logs").join(format!("{label}.log")).display()
                )));
            }
            if http.ok(url, Duration::from_secs(1)).await {
                println!(
                    "  [{label}] ready after {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= deadline {
                return Err(UpError::ChildFailed(format!(
                    "{label} was not ready at {url} after {}s",
                    deadline.as_secs()
                )));
            }
            if waited >= next_note {
                println!("  … still waiting for [{label}] ({}s)", waited.as_secs());
                next_note += Duration::from_secs(3);
            }
        }
    }

    /// Supervises the started stack until `stop` is cancelled: a child that exits is
    /// restarted after its backoff, and every exit and restart is printed (and so logged).
    pub(super) async fn supervise(&mut self, stop: &CancellationToken) {
        enum Event {
            Stop,
            Exit(usize, ExitStatus),
            RestartDue,
        }
        loop {
            let next = self.children.iter().filter_map(|c| c.restart_at).min();
            let event = tokio::select! {
                () = stop.cancelled() => Event::Stop,
                (i, status) = self.any_exit() => Event::Exit(i, status),
                () = tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)),
                    if next.is_some() => Event::RestartDue,
            };
            match event {
                Event::Stop => return,
                Event::Exit(i, status) => self.exited(i, status),
                Event::RestartDue => self.restart_due(),
            }
        }
    }

    /// Waits until a running child exits; returns its index and status. Never returns while
    /// no child runs.
    async fn any_exit(&mut self) -> (usize, ExitStatus) {
        let waits: Vec<_> = self
            .children
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| {
                let child = c.child.as_mut()?;
                Some(Box::pin(async move { (i, child.wait().await) }))
            })
            .collect();
        if waits.is_empty() {
            std::future::pending::<()>().await;
        }
        let ((i, status), _, _) = futures_util::future::select_all(waits).await;
        // A failed wait means the child is gone from our view; report it as a failure.
        let status = status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(1));
        (i, status)
    }

    /// Schedules the restart of child `i`, which exited with `status`.
    fn exited(&mut self, i: usize, status: ExitStatus) {
        let c = &mut self.children[i];
        c.child = None;
        if c.started.elapsed() >= STABLE_AFTER {
            c.backoff = MIN_BACKOFF;
        }
        let delay = c.schedule_restart(tokio::time::Instant::now());
        println!(
            "  [{}] exited unexpectedly ({}); restarting in {:.1}s (its log: {}); \
             the other processes keep running",
            c.label,
            describe(status),
            delay.as_secs_f64(),
            self.dir
                .join("logs")
                .join(format!("{}.log", c.label))
                .display()
        );
        let _ = self.record();
    }

    /// Starts every child whose restart time has come.
    fn restart_due(&mut self) {
        let now = tokio::time::Instant::now();
        for c in &mut self.children {
            if c.restart_at.is_none_or(|t| t > now) {
                continue;
            }
            c.restart_at = None;
            c.restarts += 1;
            match launch(&self.dir, c) {
                Ok(pid) => println!(
                    "  [{}] restarted (pid {pid}, restart #{})",
                    c.label, c.restarts
                ),
                Err(e) => {
                    let delay = c.schedule_restart(now);
                    println!(
                        "  [{}] could not be restarted ({e:#}); trying again in {:.1}s",
                        c.label,
                        delay.as_secs_f64()
                    );
                }
            }
        }
        let _ = self.record();
    }

    /// Stops every child, newest first (the gateway before the nodes it proxies to): SIGTERM,
    /// then SIGKILL after [`GRACE`]. Returns true when every child exited on SIGTERM with
    /// success.
    pub(super) async fn stop_all(&mut self) -> bool {
        let mut clean = true;
        while let Some(mut c) = self.children.pop() {
            clean &= stop(&mut c).await;
            // The log forwarders end at EOF; wait so the last lines are printed.
            for h in c.logs.drain(..) {
                let _ = h.await;
            }
            let _ = self.record();
        }
        let _ = std::fs::remove_file(self.dir.join("run.json"));
        clean
    }
}

impl Running {
    /// Sets the restart `now` + the current backoff (jittered) and doubles the backoff for the
    /// next one, up to [`MAX_BACKOFF`]; returns the delay.
    fn schedule_restart(&mut self, now: tokio::time::Instant) -> Duration {
        let delay = jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.restart_at = Some(now + delay);
        delay
    }
}

/// Starts (or restarts) `c`'s process; its output goes to the terminal and its log file.
fn launch(dir: &Path, c: &mut Running) -> anyhow::Result<u32> {
    let mut cmd = Command::new(&c.program);
    cmd.args(&c.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1")
        // The child exits by itself when `up` is gone (even after a SIGKILL).
        .env(
            residency_http::shutdown::PARENT_PID_ENV,
            std::process::id().to_string(),
        )
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", c.program.display()))?;
    let pid = child.id().context("child exited at once")?;
    let log_path = dir.join("logs").join(format!("{}.log", c.label));
    c.logs.retain(|h| !h.is_finished());
    if let Some(out) = child.stdout.take() {
        c.logs.push(forward(&c.label, out, log_path.clone()));
    }
    if let Some(err) = child.stderr.take() {
        c.logs.push(forward(&c.label, err, log_path));
    }
    c.child = Some(child);
    c.started = Instant::now();
    Ok(pid)
}

/// `d` ± 20 %, so that children that died together do not restart in lockstep.
fn jitter(d: Duration) -> Duration {
    // 0..=400 from a fresh random UUID: per mille offsets -200..=+200.
    let r = (uuid::Uuid::new_v4().as_u128() % 401) as u32;
    d * (800 + r) / 1000
}

async fn stop(c: &mut Running) -> bool {
    let Some(child) = c.child.as_mut() else {
        println!("  [{}] was waiting for its restart", c.label);
        return true;
    };
    if let Ok(Some(status)) = child.try_wait() {
        println!("  [{}] had already exited ({})", c.label, describe(status));
        return false;
    }
    let Some(pid) = child.id() else {
        return false;
    };
    println!("  stopping [{}] (SIGTERM)", c.label);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    match tokio::time::timeout(GRACE, child.wait()).await {
        Ok(Ok(status)) => {
            println!("  [{}] stopped ({})", c.label, describe(status));
            status.success()
        }
        _ => {
            println!(
                "  [{}] did not stop within {}s; killing it",
                c.label,
                GRACE.as_secs()
            );
            let _ = child.kill().await;
            false
        }
    }
}

/// "exit code 3" or "signal 9".
#[must_use]
pub(super) fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "unknown status".to_owned(),
    }
}

fn forward<R>(label: &str, stream: R, log_path: PathBuf) -> JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let label = label.to_owned();
    tokio::spawn(async move {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
            .ok();
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            println!("[{label}] {line}");
            if let Some(f) = file.as_mut() {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
        }
    })
}

/// Stops children left behind by an `up` on this directory that was killed without a chance
/// to clean up, and refuses to run beside an `up` that is still alive.
///
/// # Errors
/// [`UpError::AlreadyRunning`] when the recorded `up` is alive.
pub(super) async fn reap_stale(dir: &Path) -> Result<(), UpError> {
    let path = dir.join("run.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(());
    };
    let Ok(run) = serde_json::from_slice::<RunFile>(&bytes) else {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    };
    let me = std::env::current_exe().ok();
    if run.up_pid != std::process::id() && is_process(run.up_pid, me.as_deref()) {
        return Err(UpError::AlreadyRunning(run.up_pid));
    }
    for (label, pid, program) in run.children {
        // Only a live process running the recorded binary is ours; a recycled pid is not.
        if is_process(pid, Some(&program)) {
            println!("  stopping [{label}] (pid {pid}) left over from an earlier run");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            let deadline = Instant::now() + STALE_GRACE;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while is_process(pid, Some(&program)) && Instant::now() < deadline {
                tick.tick().await;
            }
            if is_process(pid, Some(&program)) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                // Wait for the kill to land: its ports are free once it is gone.
                let deadline = Instant::now() + STALE_GRACE;
                while is_process(pid, Some(&program)) && Instant::now() < deadline {
                    tick.tick().await;
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Whether `pid` is a live process running `program` (compared through `/proc`).
fn is_process(pid: u32, program: Option<&Path>) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    // A zombie (exited, not yet reaped by its parent) still has an entry but no exe link;
    // reaching here means the process is running.
    match program {
        Some(p) => std::fs::canonicalize(p).is_ok_and(|p| p == exe),
        None => false,
    }
}
