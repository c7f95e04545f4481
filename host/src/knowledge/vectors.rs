//! The passage vectors of a knowledge base with an embedding model: one unit vector per
//! passage, kept in `murmur-vectors.bin` beside the index.
//!
//! Up to [`EXACT_ROWS`] rows are searched exhaustively. Above that, a first pass compares
//! one sign bit per dimension (of the vector minus the mean of all rows) by Hamming
//! distance, 48 bytes a row for 384 dimensions instead of 1,536, and only the closest
//! [`OVERSAMPLE`] × n rows (at least [`MIN_CANDIDATES`]) are ranked by their exact dot
//! product: binary quantization with rescoring.
//!
//! File layout (little-endian): the magic `MURMURV1`, `dim: u32`, `count: u32`, then per
//! passage `id_len: u32`, the id's UTF-8 bytes, and `dim` `f32`s. Rows are in the order the
//! passages were indexed; a passage's row is stored in the index's `row` field.

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use crate::model::embedding::dot;

/// Most rows searched exhaustively; more are searched by sign bits first.
pub const EXACT_ROWS: usize = 8192;
/// Rows ranked exactly per row asked for, when the sign bits pick candidates.
pub const OVERSAMPLE: usize = 20;
/// Fewest rows ranked exactly when the sign bits pick candidates.
pub const MIN_CANDIDATES: usize = 400;

const MAGIC: &[u8; 8] = b"MURMURV1";
/// The vectors file inside an index folder.
pub const FILE: &str = "murmur-vectors.bin";

/// Passage vectors, row by row.
#[derive(Debug, Clone)]
pub struct Vectors {
    dim: usize,
    ids: Vec<String>,
    data: Vec<f32>,
    /// The sign bits, made on the first search of a large set.
    signs: OnceLock<Signs>,
}

impl PartialEq for Vectors {
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim && self.ids == other.ids && self.data == other.data
    }
}

/// One bit per dimension and row: whether the value is above the mean of its dimension.
#[derive(Debug, Clone)]
struct Signs {
    mean: Vec<f32>,
    words: usize,
    bits: Vec<u64>,
}

impl Signs {
    fn of(v: &Vectors) -> Signs {
        let mut mean = vec![0f32; v.dim];
        for row in v.data.chunks_exact(v.dim) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        let n = v.len().max(1) as f32;
        mean.iter_mut().for_each(|m| *m /= n);
        let words = v.dim.div_ceil(64);
        let mut signs = Signs {
            mean,
            words,
            bits: Vec::with_capacity(words * v.len()),
        };
        for row in v.data.chunks_exact(v.dim) {
            let encoded = signs.encode(row);
            signs.bits.extend(encoded);
        }
        signs
    }

    fn encode(&self, v: &[f32]) -> Vec<u64> {
        let mut out = vec![0u64; self.words];
        for (i, (x, m)) in v.iter().zip(&self.mean).enumerate() {
            if x > m {
                out[i / 64] |= 1 << (i % 64);
            }
        }
        out
    }
}

impl Vectors {
    /// Vectors of length `dim`, none yet.
    pub fn new(dim: usize) -> Self {
        Vectors {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
            signs: OnceLock::new(),
        }
    }

