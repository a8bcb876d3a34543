//! Checkpoints in the [safetensors] format: named f32/f64 tensors and a
//! string-to-string metadata map, in one file that PyTorch, NumPy and the
//! Hugging Face tools read too.
//!
//! - [`save`] writes atomically (`gradc_runtime::io::write_atomic`: temporary
//!   file in the same directory, fsync, rename), so a crash mid-write leaves
//!   the previous checkpoint, never a broken one.
//! - The bytes are deterministic: tensors sorted by name (within one dtype,
//!   wider dtypes first, as the `safetensors` crate orders them) and metadata
//!   sorted by key. The header is written here with `serde_json` rather than by
//!   `safetensors::serialize`, whose metadata map is a `HashMap` written in
//!   random order (safetensors issue #584); every file is validated with the
//!   `safetensors` crate before it is written, and loading uses that crate.
//! - [`load`] refuses any dtype but F32 and F64, and reports a truncated or
//!   corrupt file as [`CheckpointError::Corrupt`], naming the file.
//! - [`Checkpoint::check_against`] compares a checkpoint with the names, dtypes
//!   and shapes a model expects and lists every difference.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use gradc_runtime::{DType, Shape, Tensor, TensorType};
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// The header key safetensors reserves for the metadata map.
const METADATA_KEY: &str = "__metadata__";

/// A checkpoint read back from disk.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The tensors, sorted by name.
    pub tensors: Vec<(String, Tensor)>,
    /// The free-form metadata saved with the tensors (empty if there was none).
    pub metadata: BTreeMap<String, String>,
}

/// One way a checkpoint differs from what a model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The model expects a tensor the checkpoint does not have.
    Missing {
        /// Tensor name.
        name: String,
        /// The type the model expects.
        expected: TensorType,
    },
    /// The checkpoint has a tensor the model does not expect.
    Unexpected {
        /// Tensor name.
        name: String,
        /// The tensor's type in the checkpoint.
        found: TensorType,
    },
    /// The tensor is there with another element type.
    WrongDtype {
        /// Tensor name.
        name: String,
        /// The dtype the model expects.
        expected: DType,
        /// The dtype in the checkpoint.
        found: DType,
    },
    /// The tensor is there with another shape.
    WrongShape {
        /// Tensor name.
        name: String,
        /// The shape the model expects.
        expected: Shape,
        /// The shape in the checkpoint.
        found: Shape,
    },
}

impl Mismatch {
    /// The name of the tensor concerned.
    pub fn name(&self) -> &str {
        match self {
            Mismatch::Missing { name, .. }
            | Mismatch::Unexpected { name, .. }
            | Mismatch::WrongDtype { name, .. }
            | Mismatch::WrongShape { name, .. } => name,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { name, expected } => {
                write!(f, "missing tensor '{name}' (expected {expected})")
            }
            Mismatch::Unexpected { name, found } => {
                write!(f, "unexpected tensor '{name}' (found {found})")
            }
            Mismatch::WrongDtype {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor '{name}' has the wrong dtype: expected {expected}, found {found}"
            ),
            Mismatch::WrongShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor '{name}' has the wrong shape: expected {expected}, found {found}"
            ),
        }
    }
}

/// Everything that can go wrong saving, loading or checking a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be written (the previous file, if any, is intact).
    #[error("cannot write checkpoint {}: {source}", path.display())]
    Write {
        /// The checkpoint path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("cannot read checkpoint {}: {source}", path.display())]
    Read {
        /// The checkpoint path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file: truncated, corrupt, or another format.
    #[error("checkpoint {} is truncated or corrupt (not a valid safetensors file): {source}", path.display())]
    Corrupt {
        /// The checkpoint path.
        path: PathBuf,
        /// What the safetensors reader found wrong.
        source: SafeTensorError,
    },
    /// The file holds a tensor of an element type gradc does not use.
    #[error(
        "checkpoint {}: tensor '{name}' has dtype {dtype}; only F32 and F64 are supported",
        path.display()
    )]
    UnsupportedDtype {
        /// The checkpoint path.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// The safetensors dtype found, e.g. `BF16`.
        dtype: String,
    },
    /// The tensors given to [`save`] cannot be saved as they are (nothing was written).
    #[error("cannot save checkpoint {}: {reason}", path.display())]
    InvalidInput {
        /// The checkpoint path.
        path: PathBuf,
        /// What is wrong, e.g. a duplicate tensor name.
        reason: String,
    },
    /// The checkpoint does not match the expected tensors; every difference is listed.
    #[error("{}", mismatch_message(path.as_deref(), mismatches))]
    Mismatch {
        /// The checkpoint path, when known (see [`load_checked`]).
        path: Option<PathBuf>,
        /// Each difference, expected tensors first (in the order given), then unexpected ones by name.
        mismatches: Vec<Mismatch>,
    },
}

