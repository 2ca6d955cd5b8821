//! RSS and open file descriptors of the stack's processes (`<dir>/run.json`), sampled every
//! 10 s, and the flatness verdicts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::load::Shared;

pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(10);
pub(crate) const WARM_UP: Duration = Duration::from_secs(30);
const FLAT_WITHIN: f64 = 0.10;

/// A process of run.json and its samples: (seconds since start, RSS kB, open fds).
pub(crate) struct Watched {
    pub(crate) label: String,
    pub(crate) pid: u32,
    pub(crate) samples: Vec<(f64, u64, u64)>,
}

pub(crate) fn run_json(dir: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let path = dir.join("run.json");
    let v: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("{}", path.display()))?,
    )?;
    let mut out = Vec::new();
    for c in v["children"].as_array().context("run.json: children")? {
        out.push((
            c[0].as_str().context("label")?.to_owned(),
            u32::try_from(c[1].as_u64().context("pid")?)?,
        ));
    }
    Ok(out)
}

pub(crate) fn sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

pub(crate) fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

/// Whether a series (after the warm-up) is flat: the last third's mean at most 10 % above the
/// first third's. `None` when there are too few samples to say.
pub(crate) fn flat(series: &[f64]) -> Option<(f64, f64, bool)> {
    let n = series.len() / 3;
    if n == 0 {
        return None;
    }
    let first = mean(&series[..n]);
    let last = mean(&series[series.len() - n..]);
    // A leak grows: a fall (idle connections closed, caches trimmed) is reported, not failed.
    let ok = last <= first * (1.0 + FLAT_WITHIN);
    Some((first, last, ok))
}

/// Samples every process of run.json every 10 s until `end`; a process restarted or gone is a
/// failure.
pub(crate) fn spawn_sampler(
    dir: PathBuf,
    shared: Arc<Shared>,
    start: Instant,
    end: Instant,
) -> JoinHandle<Vec<Watched>> {
    tokio::spawn(async move {
        let mut watched: Vec<Watched> = run_json(&dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(label, pid)| Watched {
                label,
                pid,
                samples: Vec::new(),
            })
            .collect();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let t = now.duration_since(start).as_secs_f64();
            let current = run_json(&dir).unwrap_or_default();
            for w in &mut watched {
                if let Some((_, pid)) = current.iter().find(|(l, _)| *l == w.label) {
                    if *pid != w.pid {
                        shared.fail(format!(
                            "{} was restarted (pid {} -> {pid})",
                            w.label, w.pid
                        ));
                        w.pid = *pid;
                    }
                }
                match sample(w.pid) {
                    Some((rss, fds)) => w.samples.push((t, rss, fds)),
                    None => shared.fail(format!("{} (pid {}) is gone", w.label, w.pid)),
                }
            }
            if now >= end {
                return watched;
            }
        }
    })
}

/// The verdicts and min/max of every series; a series that grew is a failure.
pub(crate) fn judge(watched: &[Watched], shared: &Shared) -> Vec<Value> {
    // Resources: flat within 10 % after the warm-up.
    let mut resources = Vec::new();
    for w in watched {
        let after: Vec<_> = w
            .samples
            .iter()
            .filter(|s| s.0 >= WARM_UP.as_secs_f64())
            .collect();
        let rss: Vec<f64> = after.iter().map(|s| s.1 as f64).collect();
        let fds: Vec<f64> = after.iter().map(|s| s.2 as f64).collect();
        let mut verdicts = serde_json::Map::new();
        for (name, series) in [("rss_kb", &rss), ("fds", &fds)] {
            match flat(series) {
                Some((first, last, ok)) => {
                    if !ok {
                        shared.fail(format!(
                            "{} {name} not flat: first third mean {first:.0}, last third {last:.0}",
                            w.label
                        ));
                    }
                    verdicts.insert(
                        name.to_owned(),
                        json!({"first_third_mean": first, "last_third_mean": last, "flat": ok}),
                    );
                }
                None => {
                    shared.fail(format!(
                        "{} {name}: too few samples after the {} s warm-up to judge",
                        w.label,
                        WARM_UP.as_secs()
                    ));
                }
            }
        }
        let minmax = |f: fn(&(f64, u64, u64)) -> u64| {
            let v: Vec<u64> = w.samples.iter().map(f).collect();
            (
                v.iter().min().copied().unwrap_or(0),
                v.iter().max().copied().unwrap_or(0),
            )
        };
        let (rmin, rmax) = minmax(|s| s.1);
        let (fmin, fmax) = minmax(|s| s.2);
        resources.push(json!({
            "label": w.label,
            "pid": w.pid,
            "rss_kb": {"min": rmin, "max": rmax},
            "fds": {"min": fmin, "max": fmax},
            "verdicts": verdicts,
            "series": w.samples.iter().map(|s| json!([s.0.round(), s.1, s.2])).collect::<Vec<_>>(),
        }));
    }

    resources
}
