//! Data sets for training: reading them (IDX/MNIST, `.npy`/`.npz`), holding
//! them ([`Dataset`]), and cutting them into mini-batches ([`Batches`],
//! [`gather_into`], [`in_order`]).
//!
//! A training loop allocates its batch buffers once and refills them:
//!
//! ```no_run
//! use gradc_io::dataset::{Batches, Mnist};
//!
//! let (train, test) = Mnist::load("data/mnist")?.into_datasets()?;
//! let mut batches = Batches::shuffled_full(train.len(), 100, 42)?;
//! let (mut x, mut t) = train.batch_buffers(100);
//! for _epoch in 0..10 {
//!     for indices in batches.next_epoch() {
//!         train.gather_into(indices, &mut x, &mut t)?;
//!         // feed x and t, run a step
//!     }
//!     for rows in test.chunks(1000)? {
//!         test.rows_into(rows, &mut x, &mut t)?;
//!         // evaluate on x and t
//!     }
//! }
//! # Ok::<(), gradc_io::dataset::DataError>(())
//! ```
//!
//! Every failure is a [`DataError`] that names the file and what is wrong
//! with it; no input bytes make these functions panic.

mod batch;
mod error;
mod idx;
mod mnist;
mod npy;

pub use batch::{gather, gather_into, in_order, Batches};
pub use error::DataError;
pub use idx::{read_idx, Idx, IDX_U8};
pub use mnist::Mnist;
pub use npy::{load_npy, load_npz};

use gradc_runtime::dtype::Value;
use gradc_runtime::{by_dtype, each, DType, Tensor};
use ndarray::{Array2, ArrayD, Axis, IxDyn, Slice};

/// Labels as one-hot rows: row `i` is all zeros except a 1 in column
/// `labels[i]`. Fails if a label is not below `classes`.
pub fn one_hot(labels: &[u8], classes: usize) -> Result<Array2<f32>, DataError> {
    let mut out = Array2::zeros((labels.len(), classes));
    for (index, (&label, mut row)) in labels.iter().zip(out.rows_mut()).enumerate() {
        let Some(cell) = row.get_mut(usize::from(label)) else {
            return Err(DataError::ClassOutOfRange {
                index,
                label,
                classes,
            });
        };
        *cell = 1.0;
    }
    Ok(out)
}

/// Examples for training or evaluation: `features` and `labels` with one row
/// per example on axis 0 (e.g. `[N, 784]` f32 images and `[N, 10]` one-hot
/// labels, or `[N]` i64 class indices), each in its own dtype.
///
/// Both tensors are kept in standard (row-major) layout, so gathering a batch
/// is a copy of contiguous rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: Tensor,
    labels: Tensor,
}

impl Dataset {
    /// A data set from features and labels with the same number of rows
    /// (axis 0); fails if either is 0-dimensional or the row counts differ.
    pub fn new(features: Tensor, labels: Tensor) -> Result<Dataset, DataError> {
        match (features.shape().first(), labels.shape().first()) {
            (Some(f), Some(l)) if f == l => {}
            _ => {
                return Err(DataError::Shape(format!(
                    "features {:?} and labels {:?} must have the same number of rows on axis 0",
                    features.shape(),
                    labels.shape()
                )))
            }
        }
        Ok(Dataset {
            features: standard_layout(features),
            labels: standard_layout(labels),
        })
    }

    /// A data set of f32 arrays (MNIST's images and one-hot labels).
    pub fn from_f32(features: ArrayD<f32>, labels: ArrayD<f32>) -> Result<Dataset, DataError> {
        Dataset::new(Tensor::F32(features), Tensor::F32(labels))
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.features.shape().first().copied().unwrap_or(0)
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All features, one row per example.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// All labels, one row per example.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// The data set with its features and labels converted to `features`
    /// and `labels` (as TensorFlow's `Cast` converts; no copy where the
    /// dtype is already that).
    pub fn cast(self, features: DType, labels: DType) -> Dataset {
        let convert = |t: Tensor, d: DType| if t.dtype() == d { t } else { t.cast(d) };
        Dataset {
            features: convert(self.features, features),
            labels: convert(self.labels, labels),
        }
    }

    /// The data set with one-hot label rows `[N, C]` replaced by their class
    /// indices `[N]` as i64 (the first largest entry of each row): the sparse
    /// labels `tf.nn.sparse_softmax_cross_entropy_with_logits` takes.
    pub fn with_class_indices(self) -> Result<Dataset, DataError> {
        if self.labels.shape().len() != 2 {
            return Err(DataError::Shape(format!(
                "sparse labels are made from one-hot rows [N, classes], the labels are {:?}",
                self.labels.shape()
            )));
        }
        let indices = self.labels.to_f64_array().map_axis(Axis(1), |row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as i64
        });
        Dataset::new(self.features, Tensor::I64(indices))
    }

