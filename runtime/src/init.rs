//! Variable initializers, seeded and reproducible across platforms.

use crate::op::Initializer;
use crate::tensor::TensorError;
use crate::{DType, Shape, Tensor, TooLarge};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// FNV-1a: a stable hash of a variable's name (std's hasher may change between releases).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Why a variable's first value cannot be made.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InitError {
    /// A shape with a symbolic dimension.
    #[error("a variable's shape must be fully known, got {0}")]
    NotConcrete(Shape),
    /// A shape whose element count overflows `usize`.
    #[error("shape {0} is too large")]
    Overflow(Shape),
    /// A value (or the f64 values it is drawn as) larger than the memory
    /// this process can have.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The values do not make a tensor of the shape.
    #[error(transparent)]
    Tensor(#[from] TensorError),
    /// A `Value` initializer whose list is not of the variable's shape.
    #[error("the initial value has shape {got:?}, the variable {want}")]
    ValueShape { got: Vec<usize>, want: Shape },
    /// A `Value` initializer whose lists are ragged.
    #[error("the initial value: {0}")]
    Ragged(String),
    /// An `Npy` file that cannot be read, is not a `.npy` of a supported
    /// dtype, or does not hold the variable's shape.
    #[error("{path}: {reason}")]
    Npy { path: String, reason: String },
    /// A `Safetensors` file that cannot be read or lacks the variable's
    /// tensor, or whose tensor is not of a supported dtype or of the
    /// variable's shape.
    #[error("{path}: {reason}")]
    Safetensors { path: String, reason: String },
}

/// The truncated normal's stddev over the normal's: Keras's variance scaling
/// divides by it so that the truncated draws have the variance asked for.
const TRUNCATED_STDDEV: f64 = 0.879_625_661_034_239_8;

/// The first value of variable `name`: the same for the same seed, name and initializer.
pub fn initial_value(
    name: &str,
    dtype: DType,
    shape: &Shape,
    init: &Initializer,
    seed: u64,
) -> Result<Tensor, InitError> {
    let dims = shape
        .concrete()
        .ok_or_else(|| InitError::NotConcrete(shape.clone()))?;
    let n = crate::op::checked_product(dims.iter().copied())
        .ok_or_else(|| InitError::Overflow(shape.clone()))?;
    // The values are drawn as f64 before narrowing: check that buffer too.
    crate::memory::check_alloc(dtype, &dims)
        .and_then(|_| crate::memory::check_alloc(DType::F64, &dims))?;
    let stream = |own: &Option<u64>| {
        ChaCha8Rng::seed_from_u64(seed ^ own.unwrap_or_else(|| fnv1a(name)).rotate_left(17))
    };
    let data: Vec<f64> = match init {
        // Read in its own dtype, then converted: not through f64.
        Initializer::Npy(path) => return load_npy(path, &dims, dtype),
        Initializer::Safetensors(path) => return load_safetensors(path, name, &dims, dtype),
        Initializer::Zeros => vec![0.0; n],
        Initializer::Seed => {
            let mut rng = stream(&None);
            (0..n).map(|_| (rng.random::<u64>() >> 11) as f64).collect()
        }
        Initializer::Ones => vec![1.0; n],
        Initializer::Constant(v) => vec![*v; n],
        Initializer::RandomNormal {
            mean,
            stddev,
            seed: own,
        } => normal(&mut stream(own), n, *mean, *stddev, None),
        Initializer::TruncatedNormal {
            mean,
            stddev,
            seed: own,
        } => normal(&mut stream(own), n, *mean, *stddev, Some(2.0)),
        Initializer::GlorotUniform { seed: own } => {
            let (fan_in, fan_out) = fans(&dims);
            uniform(
                &mut stream(own),
                n,
                (6.0 / (fan_in + fan_out).max(1.0)).sqrt(),
            )
        }
        Initializer::GlorotNormal { seed: own } => {
            let (fan_in, fan_out) = fans(&dims);
            let stddev = (2.0 / (fan_in + fan_out).max(1.0)).sqrt() / TRUNCATED_STDDEV;
            normal(&mut stream(own), n, 0.0, stddev, Some(2.0))
        }
        Initializer::HeNormal { seed: own } => {
            let stddev = (2.0 / fans(&dims).0.max(1.0)).sqrt() / TRUNCATED_STDDEV;
            normal(&mut stream(own), n, 0.0, stddev, Some(2.0))
        }
        Initializer::HeUniform { seed: own } => {
            uniform(&mut stream(own), n, (6.0 / fans(&dims).0.max(1.0)).sqrt())
        }
        Initializer::LecunNormal { seed: own } => {
            let stddev = (1.0 / fans(&dims).0.max(1.0)).sqrt() / TRUNCATED_STDDEV;
            normal(&mut stream(own), n, 0.0, stddev, Some(2.0))
        }
        Initializer::LecunUniform { seed: own } => {
            uniform(&mut stream(own), n, (3.0 / fans(&dims).0.max(1.0)).sqrt())
        }
        Initializer::Orthogonal { gain, seed: own } => orthogonal(&mut stream(own), &dims, *gain),
        Initializer::Value(literal) => {
            let (got, values) = literal.to_flat().map_err(|e| InitError::Ragged(e.0))?;
            if got != dims {
                return Err(InitError::ValueShape {
                    got,
                    want: shape.clone(),
                });
            }
            values
        }
    };
    Ok(Tensor::from_f64(dtype, &dims, data)?)
}

