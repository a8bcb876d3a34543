//! The MNIST handwritten digits, from the four standard IDX files.

use super::idx::{read_idx, Idx};
use super::{one_hot, DataError, Dataset};
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// MNIST: 60,000 training and 10,000 test images of 28x28 handwritten digits.
///
/// Images are rows of 784 pixels in row-major order, scaled from `0..=255`
/// to `[0, 1]`; labels are the digits `0..=9`.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// Training images, `[60000, 784]` for the standard files.
    pub train_images: Array2<f32>,
    /// Training labels, one per image row.
    pub train_labels: Vec<u8>,
    /// Test images, `[10000, 784]` for the standard files.
    pub test_images: Array2<f32>,
    /// Test labels, one per image row.
    pub test_labels: Vec<u8>,
}

impl Mnist {
    /// Image height in pixels.
    pub const ROWS: usize = 28;
    /// Image width in pixels.
    pub const COLS: usize = 28;
    /// Pixels per image (the width of a feature row).
    pub const PIXELS: usize = Self::ROWS * Self::COLS;
    /// Number of classes (digits).
    pub const CLASSES: usize = 10;
    /// The standard file names, without `.gz`: training images and labels,
    /// then test images and labels.
    pub const FILES: [&'static str; 4] = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];

    /// Loads MNIST from `dir`, which holds the four standard files, each
    /// gzip-compressed (`train-images-idx3-ubyte.gz`) or plain
    /// (`train-images-idx3-ubyte`); the `.gz` name wins if both exist.
    ///
    /// Checks that images are `[N, 28, 28]`, labels `[N]` with the same `N`,
    /// and every label is below 10.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist, DataError> {
        let dir = dir.as_ref();
        let [train_x, train_y, test_x, test_y] = Self::FILES;
        let (train_images, train_labels) = load_split(dir, train_x, train_y)?;
        let (test_images, test_labels) = load_split(dir, test_x, test_y)?;
        Ok(Mnist {
            train_images,
            train_labels,
            test_images,
            test_labels,
        })
    }

    /// The training set as a [`Dataset`]: features `[N, 784]`, labels one-hot `[N, 10]`.
    ///
    /// Fails only if the public fields were changed to disagree (counts, labels).
    pub fn train(&self) -> Result<Dataset, DataError> {
        to_dataset(self.train_images.clone(), &self.train_labels)
    }

    /// The test set as a [`Dataset`]: features `[N, 784]`, labels one-hot `[N, 10]`.
    ///
    /// Fails only if the public fields were changed to disagree (counts, labels).
    pub fn test(&self) -> Result<Dataset, DataError> {
        to_dataset(self.test_images.clone(), &self.test_labels)
    }

    /// Both sets as [`Dataset`]s, `(train, test)`, without copying the images.
    pub fn into_datasets(self) -> Result<(Dataset, Dataset), DataError> {
        Ok((
            to_dataset(self.train_images, &self.train_labels)?,
            to_dataset(self.test_images, &self.test_labels)?,
        ))
    }
}

/// Builds a data set from images and their labels, one-hot encoded.
fn to_dataset(images: Array2<f32>, labels: &[u8]) -> Result<Dataset, DataError> {
    let hot = one_hot(labels, Mnist::CLASSES)?;
    Dataset::from_f32(images.into_dyn(), hot.into_dyn())
}

/// Finds `name.gz` or `name` in `dir`.
fn find(dir: &Path, name: &'static str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    Err(DataError::MnistFileMissing {
        dir: dir.to_path_buf(),
        name,
    })
}

