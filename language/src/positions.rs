//! GLM prefix-LM inputs: 2D position ids and the attention mask (spec §6.3).

/// 2D position ids for a prompt whose `[gMASK]` sits at `gmask_index` and whose context
/// (everything before `<sop>`) has `context_len` tokens, for `seq_len` positions in total.
///
/// Row 0 is `t` inside the context and the `[gMASK]` index after it; row 1 is 0 inside the
/// context and counts 1, 2, ... from `<sop>` on.
pub fn position_ids(seq_len: usize, context_len: usize, gmask_index: usize) -> [Vec<u32>; 2] {
    let mut pos = Vec::with_capacity(seq_len);
    let mut block = Vec::with_capacity(seq_len);
    for t in 0..seq_len {
        if t < context_len {
            pos.push(t as u32);
            block.push(0);
        } else {
            pos.push(gmask_index as u32);
            block.push((t - context_len + 1) as u32);
        }
    }
    [pos, block]
}

/// The positions of the token at sequence index `t` (may be past the prompt, for decoding).
pub fn position_at(t: usize, context_len: usize, gmask_index: usize) -> (u32, u32) {
    if t < context_len {
        (t as u32, 0)
    } else {
        (gmask_index as u32, (t - context_len + 1) as u32)
    }
}

/// Whether query `i` may attend key `j`: the context is bidirectional, the rest causal.
pub fn attends(i: usize, j: usize, context_len: usize) -> bool {
    j < context_len || j <= i
}

/// Where the context ends and where `[gMASK]` is, from the ids of a prompt.
///
/// The context is everything before the first `bos` (`<sop>`); without one, the whole prompt.
/// The mask position is the first `[gMASK]` (else `[MASK]`), else the last context token.
pub fn context_and_mask(ids: &[u32], bos: u32, gmask: u32, mask: u32) -> (usize, usize) {
    let context_len = ids.iter().position(|&t| t == bos).unwrap_or(ids.len());
    let mask_index = ids
        .iter()
        .position(|&t| t == gmask)
        .or_else(|| ids.iter().position(|&t| t == mask))
        .unwrap_or(context_len.saturating_sub(1));
    (context_len, mask_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_glm_rule() {
        // 3 context tokens, [gMASK] at 2, <sop> at 3, then one generated token.
        let [p, b] = position_ids(5, 3, 2);
        assert_eq!(p, vec![0, 1, 2, 2, 2]);
        assert_eq!(b, vec![0, 0, 0, 1, 2]);
        assert_eq!(position_at(4, 3, 2), (2, 2));
    }

    #[test]
    fn mask_is_prefix_bidirectional() {
        assert!(attends(0, 2, 3));
        assert!(!attends(0, 3, 3));
        assert!(attends(4, 3, 3));
        assert!(!attends(3, 4, 3));
    }

    #[test]
    fn context_is_found_from_special_ids() {
        let ids = [11, 12, 20, 1001, 1004];
        assert_eq!(context_and_mask(&ids, 1004, 1001, 1000), (4, 3));
        assert_eq!(context_and_mask(&[5, 6], 1004, 1001, 1000), (2, 1));
    }
}
