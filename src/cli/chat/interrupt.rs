//! Ctrl-C in `chat`: while an answer is being generated it stops that answer; a second one
//! before the answer ends (e.g. during a beam search, which cannot be cut short) quits. At the
//! prompt a terminal's line editor reads Ctrl-C as a key (clearing the line); reading plain
//! lines, Ctrl-C quits as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::SIGINT;

/// The SIGINT flags of a chat.
pub(super) struct Interrupt {
    /// Set by Ctrl-C; while it is set, another Ctrl-C quits.
    stop: Arc<AtomicBool>,
    /// True outside answers: Ctrl-C then does what it does by default (quit).
    idle: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the SIGINT handlers.
    pub(super) fn install() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(true));
        // Run in order: the default action when idle, or when a Ctrl-C is still pending;
        // else a flag.
        signal_hook::flag::register_conditional_default(SIGINT, Arc::clone(&idle))
            .and_then(|_| {
                signal_hook::flag::register_conditional_default(SIGINT, Arc::clone(&stop))
            })
            .and_then(|_| signal_hook::flag::register(SIGINT, Arc::clone(&stop)))
            .context("cannot handle Ctrl-C")?;
        Ok(Self { stop, idle })
    }

    /// Runs `answer` with Ctrl-C setting the flag it is handed instead of quitting; returns
    /// its result and whether Ctrl-C was pressed meanwhile.
    pub(super) fn during<T>(&self, answer: impl FnOnce(&AtomicBool) -> T) -> (T, bool) {
        self.stop.store(false, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        let out = answer(&self.stop);
        self.idle.store(true, Ordering::SeqCst);
        (out, self.stop.swap(false, Ordering::SeqCst))
    }
}
