//! The passage vectors of a knowledge base with an embedding model: one unit vector per
//! passage, kept in `murmur-vectors.bin` beside the index and searched exhaustively.
//!
//! File layout (little-endian): the magic `MURMURV1`, `dim: u32`, `count: u32`, then per
//! passage `id_len: u32`, the id's UTF-8 bytes, and `dim` `f32`s. Rows are in the order the
//! passages were indexed; a passage's row is stored in the index's `row` field.

use std::io::Write as _;
use std::path::Path;

const MAGIC: &[u8; 8] = b"MURMURV1";
/// The vectors file inside an index folder.
pub const FILE: &str = "murmur-vectors.bin";

/// Passage vectors, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    dim: usize,
    ids: Vec<String>,
    data: Vec<f32>,
}

impl Vectors {
    /// Vectors of length `dim`, none yet.
    pub fn new(dim: usize) -> Self {
        Vectors {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
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

    /// The `n` rows most similar to `query` (dot product), best first.
    pub fn nearest(&self, query: &[f32], n: usize) -> Vec<(usize, f32)> {
        if query.len() != self.dim || self.dim == 0 || n == 0 {
            return Vec::new();
        }
        let mut scored: Vec<(usize, f32)> = self
            .data
            .chunks_exact(self.dim)
            .map(|v| crate::model::embedding::dot(v, query))
            .enumerate()
            .collect();
        let n = n.min(scored.len());
        if n < scored.len() {
            scored.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
            scored.truncate(n);
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
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
