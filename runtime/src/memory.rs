//! How much memory a tensor may ask for.
//!
//! An allocation the machine cannot give aborts the process
//! (`memory allocation of N bytes failed`), so every size a user can choose
//! (a node's output shape, a variable's, a `.npy` header's) is checked against
//! [`memory_limit`] before anything is allocated, and refused with a
//! [`TooLarge`] naming the shape and the bytes.

use crate::DType;
use std::sync::OnceLock;

/// The environment variable that caps the limit further, in bytes.
pub const MEMORY_LIMIT_VAR: &str = "GRADC_MEMORY_LIMIT";

/// The limit where the machine's memory cannot be read: 1 TiB.
pub const FALLBACK_MEMORY_LIMIT: u64 = 1 << 40;

/// The most bytes one tensor (or one run's buffers together) may take: the
/// machine's physical memory plus swap (`MemTotal` + `SwapTotal` in
/// `/proc/meminfo`), or [`FALLBACK_MEMORY_LIMIT`] where that file cannot be
/// read. Anything larger could never be allocated at once, so it is refused
/// up front instead of aborting the process.
pub fn memory_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let machine = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| meminfo_limit(&text))
            .unwrap_or(FALLBACK_MEMORY_LIMIT);
        // The process may be held to less: `ulimit -v` (an allocation past
        // it fails as surely as one past the machine), a cgroup's memory.max.
        let address_space = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|text| address_space_limit(&text));
        let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        // A cap the user sets, in bytes.
        let user = std::env::var(MEMORY_LIMIT_VAR)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        [Some(machine), address_space, cgroup, user]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(machine)
    })
}

/// The soft "Max address space" of a `/proc/self/limits` text, in bytes
/// (None where it is unlimited).
fn address_space_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `MemTotal` + `SwapTotal` of a `/proc/meminfo` text, in bytes.
fn meminfo_limit(text: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        kb.checked_mul(1024)
    };
    let total = field("MemTotal:")?;
    Some(total.saturating_add(field("SwapTotal:").unwrap_or(0)))
}

/// A tensor larger than [`memory_limit`] (or than any size the machine can
/// count): its dtype, shape and bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{dtype}{shape:?} needs {} bytes, more than the {limit} bytes of memory this process can have (the machine's with swap, or its address-space or cgroup limit)",
    bytes_text(*bytes)
)]
pub struct TooLarge {
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// Element count times element size (saturated at `u128::MAX`).
    pub bytes: u128,
    /// The [`memory_limit`] it was checked against.
    pub limit: u64,
}

fn bytes_text(bytes: u128) -> String {
    if bytes == u128::MAX {
        "more than 2^128".into()
    } else {
        bytes.to_string()
    }
}

/// The bytes of a `dtype` tensor of `shape` (zero-length axes counted as 1,
/// as ndarray does), saturated at `u128::MAX`.
pub fn tensor_bytes(dtype: DType, shape: &[usize]) -> u128 {
    shape.iter().fold(dtype.size_of() as u128, |n, &d| {
        n.saturating_mul(d.max(1) as u128)
    })
}

/// Refuses a `dtype` tensor of `shape` that takes more than `limit` bytes;
/// otherwise returns its bytes.
pub fn check_bytes(dtype: DType, shape: &[usize], limit: u64) -> Result<usize, TooLarge> {
    let bytes = tensor_bytes(dtype, shape);
    let too_large = || TooLarge {
        dtype,
        shape: shape.to_vec(),
        bytes,
        limit,
    };
    if bytes > u128::from(limit) || bytes > isize::MAX as u128 {
        return Err(too_large());
    }
    usize::try_from(bytes).map_err(|_| too_large())
}

/// [`check_bytes`] against [`memory_limit`].
pub fn check_alloc(dtype: DType, shape: &[usize]) -> Result<usize, TooLarge> {
    check_bytes(dtype, shape, memory_limit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree: 1 kB\nSwapTotal:  1000 kB\n";
        assert_eq!(meminfo_limit(text), Some(24_001_000 * 1024));
        assert_eq!(meminfo_limit("MemTotal: 8 kB\n"), Some(8192));
        assert_eq!(meminfo_limit("nothing here"), None);
        assert!(memory_limit() > 0);
    }

    #[test]
    fn the_address_space_limit_is_read_where_set() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         2147483648           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(2_147_483_648));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
    }

    #[test]
    fn sizes_past_the_limit_or_usize_are_refused() {
        assert_eq!(check_bytes(DType::F64, &[2, 3], 48), Ok(48));
        assert_eq!(check_bytes(DType::F32, &[0, 3], 12), Ok(12));
        let err = check_bytes(DType::F64, &[2, 3], 47).unwrap_err();
        assert_eq!(err.bytes, 48);
        let err = check_alloc(DType::F64, &[100_000_000, 100_000_000]).unwrap_err();
        assert_eq!(err.bytes, 80_000_000_000_000_000);
        let text = err.to_string();
        assert!(
            text.contains("f64[100000000, 100000000]") && text.contains("80000000000000000 bytes"),
            "{text}"
        );
        let err = check_alloc(DType::F32, &[usize::MAX, usize::MAX, usize::MAX]).unwrap_err();
        assert!(err.to_string().contains("more than 2^128"), "{err}");
    }
}
