//! The IDX file format (MNIST's), plain or gzip-compressed.
//!
//! An IDX file is a 4-byte magic number `00 00 TYPE NDIMS`, then `NDIMS`
//! big-endian `u32` dimensions, then the elements in row-major order. Only
//! type `0x08` (unsigned byte) is supported, which is all MNIST uses.

use super::error::hex;
use super::DataError;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The IDX type code of unsigned bytes.
pub const IDX_U8: u8 = 0x08;

/// The contents of an IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header, outermost first.
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// The bytes the gzip format starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Up to this many bytes are reserved before reading the data, so that a
/// header promising terabytes cannot make us allocate them up front.
const MAX_PREALLOC: usize = 1 << 27;

/// Reads an IDX file of unsigned bytes, gzip-compressed (detected by the
/// `1f 8b` magic, whatever the file is called) or plain.
///
/// Fails with a [`DataError`] naming `path` if the file is missing, is not
/// IDX, has another element type than `0x08`, is shorter or longer than its
/// header says, or is corrupt gzip.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx, DataError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = [0u8; 2];
    let n = read_full(&mut file, &mut head).map_err(|e| DataError::io(path, e))?;
    let reader = (&head[..n]).chain(BufReader::new(file));
    if head[..n] == GZIP_MAGIC {
        parse(MultiGzDecoder::new(reader), path, true)
    } else {
        parse(reader, path, false)
    }
}

/// Names of the IDX type codes, for messages.
fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0b => "short",
        0x0c => "int",
        0x0d => "float",
        0x0e => "double",
        _ => "not an IDX type",
    }
}