    /// Appends the vector of passage `id`; it must have length [`Vectors::dim`].
    pub fn push(&mut self, id: String, v: &[f32]) -> Result<(), String> {
        if v.len() != self.dim {
            return Err(format!(
                "vector of {id} has {} dimensions, not {}",
                v.len(),
                self.dim
            ));
        }
        self.ids.push(id);
        self.data.extend_from_slice(v);
        self.signs = OnceLock::new();
        Ok(())
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The passage id of a row.
    pub fn id(&self, row: usize) -> Option<&str> {
        self.ids.get(row).map(String::as_str)
    }

    /// The vector of a row.
    pub fn row(&self, row: usize) -> Option<&[f32]> {
        self.data.get(row * self.dim..(row + 1) * self.dim)
    }

    /// The `n` rows most similar to `query` (dot product), best first: exactly up to
    /// [`EXACT_ROWS`] rows, by sign bits and then exactly above (see the module docs).
    pub fn nearest(&self, query: &[f32], n: usize) -> Vec<(usize, f32)> {
        if query.len() != self.dim || self.dim == 0 || n == 0 {
            return Vec::new();
        }
        let wanted = (n.saturating_mul(OVERSAMPLE)).max(MIN_CANDIDATES);
        if self.len() <= EXACT_ROWS || wanted >= self.len() {
            return self.nearest_exact(query, n);
        }
        self.rank(query, n, self.candidates(query, wanted))
    }

    /// The `n` rows most similar to `query`, comparing it with every row.
    pub fn nearest_exact(&self, query: &[f32], n: usize) -> Vec<(usize, f32)> {
        if query.len() != self.dim || self.dim == 0 {
            return Vec::new();
        }
        self.rank(query, n, 0..self.len())
    }

    /// Makes the sign bits now rather than on the first search of a large set.
    pub fn prepare(&self) {
        if self.len() > EXACT_ROWS {
            self.signs.get_or_init(|| Signs::of(self));
        }
    }

    /// The `wanted` rows whose sign bits differ least from the query's (ties by row).
    fn candidates(&self, query: &[f32], wanted: usize) -> Vec<usize> {
        let signs = self.signs.get_or_init(|| Signs::of(self));
        let q = signs.encode(query);
        let distances = hamming(&signs.bits, &q);
        // The distance at which the count of closer-or-equal rows reaches `wanted`.
        let mut histogram = vec![0usize; self.dim + 1];
        for &d in &distances {
            histogram[usize::from(d)] += 1;
        }
        let (mut cut, mut closer) = (self.dim, 0usize);
        for (d, &count) in histogram.iter().enumerate() {
            if closer + count >= wanted {
                cut = d;
                break;
            }
            closer += count;
        }
        let mut at_cut = wanted - closer;
        let mut rows = Vec::with_capacity(wanted);
        for (row, &d) in distances.iter().enumerate() {
            let d = usize::from(d);
            if d < cut {
                rows.push(row);
            } else if d == cut && at_cut > 0 {
                at_cut -= 1;
                rows.push(row);
            }
        }
        rows
    }

    fn rank(
        &self,
        query: &[f32],
        n: usize,
        rows: impl IntoIterator<Item = usize>,
    ) -> Vec<(usize, f32)> {
        let mut scored: Vec<(usize, f32)> = rows
            .into_iter()
            .filter_map(|r| Some((r, dot(self.row(r)?, query))))
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        if n < scored.len() {
            scored.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(n);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    }

    /// Writes the file into the index folder `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(FILE);
        let count = u32::try_from(self.len()).map_err(|_| "too many passages".to_string())?;
        let dim = u32::try_from(self.dim).map_err(|_| "vectors too long".to_string())?;
        let mut out = Vec::with_capacity(16 + self.data.len() * 4 + self.ids.len() * 24);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&dim.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        for (row, id) in self.ids.iter().enumerate() {
            let len = u32::try_from(id.len()).map_err(|_| format!("id too long: {id}"))?;
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            for x in self.row(row).unwrap_or_default() {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        let mut file = std::fs::File::create(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        file.write_all(&out)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Reads the file from the index folder `dir`.
    pub fn read(dir: &Path) -> Result<Vectors, String> {
        let path = dir.join(FILE);
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bad = |what: &str| format!("{} is damaged: {what}", path.display());
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        if r.take(8) != Some(MAGIC.as_slice()) {
            return Err(bad("not a Murmur vectors file"));
        }
        let dim = r.u32().ok_or_else(|| bad("no header"))? as usize;
        let count = r.u32().ok_or_else(|| bad("no header"))? as usize;
        let mut v = Vectors::new(dim);
        v.ids.reserve(count);
        v.data.reserve(count.saturating_mul(dim));
        for row in 0..count {
            let len =
                r.u32()
                    .ok_or_else(|| bad(&format!("row {row} cut short")))? as usize;
            let id = r
                .take(len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(&format!("row {row} has no valid id")))?;
            v.ids.push(id.to_string());
            let raw = r
                .take(dim * 4)
                .ok_or_else(|| bad(&format!("row {row} cut short")))?;
            v.data.extend(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        if r.at != bytes.len() {
            return Err(bad("trailing bytes"));
        }
        Ok(v)
    }
}

/// The Hamming distance of each row of `bits` (rows of `q.len()` words) from `q`.
fn hamming(bits: &[u64], q: &[u64]) -> Vec<u16> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has the instruction the function is compiled to use.
        return unsafe { hamming_popcnt(bits, q) };
    }
    hamming_portable(bits, q)
}

/// [`hamming`] with the CPU's population-count instruction, which the baseline x86-64
/// target does not assume (it counts bits with a dozen shifts and masks instead).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn hamming_popcnt(bits: &[u64], q: &[u64]) -> Vec<u16> {
    hamming_portable(bits, q)
}

#[inline(always)]
fn hamming_portable(bits: &[u64], q: &[u64]) -> Vec<u16> {
    if q.is_empty() {
        return Vec::new();
    }
    bits.chunks_exact(q.len())
        .map(|row| {
            row.iter()
                .zip(q)
                .map(|(a, b)| (a ^ b).count_ones() as u16)
                .sum()
        })
        .collect()
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vectors {
        let mut v = Vectors::new(3);
        v.push("a.md#1".into(), &[1.0, 0.0, 0.0]).expect("push");
        v.push("a.md#2".into(), &[0.0, 1.0, 0.0]).expect("push");
        v.push("b.md#1".into(), &[0.6, 0.8, 0.0]).expect("push");
        v
    }

    #[test]
    fn nearest_ranks_by_dot_product() {
        let v = sample();
        let top = v.nearest(&[0.0, 1.0, 0.0], 2);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!((top[1].1 - 0.8).abs() < 1e-6);
        assert_eq!(v.nearest(&[1.0, 0.0, 0.0], 10).len(), 3);
        assert!(
            v.nearest(&[1.0, 0.0], 2).is_empty(),
            "wrong length finds nothing"
        );
    }

    /// Unit vectors around 300 centres, as passages on a few hundred topics, with an offset
    /// shared by all, as real embeddings have: `rows` stored and `queries` more from the
    /// same topics. A fixed seed.
    fn clustered(rows: usize, queries: usize, dim: usize) -> (Vectors, Vec<Vec<f32>>) {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        let centres: Vec<Vec<f32>> = (0..300)
            .map(|_| (0..dim).map(|_| next()).collect())
            .collect();
        let mut sample = |n: usize| {
            let x: Vec<f32> = centres[n % centres.len()]
                .iter()
                .map(|c| 3.0 + c + 0.6 * next())
                .collect();
            let norm = x.iter().map(|x| x * x).sum::<f32>().sqrt();
            x.iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let mut v = Vectors::new(dim);
        for row in 0..rows {
            v.push(format!("p#{row}"), &sample(row)).expect("push");
        }
        let queries = (0..queries).map(|q| sample(q * 7)).collect();
        (v, queries)
    }

    #[test]
    fn sign_bits_then_rescoring_find_what_the_exact_scan_finds() {
        let (v, queries) = clustered(EXACT_ROWS * 2, 100, 96);
        v.prepare();
        let (mut same_top, mut overlap) = (0, 0);
        for query in &queries {
            let fast = v.nearest(query, 10);
            let exact = v.nearest_exact(query, 10);
            assert_eq!(fast.len(), 10);
            same_top += usize::from(fast[0].0 == exact[0].0);
            overlap += fast
                .iter()
                .filter(|f| exact.iter().any(|e| e.0 == f.0))
                .count();
        }
        assert!(
            same_top >= 98,
            "same best row for {same_top} of 100 queries"
        );
        assert!(overlap >= 950, "{overlap} of 1000 top-10 rows agree");
    }

    #[test]
    fn sign_bit_candidates_are_exactly_as_many_as_wanted_even_when_tied() {
        let mut v = Vectors::new(4);
        for row in 0..EXACT_ROWS + 10 {
            v.push(format!("p#{row}"), &[0.5, 0.5, 0.5, 0.5])
                .expect("push");
        }
        let rows = v.candidates(&[0.5, 0.5, 0.5, 0.5], MIN_CANDIDATES);
        assert_eq!(rows.len(), MIN_CANDIDATES);
        assert_eq!(v.nearest(&[1.0, 0.0, 0.0, 0.0], 3).len(), 3);
    }

    #[test]
    fn a_vector_of_the_wrong_length_is_refused() {
        let mut v = Vectors::new(3);
        let e = v.push("x#1".into(), &[1.0]).expect_err("refused");
        assert!(e.contains("x#1"), "{e}");
        assert!(v.is_empty());
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = sample();
        v.write(dir.path()).expect("write");
        assert_eq!(Vectors::read(dir.path()).expect("read"), v);
        let path = dir.path().join(FILE);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 2]).expect("write");
        let e = Vectors::read(dir.path()).expect_err("cut short");
        assert!(e.contains("damaged") && e.contains(FILE), "{e}");
        std::fs::write(&path, b"NOTMAGIC").expect("write");
        assert!(Vectors::read(dir.path()).is_err());
    }
}
