//! One optimiser step with the release's guards: skip on a non-finite loss or gradient
//! (counted, schedule not advanced), clip to a global norm, then AdamW at the scheduled lr.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::grads::Gradients;
use crate::optim::AdamW;
use crate::schedule::LrSchedule;

/// Step counters, saved in checkpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounters {
    /// Optimiser updates applied (= the schedule's step).
    pub step: u64,
    /// Updates skipped because the loss or a gradient was NaN/∞.
    pub skipped_steps: u64,
}

/// What [`apply_step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// The update was applied.
    Applied {
        /// The global gradient norm before clipping.
        grad_norm: f64,
        /// The learning rate used.
        lr: f64,
    },
    /// Nothing was changed but [`StepCounters::skipped_steps`].
    Skipped {
        /// The loss, if it was the non-finite part.
        loss: f64,
        /// The pre-clip gradient norm (non-finite when a gradient was).
        grad_norm: f64,
    },
}

/// Applies one update from `grads` (already accumulated over micro-batches).
///
/// `loss` is the step's (mean) loss, used only for the finite check. `max_grad_norm`:
/// the release clips at 0.1; `None` disables clipping.
pub fn apply_step(
    opt: &mut AdamW,
    schedule: &LrSchedule,
    counters: &mut StepCounters,
    loss: f64,
    mut grads: Gradients,
    max_grad_norm: Option<f64>,
) -> Result<StepOutcome> {
    let grad_norm = grads.global_norm()?;
    if !loss.is_finite() || !grad_norm.is_finite() {
        counters.skipped_steps += 1;
        tracing::warn!(
            step = counters.step,
            loss,
            grad_norm,
            "non-finite loss or gradient: step skipped"
        );
        return Ok(StepOutcome::Skipped { loss, grad_norm });
    }
    if let Some(max) = max_grad_norm {
        grads.clip_global_norm(max)?;
    }
    let lr = schedule.lr_at(counters.step);
    opt.step(&grads, lr)?;
    counters.step += 1;
    Ok(StepOutcome::Applied { grad_norm, lr })
}