    /// Splits off the last `rows` examples (Keras's `validation_split` takes
    /// the end of the data): `(first, last)`. Fails if `rows` is not below
    /// the number of examples.
    pub fn split_last(self, rows: usize) -> Result<(Dataset, Dataset), DataError> {
        let n = self.len();
        if rows == 0 || rows >= n {
            return Err(DataError::Shape(format!(
                "cannot split {rows} of {n} examples off: both parts need at least one"
            )));
        }
        let part = |t: &Tensor, r: std::ops::Range<usize>| each!(t, a => Tensor::from(a.slice_axis(Axis(0), Slice::from(r)).to_owned()));
        let first = Dataset::new(
            part(&self.features, 0..n - rows),
            part(&self.labels, 0..n - rows),
        )?;
        let last = Dataset::new(
            part(&self.features, n - rows..n),
            part(&self.labels, n - rows..n),
        )?;
        Ok((first, last))
    }

    /// Zeroed buffers for a batch of `batch_size` rows, `(features, labels)`,
    /// of the data's dtypes, to allocate once and refill with
    /// [`Dataset::gather_into`].
    pub fn batch_buffers(&self, batch_size: usize) -> (Tensor, Tensor) {
        (
            batch_buffer(&self.features, batch_size),
            batch_buffer(&self.labels, batch_size),
        )
    }

    /// Copies the examples `indices` into the batch buffers `features` and
    /// `labels` (of the data's dtypes, shaped `[indices.len(), ...]`, see
    /// [`Dataset::batch_buffers`]), allocating nothing. Fails, before
    /// writing, on a dtype or shape mismatch or an index out of range.
    pub fn gather_into(
        &self,
        indices: &[usize],
        features: &mut Tensor,
        labels: &mut Tensor,
    ) -> Result<(), DataError> {
        // Check the labels buffer first so that a failure writes neither.
        check_buffer(&self.labels, indices.len(), labels, "labels")?;
        gather_tensor(&self.features, indices, features)?;
        gather_tensor(&self.labels, indices, labels)
    }

    /// The examples `indices` as new tensors `(features, labels)`. Allocates;
    /// in a training loop prefer [`Dataset::gather_into`].
    pub fn gather(&self, indices: &[usize]) -> Result<(Tensor, Tensor), DataError> {
        let (mut x, mut y) = self.batch_buffers(indices.len());
        self.gather_into(indices, &mut x, &mut y)?;
        Ok((x, y))
    }

    /// The row ranges of the examples in order, in chunks of `size` rows
    /// (the last may be smaller), for evaluation with
    /// [`Dataset::rows_into`]. Fails if `size` is zero.
    pub fn chunks(
        &self,
        size: usize,
    ) -> Result<impl ExactSizeIterator<Item = std::ops::Range<usize>>, DataError> {
        in_order(self.len(), size)
    }

    /// Copies the examples `rows` into `features` and `labels`, which are
    /// reshaped (allocating) only when their row count differs.
    pub fn rows_into(
        &self,
        rows: std::ops::Range<usize>,
        features: &mut Tensor,
        labels: &mut Tensor,
    ) -> Result<(), DataError> {
        let n = rows.len();
        for (buffer, data) in [
            (&mut *features, &self.features),
            (&mut *labels, &self.labels),
        ] {
            if buffer.shape().first() != Some(&n) || buffer.dtype() != data.dtype() {
                *buffer = batch_buffer(data, n);
            }
        }
        if rows.end > self.len() {
            return Err(DataError::IndexOutOfRange {
                index: rows.end - 1,
                rows: self.len(),
            });
        }
        let copy = |data: &Tensor, out: &mut Tensor| {
            by_dtype!(data.dtype(), T => if let (Some(src), Some(dst)) = (T::view(data), T::array_mut(out)) {
                dst.assign(&src.slice_axis(Axis(0), Slice::from(rows.clone())));
            })
        };
        copy(&self.features, features);
        copy(&self.labels, labels);
        Ok(())
    }
}

/// A zeroed `[batch_size, ...]` buffer of `data`'s dtype and row shape.
fn batch_buffer(data: &Tensor, batch_size: usize) -> Tensor {
    let mut shape = data.shape().to_vec();
    if let Some(rows) = shape.first_mut() {
        *rows = batch_size; // always: `new` checked ndim >= 1
    }
    by_dtype!(data.dtype(), T => Tensor::from(ArrayD::<T>::default(IxDyn(&shape))))
}

/// Whether `buffer` holds `rows` rows of `data`'s dtype and row shape.
fn check_buffer(data: &Tensor, rows: usize, buffer: &Tensor, what: &str) -> Result<(), DataError> {
    if buffer.dtype() != data.dtype()
        || buffer.shape().first() != Some(&rows)
        || buffer.shape()[1..] != data.shape()[1..]
    {
        return Err(DataError::Shape(format!(
            "a {what} buffer of {} {:?} cannot hold {rows} rows of {} {:?}",
            buffer.dtype(),
            buffer.shape(),
            data.dtype(),
            &data.shape()[1..]
        )));
    }
    Ok(())
}

/// [`gather_into`] on tensors of one dtype.
fn gather_tensor(data: &Tensor, indices: &[usize], out: &mut Tensor) -> Result<(), DataError> {
    check_buffer(data, indices.len(), out, "batch")?;
    by_dtype!(data.dtype(), T => match (T::view(data), T::array_mut(out)) {
        (Some(src), Some(dst)) => gather_into(&src, indices, dst),
        // check_buffer compared the dtypes
        _ => Ok(()),
    })
}

