//! Compile errors. Each names where it happened: file, line, node and op when known.

use std::fmt;

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file is not valid RON or does not match the graph schema.
    Parse,
    /// An op name that does not exist.
    UnknownOp,
    /// An attribute the op does not have, or a required one missing.
    UnknownAttr,
    /// An input or gradient request names a node that does not exist.
    UnknownNode,
    /// Two nodes share a name.
    DuplicateName,
    /// The nodes (with gradient requests) depend on each other in a cycle.
    Cycle,
    /// Shapes do not fit the op.
    Shape,
    /// Dtypes do not fit the op, or a declared dtype disagrees with the inferred one.
    DType,
    /// An assignment whose first input is not a variable.
    NotAVariable,
    /// The `train` section is inconsistent (no trainable variable, a non-scalar loss, ...).
    Train,
    /// A function is called wrongly, calls itself, or its custom gradient does not fit.
    Function,
    /// An op on the path to a requested gradient has no gradient rule.
    NoGradient,
    /// A graph invariant broke inside the compiler (a bug, named with the pass).
    Internal,
    /// Reading a file failed.
    Io,
    /// A run feeds a node that cannot be fed (several outputs, or it changes a variable).
    Feed,
    /// A pipeline names a pass that does not exist.
    UnknownPass,
}

/// A compile error with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub kind: ErrorKind,
    pub file: Option<String>,
    pub line: Option<usize>,
    pub node: Option<String>,
    pub op: Option<&'static str>,
    pub message: String,
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;

impl CompileError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CompileError {
        CompileError {
            kind,
            file: None,
            line: None,
            node: None,
            op: None,
            message: message.into(),
        }
    }
    pub fn at_node(mut self, node: &str, op: &'static str) -> CompileError {
        self.node.get_or_insert_with(|| node.to_string());
        self.op.get_or_insert(op);
        self
    }
    pub fn at_line(mut self, line: Option<usize>) -> CompileError {
        if self.line.is_none() {
            self.line = line;
        }
        self
    }
    pub fn in_file(mut self, file: &str) -> CompileError {
        self.file.get_or_insert_with(|| file.to_string());
        self
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        write!(f, "error")?;
        match (&self.node, self.op) {
            (Some(n), Some(op)) => write!(f, " in node '{n}' ({op})")?,
            (Some(n), None) => write!(f, " in node '{n}'")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for CompileError {}

/// Names longer than this (in characters) get no suggestion: Jaro's
/// similarity costs time in the product of the two lengths, and a name of a
/// megabyte is no typo of another.
pub const SUGGEST_MAX_CHARS: usize = 256;

/// The most work a suggestion may cost, in pairs of characters compared
/// (about a nanosecond each): the sum over the candidates compared of the
/// product of the two lengths. Above it, no suggestion: a few hundred
/// thousand candidates of a few characters each stay well within.
pub const SUGGEST_MAX_WORK: usize = 1 << 28;

/// The closest of `candidates` to `name`, if it is close enough to be a likely
/// typo (Jaro-Winkler similarity of the lowercased names above 0.8; of equal
/// ones, the last).
///
/// The search is bounded: a `name` of more than [`SUGGEST_MAX_CHARS`]
/// characters has none, nor one whose comparisons would cost more than
/// [`SUGGEST_MAX_WORK`]. A candidate more than ten times as long as `name`,
/// or less than a tenth as long, is passed over without comparing (nor
/// counted): Jaro's similarity, the mean of the matched fractions of either
/// name and of the matches in order, is then below (1 + 1/10 + 1) / 3 = 0.7,
/// and Winkler's prefix bonus applies only above 0.7, so it cannot pass 0.8.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if name.chars().nth(SUGGEST_MAX_CHARS).is_some() {
        return None;
    }
    let name = name.to_lowercase();
    let len = name.chars().count();
    // Work counted as the comparisons go: the total, and so whether it
    // passes the bound, does not depend on the candidates' order.
    let mut work = 0usize;
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        // Lowercasing never shortens a name: a candidate too long already
        // is passed over before it is lowercased.
        if c.chars().nth(10 * len).is_some() {
            continue;
        }
        let lower = c.to_lowercase();
        let c_len = lower.chars().count();
        if c_len > 10 * len || len > 10 * c_len {
            continue;
        }
        work = work.saturating_add(len.max(1) * c_len.max(1));
        if work > SUGGEST_MAX_WORK {
            return None;
        }
        let score = strsim::jaro_winkler(&name, &lower);
        // Ties go to the smallest name, so the answer does not depend on
        // the candidates' order (a hash map's differs from run to run).
        if score > 0.8 && best.is_none_or(|(b, bc)| score > b || (score == b && c < bc)) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// ` (did you mean 'x'?)` or nothing.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search without bounds: every candidate compared.
    fn unbounded<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
        candidates
            .iter()
            .map(|&c| {
                (
                    strsim::jaro_winkler(&name.to_lowercase(), &c.to_lowercase()),
                    c,
                )
            })
            .filter(|(score, _)| *score > 0.8)
            // The best score; of equal ones, the smallest name.
            .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
            .map(|(_, c)| c)
    }

    #[test]
    fn the_suggestion_does_not_depend_on_the_candidates_order() {
        let names = ["Weight", "weight", "WEIGHT", "weigth"];
        let want = closest("weight", names);
        let mut reversed = names;
        reversed.reverse();
        assert_eq!(closest("weight", reversed), want);
        assert_eq!(want, Some("WEIGHT"));
    }

    #[test]
    fn passing_over_names_of_other_lengths_changes_no_suggestion() {
        // Prefixes of one another at every length ratio around ten, with and
        // without a typo, and names that lowercase to other lengths.
        let mut names: Vec<String> = Vec::new();
        for len in [
            1, 2, 3, 4, 5, 9, 10, 11, 12, 19, 20, 21, 40, 99, 100, 101, 110, 200, 256,
        ] {
            let s: String = "abcdefghij".chars().cycle().take(len).collect();
            names.push(s.clone());
            names.push(format!("{}x", &s[..len - 1]));
            names.push(s.to_uppercase());
        }
        names.extend([
            "İ".into(),
            "İİ".into(),
            "İa".into(),
            "i".into(),
            String::new(),
        ]);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for name in &refs {
            assert_eq!(
                closest(name, refs.iter().copied()),
                unbounded(name, &refs),
                "{name}"
            );
        }
    }

    #[test]
    fn long_names_and_costly_searches_get_no_suggestion() {
        let long = "a".repeat(SUGGEST_MAX_CHARS + 1);
        let longer = format!("{long}b");
        assert_eq!(closest(&long, [longer.as_str()]), None);
        let just = "a".repeat(SUGGEST_MAX_CHARS);
        let near = format!("{}b", &just[1..]);
        assert_eq!(closest(&just, [near.as_str()]), Some(near.as_str()));
        // Past the work bound, none; the same candidates fewer are compared.
        let many =
            vec![near.as_str(); SUGGEST_MAX_WORK / (SUGGEST_MAX_CHARS * SUGGEST_MAX_CHARS) + 1];
        assert_eq!(closest(&just, many.iter().copied()), None);
        assert_eq!(
            closest(&just, many[1..].iter().copied()),
            Some(near.as_str())
        );
    }
}
