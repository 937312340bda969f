//! The last completed update, kept so that it can be written as a checkpoint at any moment —
//! from another thread, while the training thread is still inside the next update (what a
//! Ctrl-C or a scheduler's SIGTERM needs: an update of the full-size model takes minutes,
//! longer than a cluster's grace period).
//!
//! After each update the loop hands a [`Snapshot`] to [`LastUpdate::record`]; its own periodic
//! saves go through [`LastUpdate::save`]; [`LastUpdate::save_last`] writes the recorded
//! snapshot unless that update is already on disk. One mutex orders the three, so two saves
//! never write the same `step-N.tmp` at once. The checkpoint written from a snapshot is the
//! one [`CheckpointManager::save`] would have written at that update, byte for byte.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use candle_core::{Device, Tensor};

use crate::checkpoint::{CheckpointManager, TrainState};
use crate::error::Result;

/// What a checkpoint of one update holds, as owned copies in host memory.
#[derive(Debug)]
pub struct Snapshot {
    state: TrainState,
    weights: HashMap<String, Tensor>,
    optimizer: HashMap<String, Tensor>,
}

impl Snapshot {
    /// Copies the arguments of [`CheckpointManager::save`] so that later updates leave them
    /// alone. The weights are copied: AdamW writes its variables in place (`Var::set`), so a
    /// clone of a weight (which shares its storage) would follow later updates. The optimiser
    /// tensors (moments, step counts, the text queue) are replaced by new tensors at every
    /// update, never written in place, so on the CPU they are shared, not copied. Tensors on
    /// a GPU are copied to host memory, so the snapshot costs no device memory and writing it
    /// never touches the device.
    pub fn new(
        state: &TrainState,
        weights: &HashMap<String, Tensor>,
        optimizer: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let weights = weights
            .iter()
            .map(|(k, t)| {
                let owned = if t.device().is_cpu() {
                    t.copy()?
                } else {
                    t.to_device(&Device::Cpu)?
                };
                Ok((k.clone(), owned))
            })
            .collect::<Result<_>>()?;
        let optimizer = optimizer
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?)))
            .collect::<Result<_>>()?;
        Ok(Self {
            state: state.clone(),
            weights,
            optimizer,
        })
    }

    /// The update it holds: (updates applied, updates skipped).
    pub fn position(&self) -> (u64, u64) {
        position(&self.state)
    }
}

fn position(state: &TrainState) -> (u64, u64) {
    (state.counters.step, state.counters.skipped_steps)
}

/// What [`LastUpdate::save_last`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedLast {
    /// It wrote the checkpoint of update `step` in `dir`.
    Written {
        /// Updates applied.
        step: u64,
        /// The checkpoint directory.
        dir: PathBuf,
    },
    /// The last completed update was already saved (a periodic save).
    AlreadySaved {
        /// Updates applied.
        step: u64,
    },
    /// No update has completed since this object was made.
    NoUpdate,
}

#[derive(Debug, Default)]
struct Slot {
    pending: Option<Snapshot>,
    saved: Option<(u64, u64)>,
}

/// The checkpoints of one run, and the snapshot of its last completed update.
#[derive(Debug)]
pub struct LastUpdate {
    manager: CheckpointManager,
    slot: Mutex<Slot>,
}

impl LastUpdate {
    /// Saves through `manager`.
    pub fn new(manager: CheckpointManager) -> Self {
        Self {
            manager,
            slot: Mutex::new(Slot::default()),
        }
    }

