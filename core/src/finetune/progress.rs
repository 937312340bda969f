//! Progress as plain lines, for logs (a batch job's stderr, where a progress bar writes nothing
//! useful): one line at the first update, then at most one every few seconds, and one at the
//! last update.

use std::time::{Duration, Instant};

use super::run::StepReport;

/// Decides when a progress line is due and writes it.
#[derive(Debug, Clone)]
pub struct ProgressLog {
    every: Duration,
    total: u64,
    start: Instant,
    /// The first update this log saw: its step and when it was reported.
    first: Option<(u64, Instant)>,
    last_line: Option<Instant>,
}

impl ProgressLog {
    /// A log of a run to `total` updates, started at `start`, writing at most one line each
    /// `every` (besides the first and the last update).
    pub fn new(total: u64, every: Duration, start: Instant) -> Self {
        Self {
            every,
            total,
            start,
            first: None,
            last_line: None,
        }
    }

    /// The line for `report`, made at `now`, when one is due: `step 12/300 loss 2.3456 lr
    /// 1.00e-4 elapsed 0:01:23 eta 0:40:00` (with `val_loss` when computed, `skipped` for a
    /// skipped update).
    pub fn line(&mut self, report: &StepReport, now: Instant) -> Option<String> {
        let first = *self.first.get_or_insert((report.step, now));
        let at_end = report.step >= self.total;
        let due = match self.last_line {
            None => true,
            Some(t) => now.saturating_duration_since(t) >= self.every,
        };
        if !(due || at_end || report.val_loss.is_some()) {
            return None;
        }
        self.last_line = Some(now);
        // The time per update, from the updates after the first where there are some (the
        // first also paid for loading the model).
        let per_update = if report.step > first.0 {
            now.saturating_duration_since(first.1)
                .div_f64((report.step - first.0) as f64)
        } else {
            now.saturating_duration_since(self.start)
        };
        let left = self.total.saturating_sub(report.step);
        let eta = per_update.mul_f64(left as f64);
        let mut line = format!(
            "step {}/{} loss {:.4} lr {:.2e} elapsed {} eta {}",
            report.step,
            self.total,
            report.loss,
            report.lr,
            clock(now.saturating_duration_since(self.start)),
            clock(eta)
        );
        if let Some(v) = report.val_loss {
            line.push_str(&format!(" val_loss {v:.4}"));
        }
        if report.skipped {
            line.push_str(" skipped");
        }
        Some(line)
    }
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(step: u64) -> StepReport {
        StepReport {
            step,
            loss: 1.5,
            lr: 1e-4,
            grad_norm: 0.3,
            skipped: false,
            val_loss: None,
            peak_rss_mib: None,
            comm_seconds: None,
        }
    }

    #[test]
    fn first_then_every_interval_then_last() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = ProgressLog::new(10, Duration::from_secs(5), t0);
        // Model loading took 20 s; then one update every 2 s.
        let first = log.line(&report(1), at(20)).unwrap();
        assert_eq!(
            first,
            "step 1/10 loss 1.5000 lr 1.00e-4 elapsed 0:00:20 eta 0:03:00"
        );
        assert_eq!(log.line(&report(2), at(22)), None);
        assert_eq!(log.line(&report(3), at(24)), None);
        let line = log.line(&report(4), at(26)).unwrap();
        assert_eq!(
            line,
            "step 4/10 loss 1.5000 lr 1.00e-4 elapsed 0:00:26 eta 0:00:12"
        );
        assert_eq!(log.line(&report(5), at(28)), None);
        let mut val = report(6);
        val.val_loss = Some(2.0);
        assert!(log.line(&val, at(30)).unwrap().ends_with("val_loss 2.0000"));
        assert_eq!(log.line(&report(9), at(34)), None);
        let last = log.line(&report(10), at(35)).unwrap();
        assert!(
            last.starts_with("step 10/10") && last.ends_with("eta 0:00:00"),
            "{last}"
        );
    }

    #[test]
    fn a_resumed_run_counts_its_rate_from_its_own_updates() {
        let t0 = Instant::now();
        let mut log = ProgressLog::new(3600 + 100, Duration::ZERO, t0);
        log.line(&report(101), t0 + Duration::from_secs(1)).unwrap();
        let line = log.line(&report(102), t0 + Duration::from_secs(2)).unwrap();
        assert!(line.ends_with("elapsed 0:00:02 eta 0:59:58"), "{line}");
        let mut skipped = report(102);
        skipped.skipped = true;
        assert!(log
            .line(&skipped, t0 + Duration::from_secs(3))
            .unwrap()
            .ends_with(" skipped"));
    }
}
