//! A watchdog for blocking collectives: when one has not returned within the timeout, a
//! callback runs once (the MPI backend logs which rank waited on which collective, then calls
//! `MPI_Abort`, which ends every rank of the job).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Watches the collective in progress; see the module docs.
pub(crate) struct Watchdog {
    shared: Arc<(Mutex<Watched>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Watched {
    /// The collective in progress and when it started.
    current: Option<(&'static str, Instant)>,
    stop: bool,
}

/// Clears the watched collective when dropped.
pub(crate) struct Watching<'a>(&'a Watchdog);

impl Watchdog {
    /// Starts the watching thread; `on_expiry(op, waited)` runs when collective `op` has
    /// waited `timeout`.
    pub(crate) fn start(
        timeout: Duration,
        on_expiry: impl Fn(&'static str, Duration) + Send + 'static,
    ) -> Self {
        let shared = Arc::new((Mutex::new(Watched::default()), Condvar::new()));
        let watched = shared.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*watched;
            let mut w = lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if w.stop {
                    return;
                }
                w = match w.current {
                    None => cv.wait(w).unwrap_or_else(PoisonError::into_inner),
                    Some((op, since)) => {
                        let waited = since.elapsed();
                        if waited >= timeout {
                            w.current = None;
                            on_expiry(op, waited);
                            w
                        } else {
                            cv.wait_timeout(w, timeout - waited)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                    }
                };
            }
        });
        Watchdog {
            shared,
            thread: Some(thread),
        }
    }

    /// Watches collective `op` until the returned guard is dropped.
    pub(crate) fn watch(&self, op: &'static str) -> Watching<'_> {
        self.set(Some((op, Instant::now())));
        Watching(self)
    }

    fn set(&self, current: Option<(&'static str, Instant)>) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).current = current;
        cv.notify_all();
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn fires_once_for_a_collective_that_outlives_the_timeout_and_never_for_a_quick_one() {
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        let dog = Watchdog::start(Duration::from_millis(200), move |op, waited| {
            assert_eq!(op, "slow");
            assert!(waited >= Duration::from_millis(200));
            f.fetch_add(1, Ordering::SeqCst);
        });
        for _ in 0..20 {
            let _quick = dog.watch("quick");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(fired.load(Ordering::SeqCst), 0);
        {
            let _slow = dog.watch("slow");
            std::thread::sleep(Duration::from_millis(700));
        }
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }
}