impl CheckpointError {
    /// The error with the checkpoint's path, for a mismatch found without it.
    pub fn at(self, file: &Path) -> CheckpointError {
        match self {
            CheckpointError::Mismatch {
                path: None,
                mismatches,
            } => CheckpointError::Mismatch {
                path: Some(file.to_path_buf()),
                mismatches,
            },
            e => e,
        }
    }
}

fn mismatch_message(path: Option<&Path>, mismatches: &[Mismatch]) -> String {
    let mut msg = match path {
        Some(p) => format!("checkpoint {} does not match the model", p.display()),
        None => "checkpoint does not match the model".to_string(),
    };
    let n = mismatches.len();
    msg.push_str(&format!(
        " ({n} difference{}):",
        if n == 1 { "" } else { "s" }
    ));
    for m in mismatches {
        msg.push_str("\n  ");
        msg.push_str(&m.to_string());
    }
    msg
}

/// The safetensors header as written by [`save`]: `__metadata__` first (if
/// not empty, keys sorted), then the tensors in data order.
struct Header<'a> {
    metadata: &'a BTreeMap<String, String>,
    tensors: &'a [(&'a str, TensorInfo)],
}

impl Serialize for Header<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = self.tensors.len() + usize::from(!self.metadata.is_empty());
        let mut map = s.serialize_map(Some(len))?;
        if !self.metadata.is_empty() {
            map.serialize_entry(METADATA_KEY, self.metadata)?;
        }
        for (name, info) in self.tensors {
            map.serialize_entry(name, info)?;
        }
        map.end()
    }
}

fn st_dtype(t: &Tensor) -> Dtype {
    match t.dtype() {
        DType::F32 => Dtype::F32,
        DType::F64 => Dtype::F64,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
    }
}

fn elem_size(t: &Tensor) -> usize {
    t.dtype().size_of()
}

