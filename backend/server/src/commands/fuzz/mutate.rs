//! The mutations of `cemiface fuzz`: seeded (SplitMix64), so a run is reproduced by its seed. Each
//! mutant is a corpus entry with one to four stacked edits, the kinds that find parser bugs:
//! integer fields set to boundaries (lengths, counts, shapes), truncated or shifted structure,
//! repeated chunks, pieces of another entry, and in text formats numbers swapped for extremes.

/// Values that break length and count arithmetic.
const INTERESTING_U32: [u32; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// Numbers that break range checks, casts and allocations in text formats.
const INTERESTING_TEXT: [&str; 10] = [
    "0",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e309",
    "-1e309",
    "nan",
    "999999999999",
    "0.0",
    "-0",
];

/// A seeded source of mutants.
pub struct Mutator {
    state: u64,
    text: bool,
}

impl Mutator {
    /// Mutations from `seed`; `text` adds number swaps.
    pub fn new(seed: u64, text: bool) -> Self {
        Self { state: seed, text }
    }

    fn next(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// A mutant of one of `corpus`'s entries.
    pub fn mutant(&mut self, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut v = corpus[self.below(corpus.len())].clone();
        for _ in 0..1 + self.below(4) {
            self.edit(&mut v, corpus);
        }
        v
    }

    fn edit(&mut self, v: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        let len = v.len();
        match self.below(if self.text { 9 } else { 8 }) {
            0 if len > 0 => {
                let i = self.below(len);
                v[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                v[i] = INTERESTING_U32[self.below(5)] as u8;
            }
            2 if len >= 4 => {
                let i = self.below(len - 3);
                let x = INTERESTING_U32[self.below(INTERESTING_U32.len())];
                let bytes = if self.below(2) == 0 {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                };
                v[i..i + 4].copy_from_slice(&bytes);
            }
            3 => v.truncate(self.below(len + 1)),
            4 if len > 0 => {
                let a = self.below(len);
                let b = (a + 1 + self.below(64)).min(len);
                v.drain(a..b);
            }
            5 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                v.splice(at..at, bytes);
            }
            6 if len > 0 => {
                let a = self.below(len);
                let b = (a + 1 + self.below(256)).min(len);
                let chunk = v[a..b].to_vec();
                let at = self.below(len + 1);
                v.splice(at..at, chunk);
            }
            7 => {
                let other = &corpus[self.below(corpus.len())];
                let cut = self.below(len + 1);
                let from = self.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            8 => self.swap_number(v),
            _ => {}
        }
    }

    /// Replaces one run of digits (with its sign and decimals) by an extreme number.
    fn swap_number(&mut self, v: &mut Vec<u8>) {
        let starts: Vec<usize> = (0..v.len())
            .filter(|&i| v[i].is_ascii_digit() && (i == 0 || !v[i - 1].is_ascii_digit()))
            .collect();
        if starts.is_empty() {
            return;
        }
        let a = starts[self.below(starts.len())];
        let mut b = a;
        while b < v.len() && (v[b].is_ascii_digit() || v[b] == b'.') {
            b += 1;
        }
        let with = INTERESTING_TEXT[self.below(INTERESTING_TEXT.len())]
            .as_bytes()
            .to_vec();
        v.splice(a..b, with);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutants() {
        let corpus = vec![b"steps = 20\nlr = 0.001\n".to_vec(), vec![0u8; 64]];
        let run = |seed| {
            let mut m = Mutator::new(seed, true);
            (0..200).map(|_| m.mutant(&corpus)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mutants = run(7);
        assert!(
            mutants.iter().filter(|m| !corpus.contains(m)).count() > 150,
            "most are new"
        );
        assert!(
            mutants
                .iter()
                .any(|m| m.windows(4).any(|w| w == b"1e30" || w == b"4294")),
            "number swaps happen"
        );
    }
}