    /// The checkpoint manager it saves through.
    pub fn manager(&self) -> &CheckpointManager {
        &self.manager
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A panic elsewhere while holding the lock leaves the slot consistent: every write to
        // it is a single assignment.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `snapshot` as the last completed update (dropping the previous one).
    pub fn record(&self, snapshot: Snapshot) {
        self.slot().pending = Some(snapshot);
    }

    /// [`CheckpointManager::save`], in turn with [`LastUpdate::save_last`].
    pub fn save(
        &self,
        state: &TrainState,
        weights: &HashMap<String, Tensor>,
        optimizer: &HashMap<String, Tensor>,
    ) -> Result<PathBuf> {
        let mut slot = self.slot();
        let dir = self.manager.save(state, weights, optimizer)?;
        slot.saved = Some(position(state));
        Ok(dir)
    }

    /// Writes the recorded snapshot as a checkpoint unless that update is saved already
    /// (waiting for a save in progress to finish first).
    pub fn save_last(&self) -> Result<SavedLast> {
        let mut slot = self.slot();
        let Some(snapshot) = slot.pending.as_ref() else {
            return Ok(SavedLast::NoUpdate);
        };
        let at = snapshot.position();
        if slot.saved == Some(at) {
            return Ok(SavedLast::AlreadySaved { step: at.0 });
        }
        let dir = self
            .manager
            .save(&snapshot.state, &snapshot.weights, &snapshot.optimizer)?;
        slot.saved = Some(at);
        Ok(SavedLast::Written { step: at.0, dir })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, MANIFEST_FILE};
    use crate::grads::Gradients;
    use crate::optim::{AdamW, AdamWConfig, ParamSet};
    use candle_core::Var;

    fn optimiser() -> AdamW {
        let w = Var::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let params = ParamSet::new([("w".to_string(), w)]).unwrap();
        AdamW::new(params, AdamWConfig::default()).unwrap()
    }

    fn update(opt: &mut AdamW, state: &mut TrainState) {
        let g = Tensor::new(&[0.1f32, -0.2, 0.3], &Device::Cpu).unwrap();
        opt.step(&Gradients::new(vec![Some(g)]), 0.1).unwrap();
        state.counters.step += 1;
    }

    fn snapshot(opt: &AdamW, state: &TrainState) -> Snapshot {
        Snapshot::new(
            state,
            &opt.params().tensors(),
            &opt.state_tensors().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn a_snapshot_is_the_checkpoint_a_save_at_that_update_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut opt = optimiser();
        let mut state = TrainState::default();
        update(&mut opt, &mut state);
        // The checkpoint a save at update 1 writes, in another root.
        let plain = CheckpointManager::new(dir.path().join("plain"), 3).unwrap();
        let want = plain.save_training(&state, &opt).unwrap();
        // A snapshot of update 1, written after update 2 has changed the variable in place.
        let last = LastUpdate::new(CheckpointManager::new(dir.path().join("last"), 3).unwrap());
        assert_eq!(last.save_last().unwrap(), SavedLast::NoUpdate);
        last.record(snapshot(&opt, &state));
        let shared = opt.params().tensors()["w"].clone();
        let before: Vec<f32> = shared.to_vec1().unwrap();
        update(&mut opt, &mut state);
        assert_ne!(
            shared.to_vec1::<f32>().unwrap(),
            before,
            "a clone of a weight follows later updates: the snapshot must copy"
        );
        let SavedLast::Written { step, dir: got } = last.save_last().unwrap() else {
            panic!("nothing written");
        };
        assert_eq!(step, 1);
        for file in [
            crate::checkpoint::WEIGHTS_FILE,
            crate::checkpoint::OPTIMIZER_FILE,
            crate::checkpoint::STATE_FILE,
            MANIFEST_FILE,
        ] {
            assert_eq!(
                std::fs::read(got.join(file)).unwrap(),
                std::fs::read(want.join(file)).unwrap(),
                "{file}"
            );
        }
        let ck = Checkpoint::load(&got, &Device::Cpu).unwrap();
        assert_eq!(ck.weights["w"].to_vec1::<f32>().unwrap(), before);
        // Written once.
        assert_eq!(
            last.save_last().unwrap(),
            SavedLast::AlreadySaved { step: 1 }
        );
    }

    #[test]
    fn an_update_saved_by_the_loop_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut opt = optimiser();
        let mut state = TrainState::default();
        let last = LastUpdate::new(CheckpointManager::new(dir.path(), 3).unwrap());
        update(&mut opt, &mut state);
        last.record(snapshot(&opt, &state));
        last.save(
            &state,
            &opt.params().tensors(),
            &opt.state_tensors().unwrap(),
        )
        .unwrap();
        assert_eq!(
            last.save_last().unwrap(),
            SavedLast::AlreadySaved { step: 1 }
        );
        // A skipped update keeps the step but is another position.
        state.counters.skipped_steps += 1;
        last.record(snapshot(&opt, &state));
        assert!(matches!(
            last.save_last().unwrap(),
            SavedLast::Written { step: 1, .. }
        ));
    }
}
