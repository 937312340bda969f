//! A pre-pass over pickle opcodes that rejects what would make candle's pickle machine
//! allocate absurd amounts or panic: string lengths past the end of the data, `LONG1`
//! integers wider than 8 bytes (candle shifts past 64 bits), opcodes it does not know, and
//! memo references that would copy objects exponentially (candle clones memo entries).
//!
//! It mirrors candle's stack machine with object *weights* (approximate node counts) instead
//! of objects, so a "billion laughs" pickle is refused before anything is built.

use std::collections::HashMap;

/// Largest weight of one object.
const MAX_OBJECT_WEIGHT: u64 = 1 << 26;
/// Minimum budget of total clone work; the budget grows with the pickle size.
const MIN_CLONE_BUDGET: u64 = 1 << 24;

/// Stack of object weights (`None` is a MARK).
struct Sim {
    stack: Vec<Option<u64>>,
    memo: HashMap<u32, u64>,
    clone_work: u64,
    clone_budget: u64,
}

impl Sim {
    fn push(&mut self, w: u64) -> Result<(), String> {
        if w > MAX_OBJECT_WEIGHT {
            return Err(format!(
                "an object would have more than {MAX_OBJECT_WEIGHT} parts"
            ));
        }
        self.stack.push(Some(w));
        Ok(())
    }
    fn pop(&mut self) -> Result<u64, String> {
        match self.stack.pop() {
            Some(Some(w)) => Ok(w),
            Some(None) => Err("unexpected MARK on the stack".into()),
            None => Err("stack underflow".into()),
        }
    }
    fn pop_to_mark(&mut self) -> Result<u64, String> {
        let mut sum = 0u64;
        loop {
            match self.stack.pop() {
                Some(Some(w)) => sum = sum.saturating_add(w),
                Some(None) => return Ok(sum),
                None => return Err("MARK not found".into()),
            }
        }
    }
    fn grow_top(&mut self, by: u64) -> Result<(), String> {
        let w = self.pop()?;
        self.push(w.saturating_add(by))
    }
    fn clone_cost(&mut self, w: u64) -> Result<(), String> {
        self.clone_work = self.clone_work.saturating_add(w);
        if self.clone_work > self.clone_budget {
            return Err("memo references would copy too much data".into());
        }
        Ok(())
    }
    fn put(&mut self, id: u32) -> Result<(), String> {
        let w = match self.stack.last() {
            Some(Some(w)) => *w,
            _ => return Err("PUT without an object".into()),
        };
        self.clone_cost(w)?;
        self.memo.insert(id, w);
        Ok(())
    }
    fn get(&mut self, id: u32) -> Result<(), String> {
        let w = *self
            .memo
            .get(&id)
            .ok_or_else(|| format!("memo entry {id} is missing"))?;
        self.clone_cost(w)?;
        self.push(w)
    }
}

