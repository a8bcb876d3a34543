//! NumPy `.npy` and `.npz` files of float32 or float64 arrays.

use super::error::hex;
use super::DataError;
use gradc_runtime::{by_dtype, DType, Tensor};
use ndarray::ArrayD;
use ndarray_npy::npy::header::Header;
use ndarray_npy::ReadNpyExt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// What every `.npy` file starts with.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Up to this many bytes are reserved before reading an archive member.
const MAX_PREALLOC: u64 = 1 << 27;

/// Loads a `.npy` file holding a float32 (`<f4`, `>f4`) or float64 array,
/// in C or Fortran order, as a tensor of that dtype in standard (row-major)
/// layout.
///
/// Fails with a [`DataError`] naming `path` if the file is missing, is not
/// `.npy`, has another dtype, or is shorter or longer than its header says.
pub fn load_npy(path: impl AsRef<Path>) -> Result<Tensor, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_npy(&bytes, path)
}

/// Loads every array of a `.npz` archive (`np.savez` or
/// `np.savez_compressed`), in archive order, as `(name, tensor)` with the
/// `.npy` suffix removed from the name, as NumPy does. Each array must be
/// float32 or float64, as for [`load_npy`].
pub fn load_npz(path: impl AsRef<Path>) -> Result<Vec<(String, Tensor)>, DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let archive_err = |e: zip::result::ZipError| DataError::Archive {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(archive_err)?;
    let mut arrays = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(archive_err)?;
        if entry.is_dir() {
            continue;
        }
        let member = entry.name().to_string();
        let member_path: PathBuf = path.join(&member);
        let mut bytes = Vec::with_capacity(entry.size().min(MAX_PREALLOC) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::Archive {
                path: member_path.clone(),
                reason: e.to_string(),
            })?;
        let tensor = parse_npy(&bytes, &member_path)?;
        let name = member.strip_suffix(".npy").unwrap_or(&member).to_string();
        arrays.push((name, tensor));
    }
    Ok(arrays)
}

/// Parses a whole `.npy` file; `path` is for messages.
fn parse_npy(bytes: &[u8], path: &Path) -> Result<Tensor, DataError> {
    let header_end = header_end(bytes, path)?;
    let npy_err = |reason: String| DataError::Npy {
        path: path.to_path_buf(),
        reason,
    };
    let header = Header::from_reader(&mut &bytes[..]).map_err(|e| npy_err(e.to_string()))?;
    // The descriptor prints as a Python literal: '<f4' with the quotes.
    let descriptor = header.type_descriptor.to_string();
    let elem = match descriptor.as_str() {
        "'<f4'" | "'>f4'" => DType::F32,
        "'<f8'" | "'>f8'" => DType::F64,
        "'<i4'" | "'>i4'" => DType::I32,
        "'<i8'" | "'>i8'" => DType::I64,
        "'|b1'" => DType::Bool,
        _ => {
            return Err(DataError::UnsupportedDtype {
                path: path.to_path_buf(),
                descriptor,
            })
        }
    };
    let size = elem.size_of() as u128;
    // Check the data length against the header before ndarray-npy allocates
    // for it, so a lying header is an error message, not a huge allocation.
    let elements = header
        .shape
        .iter()
        .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
    let expected = elements.saturating_mul(size);
    // More than the machine's memory: refused whatever the file holds.
    let limit = gradc_runtime::memory_limit();
    if expected > u128::from(limit) {
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            dims: header.shape.clone(),
            elements,
            bytes: expected,
            limit,
        });
    }
    let found = (bytes.len() - header_end) as u128;
    if found < expected {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: "array data",
            expected: u64::try_from(expected).unwrap_or(u64::MAX),
            found: found as u64,
        });
    }
    if found > expected {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            what: "array data",
            expected: expected as u64,
            extra: (found - expected) as u64,
        });
    }
    let standard = |e: ndarray_npy::ReadNpyError| npy_err(e.to_string());
    Ok(by_dtype!(elem, T => Tensor::from(standard_layout(
        ArrayD::<T>::read_npy(bytes).map_err(standard)?,
    ))))
}