/// Parses IDX from `reader`; `gz` says it is decompressing, for error messages.
fn parse(mut reader: impl Read, path: &Path, gz: bool) -> Result<Idx, DataError> {
    // While decompressing, any read error is the gzip stream's fault.
    let read_err = |e: io::Error| {
        if gz {
            DataError::CorruptGzip {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        } else {
            DataError::io(path, e)
        }
    };
    let (header_what, data_what) = if gz {
        ("IDX header (after gunzip)", "IDX data (after gunzip)")
    } else {
        ("IDX header", "IDX data")
    };

    let mut magic = [0u8; 4];
    let n = read_full(&mut reader, &mut magic).map_err(read_err)?;
    if n < 4 {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: header_what,
            expected: 4,
            found: n as u64,
        });
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::BadMagic {
            path: path.to_path_buf(),
            expected: "00 00 <type> <ndims> (an IDX file)",
            found: hex(&magic),
        });
    }
    let code = magic[2];
    if code != IDX_U8 {
        return Err(DataError::UnsupportedIdxType {
            path: path.to_path_buf(),
            code,
            name: type_name(code),
        });
    }
    let ndims = usize::from(magic[3]);
    let mut raw = vec![0u8; 4 * ndims];
    let n = read_full(&mut reader, &mut raw).map_err(read_err)?;
    if n < raw.len() {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: header_what,
            expected: 4 + raw.len() as u64,
            found: 4 + n as u64,
        });
    }
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let Some(len) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        let elements = dims
            .iter()
            .fold(1u128, |acc, &d| acc.saturating_mul(d as u128));
        return Err(DataError::TooLarge {
            path: path.to_path_buf(),
            dims,
            elements,
            bytes: elements,
            limit: gradc_runtime::memory_limit(),
        });
    };

    let mut data = Vec::with_capacity(len.min(MAX_PREALLOC));
    reader
        .by_ref()
        .take(len as u64)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() < len {
        return Err(DataError::Truncated {
            path: path.to_path_buf(),
            what: data_what,
            expected: len as u64,
            found: data.len() as u64,
        });
    }
    let extra = io::copy(&mut reader, &mut io::sink()).map_err(read_err)?;
    if extra > 0 {
        return Err(DataError::TrailingBytes {
            path: path.to_path_buf(),
            what: data_what,
            expected: len as u64,
            extra,
        });
    }
    Ok(Idx { dims, data })
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encodes an IDX file of unsigned bytes (test helper; MNIST layout).
#[cfg(test)]
pub(crate) fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, IDX_U8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Gzip-compresses `bytes` (test helper).
#[cfg(test)]
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode_idx(&[2, 3, 4], &data);
        let expected = Idx {
            dims: vec![2, 3, 4],
            data: data.clone(),
        };
        let plain = write(dir.path(), "a-idx3-ubyte", &bytes);
        assert_eq!(read_idx(&plain).unwrap(), expected);
        // Detection is by content, not by name.
        let gz = write(dir.path(), "b-idx3-ubyte", &gzip(&bytes));
        assert_eq!(read_idx(&gz).unwrap(), expected);
        let labels = write(dir.path(), "l.gz", &gzip(&encode_idx(&[3], &[7, 0, 9])));
        assert_eq!(read_idx(&labels).unwrap().data, vec![7, 0, 9]);
    }

    #[test]
    fn empty_dimension_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "e", &encode_idx(&[0, 28, 28], &[]));
        let idx = read_idx(&p).unwrap();
        assert_eq!(idx.dims, vec![0, 28, 28]);
        assert!(idx.data.is_empty());
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope");
        let err = read_idx(&p).unwrap_err();
        assert!(matches!(err, DataError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[test]
    fn truncated_data_says_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[2, 5], &[1; 10]);
        bytes.truncate(bytes.len() - 3);
        let p = write(dir.path(), "short", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 10,
                    found: 7,
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("short"), "{msg}");
        assert!(msg.contains("expected 10 bytes, found 7"), "{msg}");

        // The same through gzip.
        let p = write(dir.path(), "short.gz", &gzip(&bytes));
        let msg = read_idx(&p).unwrap_err().to_string();
        assert!(msg.contains("after gunzip"), "{msg}");
        assert!(msg.contains("expected 10 bytes, found 7"), "{msg}");
    }

    #[test]
    fn truncated_header() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode_idx(&[2, 5, 6], &[]);
        let p = write(dir.path(), "hdr", &bytes[..9]);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::Truncated {
                    expected: 16,
                    found: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        for len in 0..4 {
            let p = write(dir.path(), "tiny", &bytes[..len]);
            let err = read_idx(&p).unwrap_err();
            assert!(
                matches!(err, DataError::Truncated { expected: 4, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[3], &[1, 2, 3]);
        bytes.extend_from_slice(&[0, 0]);
        let p = write(dir.path(), "long", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(
                err,
                DataError::TrailingBytes {
                    expected: 3,
                    extra: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bad_magic() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "text.idx", b"hello, world");
        let err = read_idx(&p).unwrap_err();
        assert!(matches!(err, DataError::BadMagic { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("text.idx"), "{msg}");
        assert!(msg.contains("68 65 6c 6c"), "{msg}");
    }

    #[test]
    fn wrong_type_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = encode_idx(&[1], &[0, 0, 0, 0]);
        bytes[2] = 0x0d;
        let p = write(dir.path(), "floats", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(err, DataError::UnsupportedIdxType { code: 0x0d, .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("0x0d (float)"), "{msg}");
        assert!(msg.contains("only 0x08"), "{msg}");
    }

    #[test]
    fn corrupt_gzip() {
        let dir = tempfile::tempdir().unwrap();
        // A gzip header with a broken deflate stream.
        let mut bytes = gzip(&encode_idx(&[100], &[42; 100]));
        let mid = bytes.len() / 2;
        for b in &mut bytes[10..mid] {
            *b ^= 0x5a;
        }
        let p = write(dir.path(), "bad.gz", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(matches!(err, DataError::CorruptGzip { .. }), "{err:?}");
        assert!(err.to_string().contains("bad.gz"), "{err}");

        // Just the gzip magic and garbage.
        let p = write(dir.path(), "junk.gz", &[0x1f, 0x8b, 1, 2, 3]);
        let err = read_idx(&p).unwrap_err();
        assert!(matches!(err, DataError::CorruptGzip { .. }), "{err:?}");
    }

    #[test]
    fn absurd_dims_do_not_allocate_or_panic() {
        let dir = tempfile::tempdir().unwrap();
        // 2^32-1 cubed overflows usize.
        let bytes = encode_idx(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        let p = write(dir.path(), "huge", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(matches!(err, DataError::TooLarge { .. }), "{err:?}");
        // Large but addressable: a truncation error, not a 4 GB allocation.
        let bytes = encode_idx(&[u32::MAX], &[1, 2]);
        let p = write(dir.path(), "big", &bytes);
        let err = read_idx(&p).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { found: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn no_panic_on_prefixes_and_bit_flips() {
        let dir = tempfile::tempdir().unwrap();
        let good = encode_idx(&[2, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let gz = gzip(&good);
        for src in [&good, &gz] {
            for len in 0..=src.len() {
                let p = write(dir.path(), "f", &src[..len]);
                let _ = read_idx(&p);
            }
            for i in 0..src.len() {
                let mut b = src.clone();
                b[i] ^= 0xff;
                let p = write(dir.path(), "f", &b);
                let _ = read_idx(&p);
            }
        }
    }
}
