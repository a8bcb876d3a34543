//! A training metrics log kept as a CSV file: one header row with the column
//! names, then one row of numbers per epoch or step, e.g.
//!
//! ```text
//! epoch,train_loss,train_acc,test_loss,test_acc,images_per_sec
//! 1,0.412,0.8812,0.3011,0.9121,10234.5
//! ```
//!
//! [`MetricsLog::write`] rewrites the whole file atomically
//! (`gradc_runtime::io::write_atomic`), so a reader (a plot script, `tail`)
//! never sees a half-written file. [`MetricsLog::read`] reads it back, e.g. to
//! resume a run. Values are `f64`: integral values are written without a
//! fraction (`3`, not `3.0`), others in Rust's shortest round-trip form, so a
//! write-then-read gives back exactly the same numbers. NaN is written `NaN`;
//! an empty cell reads as NaN.

use std::path::{Path, PathBuf};

/// Everything that can go wrong building, writing or reading a metrics log.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The column names are unusable (none, empty, or repeated).
    #[error("invalid metrics columns: {0}")]
    Columns(String),
    /// A row does not fit the columns.
    #[error("metrics row has {found} values but the log has {expected} columns ({columns})")]
    RowLength {
        /// The number of columns.
        expected: usize,
        /// The number of values given.
        found: usize,
        /// The column names, comma-separated.
        columns: String,
    },
    /// A named value refers to a column the log does not have.
    #[error("metrics log has no column '{0}'")]
    UnknownColumn(String),
    /// The file could not be written (the previous file, if any, is intact).
    #[error("cannot write metrics {}: {source}", path.display())]
    Write {
        /// The CSV path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file could not be read or is not valid CSV.
    #[error("cannot read metrics {}: {source}", path.display())]
    Read {
        /// The CSV path.
        path: PathBuf,
        /// The underlying CSV or I/O error.
        source: csv::Error,
    },
    /// The file is CSV but its content is not a metrics log.
    #[error("metrics {}:{line}: {message}", path.display())]
    Invalid {
        /// The CSV path.
        path: PathBuf,
        /// The 1-based line of the problem.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// Rows of numbers under fixed column names, written to and read from CSV.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricsLog {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
}

fn check_columns(columns: &[String]) -> Result<(), String> {
    if columns.is_empty() {
        return Err("no columns".to_string());
    }
    for (i, c) in columns.iter().enumerate() {
        if c.trim().is_empty() {
            return Err(format!("column {} has an empty name", i + 1));
        }
        if columns[..i].contains(c) {
            return Err(format!("column '{c}' is given twice"));
        }
    }
    Ok(())
}

/// Formats a value so that parsing it gives back the same `f64`.
fn format_value(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && a != 0.0 && !(1e-5..1e16).contains(&a) {
        // Shortest round-trip form with an exponent: `1e-7`, `2.5e20`.
        format!("{v:e}")
    } else {
        // Shortest round-trip form: `3`, `0.25`, `NaN`, `inf`.
        format!("{v}")
    }
}

impl MetricsLog {
    /// An empty log with these columns (e.g. `["epoch", "train_loss", "test_acc"]`).
    ///
    /// Names must be non-empty and distinct.
    pub fn new<S: AsRef<str>>(columns: &[S]) -> Result<MetricsLog, MetricsError> {
        let columns: Vec<String> = columns.iter().map(|c| c.as_ref().to_string()).collect();
        check_columns(&columns).map_err(MetricsError::Columns)?;
        Ok(MetricsLog {
            columns,
            rows: Vec::new(),
        })
    }

    /// The column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The rows, oldest first; each has one value per column.
    pub fn rows(&self) -> &[Vec<f64>] {
        &self.rows
    }

    /// Appends a row: one value per column, in column order.
    pub fn push(&mut self, row: &[f64]) -> Result<(), MetricsError> {
        if row.len() != self.columns.len() {
            return Err(MetricsError::RowLength {
                expected: self.columns.len(),
                found: row.len(),
                columns: self.columns.join(","),
            });
        }
        self.rows.push(row.to_vec());
        Ok(())
    }

    /// Appends a row given as `(column, value)` pairs in any order; columns
    /// not given are NaN (missing).
    pub fn push_named(&mut self, values: &[(&str, f64)]) -> Result<(), MetricsError> {
        let mut row = vec![f64::NAN; self.columns.len()];
        for (name, v) in values {
            let i = self
                .column_index(name)
                .ok_or_else(|| MetricsError::UnknownColumn(name.to_string()))?;
            row[i] = *v;
        }
        self.rows.push(row);
        Ok(())
    }

    /// Keeps only the rows for which `keep` is true, e.g. to drop the rows
    /// after the checkpoint a run resumes from.
    pub fn retain(&mut self, mut keep: impl FnMut(&[f64]) -> bool) {
        self.rows.retain(|r| keep(r));
    }

    /// The position of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// All values of the column called `name`, oldest first.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let i = self.column_index(name)?;
        Some(self.rows.iter().map(|r| r[i]).collect())
    }

    /// `(x, y)` points of column `y` against column `x`, skipping rows where
    /// either is NaN: ready for a [`crate::plot::Series`].
    pub fn points(&self, x: &str, y: &str) -> Option<Vec<(f64, f64)>> {
        let (ix, iy) = (self.column_index(x)?, self.column_index(y)?);
        Some(
            self.rows
                .iter()
                .map(|r| (r[ix], r[iy]))
                .filter(|(a, b)| !a.is_nan() && !b.is_nan())
                .collect(),
        )
    }

    /// The log as CSV bytes: a header row, then one line per row.
    fn to_csv(&self) -> Result<Vec<u8>, csv::Error> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(&self.columns)?;
        for r in &self.rows {
            w.write_record(r.iter().map(|&v| format_value(v)))?;
        }
        w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }

    /// Writes the whole log to `path` atomically: a reader sees the old file
    /// or the new one, never part of one.
    pub fn write(&self, path: &Path) -> Result<(), MetricsError> {
        let write_err = |source| MetricsError::Write {
            path: path.to_path_buf(),
            source,
        };
        let bytes = self.to_csv().map_err(|e| write_err(e.into()))?;
        gradc_runtime::io::write_atomic(path, &bytes).map_err(write_err)
    }

    /// Reads a log written by [`MetricsLog::write`] (or any CSV with a header
    /// row of distinct names and numeric cells; an empty cell is NaN).
    pub fn read(path: &Path) -> Result<MetricsLog, MetricsError> {
        let read_err = |source| MetricsError::Read {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |line: u64, message: String| MetricsError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_path(path)
            .map_err(read_err)?;
        let columns: Vec<String> = reader
            .headers()
            .map_err(read_err)?
            .iter()
            .map(str::to_string)
            .collect();
        check_columns(&columns).map_err(|m| invalid(1, m))?;
        let mut log = MetricsLog {
            columns,
            rows: Vec::new(),
        };
        for record in reader.records() {
            let record = record.map_err(read_err)?;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != log.columns.len() {
                return Err(invalid(
                    line,
                    format!("{} values for {} columns", record.len(), log.columns.len()),
                ));
            }
            let mut row = Vec::with_capacity(record.len());
            for (cell, column) in record.iter().zip(&log.columns) {
                let cell = cell.trim();
                let v = if cell.is_empty() {
                    f64::NAN
                } else {
                    cell.parse::<f64>().map_err(|_| {
                        invalid(line, format!("column '{column}': '{cell}' is not a number"))
                    })?
                };
                row.push(v);
            }
            log.rows.push(row);
        }
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetricsLog {
        let mut log = MetricsLog::new(&[
            "epoch",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "images_per_sec",
        ])
        .unwrap();
        log.push(&[1.0, 0.412_345_678_9, 0.8812, 0.3011, 0.9121, 10234.5])
            .unwrap();
        log.push(&[2.0, 1e-7, 0.1 + 0.2, f64::NAN, 1.0, 2.5e20])
            .unwrap();
        log.push_named(&[("epoch", 3.0), ("train_loss", -0.0)])
            .unwrap();
        log
    }

    /// Rows compared bit for bit, so NaN equals NaN.
    fn same_rows(a: &MetricsLog, b: &MetricsLog) -> bool {
        a.columns == b.columns
            && a.rows.len() == b.rows.len()
            && a.rows.iter().zip(&b.rows).all(|(x, y)| {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
            })
    }

    #[test]
    fn write_then_read_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let log = sample();
        log.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(
            "epoch,train_loss,train_acc,test_loss,test_acc,images_per_sec\n1,0.4123456789,"
        ));
        assert!(
            text.contains("\n2,1e-7,0.30000000000000004,NaN,1,2.5e20\n"),
            "{text}"
        );
        let back = MetricsLog::read(&path).unwrap();
        assert!(same_rows(&log, &back), "{log:?} vs {back:?}");
        // Rewriting replaces the whole file; no temporary file is left behind.
        let mut longer = back.clone();
        longer.push(&[4.0, 0.1, 0.2, 0.3, 0.4, 0.5]).unwrap();
        longer.write(&path).unwrap();
        assert_eq!(MetricsLog::read(&path).unwrap().rows().len(), 4);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn columns_points_and_retain() {
        let mut log = sample();
        assert_eq!(log.column("epoch").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(log.column("nope"), None);
        // Rows with NaN in either column are skipped.
        assert_eq!(
            log.points("epoch", "test_acc").unwrap(),
            vec![(1.0, 0.9121), (2.0, 1.0)]
        );
        log.retain(|r| r[0] <= 2.0);
        assert_eq!(log.rows().len(), 2);
    }

    #[test]
    fn bad_columns_and_rows_are_errors() {
        assert!(matches!(
            MetricsLog::new::<&str>(&[]),
            Err(MetricsError::Columns(_))
        ));
        assert!(matches!(
            MetricsLog::new(&["a", "b", "a"]),
            Err(MetricsError::Columns(_))
        ));
        assert!(matches!(
            MetricsLog::new(&["a", " "]),
            Err(MetricsError::Columns(_))
        ));
        let mut log = MetricsLog::new(&["a", "b"]).unwrap();
        let e = log.push(&[1.0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "metrics row has 1 values but the log has 2 columns (a,b)"
        );
        assert!(matches!(
            log.push_named(&[("c", 1.0)]),
            Err(MetricsError::UnknownColumn(_))
        ));
        assert!(log.rows().is_empty());
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        let missing = MetricsLog::read(&path).unwrap_err();
        assert!(missing.to_string().contains("m.csv"), "{missing}");

        std::fs::write(&path, "epoch,loss\n1,0.5\n2,abc\n").unwrap();
        let e = MetricsLog::read(&path).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("m.csv:3: column 'loss': 'abc' is not a number"),
            "{e}"
        );

        std::fs::write(&path, "epoch,loss\n1,0.5\n2\n").unwrap();
        let e = MetricsLog::read(&path).unwrap_err();
        assert!(matches!(e, MetricsError::Read { .. }), "{e}");
        assert!(e.to_string().contains("m.csv"), "{e}");

        std::fs::write(&path, "epoch,epoch\n1,2\n").unwrap();
        let e = MetricsLog::read(&path).unwrap_err();
        assert!(matches!(e, MetricsError::Invalid { line: 1, .. }), "{e}");

        std::fs::write(&path, b"epoch,loss\n1,\xff\xfe\n").unwrap();
        assert!(MetricsLog::read(&path).is_err());

        // An empty cell reads as NaN (missing).
        std::fs::write(&path, "epoch,loss\n1,\n").unwrap();
        assert!(MetricsLog::read(&path).unwrap().rows()[0][1].is_nan());
    }

    #[test]
    fn failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let e = sample().write(&gone.join("m.csv")).unwrap_err();
        assert!(matches!(e, MetricsError::Write { .. }), "{e}");
        assert!(e.to_string().contains("gone/m.csv"), "{e}");
    }
}