/// The array in row-major layout (Fortran-order files load column-major).
fn standard_layout<A: Clone>(a: ArrayD<A>) -> ArrayD<A> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// Checks the magic number and returns where the header ends, without
/// trusting the header length further than the file goes.
fn header_end(bytes: &[u8], path: &Path) -> Result<usize, DataError> {
    let truncated = |expected: usize| DataError::Truncated {
        path: path.to_path_buf(),
        what: ".npy header",
        expected: expected as u64,
        found: bytes.len() as u64,
    };
    let magic_len = NPY_MAGIC.len();
    if !bytes.starts_with(NPY_MAGIC) {
        if bytes.len() < magic_len && NPY_MAGIC.starts_with(bytes) {
            return Err(truncated(magic_len + 2));
        }
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: "93 4e 55 4d 50 59 (\\x93NUMPY, a .npy file)",
            found: hex(&bytes[..bytes.len().min(magic_len)]),
        });
    }
    let Some(&major) = bytes.get(magic_len) else {
        return Err(truncated(magic_len + 2));
    };
    let (len_at, len_size) = (magic_len + 2, if major == 1 { 2 } else { 4 });
    let Some(len_bytes) = bytes.get(len_at..len_at + len_size) else {
        return Err(truncated(len_at + len_size));
    };
    let header_len = len_bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let end = (len_at + len_size).saturating_add(header_len);
    if bytes.len() < end {
        return Err(truncated(end));
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array, Array2, ArrayD, ShapeBuilder};
    use ndarray_npy::{write_npy, NpzWriter, WriteNpyExt};
    use std::fs;

    fn f32_array() -> ArrayD<f32> {
        Array::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f32 * 0.5).into_dyn()
    }

    fn f64_array() -> ArrayD<f64> {
        Array::from_shape_fn((3, 2), |(i, j)| 1e-300 * (i as f64) + j as f64 / 3.0).into_dyn()
    }

    #[test]
    fn npy_round_trips_f32_and_f64() {
        let dir = tempfile::tempdir().unwrap();
        let p32 = dir.path().join("a.npy");
        let p64 = dir.path().join("b.npy");
        write_npy(&p32, &f32_array()).unwrap();
        write_npy(&p64, &f64_array()).unwrap();
        assert_eq!(load_npy(&p32).unwrap(), Tensor::F32(f32_array()));
        assert_eq!(load_npy(&p64).unwrap(), Tensor::F64(f64_array()));
        // Scalars and empty arrays too.
        let p0 = dir.path().join("s.npy");
        write_npy(&p0, &ndarray::arr0(2.5f64)).unwrap();
        assert_eq!(
            load_npy(&p0).unwrap(),
            Tensor::F64(ndarray::arr0(2.5).into_dyn())
        );
        let pe = dir.path().join("e.npy");
        write_npy(&pe, &Array2::<f32>::zeros((0, 5))).unwrap();
        assert_eq!(load_npy(&pe).unwrap().shape(), &[0, 5]);
    }

    #[test]
    fn fortran_order_loads_row_major() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.npy");
        let c = Array2::from_shape_fn((2, 3), |(i, j)| (10 * i + j) as f64);
        let mut f = Array2::<f64>::zeros((2, 3).f());
        f.assign(&c);
        write_npy(&p, &f).unwrap();
        let Tensor::F64(a) = load_npy(&p).unwrap() else {
            panic!("not f64")
        };
        assert!(a.is_standard_layout());
        assert_eq!(a, c.into_dyn());
    }

    #[test]
    fn npz_round_trips_f32_and_f64() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.npz");
        let mut npz = NpzWriter::new(File::create(&p).unwrap());
        npz.add_array("x", &f32_array()).unwrap();
        npz.add_array("y", &f64_array()).unwrap();
        npz.finish().unwrap();
        let got = load_npz(&p).unwrap();
        assert_eq!(
            got,
            vec![
                ("x".to_string(), Tensor::F32(f32_array())),
                ("y".to_string(), Tensor::F64(f64_array())),
            ]
        );
    }

    #[test]
    fn compressed_npz_loads() {
        use zip::write::SimpleFileOptions;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.npz");
        let options =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let mut npz = NpzWriter::new_with_options(File::create(&p).unwrap(), options);
        npz.add_array("w", &f64_array()).unwrap();
        npz.finish().unwrap();
        assert_eq!(
            load_npz(&p).unwrap(),
            vec![("w".to_string(), Tensor::F64(f64_array()))]
        );
    }

    #[test]
    fn npy_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_npy(dir.path().join("none.npy")).unwrap_err();
        assert!(matches!(missing, DataError::Missing { .. }), "{missing:?}");

        let mut good = Vec::new();
        f32_array().write_npy(&mut good).unwrap();
        let p = dir.path().join("t.npy");
        fs::write(&p, &good[..good.len() - 5]).unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 96,
                    found: 91,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("t.npy"), "{err}");

        let mut long = good.clone();
        long.push(0);
        fs::write(&p, &long).unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(
            matches!(err, DataError::TrailingBytes { extra: 1, .. }),
            "{err:?}"
        );

        fs::write(&p, b"PK\x03\x04 not npy").unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");

        let mut small = Vec::new();
        ndarray::arr1(&[1u16, 2, 3]).write_npy(&mut small).unwrap();
        fs::write(&p, &small).unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedDtype { .. }), "{err:?}");
        assert!(err.to_string().contains("<u2"), "{err}");
    }

    /// A `.npy` file whose header claims `shape` (a Python tuple) and whose data is `data`.
    fn npy_claiming(shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
        let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
        let header = format!("{dict}{}\n", " ".repeat(pad));
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn a_header_past_the_memory_limit_is_refused_before_reading_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.npy");
        let bytes = npy_claiming("(100000000, 100000000)", &[0; 24]);
        assert_eq!(bytes.len(), 152);
        fs::write(&p, &bytes).unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(
            matches!(
                &err,
                DataError::TooLarge {
                    bytes: 80_000_000_000_000_000,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("huge.npy") && text.contains("[100000000, 100000000]"),
            "{text}"
        );
        // Overflowing usize too.
        fs::write(
            &p,
            npy_claiming("(4294967296, 4294967296, 4294967296)", &[]),
        )
        .unwrap();
        let err = load_npy(&p).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn npz_errors_name_archive_and_member() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npz");
        fs::write(&p, b"not a zip at all").unwrap();
        let err = load_npz(&p).unwrap_err();
        assert!(matches!(err, DataError::Archive { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.npz"), "{err}");

        let mut npz = NpzWriter::new(File::create(&p).unwrap());
        npz.add_array("labels", &ndarray::arr1(&[1u8, 2])).unwrap();
        npz.finish().unwrap();
        let err = load_npz(&p).unwrap_err();
        assert!(matches!(err, DataError::UnsupportedDtype { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("bad.npz") && msg.contains("labels.npy"),
            "{msg}"
        );
    }

    #[test]
    fn no_panic_on_prefixes_and_bit_flips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.npy");
        let mut good = Vec::new();
        f64_array().write_npy(&mut good).unwrap();
        for len in 0..=good.len() {
            fs::write(&p, &good[..len]).unwrap();
            let _ = load_npy(&p);
        }
        for i in 0..good.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] ^= flip;
                fs::write(&p, &b).unwrap();
                let _ = load_npy(&p);
            }
        }
        let z = dir.path().join("f.npz");
        let mut npz = NpzWriter::new(File::create(&z).unwrap());
        npz.add_array("a", &f32_array()).unwrap();
        npz.finish().unwrap();
        let zbytes = fs::read(&z).unwrap();
        for len in (0..=zbytes.len()).step_by(7) {
            fs::write(&z, &zbytes[..len]).unwrap();
            let _ = load_npz(&z);
        }
        for i in 0..zbytes.len() {
            let mut b = zbytes.clone();
            b[i] ^= 0xff;
            fs::write(&z, &b).unwrap();
            let _ = load_npz(&z);
        }
    }
}
