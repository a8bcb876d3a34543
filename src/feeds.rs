//! Feeds given on the command line: `NAME=VALUE` with a RON literal (`3.0`,
//! `[[1, 2], [3, 4]]`) or `NAME=FILE.npy`.

use crate::runtime::{DType, Literal, Program, Tensor};
use crate::Error;
use std::collections::HashMap;
use std::path::Path;

/// Parses `NAME=VALUE` feeds for `program`; each value takes the dtype of its node.
pub fn parse_feeds(program: &Program, args: &[String]) -> Result<HashMap<String, Tensor>, Error> {
    let mut feeds = HashMap::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("feed '{arg}' is not NAME=VALUE")))?;
        let ins = program
            .instrs
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "feed '{name}': the program has no node of that name"
                ))
            })?;
        let dtype = ins.outputs.first().map(|t| t.dtype).unwrap_or(ins.dtype);
        let tensor = if value.ends_with(".npy") {
            read_npy(Path::new(value), dtype)?
        } else {
            let lit: Literal = ron::from_str(value).map_err(|e| {
                Error::Usage(format!(
                    "feed '{name}': '{value}' is not a number or nested list: {e}"
                ))
            })?;
            let (shape, data) = lit
                .to_flat()
                .map_err(|e| Error::Usage(format!("feed '{name}': {e}")))?;
            Tensor::from_f64(dtype, &shape, data)
                .map_err(|e| Error::Usage(format!("feed '{name}': {e}")))?
        };
        if feeds.insert(name.to_string(), tensor).is_some() {
            return Err(Error::Usage(format!("'{name}' is fed twice")));
        }
    }
    Ok(feeds)
}

/// Reads a `.npy` file (of any supported dtype) into a tensor of `dtype`. The
/// header is checked (dtype, data length, size against the machine's memory)
/// before anything is allocated for the data. A file of a dtype that
/// `dtype` holds exactly (f32 or i32 for f64, i32 for i64) is converted;
/// any other dtype is an error naming both.
pub fn read_npy(path: &Path, dtype: DType) -> Result<Tensor, Error> {
    let tensor = crate::io::dataset::load_npy(path)?;
    let exact = matches!(
        (tensor.dtype(), dtype),
        (DType::F32 | DType::I32, DType::F64) | (DType::I32, DType::I64)
    );
    if exact {
        return Ok(tensor.cast(dtype));
    }
    if tensor.dtype() != dtype {
        return Err(Error::NpyDtype {
            path: path.to_path_buf(),
            got: tensor.dtype(),
            expected: dtype,
        });
    }
    Ok(tensor)
}

/// Writes a tensor as `.npy`, atomically (a reader never sees a half-written
/// file), unsynced: the caller syncs the directory once after its files
/// (`runtime::io::sync_dir`).
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), Error> {
    use ndarray_npy::WriteNpyExt;
    let mut buf = Vec::new();
    let res = gradc_runtime::each!(t, a => a.write_npy(&mut buf));
    res.map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    crate::runtime::io::write_atomic_synced(path, &buf, false)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// A value's label as a file name stem: letters, digits, `_` and `-` kept,
/// anything else (`(`, `/`, `:`) made `_`: `d(loss)/d(w)` is `d_loss__d_w_`.
pub fn file_stem(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
