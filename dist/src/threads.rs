//! Ranks as threads of one process: the backend of the data-parallel tests, so that plain
//! `cargo test` covers the same code paths as an MPI job, including a rank that stops.
//!
//! Every collective is one exchange: each rank deposits its bytes, the last to arrive
//! publishes all of them, and each rank combines them itself in rank order (so sums are the
//! same on every rank). A rank that is dropped, or calls [`Collective::fail`], or does not
//! arrive within the timeout ends the exchange for everyone with an error naming it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{DistError, Result};
use crate::{check_root, Collective};

/// One rank of an in-process group; see the module docs.
#[derive(Debug)]
pub struct ThreadGroup {
    shared: Arc<Shared>,
    rank: usize,
    timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    world: usize,
    state: Mutex<Round>,
    arrived: Condvar,
}

#[derive(Debug)]
struct Round {
    /// Completed exchanges so far.
    generation: u64,
    /// The deposits of the exchange in progress, by rank.
    slots: Vec<Option<Vec<u8>>>,
    /// The deposits of the last completed exchange.
    published: Arc<Vec<Vec<u8>>>,
    /// Why the group stopped, once a rank failed.
    failure: Option<String>,
}

impl ThreadGroup {
    /// The `world` ranks of a new group, in rank order; move each into its own thread. A
    /// collective that waits longer than `timeout` for the other ranks fails on every rank.
    pub fn new(world: usize, timeout: Duration) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            world,
            state: Mutex::new(Round {
                generation: 0,
                slots: vec![None; world],
                published: Arc::new(Vec::new()),
                failure: None,
            }),
            arrived: Condvar::new(),
        });
        (0..world)
            .map(|rank| ThreadGroup {
                shared: shared.clone(),
                rank,
                timeout,
            })
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deposits `bytes` for collective `op` and returns every rank's deposit, in rank order.
    fn exchange(&self, bytes: Vec<u8>, op: &'static str) -> Result<Arc<Vec<Vec<u8>>>> {
        let mut st = self.lock();
        if let Some(why) = &st.failure {
            return Err(DistError::RankFailed(why.clone()));
        }
        let generation = st.generation;
        st.slots[self.rank] = Some(bytes);
        if st.slots.iter().all(Option::is_some) {
            let all: Vec<Vec<u8>> = st.slots.iter_mut().filter_map(Option::take).collect();
            st.published = Arc::new(all);
            st.generation += 1;
            self.shared.arrived.notify_all();
            return Ok(st.published.clone());
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if st.generation != generation {
                return Ok(st.published.clone());
            }
            if let Some(why) = &st.failure {
                return Err(DistError::RankFailed(why.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                let missing: Vec<usize> = (0..self.shared.world)
                    .filter(|&r| st.slots[r].is_none())
                    .collect();
                let why = hung_ranks(&missing, op, self.timeout);
                st.failure = Some(why.clone());
                self.shared.arrived.notify_all();
                return Err(DistError::RankFailed(why));
            }
            st = self
                .shared
                .arrived
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The deposits of every rank, each checked to be `len` bytes long.
    fn exchange_equal(&self, bytes: Vec<u8>, what: &'static str) -> Result<Arc<Vec<Vec<u8>>>> {
        let len = bytes.len();
        let all = self.exchange(bytes, what)?;
        if let Some(r) = all.iter().position(|b| b.len() != len) {
            return Err(DistError::Usage(format!(
                "{what}: rank {r} gave {} bytes, rank {} gave {len}",
                all[r].len(),
                self.rank
            )));
        }
        Ok(all)
    }
}

impl Drop for ThreadGroup {
    /// A rank that goes away has left the group: the others fail at once in any collective
    /// they have not completed, instead of at the timeout. (Every rank calls the same
    /// collectives, so none is left to call once a rank is done.)
    fn drop(&mut self) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some(format!("rank {} left the group", self.rank));
        }
        self.shared.arrived.notify_all();
    }
}

/// The message of a collective `op` that timed out waiting for the ranks `missing`:
/// `rank 1 did not arrive at all_reduce within 5s` (`ranks 1, 3` for several).
fn hung_ranks(missing: &[usize], op: &str, timeout: Duration) -> String {
    let names: Vec<String> = missing.iter().map(usize::to_string).collect();
    let who = match names.len() {
        1 => format!("rank {}", names[0]),
        _ => format!("ranks {}", names.join(", ")),
    };
    format!("{who} did not arrive at {op} within {timeout:?} (stopped or hung)")
}

fn to_bytes<T: Copy, const N: usize>(values: &[T], bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| bytes(v)).collect()
}

fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes
        .chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N]))
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world
    }

    fn backend(&self) -> &'static str {
        "threads"
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        let all = self.exchange_equal(to_bytes(values, f32::to_le_bytes), "all_reduce")?;
        values.fill(0.0);
        for deposit in all.iter() {
            for (v, b) in values.iter_mut().zip(chunks::<4>(deposit)) {
                *v += f32::from_le_bytes(b);
            }
        }
        Ok(())
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        let all = self.exchange_equal(to_bytes(values, f64::to_le_bytes), "all_reduce")?;
        values.fill(0.0);
        for deposit in all.iter() {
            for (v, b) in values.iter_mut().zip(chunks::<8>(deposit)) {
                *v += f64::from_le_bytes(b);
            }
        }
        Ok(())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .exchange(bytes.to_vec(), "all_gather")?
            .as_ref()
            .clone())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, self.shared.world)?;
        let mine = if self.rank == root {
            std::mem::take(bytes)
        } else {
            Vec::new()
        };
        let all = self.exchange(mine, "broadcast")?;
        *bytes = all[root].clone();
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        self.exchange(Vec::new(), "barrier").map(|_| ())
    }

    /// Marks this rank as failed with `why`: every collective in progress or to come fails on
    /// every rank with a message naming it (what a crashed process amounts to).
    fn fail(&self, why: &str) {
        let mut st = self.lock();
        if st.failure.is_none() {
            st.failure = Some(format!("rank {} failed: {why}", self.rank));
        }
        self.shared.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on every rank of a new group, each in its own thread; the results by rank.
    fn run<T: Send>(
        world: usize,
        timeout: Duration,
        f: impl Fn(ThreadGroup) -> T + Sync,
    ) -> Vec<T> {
        let group = ThreadGroup::new(world, timeout);
        std::thread::scope(|s| {
            let handles: Vec<_> = group
                .into_iter()
                .map(|g| {
                    let f = &f;
                    s.spawn(move || f(g))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("rank thread panicked"))
                .collect()
        })
    }

    #[test]
    fn collectives_give_every_rank_the_same_result() {
        let out = run(3, Duration::from_secs(10), |g| -> Result<_> {
            let r = g.rank() as f32;
            let mut sum = vec![r, 10.0 * r];
            // Many rounds in a row: no rank may read a later round's deposits.
            for _ in 0..50 {
                g.barrier()?;
            }
            g.all_reduce_sum_f32(&mut sum)?;
            let mut count = [g.rank() as f64 + 0.5];
            g.all_reduce_sum_f64(&mut count)?;
            let gathered = g.all_gather_f32(&vec![r; g.rank()])?;
            let mut msg = if g.rank() == 1 {
                b"from one".to_vec()
            } else {
                Vec::new()
            };
            g.broadcast_bytes(&mut msg, 1)?;
            Ok((sum, count[0], gathered, msg))
        });
        for o in out {
            let (sum, count, gathered, msg) = o.expect("collectives failed");
            assert_eq!(sum, [3.0, 30.0]);
            assert_eq!(count, 4.5);
            assert_eq!(gathered, [vec![], vec![1.0], vec![2.0, 2.0]]);
            assert_eq!(msg, b"from one");
        }
    }

    #[test]
    fn a_rank_that_stops_ends_the_collective_with_its_name() {
        // Rank 1 never calls the all-reduce and leaves: the others stop, naming it.
        let out = run(3, Duration::from_millis(300), |g| {
            if g.rank() == 1 {
                return Ok(());
            }
            g.all_reduce_sum_f32(&mut [1.0])
        });
        for (rank, o) in out.iter().enumerate() {
            if rank != 1 {
                let err = o.as_ref().unwrap_err().to_string();
                assert!(err.contains("rank 1"), "{err}");
            }
        }
        // Rank 2 fails outright: the others learn it at once, whatever the timeout.
        let started = Instant::now();
        let out = run(3, Duration::from_secs(60), |g| {
            if g.rank() == 2 {
                g.fail("out of memory");
                return Ok(());
            }
            g.barrier()
        });
        assert!(started.elapsed() < Duration::from_secs(30));
        for o in &out[..2] {
            let err = o.as_ref().unwrap_err().to_string();
            assert!(err.contains("rank 2 failed: out of memory"), "{err}");
        }
    }

    #[test]
    fn every_hung_rank_is_named() {
        // Ranks 1 and 3 of four never arrive at the barrier; 0 and 2 name both.
        let out = run(4, Duration::from_millis(300), |g| {
            if g.rank() % 2 == 1 {
                std::thread::sleep(Duration::from_millis(600));
                return Ok(());
            }
            g.barrier()
        });
        for o in [&out[0], &out[2]] {
            let err = o.as_ref().unwrap_err().to_string();
            assert!(
                err.contains("ranks 1, 3 did not arrive at barrier"),
                "{err}"
            );
        }
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        let out = run(2, Duration::from_secs(10), |g| {
            let mut v = vec![0.0f32; 1 + g.rank()];
            g.all_reduce_sum_f32(&mut v)
        });
        assert!(out.iter().all(|o| o.is_err()));
    }
}
