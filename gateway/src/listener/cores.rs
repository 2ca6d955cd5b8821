//! Per-core runtimes for the public listener's connections (`listen.public_cores`).
//!
//! With `public_cores = N > 0`, each accepted connection is served to its end by one of N
//! single-threaded tokio runtimes, each on its own thread, chosen in turn: a connection's
//! TLS, HTTP and proxying never move between threads and no worker wakes another to steal
//! work, as with nginx's workers or pingora's no-steal runtime. The accept loop, the admin
//! listener and the background tasks stay on the process's runtime. With 0 (the default)
//! connections are tasks of the process's work-stealing runtime.
//!
//! A runtime ends when [`Cores`] is dropped, after the listener has drained: its thread
//! leaves `block_on` and drops the runtime, cancelling whatever is left on it.

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The running per-core runtimes.
pub(crate) struct Cores {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Cores {
    /// Starts `n` runtimes (none for 0).
    ///
    /// # Errors
    /// A thread or runtime that cannot be created.
    pub(crate) fn start(n: usize) -> std::io::Result<Option<Self>> {
        if n == 0 {
            return Ok(None);
        }
        let mut cores = Self {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
        };
        for i in 0..n {
            let rt = Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            cores.handles.push(rt.handle().clone());
            cores.stops.push(stop);
            std::thread::Builder::new()
                .name(format!("rg-core-{i}"))
                .spawn(move || {
                    // Ends when the sender is dropped (or sends).
                    let _ = rt.block_on(stopped);
                })?;
        }
        Ok(Some(cores))
    }

    /// The runtime for the `nth` accepted connection.
    pub(crate) fn pick(&self, nth: u64) -> &Handle {
        // `nth % len` is below `len`, a usize.
        #[allow(clippy::cast_possible_truncation)]
        &self.handles[(nth % self.handles.len() as u64) as usize]
    }
}

impl Drop for Cores {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}
