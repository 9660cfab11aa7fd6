//! Which codes of a file may have come before: a fixed-size Bloom filter the reader fills as it
//! stages rows. A code it has not seen is new for certain; one it has "seen" may be a repeat or
//! a false alarm (about 0.4 % of rows at a million distinct codes). Only the flagged rows' codes
//! then need checking in SQL, instead of grouping every staged row by code. Its memory is the
//! same for every file.
//!
//! Hand-written because a benchmark needed it: judging a 1M-row upload took 0.89 s grouping
//! every staged row and 0.27 s grouping only the flagged ones (`bench_upload`, JUDGE phase).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Bits in the filter: 2^24, 2 MiB.
const BITS_LOG2: u32 = 24;
/// Bits set per code.
const HASHES: u64 = 3;

pub struct SeenCodes {
    bits: Vec<u64>,
}

impl Default for SeenCodes {
    fn default() -> Self {
        Self {
            bits: vec![0; 1 << (BITS_LOG2 - 6)],
        }
    }
}

impl SeenCodes {
    /// Records `code`; `true` when it may have been recorded before (never `false` for a
    /// code that was).
    pub fn insert(&mut self, code: &str) -> bool {
        // SipHash with fixed keys: the same code always sets the same bits.
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(code);
        let (h1, h2) = (h & 0xffff_ffff, (h >> 32) | 1);
        let mask = (1u64 << BITS_LOG2) - 1;
        let mut seen = true;
        for i in 0..HASHES {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & mask;
            let (word, bit) = ((bit >> 6) as usize, 1u64 << (bit & 63));
            seen &= self.bits[word] & bit != 0;
            self.bits[word] |= bit;
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::SeenCodes;
    use proptest::prelude::*;

    proptest! {
        /// No false negatives: every repeat is flagged, whatever else came between.
        #[test]
        fn every_repeat_is_flagged(codes in proptest::collection::vec("[A-Z0-9-]{1,12}", 1..300)) {
            let mut seen = SeenCodes::default();
            let mut exact = std::collections::HashSet::new();
            for c in &codes {
                let flagged = seen.insert(c);
                if !exact.insert(c.clone()) {
                    prop_assert!(flagged, "{c} repeated but not flagged");
                }
            }
        }
    }

    #[test]
    fn false_alarms_are_rare_at_a_million_codes() {
        let mut seen = SeenCodes::default();
        let flagged = (0..1_000_000)
            .filter(|i| seen.insert(&format!("CODE-{i:08}")))
            .count();
        assert!(
            flagged < 10_000,
            "{flagged} of a million distinct codes flagged"
        );
    }
}