/// Loads and checks one split: images `[N, 28, 28]` scaled to [0, 1], labels `[N]` below 10.
fn load_split(
    dir: &Path,
    images_name: &'static str,
    labels_name: &'static str,
) -> Result<(Array2<f32>, Vec<u8>), DataError> {
    let images_path = find(dir, images_name)?;
    let labels_path = find(dir, labels_name)?;
    let Idx { dims, data } = read_idx(&images_path)?;
    let n_images = match dims[..] {
        [n, Mnist::ROWS, Mnist::COLS] => n,
        _ => {
            return Err(DataError::WrongDims {
                path: images_path,
                expected: "[N, 28, 28] (MNIST images)",
                found: dims,
            })
        }
    };
    let Idx { dims, data: labels } = read_idx(&labels_path)?;
    let n_labels = match dims[..] {
        [n] => n,
        _ => {
            return Err(DataError::WrongDims {
                path: labels_path,
                expected: "[N] (MNIST labels)",
                found: dims,
            })
        }
    };
    if n_images != n_labels {
        return Err(DataError::CountMismatch {
            images: images_path,
            labels: labels_path,
            n_images,
            n_labels,
        });
    }
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= Mnist::CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            path: labels_path,
            index,
            label,
            classes: Mnist::CLASSES,
        });
    }
    let pixels: Vec<f32> = data.iter().map(|&p| f32::from(p) / 255.0).collect();
    let images = Array2::from_shape_vec((n_images, Mnist::PIXELS), pixels)
        .map_err(|e| DataError::Shape(format!("{}: {e}", images_path.display())))?;
    Ok((images, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::idx::{encode_idx, gzip};
    use std::fs;
    use std::time::Instant;

    /// Writes a tiny MNIST-shaped directory: `n_train` and `n_test` images
    /// whose pixels are their index, labels `i % 10`; the test files plain.
    fn fake_mnist(dir: &Path, n_train: u32, n_test: u32) {
        for (split, n, gz) in [("train", n_train, true), ("t10k", n_test, false)] {
            let pixels: Vec<u8> = (0..n * 784).map(|i| (i / 784) as u8).collect();
            let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
            let images = encode_idx(&[n, 28, 28], &pixels);
            let labels = encode_idx(&[n], &labels);
            let (ext, images, labels) = if gz {
                (".gz", gzip(&images), gzip(&labels))
            } else {
                ("", images, labels)
            };
            fs::write(dir.join(format!("{split}-images-idx3-ubyte{ext}")), images).unwrap();
            fs::write(dir.join(format!("{split}-labels-idx1-ubyte{ext}")), labels).unwrap();
        }
    }

    #[test]
    fn loads_gz_and_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 12, 3);
        let m = Mnist::load(dir.path()).unwrap();
        assert_eq!(m.train_images.shape(), &[12, 784]);
        assert_eq!(m.test_images.shape(), &[3, 784]);
        assert_eq!(m.train_labels, vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
        assert_eq!(m.train_images[[2, 100]], 2.0 / 255.0);
        let (train, test) = m.into_datasets().unwrap();
        assert_eq!(train.labels().shape(), &[12, 10]);
        assert_eq!(train.labels().to_f64_array()[[11, 1]], 1.0);
        assert_eq!(test.len(), 3);
    }

    #[test]
    fn missing_file_names_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 2, 2);
        fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::MnistFileMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("t10k-labels-idx1-ubyte.gz and t10k-labels-idx1-ubyte"),
            "{msg}"
        );
    }

    #[test]
    fn label_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 2, 3);
        let p = dir.path().join("t10k-labels-idx1-ubyte");
        fs::write(&p, encode_idx(&[3], &[1, 10, 2])).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::LabelOutOfRange {
                    index: 1,
                    label: 10,
                    classes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("t10k-labels-idx1-ubyte"), "{err}");
    }

    #[test]
    fn count_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 2, 3);
        let p = dir.path().join("t10k-labels-idx1-ubyte");
        fs::write(&p, encode_idx(&[4], &[1, 2, 3, 4])).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CountMismatch {
                    n_images: 3,
                    n_labels: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("has 3 images but"), "{msg}");
        assert!(msg.contains("has 4 labels"), "{msg}");
    }

    #[test]
    fn wrong_dims() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 2, 1);
        let p = dir.path().join("t10k-images-idx3-ubyte");
        fs::write(&p, encode_idx(&[1, 32, 32], &[0; 1024])).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::WrongDims { .. }), "{err:?}");
        assert!(err.to_string().contains("[1, 32, 32]"), "{err}");
        // Labels must be one-dimensional.
        fs::write(&p, encode_idx(&[1, 28, 28], &[0; 784])).unwrap();
        let p = dir.path().join("t10k-labels-idx1-ubyte");
        fs::write(&p, encode_idx(&[1, 1], &[0])).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::WrongDims { .. }), "{err:?}");
    }

    #[test]
    fn hand_edited_fields_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        fake_mnist(dir.path(), 2, 1);
        let mut m = Mnist::load(dir.path()).unwrap();
        m.test_labels = vec![11];
        assert!(m.test().is_err());
        m.train_labels.push(0);
        assert!(m.train().is_err());
    }

    /// The real data set vendored in the repository.
    #[test]
    fn real_mnist() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
        let start = Instant::now();
        let m = Mnist::load(&dir).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(m.train_images.shape(), &[60000, 784]);
        assert_eq!(m.train_labels.len(), 60000);
        assert_eq!(m.test_images.shape(), &[10000, 784]);
        assert_eq!(m.test_labels.len(), 10000);
        for images in [&m.train_images, &m.test_images] {
            assert!(images.iter().all(|&p| (0.0..=1.0).contains(&p)));
            assert!(images.iter().any(|&p| p == 1.0));
        }
        assert_eq!(m.train_labels[0], 5);
        assert_eq!(m.test_labels[0], 7);
        eprintln!("loaded MNIST in {elapsed:?}");
    }
}