/// Little-endian element bytes in logical (row-major) order, whatever the
/// memory layout; a bool is one byte, 0 or 1.
fn tensor_bytes(t: &Tensor, out: &mut Vec<u8>) {
    match t {
        Tensor::F32(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::F64(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I32(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::I64(a) => a
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Tensor::Bool(a) => a.iter().for_each(|&v| out.push(u8::from(v))),
    }
}

/// Encodes the tensors and metadata as safetensors bytes, deterministically.
fn encode(
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let mut sorted: Vec<(&str, &Tensor)> = tensors.to_vec();
    // The order the safetensors crate uses: larger alignment first, then by name.
    sorted.sort_by(|(ln, lt), (rn, rt)| st_dtype(rt).cmp(&st_dtype(lt)).then(ln.cmp(rn)));
    let mut seen = BTreeSet::new();
    for (name, _) in &sorted {
        if *name == METADATA_KEY {
            return Err(format!(
                "'{METADATA_KEY}' is reserved by the format and cannot name a tensor"
            ));
        }
        if !seen.insert(*name) {
            return Err(format!("tensor name '{name}' is given twice"));
        }
    }

    let mut infos = Vec::with_capacity(sorted.len());
    let mut offset = 0usize;
    for (name, t) in &sorted {
        let n_bytes = t
            .shape()
            .iter()
            .try_fold(elem_size(t), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("tensor '{name}' is too large"))?;
        let end = offset
            .checked_add(n_bytes)
            .ok_or_else(|| "the tensors are too large".to_string())?;
        infos.push((
            *name,
            TensorInfo {
                dtype: st_dtype(t),
                shape: t.shape().to_vec(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }

    let mut header = serde_json::to_vec(&Header {
        metadata,
        tensors: &infos,
    })
    .map_err(|e| format!("cannot encode the header: {e}"))?;
    // The format pads the header with spaces to a multiple of 8 bytes.
    header.resize(header.len().next_multiple_of(8), b' ');

    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    for (_, t) in &sorted {
        tensor_bytes(t, &mut bytes);
    }
    // Validate with the reference reader (header only; cheap) before anything is written.
    SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("the encoded checkpoint does not validate: {e}"))?;
    Ok(bytes)
}

/// Saves `tensors` and `metadata` as a safetensors file at `path`, atomically.
///
/// The bytes depend only on the set of (name, tensor) pairs and the metadata,
/// not on the order of `tensors`. A tensor name may not repeat nor be
/// `__metadata__`. If anything fails, the file previously at `path` (if any)
/// is left as it was.
pub fn save(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let bytes = encode(tensors, metadata).map_err(|reason| CheckpointError::InvalidInput {
        path: path.to_path_buf(),
        reason,
    })?;
    gradc_runtime::io::write_atomic(path, &bytes).map_err(|source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn decode<T, const N: usize>(data: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from_le(b)
        })
        .collect()
}

/// Loads a safetensors checkpoint holding F32, F64, I32, I64 and BOOL tensors.
///
/// A file that cannot be read, is truncated or corrupt, or holds a tensor of
/// another dtype is an error naming the file.
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |source| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
    let st = SafeTensors::deserialize(&bytes).map_err(corrupt)?;

    let mut tensors = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let shape = IxDyn(view.shape());
        let tensor = match view.dtype() {
            Dtype::F32 => ArrayD::from_shape_vec(shape, decode(view.data(), f32::from_le_bytes))
                .map(Tensor::F32),
            Dtype::F64 => ArrayD::from_shape_vec(shape, decode(view.data(), f64::from_le_bytes))
                .map(Tensor::F64),
            Dtype::I32 => ArrayD::from_shape_vec(shape, decode(view.data(), i32::from_le_bytes))
                .map(Tensor::I32),
            Dtype::I64 => ArrayD::from_shape_vec(shape, decode(view.data(), i64::from_le_bytes))
                .map(Tensor::I64),
            Dtype::BOOL => {
                ArrayD::from_shape_vec(shape, decode(view.data(), |[b]: [u8; 1]| b != 0))
                    .map(Tensor::Bool)
            }
            other => {
                return Err(CheckpointError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    name: name.to_string(),
                    dtype: format!("{other}"),
                })
            }
        }
        .map_err(|_| corrupt(SafeTensorError::TensorInvalidInfo))?;
        tensors.push((name.to_string(), tensor));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));

    let metadata = header
        .metadata()
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Checkpoint { tensors, metadata })
}

/// [`load`], then [`Checkpoint::check_against`] `expected`; a mismatch error names the file.
pub fn load_checked(
    path: &Path,
    expected: &[(String, TensorType)],
) -> Result<Checkpoint, CheckpointError> {
    let ckpt = load(path)?;
    match ckpt.check_against(expected) {
        Ok(()) => Ok(ckpt),
        Err(CheckpointError::Mismatch { mismatches, .. }) => Err(CheckpointError::Mismatch {
            path: Some(path.to_path_buf()),
            mismatches,
        }),
        Err(e) => Err(e),
    }
}

impl Checkpoint {
    /// The tensor called `name`, if the checkpoint has one.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Checks that the checkpoint holds exactly the `expected` tensors: every
    /// expected name present with the same dtype and shape, and no other name.
    ///
    /// Shapes are compared exactly, so expected shapes should be fully known
    /// (a symbolic dimension never matches). The error lists every difference
    /// (see [`Mismatch`]): for each expected tensor in the order given, missing
    /// or wrong dtype and/or wrong shape; then each unexpected tensor by name.
    pub fn check_against(&self, expected: &[(String, TensorType)]) -> Result<(), CheckpointError> {
        let found: BTreeMap<&str, &Tensor> =
            self.tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut mismatches = Vec::new();
        for (name, want) in expected {
            let Some(t) = found.get(name.as_str()) else {
                mismatches.push(Mismatch::Missing {
                    name: name.clone(),
                    expected: want.clone(),
                });
                continue;
            };
            if t.dtype() != want.dtype {
                mismatches.push(Mismatch::WrongDtype {
                    name: name.clone(),
                    expected: want.dtype,
                    found: t.dtype(),
                });
            }
            let shape = Shape::known(t.shape());
            if shape != want.shape {
                mismatches.push(Mismatch::WrongShape {
                    name: name.clone(),
                    expected: want.shape.clone(),
                    found: shape,
                });
            }
        }
        let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        for (name, t) in &found {
            if !wanted.contains(name) {
                mismatches.push(Mismatch::Unexpected {
                    name: name.to_string(),
                    found: t.tensor_type(),
                });
            }
        }
        if mismatches.is_empty() {
            Ok(())
        } else {
            Err(CheckpointError::Mismatch {
                path: None,
                mismatches,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, ArrayD, IxDyn};

    fn f32_tensor(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|i| i as f32 * 0.5 - 1.25).collect();
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
    }

    fn f64_tensor(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let data = (0..n).map(|i| (i as f64).sin() * 1e-3).collect();
        Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
    }

    fn metadata() -> BTreeMap<String, String> {
        [
            ("epoch", "7"),
            ("step", "42000"),
            ("model", "mlp-784-100-10"),
            ("optimizer", "sgd lr=0.1"),
            ("note", "quotes \" and \\ and ünïcode"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn model() -> Vec<(&'static str, Tensor)> {
        vec![
            ("w1", f32_tensor(&[4, 3])),
            ("b1", f32_tensor(&[3])),
            ("w2", f64_tensor(&[3, 2])),
            ("b2", f64_tensor(&[2])),
            ("scale", Tensor::scalar(DType::F64, 0.5)),
            ("empty", f32_tensor(&[0, 5])),
        ]
    }

    fn refs<'a>(tensors: &'a [(&'static str, Tensor)]) -> Vec<(&'static str, &'a Tensor)> {
        tensors.iter().map(|(n, t)| (*n, t)).collect()
    }

    fn expected_types(tensors: &[(&'static str, Tensor)]) -> Vec<(String, TensorType)> {
        tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.tensor_type()))
            .collect()
    }

    #[test]
    fn save_load_round_trip_every_dtype_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let mut tensors = model();
        tensors.extend([
            ("step", Tensor::scalar(DType::I64, -(1i64 << 40) as f64)),
            (
                "ids",
                Tensor::from_f64(DType::I32, &[3], vec![-7.0, 0.0, 2e9]).unwrap(),
            ),
            (
                "mask",
                Tensor::from_f64(DType::Bool, &[2, 2], vec![1.0, 0.0, 0.0, 1.0]).unwrap(),
            ),
        ]);
        save(&path, &refs(&tensors), &metadata()).unwrap();

        let ckpt = load(&path).unwrap();
        assert_eq!(ckpt.metadata, metadata());
        let mut want: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ckpt.tensors, want);
        assert_eq!(ckpt.get("w2"), Some(&tensors[2].1));
        assert_eq!(ckpt.get("nope"), None);
        ckpt.check_against(&expected_types(&tensors)).unwrap();
        load_checked(&path, &expected_types(&tensors)).unwrap();
        // Only the checkpoint is in the directory: no temporary file is left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn non_contiguous_arrays_are_saved_in_logical_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let a = arr2(&[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn();
        let t = Tensor::F64(a.reversed_axes());
        let Tensor::F64(inner) = &t else {
            unreachable!()
        };
        assert!(!inner.is_standard_layout());
        save(&path, &[("t", &t)], &BTreeMap::new()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.tensors[0].1, t);
        assert_eq!(
            back.tensors[0].1.to_f64_vec(),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert!(back.metadata.is_empty());
    }

    #[test]
    fn bytes_are_deterministic_and_independent_of_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = model();
        let mut reversed = refs(&tensors);
        reversed.reverse();
        let mut files = Vec::new();
        for (i, order) in [refs(&tensors), reversed, refs(&tensors)]
            .iter()
            .enumerate()
        {
            let path = dir.path().join(format!("{i}.safetensors"));
            // Metadata rebuilt each time, so any hash-map order would show.
            save(&path, order, &metadata()).unwrap();
            files.push(std::fs::read(&path).unwrap());
        }
        assert_eq!(files[0], files[1]);
        assert_eq!(files[0], files[2]);
        // Metadata keys appear sorted in the header.
        let header = String::from_utf8_lossy(&files[0][..200]).to_string();
        let pos = |k: &str| header.find(&format!("\"{k}\"")).unwrap();
        assert!(
            pos("epoch") < pos("model") && pos("model") < pos("note"),
            "{header}"
        );
    }

    #[test]
    fn matches_the_safetensors_crate_and_its_reader() {
        // With at most one metadata key the crate's own writer is deterministic:
        // the bytes must be identical.
        let tensors = model();
        let owned: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = tensors
            .iter()
            .map(|(n, t)| {
                let mut b = Vec::new();
                tensor_bytes(t, &mut b);
                (n.to_string(), b, st_dtype(t), t.shape().to_vec())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
            .iter()
            .map(|(n, b, d, s)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let one: BTreeMap<String, String> = [("epoch".to_string(), "3".to_string())].into();
        for meta in [BTreeMap::new(), one] {
            let theirs = safetensors::serialize(
                views.iter().map(|(n, v)| (n.as_str(), v)),
                (!meta.is_empty()).then(|| meta.clone().into_iter().collect()),
            )
            .unwrap();
            let ours = encode(&refs(&tensors), &meta).unwrap();
            assert_eq!(ours, theirs);
        }

        // Their reader sees our metadata and tensors.
        let ours = encode(&refs(&tensors), &metadata()).unwrap();
        let (_, header) = SafeTensors::read_metadata(&ours).unwrap();
        let read: BTreeMap<String, String> =
            header.metadata().clone().unwrap().into_iter().collect();
        assert_eq!(read, metadata());
        let st = SafeTensors::deserialize(&ours).unwrap();
        assert_eq!(st.tensor("w2").unwrap().dtype(), Dtype::F64);
        assert_eq!(st.tensor("w1").unwrap().shape(), &[4, 3]);
    }

    #[test]
    fn check_against_reports_each_mismatch() {
        let tensors = model();
        let ckpt = Checkpoint {
            tensors: tensors
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            metadata: BTreeMap::new(),
        };
        let ty = |d: DType, s: &[usize]| TensorType {
            dtype: d,
            shape: Shape::known(s),
        };
        let expected = vec![
            ("w1".to_string(), ty(DType::F32, &[4, 3])), // ok
            ("b1".to_string(), ty(DType::F32, &[4])),    // wrong shape
            ("w2".to_string(), ty(DType::F32, &[3, 2])), // wrong dtype
            ("b2".to_string(), ty(DType::F32, &[1, 2])), // both
            ("w3".to_string(), ty(DType::F64, &[2, 2])), // missing
            ("scale".to_string(), ty(DType::F64, &[])),  // ok
        ]; // "empty" is unexpected
        let err = ckpt.check_against(&expected).unwrap_err();
        let CheckpointError::Mismatch { path, mismatches } = &err else {
            panic!("{err}");
        };
        assert_eq!(path, &None);
        assert_eq!(
            mismatches,
            &vec![
                Mismatch::WrongShape {
                    name: "b1".into(),
                    expected: Shape::known(&[4]),
                    found: Shape::known(&[3]),
                },
                Mismatch::WrongDtype {
                    name: "w2".into(),
                    expected: DType::F32,
                    found: DType::F64,
                },
                Mismatch::WrongDtype {
                    name: "b2".into(),
                    expected: DType::F32,
                    found: DType::F64,
                },
                Mismatch::WrongShape {
                    name: "b2".into(),
                    expected: Shape::known(&[1, 2]),
                    found: Shape::known(&[2]),
                },
                Mismatch::Missing {
                    name: "w3".into(),
                    expected: ty(DType::F64, &[2, 2]),
                },
                Mismatch::Unexpected {
                    name: "empty".into(),
                    found: ty(DType::F32, &[0, 5]),
                },
            ]
        );
        assert_eq!(
            err.to_string(),
            "checkpoint does not match the model (6 differences):\n  \
             tensor 'b1' has the wrong shape: expected [4], found [3]\n  \
             tensor 'w2' has the wrong dtype: expected f32, found f64\n  \
             tensor 'b2' has the wrong dtype: expected f32, found f64\n  \
             tensor 'b2' has the wrong shape: expected [1,2], found [2]\n  \
             missing tensor 'w3' (expected f64[2,2])\n  \
             unexpected tensor 'empty' (found f32[0,5])"
        );
        assert_eq!(mismatches[4].name(), "w3");

        // load_checked names the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        save(&path, &refs(&tensors), &BTreeMap::new()).unwrap();
        let err = load_checked(&path, &expected).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "checkpoint {} does not match the model (6 differences):",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn truncated_corrupt_and_missing_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.safetensors");
        save(&path, &refs(&model()), &metadata()).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.safetensors");

        // Every truncation, including an empty file and a cut header.
        for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            std::fs::write(&bad, &bytes[..len]).unwrap();
            let e = load(&bad).unwrap_err();
            assert!(matches!(e, CheckpointError::Corrupt { .. }), "{len}: {e}");
            assert!(e.to_string().contains("bad.safetensors"), "{e}");
        }
        // Trailing garbage.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"xyz");
        std::fs::write(&bad, &longer).unwrap();
        assert!(matches!(load(&bad), Err(CheckpointError::Corrupt { .. })));
        // Garbage bytes, a huge header length, a header that is not JSON.
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let mut not_json = 8u64.to_le_bytes().to_vec();
        not_json.extend_from_slice(b"not json");
        let mut bad_offsets = Vec::new();
        let header = br#"{"w":{"dtype":"F64","shape":[1000000,1000000],"data_offsets":[0,8]}}"#;
        bad_offsets.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bad_offsets.extend_from_slice(header);
        bad_offsets.extend_from_slice(&[0; 8]);
        for garbage in [
            b"\x89PNG\r\n\x1a\n garbage garbage garbage".to_vec(),
            (0..=255u8).cycle().take(4096).collect(),
            huge,
            not_json,
            bad_offsets,
        ] {
            std::fs::write(&bad, &garbage).unwrap();
            let e = load(&bad).unwrap_err();
            assert!(matches!(e, CheckpointError::Corrupt { .. }), "{e}");
            assert!(e.to_string().contains("bad.safetensors"), "{e}");
        }
        // Flipped bytes somewhere in the header: an error or (if still valid
        // JSON with the same layout) a load, never a panic.
        for i in 8..bytes.len().min(300) {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x5a;
            std::fs::write(&bad, &flipped).unwrap();
            let _ = load(&bad);
        }
        // Missing file, and a directory.
        let e = load(&dir.path().join("nope.safetensors")).unwrap_err();
        assert!(matches!(e, CheckpointError::Read { .. }));
        assert!(e.to_string().contains("nope.safetensors"), "{e}");
        assert!(matches!(
            load(dir.path()),
            Err(CheckpointError::Read { .. })
        ));
    }

    #[test]
    fn other_dtypes_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("half.safetensors");
        let data = [0u8; 8];
        let view = safetensors::tensor::TensorView::new(Dtype::BF16, vec![2, 2], &data).unwrap();
        let bytes = safetensors::serialize([("w", view)], None).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let e = load(&path).unwrap_err();
        assert!(matches!(e, CheckpointError::UnsupportedDtype { .. }));
        assert_eq!(
            e.to_string(),
            format!(
                "checkpoint {}: tensor 'w' has dtype BF16; only F32 and F64 are supported",
                path.display()
            )
        );
    }

    #[test]
    fn invalid_names_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let t = f32_tensor(&[2]);
        for names in [["a", "a"], ["a", "__metadata__"]] {
            let e = save(&path, &[(names[0], &t), (names[1], &t)], &BTreeMap::new()).unwrap_err();
            assert!(matches!(e, CheckpointError::InvalidInput { .. }), "{e}");
            assert!(e.to_string().contains("c.safetensors"), "{e}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_save_leaves_the_old_checkpoint_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.safetensors");
        let old = model();
        save(&path, &refs(&old), &metadata()).unwrap();
        let old_bytes = std::fs::read(&path).unwrap();
        let new_t = f64_tensor(&[100]);

        // 1. Invalid input: nothing is written.
        assert!(save(&path, &[("x", &new_t), ("x", &new_t)], &BTreeMap::new()).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes);

        // 2. The write itself fails: block the temporary file write_atomic
        //    creates next to the target by putting a directory in its place.
        let tmp = dir
            .path()
            .join(format!(".ckpt.safetensors.tmp-{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("keep"), b"x").unwrap();
        let e = save(&path, &[("x", &new_t)], &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, CheckpointError::Write { .. }), "{e}");
        assert!(e.to_string().contains("ckpt.safetensors"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes);
        assert_eq!(load(&path).unwrap().tensors.len(), old.len());
        std::fs::remove_dir_all(&tmp).unwrap();

        // 3. The target directory is gone.
        let gone = dir.path().join("gone").join("ckpt.safetensors");
        let e = save(&gone, &[("x", &new_t)], &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, CheckpointError::Write { .. }), "{e}");
        assert!(e.to_string().contains("gone/ckpt.safetensors"), "{e}");

        // 4. The path is a directory: the directory is left alone.
        let as_dir = dir.path().join("dir.safetensors");
        std::fs::create_dir(&as_dir).unwrap();
        std::fs::write(as_dir.join("inside"), b"x").unwrap();
        assert!(save(&as_dir, &[("x", &new_t)], &BTreeMap::new()).is_err());
        assert!(as_dir.join("inside").exists());

        // A later save succeeds and replaces the file.
        save(&path, &[("x", &new_t)], &BTreeMap::new()).unwrap();
        assert_eq!(load(&path).unwrap().tensors, vec![("x".to_string(), new_t)]);
    }
}
