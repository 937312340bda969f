//! Learning-rate schedule: linear warmup, then cosine decay from `lr` to `min_lr_ratio·lr`.
//!
//! `step` below is the number of optimiser steps already taken (0 for the first update),
//! which is SAT's `AnnealingLR.num_iters` for a fresh run. The formula follows SAT:
//! * optional "auto warmup" (SAT fine-tune mode): `step < auto_warmup_steps` → `lr·auto_warmup_rate`;
//! * warmup: `step ≤ warmup_steps` → `lr·step/warmup_steps`;
//! * cosine: `r = min(1, (step − warmup_steps)/decay_steps)`,
//!   `lr_min + (lr − lr_min)·(1 + cos πr)/2` with `lr_min = min_lr_ratio·lr`;
//! * constant: `lr`.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecayStyle {
    /// Cosine from `lr` to `min_lr_ratio·lr` over `decay_steps`, then flat.
    Cosine,
    /// Stay at `lr`.
    Constant,
}

/// A learning-rate schedule (a pure function of the step: nothing to save but the step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate (release: 1e-4).
    pub lr: f64,
    /// Linear warmup length (release: `0.02 × 300 = 6`).
    pub warmup_steps: u64,
    /// Cosine length after warmup. SAT uses the whole `train_iters` here (so the release
    /// never quite reaches the minimum); [`LrSchedule::cosine`] uses `total − warmup`.
    pub decay_steps: u64,
    /// Final learning rate as a fraction of `lr` (release: 0.1).
    pub min_lr_ratio: f64,
    /// The decay style.
    pub style: DecayStyle,
    /// SAT fine-tune mode's cap for the first steps: `(steps, rate)` (release: `(100, 0.05)`).
    pub auto_warmup: Option<(u64, f64)>,
}

impl LrSchedule {
    /// Warmup then cosine to `min_lr_ratio·lr`, reaching it at step `total_steps`.
    pub fn cosine(lr: f64, warmup_steps: u64, total_steps: u64, min_lr_ratio: f64) -> Result<Self> {
        if warmup_steps > total_steps {
            return Err(TrainError::Config(format!(
                "warmup_steps {warmup_steps} exceeds total_steps {total_steps}"
            )));
        }
        let s = Self {
            lr,
            warmup_steps,
            decay_steps: total_steps - warmup_steps,
            min_lr_ratio,
            style: DecayStyle::Cosine,
            auto_warmup: None,
        };
        s.validate()?;
        Ok(s)
    }

    /// The release recipe as SAT runs it for `train_iters` (300 in the release): lr 1e-4,
    /// warmup `0.02·train_iters`, cosine over `train_iters` to 0.1·lr, first 100 steps at
    /// 0.05·lr.
    pub fn sat_release(train_iters: u64) -> Self {
        Self {
            lr: 1e-4,
            warmup_steps: (0.02 * train_iters as f64) as u64,
            decay_steps: train_iters,
            min_lr_ratio: 0.1,
            style: DecayStyle::Cosine,
            auto_warmup: Some((100, 0.05)),
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!("lr must be finite and >= 0, got {}", self.lr));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio must be in [0, 1], got {}",
                self.min_lr_ratio
            ));
        }
        if let Some((_, rate)) = self.auto_warmup {
            if !(rate.is_finite() && rate >= 0.0) {
                return bad(format!(
                    "auto_warmup rate must be finite and >= 0, got {rate}"
                ));
            }
        }
        Ok(())
    }

    /// The learning rate for the update after `step` completed updates.
    pub fn lr_at(&self, step: u64) -> f64 {
        if let Some((n, rate)) = self.auto_warmup {
            if step < n {
                return self.lr * rate;
            }
        }
        if self.warmup_steps > 0 && step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        match self.style {
            DecayStyle::Constant => self.lr,
            DecayStyle::Cosine => {
                let r = if self.decay_steps == 0 {
                    1.0
                } else {
                    ((step - self.warmup_steps) as f64 / self.decay_steps as f64).min(1.0)
                };
                let min = self.lr * self.min_lr_ratio;
                min + (self.lr - min) * (1.0 + (std::f64::consts::PI * r).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-15 * b.abs().max(1e-30)
    }

    #[test]
    fn warmup_then_cosine_at_key_steps() {
        let s = LrSchedule::cosine(1e-3, 10, 110, 0.1).unwrap();
        assert_eq!(s.lr_at(0), 0.0);
        assert!(close(s.lr_at(5), 5e-4));
        assert!(close(s.lr_at(10), 1e-3));
        // Half-way through the decay: the mean of lr and min_lr.
        assert!(close(s.lr_at(60), 0.55e-3));
        // A quarter: min + (lr - min)(1 + cos(pi/4))/2.
        let q = 1e-4 + 0.9e-3 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0;
        assert!(close(s.lr_at(35), q));
        assert!(close(s.lr_at(110), 1e-4));
        assert!(close(s.lr_at(1000), 1e-4));
        // Monotone after the peak.
        assert!((10..110).all(|i| s.lr_at(i + 1) <= s.lr_at(i)));
    }

    #[test]
    fn sat_release_recipe() {
        let s = LrSchedule::sat_release(300);
        assert_eq!(s.warmup_steps, 6);
        assert!(close(s.lr_at(0), 5e-6));
        assert!(close(s.lr_at(99), 5e-6));
        // Step 100: past warmup, r = 94/300.
        let r = 94.0 / 300.0;
        let want = 1e-5 + 9e-5 * (1.0 + (std::f64::consts::PI * r).cos()) / 2.0;
        assert!(close(s.lr_at(100), want));
        // SAT never reaches the minimum within train_iters (decay over train_iters after warmup).
        assert!(s.lr_at(299) > 1e-5);
        assert!(close(s.lr_at(306), 1e-5));
    }

    #[test]
    fn constant_and_validation() {
        let mut s = LrSchedule::cosine(2e-4, 0, 10, 0.5).unwrap();
        s.style = DecayStyle::Constant;
        assert_eq!(s.lr_at(0), 2e-4);
        assert_eq!(s.lr_at(1_000_000), 2e-4);
        assert!(LrSchedule::cosine(1e-4, 11, 10, 0.1).is_err());
        assert!(LrSchedule::cosine(1e-4, 1, 10, 1.5).is_err());
        assert!(LrSchedule::cosine(f64::NAN, 1, 10, 0.1).is_err());
    }
}
