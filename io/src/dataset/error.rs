//! The one error type of the data-set module.

use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Everything that can go wrong reading a data set or making mini-batches.
///
/// Every variant about a file names it in `path`. For an array inside a `.npz`
/// archive, `path` is the archive's path joined with the member's name
/// (`data.npz/x.npy`), the way zip tools print it.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{}: file not found", path.display())]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// One of the four MNIST files is in neither its `.gz` nor its plain form.
    #[error(
        "{}: MNIST file '{name}' not found (looked for {name}.gz and {name})",
        dir.display()
    )]
    MnistFileMissing {
        /// The directory that was searched.
        dir: PathBuf,
        /// The standard file name without `.gz`, e.g. `train-images-idx3-ubyte`.
        name: &'static str,
    },

    /// Any other I/O error on the file (permissions, a directory, a disk error).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },

    /// The file ends before the number of bytes its header promises.
    #[error(
        "{}: truncated {what}: expected {expected} bytes, found {found}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Which part is short, e.g. `"IDX header"` or `"IDX data (after gunzip)"`.
        what: &'static str,
        /// How many bytes the header promises for that part.
        expected: u64,
        /// How many bytes are there.
        found: u64,
    },

    /// The file has bytes after the end of the data its header describes.
    #[error(
        "{}: {extra} unexpected bytes after the {expected} bytes of {what} the header describes",
        path.display()
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Which part the header describes, e.g. `"IDX data"`.
        what: &'static str,
        /// How many bytes the header describes.
        expected: u64,
        /// How many bytes follow them.
        extra: u64,
    },

    /// The file does not start with the magic number of its format.
    #[error(
        "{}: bad magic number {found}, expected {expected}",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the format's magic number is.
        expected: &'static str,
        /// The bytes found, in hex.
        found: String,
    },

    /// An IDX file whose elements are not unsigned bytes.
    #[error(
        "{}: IDX element type 0x{code:02x} ({name}) is not supported; only 0x08 (unsigned byte, as in MNIST) is",
        path.display()
    )]
    UnsupportedIdxType {
        /// The file.
        path: PathBuf,
        /// The type code (third byte of the magic number).
        code: u8,
        /// What the IDX format calls that code.
        name: &'static str,
    },

    /// The file starts like gzip (`1f 8b`) but does not decompress.
    #[error("{}: corrupt gzip data: {reason}", path.display())]
    CorruptGzip {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// The dimensions in the header are too large to address in memory, or
    /// take more bytes than the machine has (`gradc_runtime::memory_limit`).
    #[error(
        "{}: dimensions {dims:?} are too large to fit in memory ({elements} elements, \
         {bytes} bytes; the machine has {limit} bytes with swap)",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The dimensions the header gives.
        dims: Vec<usize>,
        /// Their product, as far as it could be computed (saturated at `u128::MAX`).
        elements: u128,
        /// The bytes they take (saturated at `u128::MAX`).
        bytes: u128,
        /// The memory limit they were checked against.
        limit: u64,
    },

    /// The dimensions are not the ones the data set needs.
    #[error(
        "{}: wrong dimensions {found:?}, expected {expected}",
        path.display()
    )]
    WrongDims {
        /// The file.
        path: PathBuf,
        /// What was expected, e.g. `"[N, 28, 28] (MNIST images)"`.
        expected: &'static str,
        /// The dimensions in the file.
        found: Vec<usize>,
    },

    /// A class label outside `0..classes` in a label file.
    #[error(
        "{}: label {label} at index {index} is out of range (expected 0..{classes})",
        path.display()
    )]
    LabelOutOfRange {
        /// The label file.
        path: PathBuf,
        /// The position of the label in the file.
        index: usize,
        /// The label.
        label: u8,
        /// The number of classes.
        classes: usize,
    },

    /// A class label outside `0..classes` given to [`one_hot`](super::one_hot).
    #[error("label {label} at index {index} is out of range (expected 0..{classes})")]
    ClassOutOfRange {
        /// The position of the label.
        index: usize,
        /// The label.
        label: u8,
        /// The number of classes.
        classes: usize,
    },

    /// An image file and its label file disagree on the number of examples.
    #[error(
        "{} has {n_images} images but {} has {n_labels} labels",
        images.display(),
        labels.display()
    )]
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// The label file.
        labels: PathBuf,
        /// The number of images.
        n_images: usize,
        /// The number of labels.
        n_labels: usize,
    },

    /// A `.npy` array of an element type other than float32, float64, int32, int64 or bool.
    #[error(
        "{}: unsupported array dtype {descriptor}; float32 ('<f4'), float64 ('<f8'), int32 ('<i4'), int64 ('<i8') and bool ('|b1') load (convert with arr.astype(np.float32))",
        path.display()
    )]
    UnsupportedDtype {
        /// The file (or archive member).
        path: PathBuf,
        /// NumPy's type descriptor, e.g. `'<i8'`.
        descriptor: String,
    },

    /// A `.npy` file (or archive member) that does not parse.
    #[error("{}: invalid .npy data: {reason}", path.display())]
    Npy {
        /// The file (or archive member).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A `.npz` file that is not a readable zip archive.
    #[error("{}: cannot read the .npz archive: {reason}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What the zip reader reported.
        reason: String,
    },

    /// Arrays whose shapes do not fit together (features and labels, a batch buffer).
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A row index past the end of the data set.
    #[error("row index {index} is out of range for {rows} rows")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The number of rows.
        rows: usize,
    },

    /// A mini-batch size that cannot be used with this many rows.
    #[error("invalid mini-batch size {batch_size} for {rows} rows: {reason}")]
    BadBatchSize {
        /// The requested batch size.
        batch_size: usize,
        /// The number of rows in the data set.
        rows: usize,
        /// Why it cannot be used.
        reason: &'static str,
    },
}

impl DataError {
    /// Classifies an error from opening or reading `path`: not found becomes
    /// [`DataError::Missing`], anything else [`DataError::Io`].
    pub(crate) fn io(path: &Path, source: io::Error) -> DataError {
        if source.kind() == io::ErrorKind::NotFound {
            DataError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Bytes as lowercase hex separated by spaces (`"1f 8b 08"`), for messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