/// Walks the opcodes of `data` up to `STOP`; returns a description of the first problem.
pub fn check(data: &[u8]) -> Result<(), String> {
    let mut pos = 0usize;
    let mut sim = Sim {
        stack: Vec::new(),
        memo: HashMap::new(),
        clone_work: 0,
        clone_budget: (data.len() as u64).saturating_mul(64).max(MIN_CLONE_BUDGET),
    };
    let u32_at = |s: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&data[s..s + 4]);
        u32::from_le_bytes(b)
    };
    let take = |pos: &mut usize, n: usize, what: &str| -> Result<usize, String> {
        let start = *pos;
        match start.checked_add(n) {
            Some(end) if end <= data.len() => {
                *pos = end;
                Ok(start)
            }
            _ => Err(format!(
                "{what} at byte {start} needs {n} bytes; only {} remain",
                data.len().saturating_sub(start)
            )),
        }
    };
    loop {
        let at = pos;
        let op = data
            .get(pos)
            .copied()
            .ok_or_else(|| format!("data ends at byte {at} without a STOP opcode"))?;
        pos += 1;
        match op {
            b'.' => return Ok(()),
            0x80 => {
                take(&mut pos, 1, "argument")?;
            }
            b')' | b'}' | b'd' | b']' | b'N' | 0x88 | 0x89 => sim.push(1)?,
            b'(' => sim.stack.push(None),
            b'R' | b'b' | 0x81 => {
                let a = sim.pop()?;
                let b = sim.pop()?;
                sim.push(a.saturating_add(b).saturating_add(1))?;
            }
            b't' => {
                let w = sim.pop_to_mark()?;
                sim.push(w.saturating_add(1))?;
            }
            b'Q' | 0x85 => {
                let w = sim.pop()?;
                sim.push(w.saturating_add(1))?;
            }
            0x86 | 0x87 => {
                let mut w = 1u64;
                for _ in 0..(op - 0x84) {
                    w = w.saturating_add(sim.pop()?);
                }
                sim.push(w)?;
            }
            b'a' => {
                let v = sim.pop()?;
                sim.grow_top(v)?;
            }
            b's' => {
                let v = sim.pop()?.saturating_add(sim.pop()?);
                sim.grow_top(v)?;
            }
            b'e' | b'u' => {
                let v = sim.pop_to_mark()?;
                sim.grow_top(v)?;
            }
            b'K' => {
                take(&mut pos, 1, "argument")?;
                sim.push(1)?;
            }
            b'M' => {
                take(&mut pos, 2, "argument")?;
                sim.push(1)?;
            }
            b'J' => {
                take(&mut pos, 4, "argument")?;
                sim.push(1)?;
            }
            b'G' => {
                take(&mut pos, 8, "float")?;
                sim.push(1)?;
            }
            b'q' => {
                let s = take(&mut pos, 1, "argument")?;
                sim.put(u32::from(data[s]))?;
            }
            b'r' => {
                let s = take(&mut pos, 4, "argument")?;
                sim.put(u32_at(s))?;
            }
            b'h' => {
                let s = take(&mut pos, 1, "argument")?;
                sim.get(u32::from(data[s]))?;
            }
            b'j' => {
                let s = take(&mut pos, 4, "argument")?;
                sim.get(u32_at(s))?;
            }
            b'X' => {
                let s = take(&mut pos, 4, "string length")?;
                let len = u32_at(s) as usize;
                take(&mut pos, len, "string")?;
                sim.push(1 + len as u64 / 16)?;
            }
            0x8a => {
                let s = take(&mut pos, 1, "LONG1 length")?;
                let n = data[s] as usize;
                if n > 8 {
                    return Err(format!(
                        "LONG1 at byte {at} has {n} bytes; at most 8 are supported"
                    ));
                }
                take(&mut pos, n, "LONG1")?;
                sim.push(1)?;
            }
            b'c' => {
                for _ in 0..2 {
                    let rest = &data[pos..];
                    let nl = rest
                        .iter()
                        .take(1024)
                        .position(|&b| b == b'\n')
                        .ok_or_else(|| format!("GLOBAL at byte {at} has no name line"))?;
                    pos += nl + 1;
                }
                sim.push(1)?;
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at byte {at}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_a_small_pickle_and_rejects_damage() {
        let ok = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.";
        assert!(check(ok).is_ok());
        assert!(check(&ok[..ok.len() - 1]).is_err(), "no STOP");
        let long_string = b"\x80\x02X\xff\xff\xff\xffab.";
        assert!(check(long_string).unwrap_err().contains("string"));
        let wide_long = b"\x80\x02\x8a\x20AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.";
        assert!(check(wide_long).unwrap_err().contains("LONG1"));
        assert!(check(b"\x80\x02\xfe.").unwrap_err().contains("0xfe"));
        assert!(check(b"ctorch\nFloatStorage").is_err());
        assert!(check(b"\x80\x02R.").unwrap_err().contains("underflow"));
    }

    #[test]
    fn exponential_memo_copies_are_refused() {
        // x0 = (); x(n+1) = (x(n), x(n)), memoised each time: 2^60 nodes if built.
        let mut p = vec![0x80, 2, b')', b'q', 0];
        for i in 0..60u8 {
            p.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        p.push(b'.');
        let err = check(&p).unwrap_err();
        assert!(err.contains("parts") || err.contains("copy"), "{err}");
    }
}
