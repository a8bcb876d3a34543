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
//!     for (x, t) in test.chunks(1000)? {
//!         // evaluate on x and t (views, no copy)
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

use gradc_runtime::Tensor;
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, Slice};

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
/// per example on axis 0 (e.g. `[N, 784]` images and `[N, 10]` one-hot labels).
///
/// Both arrays are kept in standard (row-major) layout, so gathering a batch
/// is a copy of contiguous rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: ArrayD<f32>,
    labels: ArrayD<f32>,
}

impl Dataset {
    /// A data set from features and labels with the same number of rows
    /// (axis 0); fails if either is 0-dimensional or the row counts differ.
    pub fn new(features: ArrayD<f32>, labels: ArrayD<f32>) -> Result<Dataset, DataError> {
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

    /// A data set from tensors (e.g. from [`load_npz`]); f64 values are
    /// narrowed to f32.
    pub fn from_tensors(features: Tensor, labels: Tensor) -> Result<Dataset, DataError> {
        Dataset::new(to_f32(features), to_f32(labels))
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.features.len_of(Axis(0))
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All features, one row per example.
    pub fn features(&self) -> &ArrayD<f32> {
        &self.features
    }

    /// All labels, one row per example.
    pub fn labels(&self) -> &ArrayD<f32> {
        &self.labels
    }

    /// The data set with one-hot label rows `[N, C]` replaced by their class
    /// indices `[N]` (the first largest entry of each row): the sparse labels
    /// `tf.nn.sparse_softmax_cross_entropy_with_logits` takes.
    pub fn with_class_indices(self) -> Result<Dataset, DataError> {
        if self.labels.ndim() != 2 {
            return Err(DataError::Shape(format!(
                "sparse labels are made from one-hot rows [N, classes], the labels are {:?}",
                self.labels.shape()
            )));
        }
        let indices = self.labels.map_axis(Axis(1), |row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best as f32
        });
        Dataset::new(self.features, indices)
    }

    /// The features and labels, taken apart.
    pub fn into_parts(self) -> (ArrayD<f32>, ArrayD<f32>) {
        (self.features, self.labels)
    }

    /// Zeroed buffers for a batch of `batch_size` rows, `(features, labels)`,
    /// to allocate once and refill with [`Dataset::gather_into`].
    pub fn batch_buffers(&self, batch_size: usize) -> (ArrayD<f32>, ArrayD<f32>) {
        let buffer = |a: &ArrayD<f32>| {
            let mut shape = a.shape().to_vec();
            if let Some(rows) = shape.first_mut() {
                *rows = batch_size; // always: `new` checked ndim >= 1
            }
            ArrayD::zeros(IxDyn(&shape))
        };
        (buffer(&self.features), buffer(&self.labels))
    }

    /// Copies the examples `indices` into the batch buffers `features` and
    /// `labels` (shaped `[indices.len(), ...]`, see [`Dataset::batch_buffers`]),
    /// allocating nothing. Fails, before writing, on a shape mismatch or an
    /// index out of range.
    pub fn gather_into(
        &self,
        indices: &[usize],
        features: &mut ArrayD<f32>,
        labels: &mut ArrayD<f32>,
    ) -> Result<(), DataError> {
        // Check the labels buffer first so that a failure writes neither.
        if labels.shape().first() != Some(&indices.len())
            || labels.shape()[1..] != self.labels.shape()[1..]
        {
            return Err(DataError::Shape(format!(
                "a labels buffer of shape {:?} cannot hold {} rows of shape {:?}",
                labels.shape(),
                indices.len(),
                &self.labels.shape()[1..]
            )));
        }
        gather_into(&self.features, indices, features)?;
        gather_into(&self.labels, indices, labels)
    }

    /// The examples `indices` as new arrays `(features, labels)`. Allocates;
    /// in a training loop prefer [`Dataset::gather_into`].
    pub fn gather(&self, indices: &[usize]) -> Result<(ArrayD<f32>, ArrayD<f32>), DataError> {
        Ok((
            gather(&self.features, indices)?,
            gather(&self.labels, indices)?,
        ))
    }

    /// The examples in order, in chunks of `size` rows (the last may be
    /// smaller), as views `(features, labels)`: for evaluation, no copy.
    /// Fails if `size` is zero.
    pub fn chunks(
        &self,
        size: usize,
    ) -> Result<impl ExactSizeIterator<Item = (ArrayViewD<'_, f32>, ArrayViewD<'_, f32>)>, DataError>
    {
        Ok(in_order(self.len(), size)?.map(move |r| {
            let s = Slice::from(r);
            (
                self.features.slice_axis(Axis(0), s),
                self.labels.slice_axis(Axis(0), s),
            )
        }))
    }
}

/// A tensor's values as f32.
fn to_f32(t: Tensor) -> ArrayD<f32> {
    match t {
        Tensor::F32(a) => a,
        other => other.to_f64_array().mapv(|v| v as f32),
    }
}

/// The array in standard (row-major) layout.
fn standard_layout(a: ArrayD<f32>) -> ArrayD<f32> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array};

    fn toy() -> Dataset {
        let x = Array::from_shape_fn((5, 3), |(i, j)| (10 * i + j) as f32).into_dyn();
        let t = one_hot(&[0, 1, 2, 1, 0], 3).unwrap().into_dyn();
        Dataset::new(x, t).unwrap()
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
        assert!(matches!(Dataset::new(x, t), Err(DataError::Shape(_))));
        let s = ArrayD::<f32>::zeros(IxDyn(&[]));
        assert!(Dataset::new(s.clone(), s).is_err());
    }

    #[test]
    fn dataset_gather_into_buffers() {
        let d = toy();
        let (mut x, mut t) = d.batch_buffers(2);
        assert_eq!((x.shape(), t.shape()), (&[2, 3][..], &[2, 3][..]));
        d.gather_into(&[3, 1], &mut x, &mut t).unwrap();
        assert_eq!(
            x,
            arr2(&[[30.0, 31.0, 32.0], [10.0, 11.0, 12.0]]).into_dyn()
        );
        assert_eq!(t, arr2(&[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]).into_dyn());
        assert_eq!(d.gather(&[3, 1]).unwrap(), (x.clone(), t.clone()));
        // A wrong labels buffer writes nothing.
        let mut bad_t = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
        assert!(d.gather_into(&[0, 0], &mut x, &mut bad_t).is_err());
        assert_eq!(x[[0, 0]], 30.0);
    }

    #[test]
    fn dataset_chunks_in_order() {
        let d = toy();
        let chunks: Vec<_> = d.chunks(2).unwrap().collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].0.shape(), &[1, 3]);
        assert_eq!(chunks[1].0[[0, 0]], 20.0);
        assert_eq!(chunks[2].1, arr2(&[[1.0, 0.0, 0.0]]).into_dyn());
        assert!(d.chunks(0).is_err());
    }

    #[test]
    fn from_tensors_narrows_f64_and_fixes_layout() {
        let x = Array::from_shape_fn((3, 2), |(i, j)| (i + 10 * j) as f64)
            .reversed_axes()
            .into_dyn(); // [2, 3], column-major
        let t = ArrayD::<f32>::zeros(IxDyn(&[2]));
        let d = Dataset::from_tensors(Tensor::F64(x.clone()), Tensor::F32(t)).unwrap();
        assert!(d.features().is_standard_layout());
        assert_eq!(d.features(), &x.mapv(|v| v as f32));
        assert_eq!(d.len(), 2);
        assert!(!d.is_empty());
    }
}