/// The tensor in standard (row-major) layout.
fn standard_layout(t: Tensor) -> Tensor {
    each!(t, a => if a.is_standard_layout() {
        Tensor::from(a)
    } else {
        Tensor::from(a.as_standard_layout().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array};

    fn toy() -> Dataset {
        let x = Array::from_shape_fn((5, 3), |(i, j)| (10 * i + j) as f32).into_dyn();
        let t = one_hot(&[0, 1, 2, 1, 0], 3).unwrap().into_dyn();
        Dataset::from_f32(x, t).unwrap()
    }

    fn f32s(t: &Tensor) -> ArrayD<f32> {
        t.to_f64_array().mapv(|v| v as f32)
    }

    #[test]
    fn one_hot_rows() {
        assert_eq!(
            one_hot(&[2, 0], 3).unwrap(),
            arr2(&[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
        );
        let err = one_hot(&[1, 3], 3).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::ClassOutOfRange {
                    index: 1,
                    label: 3,
                    classes: 3
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn dataset_checks_rows() {
        let x = ArrayD::<f32>::zeros(IxDyn(&[4, 2]));
        let t = ArrayD::<f32>::zeros(IxDyn(&[3, 1]));
        assert!(matches!(Dataset::from_f32(x, t), Err(DataError::Shape(_))));
        let s = ArrayD::<f32>::zeros(IxDyn(&[]));
        assert!(Dataset::from_f32(s.clone(), s).is_err());
    }

    #[test]
    fn dataset_gather_into_buffers() {
        let d = toy();
        let (mut x, mut t) = d.batch_buffers(2);
        assert_eq!((x.shape(), t.shape()), (&[2, 3][..], &[2, 3][..]));
        d.gather_into(&[3, 1], &mut x, &mut t).unwrap();
        assert_eq!(
            f32s(&x),
            arr2(&[[30.0, 31.0, 32.0], [10.0, 11.0, 12.0]]).into_dyn()
        );
        assert_eq!(
            f32s(&t),
            arr2(&[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]).into_dyn()
        );
        assert_eq!(d.gather(&[3, 1]).unwrap(), (x.clone(), t.clone()));
        // A wrong labels buffer, or one of another dtype, writes nothing.
        let mut bad_t = Tensor::F32(ArrayD::<f32>::zeros(IxDyn(&[2, 4])));
        assert!(d.gather_into(&[0, 0], &mut x, &mut bad_t).is_err());
        let mut wide_t = t.cast(DType::F64);
        assert!(d.gather_into(&[0, 0], &mut x, &mut wide_t).is_err());
        assert_eq!(f32s(&x)[[0, 0]], 30.0);
    }

    #[test]
    fn dataset_chunks_in_order() {
        let d = toy();
        let chunks: Vec<_> = d.chunks(2).unwrap().collect();
        assert_eq!(chunks, vec![0..2, 2..4, 4..5]);
        let (mut x, mut t) = d.batch_buffers(2);
        d.rows_into(2..4, &mut x, &mut t).unwrap();
        assert_eq!(f32s(&x)[[0, 0]], 20.0);
        d.rows_into(4..5, &mut x, &mut t).unwrap();
        assert_eq!(x.shape(), &[1, 3]);
        assert_eq!(f32s(&t), arr2(&[[1.0, 0.0, 0.0]]).into_dyn());
        assert!(d.rows_into(4..6, &mut x, &mut t).is_err());
        assert!(d.chunks(0).is_err());
    }

    #[test]
    fn dataset_keeps_dtypes_casts_and_splits() {
        let x = Array::from_shape_fn((3, 2), |(i, j)| (i + 10 * j) as f64 + 0.1)
            .reversed_axes()
            .into_dyn(); // [2, 3], column-major
        let t = ndarray::arr1(&[4i64, 7]).into_dyn();
        let d = Dataset::new(Tensor::F64(x.clone()), Tensor::I64(t)).unwrap();
        assert_eq!(d.features().dtype(), DType::F64, "f64 data stays f64");
        assert_eq!(
            d.features(),
            &Tensor::F64(x.as_standard_layout().into_owned())
        );
        assert_eq!(d.len(), 2);
        assert!(!d.is_empty());
        let (first, last) = d.clone().split_last(1).unwrap();
        assert_eq!((first.len(), last.len()), (1, 1));
        assert_eq!(
            last.labels(),
            &Tensor::I64(ndarray::arr1(&[7i64]).into_dyn())
        );
        assert!(d.clone().split_last(2).is_err() && d.clone().split_last(0).is_err());
        let c = d.cast(DType::F32, DType::F64);
        assert_eq!(c.features().dtype(), DType::F32);
        assert_eq!(c.labels().to_f64_vec(), vec![4.0, 7.0]);
        let sparse = toy().with_class_indices().unwrap();
        assert_eq!(sparse.labels().dtype(), DType::I64);
        assert_eq!(sparse.labels().to_f64_vec(), vec![0.0, 1.0, 2.0, 1.0, 0.0]);
    }
}