/// A `.npy` file's values, which must have `dims`, converted to `dtype`. The
/// header is checked against the variable and the file's length before the
/// data is read, so a lying header is an error, not a large allocation.
fn load_npy(path: &str, dims: &[usize], dtype: DType) -> Result<Tensor, InitError> {
    use ndarray::ArrayD;
    use ndarray_npy::npy::header::Header;
    use ndarray_npy::ReadNpyExt;
    let err = |reason: String| InitError::Npy {
        path: path.to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut data = bytes.as_slice();
    let header =
        Header::from_reader(&mut data).map_err(|e| err(format!("not a .npy file: {e}")))?;
    if header.shape != dims {
        return Err(err(format!(
            "holds shape {:?}, the variable {dims:?}",
            header.shape
        )));
    }
    let descriptor = header.type_descriptor.to_string();
    let file_dtype = match descriptor.trim_matches('\'') {
        "<f4" | ">f4" => DType::F32,
        "<f8" | ">f8" => DType::F64,
        "<i4" | ">i4" => DType::I32,
        "<i8" | ">i8" => DType::I64,
        "|b1" => DType::Bool,
        _ => return Err(err(format!("unsupported array dtype {descriptor}"))),
    };
    let n = crate::op::checked_product(dims.iter().copied()).unwrap_or(usize::MAX);
    if Some(data.len()) != n.checked_mul(file_dtype.size_of()) {
        return Err(err(format!(
            "{} bytes of data, {n} elements of {file_dtype} need {}",
            data.len(),
            n.saturating_mul(file_dtype.size_of())
        )));
    }
    let read = |e: ndarray_npy::ReadNpyError| err(e.to_string());
    let t = crate::by_dtype!(file_dtype, T => Tensor::from(
        ArrayD::<T>::read_npy(bytes.as_slice()).map_err(read)?.as_standard_layout().into_owned()
    ));
    Ok(if file_dtype == dtype {
        t
    } else {
        t.cast(dtype)
    })
}

/// The tensor `name` of a safetensors file, which must have `dims`,
/// converted to `dtype`. The file's header gives each tensor's shape and
/// byte range, checked against each other by the parser before anything is read.
fn load_safetensors(
    path: &str,
    name: &str,
    dims: &[usize],
    dtype: DType,
) -> Result<Tensor, InitError> {
    use safetensors::{Dtype, SafeTensors};
    let err = |reason: String| InitError::Safetensors {
        path: path.to_string(),
        reason,
    };
    let bytes = read_cached(path).map_err(|e| err(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let view = file.tensor(name).map_err(|_| {
        let mut names: Vec<&str> = file.names();
        names.sort_unstable();
        err(format!(
            "no tensor named '{name}' (it holds {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })?;
    if view.shape() != dims {
        return Err(err(format!(
            "tensor '{name}' has shape {:?}, the variable {dims:?}",
            view.shape()
        )));
    }
    let data = view.data();
    macro_rules! read {
        ($t:ty) => {
            Tensor::from(
                ndarray::ArrayD::from_shape_vec(
                    dims,
                    data.chunks_exact(std::mem::size_of::<$t>())
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
                .map_err(|e| err(e.to_string()))?,
            )
        };
    }
    let t = match view.dtype() {
        Dtype::F32 => read!(f32),
        Dtype::F64 => read!(f64),
        Dtype::I32 => read!(i32),
        Dtype::I64 => read!(i64),
        Dtype::BOOL => Tensor::from(
            ndarray::ArrayD::from_shape_vec(dims, data.iter().map(|&b| b != 0).collect())
                .map_err(|e| err(e.to_string()))?,
        ),
        other => {
            return Err(err(format!(
                "tensor '{name}' is {other:?}; gradc reads F32, F64, I32, I64 and BOOL"
            )))
        }
    };
    Ok(if t.dtype() == dtype { t } else { t.cast(dtype) })
}

type CachedFile = (
    String,
    u64,
    Option<std::time::SystemTime>,
    std::rc::Rc<Vec<u8>>,
);

thread_local! {
    /// The weights file read last, for `read_cached`.
    static LAST: std::cell::RefCell<Option<CachedFile>> = const { std::cell::RefCell::new(None) };
}

/// Drops the file `read_cached` keeps (`Session::initialize` calls it
/// when its variables are made).
pub(crate) fn forget_files() {
    LAST.set(None);
}

/// A file's bytes, the last file read kept for the next call while its
/// length and modification time stay the same: a model's variables are
/// initialized one after another from one weights file, which is read once.
fn read_cached(path: &str) -> std::io::Result<std::rc::Rc<Vec<u8>>> {
    use std::rc::Rc;
    let meta = std::fs::metadata(path)?;
    let (len, modified) = (meta.len(), meta.modified().ok());
    let hit = LAST.with_borrow(|last| {
        last.as_ref()
            .filter(|(p, l, m, _)| p == path && *l == len && *m == modified && modified.is_some())
            .map(|(_, _, _, bytes)| Rc::clone(bytes))
    });
    if let Some(bytes) = hit {
        return Ok(bytes);
    }
    let bytes = Rc::new(std::fs::read(path)?);
    LAST.set(Some((path.to_string(), len, modified, Rc::clone(&bytes))));
    Ok(bytes)
}

/// `n` draws of `mean + stddev * z`, `z` standard normal; with `within`,
/// each `z` farther than that from 0 is drawn again (a truncated normal).
fn normal(rng: &mut ChaCha8Rng, n: usize, mean: f64, stddev: f64, within: Option<f64>) -> Vec<f64> {
    (0..n)
        .map(|_| loop {
            let z: f64 = StandardNormal.sample(rng);
            if within.is_none_or(|w| z.abs() <= w) {
                break mean + stddev * z;
            }
        })
        .collect()
}

/// `n` draws of Uniform(-limit, limit).
fn uniform(rng: &mut ChaCha8Rng, n: usize, limit: f64) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-limit..=limit)).collect()
}

/// `gain` times the orthonormal factor Q of a normal [max(r, c), min(r, c)]
/// matrix (r the product of the leading axes, c the last), by modified
/// Gram-Schmidt, whose R has a positive diagonal as TensorFlow makes it;
/// transposed when r < c, so that the rows are orthonormal then.
fn orthogonal(rng: &mut ChaCha8Rng, dims: &[usize], gain: f64) -> Vec<f64> {
    let cols = dims.last().copied().unwrap_or(1);
    let rows = dims.iter().product::<usize>() / cols.max(1);
    let (m, k) = (rows.max(cols), rows.min(cols));
    // Column-major: column j is a[j*m..(j+1)*m].
    let mut a = normal(rng, m * k, 0.0, 1.0, None);
    for j in 0..k {
        for i in 0..j {
            let (done, rest) = a.split_at_mut(j * m);
            let qi = &done[i * m..(i + 1) * m];
            let aj = &mut rest[..m];
            let dot: f64 = qi.iter().zip(aj.iter()).map(|(x, y)| x * y).sum();
            aj.iter_mut().zip(qi).for_each(|(y, x)| *y -= dot * x);
        }
        let col = &mut a[j * m..(j + 1) * m];
        let norm = col.iter().map(|v| v * v).sum::<f64>().sqrt();
        // A zero column (probability zero) stays zero rather than NaN.
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        col.iter_mut().for_each(|v| *v *= scale);
    }
    // Row-major [rows, cols]: Q (m×k) itself when rows ≥ cols, else Qᵀ.
    (0..rows * cols)
        .map(|at| {
            let (r, c) = (at / cols, at % cols);
            let (i, j) = if rows >= cols { (r, c) } else { (c, r) };
            gain * a[j * m + i]
        })
        .collect()
}

/// Fan-in and fan-out as Keras computes them.
fn fans(dims: &[usize]) -> (f64, f64) {
    match dims {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [i, o] => (*i as f64, *o as f64),
        _ => {
            // In f64: a shape that overflows `usize` is refused before
            // initializing, but the fans need no exact count.
            let rf: f64 = dims[..dims.len() - 2].iter().map(|&d| d as f64).product();
            (
                dims[dims.len() - 2] as f64 * rf,
                dims[dims.len() - 1] as f64 * rf,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Literal;
    use crate::Dim;

    #[test]
    fn each_init_error_names_the_shape() {
        let zeros = Initializer::Zeros;
        let t = initial_value("w", DType::F32, &Shape::known(&[2, 3]), &zeros, 1).unwrap();
        assert_eq!((t.dtype(), t.shape()), (DType::F32, &[2, 3][..]));

        let symbolic = Shape(vec![Dim::Sym("batch".into()), Dim::Known(3)]);
        let e = initial_value("w", DType::F32, &symbolic, &zeros, 1).unwrap_err();
        assert_eq!(e, InitError::NotConcrete(symbolic));
        assert_eq!(
            e.to_string(),
            "a variable's shape must be fully known, got [batch,3]"
        );

        let overflowing = Shape::known(&[usize::MAX, 2]);
        let e = initial_value("w", DType::F64, &overflowing, &zeros, 1).unwrap_err();
        assert_eq!(e, InitError::Overflow(overflowing));
        assert_eq!(
            e.to_string(),
            format!("shape [{},2] is too large", usize::MAX)
        );

        // Larger than any machine's memory.
        let huge = Shape::known(&[1 << 31, 1 << 30]);
        let e = initial_value("w", DType::F32, &huge, &zeros, 1).unwrap_err();
        assert!(
            matches!(&e, InitError::TooLarge(t) if t.shape == [1 << 31, 1 << 30]),
            "{e}"
        );

        // What `Tensor::from_f64` refuses, which the checks above leave no
        // shape to reach, is reported as it says.
        let e = InitError::from(TensorError::Length {
            len: 1,
            shape: vec![2],
        });
        assert_eq!(e.to_string(), "1 values do not fill shape [2]");
    }

    fn draw(init: &Initializer, dims: &[usize]) -> Vec<f64> {
        initial_value("w", DType::F64, &Shape::known(dims), init, 7)
            .expect("initializes")
            .to_f64_vec()
    }

    fn std_dev(v: &[f64]) -> f64 {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64).sqrt()
    }

    /// Keras's variance scaling: the draws have variance scale / n (n the
    /// fan-in, or the fans' mean for Glorot), uniform ones within their
    /// limit, truncated normal ones within two of the normal's stddevs.
    #[test]
    fn variance_scaling_initializers_have_their_variance() {
        let dims = [300, 200];
        let (fan_in, fan_avg) = (300.0f64, 250.0f64);
        let cases = [
            (
                Initializer::GlorotNormal { seed: None },
                1.0 / fan_avg,
                None,
            ),
            (Initializer::HeNormal { seed: None }, 2.0 / fan_in, None),
            (Initializer::LecunNormal { seed: None }, 1.0 / fan_in, None),
            (
                Initializer::HeUniform { seed: None },
                2.0 / fan_in,
                Some((6.0 / fan_in).sqrt()),
            ),
            (
                Initializer::LecunUniform { seed: None },
                1.0 / fan_in,
                Some((3.0 / fan_in).sqrt()),
            ),
            (
                Initializer::GlorotUniform { seed: None },
                1.0 / fan_avg,
                Some((3.0 / fan_avg).sqrt()),
            ),
        ];
        for (init, variance, limit) in cases {
            let v = draw(&init, &dims);
            let sd = std_dev(&v);
            assert!(
                (sd / variance.sqrt() - 1.0).abs() < 0.02,
                "{init:?}: stddev {sd}"
            );
            let bound = limit.unwrap_or(2.0 * variance.sqrt() / TRUNCATED_STDDEV);
            assert!(
                v.iter().all(|x| x.abs() <= bound),
                "{init:?}: a draw beyond {bound}"
            );
            assert_eq!(
                v,
                draw(&init, &dims),
                "{init:?}: the same seed, the same values"
            );
        }
    }

    /// Orthonormal columns (or rows, for a wide matrix), times the gain, for
    /// matrices and for a filter flattened to [kh·kw·C, O].
    #[test]
    fn orthogonal_has_orthonormal_columns_or_rows() {
        for (dims, gain) in [
            (vec![6, 4], 1.0),
            (vec![3, 5], 2.0),
            (vec![2, 2, 3, 4], 0.5),
        ] {
            let v = draw(&Initializer::Orthogonal { gain, seed: None }, &dims);
            let cols = *dims.last().expect("rank 2 or more");
            let rows = v.len() / cols;
            let at = |r: usize, c: usize| v[r * cols + c];
            // Gram matrix of the columns (tall) or of the rows (wide).
            let (n, len, tall) = if rows >= cols {
                (cols, rows, true)
            } else {
                (rows, cols, false)
            };
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..len)
                        .map(|k| {
                            if tall {
                                at(k, i) * at(k, j)
                            } else {
                                at(i, k) * at(j, k)
                            }
                        })
                        .sum();
                    let want = if i == j { gain * gain } else { 0.0 };
                    assert!((dot - want).abs() < 1e-12, "{dims:?}: <{i}, {j}> = {dot}");
                }
            }
        }
    }

    #[test]
    fn value_initializer_gives_its_values_of_the_shape() {
        let lit = |rows: &[&[f64]]| {
            Literal::List(
                rows.iter()
                    .map(|r| Literal::List(r.iter().map(|&v| Literal::Scalar(v)).collect()))
                    .collect(),
            )
        };
        let init = Initializer::Value(lit(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]));
        assert_eq!(draw(&init, &[2, 3]), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let e = initial_value("w", DType::F32, &Shape::known(&[3, 2]), &init, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the initial value has shape [2, 3], the variable [3,2]"
        );
        let ragged = Initializer::Value(lit(&[&[1.0, 2.0], &[3.0]]));
        let e = initial_value("w", DType::F32, &Shape::known(&[2, 2]), &ragged, 1).unwrap_err();
        assert!(e.to_string().contains("ragged"), "{e}");
    }
}
