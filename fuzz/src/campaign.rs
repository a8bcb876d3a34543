//! Isolation and classification: inputs run in worker processes (the
//! harness binary itself, `gradc-fuzz --worker`), one after another, each
//! under the worker's memory limit (`RLIMIT_AS`) and the parent's deadline.
//!
//! The worker catches panics (`catch_unwind`, with a hook that records the
//! message and location) and reports every input on one line of its stdout.
//! An abort (allocation failure, stack overflow, a signal) ends the worker,
//! and a hang is killed at the deadline: the parent attributes either to
//! the input in flight, reads the worker's stderr for the message, and
//! starts a new worker for the next input.

use crate::exec::{fnv, run_input, Outcome};
use crate::mutate::{Corpus, Input};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How one input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Class {
    /// Every stage ran without error.
    Ok,
    /// A stage failed with an error message (what bad input should get).
    Error,
    /// An error that says gradc is wrong (an `Internal` compile error, a
    /// compiled program that does not load): reported, not a crash.
    Internal,
    /// Optimized and unoptimized programs disagree: reported, not a crash.
    Mismatch,
    /// A panic (caught in the worker, or exit status 101).
    Panic,
    /// The worker died: abort, allocation failure, stack overflow, a signal.
    Abort,
    /// The worker missed the deadline and was killed.
    Hang,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Ok,
        Class::Error,
        Class::Internal,
        Class::Mismatch,
        Class::Panic,
        Class::Abort,
        Class::Hang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Error => "error",
            Class::Internal => "internal",
            Class::Mismatch => "mismatch",
            Class::Panic => "panic",
            Class::Abort => "abort",
            Class::Hang => "hang",
        }
    }

    fn parse(s: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == s)
    }

    /// What CI fails on.
    pub fn is_crash(self) -> bool {
        matches!(self, Class::Panic | Class::Abort | Class::Hang)
    }
}

/// The classification of one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub class: Class,
    /// The stage (errors), or where (a panic's file and line).
    pub place: String,
    pub message: String,
    /// A run was skipped (feeds too large).
    pub skipped: bool,
    pub millis: u64,
}

impl Verdict {
    /// What makes two crashes the same: class and location for panics, the
    /// message with numbers and quoted names blanked for the others.
    pub fn signature(&self) -> String {
        match self.class {
            Class::Panic => format!("panic at {}", self.place),
            Class::Hang => "hang".into(),
            Class::Ok | Class::Error => self.class.name().into(),
            Class::Abort => format!(
                "abort: {} ({})",
                normalize(self.message.lines().next().unwrap_or("")),
                self.place.split_once(" at ").map_or("", |(_, f)| f)
            ),
            _ => format!(
                "{}: {}",
                self.class.name(),
                normalize(self.message.lines().next().unwrap_or(""))
            ),
        }
    }
}

/// Numbers to `N`, quoted text to `'_'`, at most 120 characters.
fn normalize(message: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut last_digit = false;
    for c in message.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                out.push(q);
            }
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            out.push('_');
            continue;
        }
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('N');
            }
            last_digit = true;
            continue;
        }
        last_digit = false;
        out.push(c);
    }
    out.chars().take(120).collect()
}

/// Per-input limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Wall-clock deadline of one input.
    pub timeout: Duration,
    /// Address-space limit of a worker, in MiB (0: none).
    pub memory_mib: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(10),
            memory_mib: 2048,
        }
    }
}

// ---------------------------------------------------------------- worker side

static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why the harness itself stopped: never a finding about gradc (those are
/// verdicts), but a system call, a file or a worker that failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A system call or a file operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A worker could not be started or broke the protocol.
    #[error("{0}")]
    Worker(String),
}

impl From<String> for HarnessError {
    fn from(message: String) -> HarnessError {
        HarnessError::Worker(message)
    }
}

impl From<&str> for HarnessError {
    fn from(message: &str) -> HarnessError {
        HarnessError::Worker(message.to_string())
    }
}

/// Wraps an I/O error with what was being done.
pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io {
        what: what.to_string(),
        source,
    }
}

/// Limits the address space of this process (so an allocation past it fails).
#[cfg(unix)]
pub fn limit_memory(mib: u64) -> Result<(), HarnessError> {
    if mib == 0 {
        return Ok(());
    }
    let bytes = mib.saturating_mul(1 << 20) as libc::rlim_t;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limit.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io(format!("setrlimit(RLIMIT_AS, {mib} MiB)"))(
            std::io::Error::last_os_error(),
        ))
    }
}

#[cfg(not(unix))]
pub fn limit_memory(_mib: u64) -> Result<(), HarnessError> {
    Ok(())
}

/// Installs the hook that records a panic's message and location (and
/// prints them, for a panic that escapes).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        let place = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        eprintln!("panicked at {place}: {message}");
        let mut last = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none() {
            *last = Some((place, message));
        }
    }));
}

/// Runs one input in this process, panics caught: its verdict.
pub fn run_caught(text: &str) -> Verdict {
    *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let start = Instant::now();
    let result = std::panic::catch_unwind(|| run_input(text));
    let millis = start.elapsed().as_millis() as u64;
    match result {
        Ok(outcome) => verdict_of(outcome, millis),
        Err(_) => {
            let (place, message) = LAST_PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            Verdict {
                class: Class::Panic,
                place,
                message,
                skipped: false,
                millis,
            }
        }
    }
}

fn verdict_of(o: Outcome, millis: u64) -> Verdict {
    let (class, place, message) = if let Some((stage, m)) = o.internal {
        (Class::Internal, stage, m)
    } else if let Some(m) = o.mismatch {
        (Class::Mismatch, "compare".to_string(), m)
    } else if let Some((stage, m)) = o.error {
        (Class::Error, stage, m)
    } else {
        (Class::Ok, String::new(), String::new())
    };
    Verdict {
        class,
        place,
        message,
        skipped: o.run_skipped,
        millis,
    }
}

/// The worker: reads `@@input <bytes>` and the bytes from stdin, runs each,
/// answers one `@@result` line per input; ends at end of input.
pub fn worker(memory_mib: u64) -> Result<(), HarnessError> {
    limit_memory(memory_mib)?;
    gradc::runtime::set_threads(1);
    install_panic_hook();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut header = String::new();
    loop {
        header.clear();
        if input
            .read_line(&mut header)
            .map_err(io("reading an input's header"))?
            == 0
        {
            return Ok(());
        }
        let len: usize = header
            .trim()
            .strip_prefix("@@input ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad header {header:?}"))?;
        let mut bytes = vec![0u8; len];
        input
            .read_exact(&mut bytes)
            .map_err(io("reading an input"))?;
        let text = String::from_utf8_lossy(&bytes);
        let v = run_caught(&text);
        let mut out = stdout.lock();
        writeln!(
            out,
            "@@result\t{}\t{}\t{}\t{}\t{}",
            v.class.name(),
            escape(&v.place),
            escape(&v.message),
            u8::from(v.skipped),
            v.millis
        )
        .and_then(|_| out.flush())
        .map_err(io("writing a result"))?;
    }
}

// ---------------------------------------------------------------- parent side

struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_thread: std::thread::JoinHandle<()>,
}

/// Runs inputs in worker processes, one at a time, restarting the worker
/// after a crash.
pub struct Runner {
    exe: PathBuf,
    limits: Limits,
    worker: Option<Worker>,
    /// Workers started (1 + crashes, roughly).
    pub starts: usize,
}

impl Runner {
    /// `exe` is the gradc-fuzz binary (it runs as `exe --worker`).
    pub fn new(exe: &Path, limits: Limits) -> Runner {
        Runner {
            exe: exe.to_path_buf(),
            limits,
            worker: None,
            starts: 0,
        }
    }

    fn start(&mut self) -> Result<&mut Worker, HarnessError> {
        if self.worker.is_none() {
            let mut command = Command::new(&self.exe);
            command
                .arg("--worker")
                .arg("--memory-mib")
                .arg(self.limits.memory_mib.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // An allocation failure prints a backtrace, which says where.
                .env("RUST_BACKTRACE", "1");
            if self.limits.memory_mib > 0 {
                // An input holds two sessions (optimized and not) and their
                // results at once: gradc's own limit is a quarter of the
                // worker's, so what it accepts fits beside the rest.
                let quarter = self.limits.memory_mib.saturating_mul(1 << 20) / 4;
                command.env(
                    gradc::runtime::memory::MEMORY_LIMIT_VAR,
                    quarter.to_string(),
                );
            }
            let mut child = command
                .spawn()
                .map_err(io(format!("starting {}", self.exe.display())))?;
            self.starts += 1;
            let (Some(stdin), Some(stdout), Some(mut stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                return Err("worker without pipes".into());
            };
            let (tx, lines) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("@@result\t") && tx.send(line).is_err() {
                        break;
                    }
                }
            });
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&buf);
            let stderr_thread = std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = sink.lock().unwrap_or_else(|e| e.into_inner());
                    b.extend_from_slice(&chunk[..n]);
                    // Keep the tail only.
                    if b.len() > 1 << 16 {
                        let cut = b.len() - (1 << 15);
                        b.drain(..cut);
                    }
                }
            });
            self.worker = Some(Worker {
                child,
                stdin,
                lines,
                stderr: buf,
                stderr_thread,
            });
        }
        self.worker.as_mut().ok_or_else(|| "no worker".into())
    }

    /// Runs one input; `Err` only when the harness itself fails.
    pub fn run(&mut self, text: &str) -> Result<Verdict, HarnessError> {
        let timeout = self.limits.timeout;
        let w = self.start()?;
        w.stderr.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let start = Instant::now();
        let sent = writeln!(w.stdin, "@@input {}", text.len())
            .and_then(|_| w.stdin.write_all(text.as_bytes()))
            .and_then(|_| w.stdin.flush());
        let reply = match sent {
            Ok(()) => w.lines.recv_timeout(timeout),
            Err(_) => Err(RecvTimeoutError::Disconnected),
        };
        let millis = start.elapsed().as_millis() as u64;
        match reply {
            Ok(line) => Ok(parse_result(&line)?),
            Err(RecvTimeoutError::Timeout) => {
                let w = self.worker.take().ok_or("no worker")?;
                let _ = finish(w, true);
                Ok(Verdict {
                    class: Class::Hang,
                    place: String::new(),
                    message: format!("no answer in {} ms", timeout.as_millis()),
                    skipped: false,
                    millis,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let w = self.worker.take().ok_or("no worker")?;
                let (status, stderr) = finish(w, false);
                Ok(died(status, &stderr, millis))
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            drop(w.stdin);
            let _ = finish_child(w.child, w.stderr_thread, self.limits.timeout);
        }
    }
}

fn finish_child(
    mut child: Child,
    stderr_thread: std::thread::JoinHandle<()>,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                let _ = stderr_thread.join();
                return Some(s);
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let s = child.wait().ok();
                let _ = stderr_thread.join();
                return s;
            }
        }
    }
}

/// Ends a worker (killing it when asked) and returns its status and stderr.
fn finish(w: Worker, kill: bool) -> (Option<std::process::ExitStatus>, String) {
    let Worker {
        mut child,
        stdin,
        stderr,
        stderr_thread,
        ..
    } = w;
    drop(stdin);
    if kill {
        let _ = child.kill();
    }
    let status = finish_child(child, stderr_thread, Duration::from_secs(5));
    let text =
        String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    (status, text)
}

fn parse_result(line: &str) -> Result<Verdict, String> {
    let f: Vec<&str> = line.split('\t').collect();
    let bad = || format!("bad result line {line:?}");
    if f.len() != 6 {
        return Err(bad());
    }
    Ok(Verdict {
        class: Class::parse(f[1]).ok_or_else(bad)?,
        place: unescape(f[2]),
        message: unescape(f[3]),
        skipped: f[4] == "1",
        millis: f[5].parse().map_err(|_| bad())?,
    })
}

/// The verdict on a worker that died: its status and the end of its stderr.
fn died(status: Option<std::process::ExitStatus>, stderr: &str, millis: u64) -> Verdict {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    // The most telling line: an allocation failure, a stack overflow, a panic.
    let telling = lines
        .iter()
        .find(|l| l.contains("memory allocation of") || l.contains("overflowed its stack"))
        .or_else(|| lines.iter().find(|l| l.starts_with("panicked at")))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_default();
    #[cfg(unix)]
    let signal = status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s));
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    let code = status.and_then(|s| s.code());
    let how = match (signal, code) {
        (Some(s), _) => format!("signal {s}{}", signal_name(s)),
        (None, Some(c)) => format!("exit status {c}"),
        (None, None) => "unknown status".into(),
    };
    if code == Some(101) {
        // A panic that escaped the worker's catch_unwind.
        let (place, message) = telling
            .strip_prefix("panicked at ")
            .and_then(|r| r.split_once(": "))
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .unwrap_or_default();
        return Verdict {
            class: Class::Panic,
            place,
            message,
            skipped: false,
            millis,
        };
    }
    // The first frame of gradc's own code in a backtrace, if one was printed.
    let frame = lines
        .iter()
        .map(|l| l.trim())
        .filter_map(|l| l.strip_prefix("at "))
        .find(|l| {
            l.contains(".rs:")
                && !l.contains("/rustc/")
                && !l.contains("/.cargo/")
                && !l.contains("fuzz/src/")
        })
        .map(|l| l.trim_start_matches("./").to_string());
    let place = match frame {
        Some(f) => format!("{how} at {f}"),
        None => how.clone(),
    };
    Verdict {
        class: Class::Abort,
        place,
        message: if telling.is_empty() { how } else { telling },
        skipped: false,
        millis,
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

// ---------------------------------------------------------------- campaigns

/// One input that ended badly, kept with its text.
#[derive(Clone, Debug)]
pub struct Case {
    /// `input N` or the regression file's path.
    pub name: String,
    /// Where it came from: the seed graph and the mutations.
    pub recipe: String,
    pub text: String,
    pub verdict: Verdict,
}

/// A distinct bad outcome: its first case (lowest index) and how many inputs hit it.
#[derive(Clone, Debug)]
pub struct Finding {
    pub signature: String,
    pub first: Case,
    pub count: usize,
    index: usize,
}

/// What a campaign found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub inputs: usize,
    pub counts: BTreeMap<Class, usize>,
    /// Clean errors by stage.
    pub error_stages: BTreeMap<String, usize>,
    pub skipped_runs: usize,
    /// Crashes, internal errors and mismatches, by signature.
    pub findings: BTreeMap<String, Finding>,
    /// The slowest inputs: (ms, name).
    pub slowest: Vec<(u64, String)>,
    pub worker_starts: usize,
    pub elapsed: Duration,
}

impl Report {
    fn add(
        &mut self,
        index: usize,
        name: String,
        recipe: impl FnOnce() -> String,
        text: &str,
        v: Verdict,
    ) {
        self.inputs += 1;
        *self.counts.entry(v.class).or_default() += 1;
        if v.class == Class::Error {
            *self.error_stages.entry(v.place.clone()).or_default() += 1;
        }
        self.skipped_runs += usize::from(v.skipped);
        self.slowest.push((v.millis, name.clone()));
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        self.slowest.truncate(5);
        if !matches!(v.class, Class::Ok | Class::Error) {
            let signature = v.signature();
            let case = Case {
                name,
                recipe: recipe(),
                text: text.to_string(),
                verdict: v,
            };
            self.merge_finding(Finding {
                signature,
                first: case,
                count: 1,
                index,
            });
        }
    }

    fn merge_finding(&mut self, f: Finding) {
        match self.findings.get_mut(&f.signature) {
            Some(old) => {
                old.count += f.count;
                if f.index < old.index {
                    old.first = f.first;
                    old.index = f.index;
                }
            }
            None => {
                self.findings.insert(f.signature.clone(), f);
            }
        }
    }

    fn merge(&mut self, other: Report) {
        self.inputs += other.inputs;
        for (c, n) in other.counts {
            *self.counts.entry(c).or_default() += n;
        }
        for (s, n) in other.error_stages {
            *self.error_stages.entry(s).or_default() += n;
        }
        self.skipped_runs += other.skipped_runs;
        for f in other.findings.into_values() {
            self.merge_finding(f);
        }
        self.slowest.extend(other.slowest);
        self.slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        self.slowest.truncate(5);
        self.worker_starts += other.worker_starts;
    }

    /// The findings that are crashes (what CI fails on).
    pub fn crashes(&self) -> Vec<&Finding> {
        self.findings
            .values()
            .filter(|f| f.first.verdict.class.is_crash())
            .collect()
    }

    /// Counts by class, errors by stage, findings, slowest inputs.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} inputs in {:.1} s ({} worker starts)\n",
            self.inputs,
            self.elapsed.as_secs_f64(),
            self.worker_starts
        );
        for c in Class::ALL {
            s += &format!(
                "  {:<9} {}\n",
                c.name(),
                self.counts.get(&c).copied().unwrap_or(0)
            );
        }
        s += &format!(
            "  (runs skipped for feeds too large: {})\n",
            self.skipped_runs
        );
        s += "clean errors by stage:\n";
        let mut stages: Vec<_> = self.error_stages.iter().collect();
        stages.sort_by(|a, b| b.1.cmp(a.1));
        for (stage, n) in stages {
            s += &format!("  {n:>6}  {stage}\n");
        }
        s += &format!("distinct findings: {}\n", self.findings.len());
        let mut findings: Vec<&Finding> = self.findings.values().collect();
        findings.sort_by_key(|f| (std::cmp::Reverse(f.first.verdict.class), f.index));
        for f in findings {
            let v = &f.first.verdict;
            let message: String = v.message.chars().take(300).collect();
            s += &format!(
                "  [{}] x{} {}\n      first: {} ({})\n      {}: {}\n",
                v.class.name(),
                f.count,
                f.signature,
                f.first.name,
                f.first.recipe,
                v.place,
                message.replace('\n', " | ")
            );
        }
        s += "slowest:";
        for (ms, name) in &self.slowest {
            s += &format!(" {name} {ms} ms;");
        }
        s.push('\n');
        s
    }
}

/// Runs `count` cases on `jobs` workers; `case(i)` makes case i: its name,
/// its text, and its recipe (asked only for findings).
pub fn run_cases<F>(
    exe: &Path,
    limits: Limits,
    jobs: usize,
    count: usize,
    case: F,
    progress: bool,
) -> Result<Report, HarnessError>
where
    F: Fn(usize) -> (String, String, Box<dyn FnOnce() -> String>) + Sync,
{
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let jobs = jobs.clamp(1, count.max(1));
    let results: Vec<Result<Report, HarnessError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut runner = Runner::new(exe, limits);
                    let mut report = Report::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let (name, text, recipe) = case(i);
                        let v = runner.run(&text)?;
                        report.add(i, name, recipe, &text, v);
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if progress && d.is_multiple_of(500) {
                            eprintln!(
                                "  {d}/{count} inputs, {:.0} s",
                                start.elapsed().as_secs_f64()
                            );
                        }
                    }
                    report.worker_starts = runner.starts;
                    Ok(report)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a harness thread panicked".into()))
            })
            .collect()
    });
    let mut total = Report::default();
    for r in results {
        total.merge(r?);
    }
    total.elapsed = start.elapsed();
    Ok(total)
}

/// A campaign's settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub inputs: usize,
    pub jobs: usize,
    pub limits: Limits,
    pub progress: bool,
}

/// `cfg.inputs` mutated inputs of `corpus`.
pub fn fuzz(exe: &Path, corpus: &Corpus, cfg: &Config) -> Result<Report, HarnessError> {
    let seed = cfg.seed;
    run_cases(
        exe,
        cfg.limits,
        cfg.jobs,
        cfg.inputs,
        |i| {
            let input = corpus.generate(seed, i as u64);
            let Input {
                index,
                base,
                mutations,
                text,
            } = input;
            let recipe = move || format!("seed {seed}, from {base}: {}", mutations.join("; "));
            (
                format!("input {index}"),
                text,
                Box::new(recipe) as Box<dyn FnOnce() -> String>,
            )
        },
        cfg.progress,
    )
}

/// Every `*.ron` of `dir`, sorted.
pub fn ron_files(dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(dir.display()))?;
    for entry in entries {
        let path = entry.map_err(io(dir.display()))?.path();
        if path.extension().is_some_and(|e| e == "ron") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The files as they are (the regression corpus).
pub fn replay(
    exe: &Path,
    files: &[PathBuf],
    limits: Limits,
    jobs: usize,
) -> Result<Report, HarnessError> {
    let texts: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map(|b| {
                    (
                        p.display().to_string(),
                        String::from_utf8_lossy(&b).into_owned(),
                    )
                })
                .map_err(io(p.display()))
        })
        .collect::<Result<_, HarnessError>>()?;
    run_cases(
        exe,
        limits,
        jobs,
        texts.len(),
        |i| {
            let (name, text) = texts[i].clone();
            (
                name,
                text,
                Box::new(|| "regression".to_string()) as Box<dyn FnOnce() -> String>,
            )
        },
        false,
    )
}

// ---------------------------------------------------------------- minimizing

/// Smaller variants of a graph text: without the train section, outputs,
/// gradient requests, functions, runs of nodes; or, unparsed, without lines.
fn shrink_candidates(text: &str) -> Vec<String> {
    use gradc::compiler::schema;
    let mut out = Vec::new();
    let Ok(spec) = schema::parse(text) else {
        let lines: Vec<&str> = text.lines().collect();
        let mut chunk = lines.len() / 2;
        while chunk >= 1 {
            for start in (0..lines.len()).step_by(chunk) {
                let mut l = lines.clone();
                l.drain(start..(start + chunk).min(lines.len()));
                out.push(l.join("\n"));
            }
            chunk /= 2;
        }
        return out;
    };
    let mut push = |s: &schema::GraphSpec| {
        if let Ok(t) = schema::to_ron(s) {
            out.push(t);
        }
    };
    if spec.train.is_some() {
        let mut s = spec.clone();
        s.train = None;
        push(&s);
    }
    if spec.outputs.is_some() {
        let mut s = spec.clone();
        s.outputs = None;
        push(&s);
    }
    for i in 0..spec.gradients.len() {
        let mut s = spec.clone();
        s.gradients.remove(i);
        push(&s);
        for k in 0..spec.gradients[i].wrt.len() {
            let mut s = spec.clone();
            s.gradients[i].wrt.remove(k);
            push(&s);
        }
    }
    for i in 0..spec.functions.len() {
        let mut s = spec.clone();
        s.functions.remove(i);
        push(&s);
        let n = spec.functions[i].nodes.len();
        for k in 0..n {
            let mut s = spec.clone();
            s.functions[i].nodes.remove(k);
            push(&s);
        }
    }
    let n = spec.nodes.len();
    let mut chunk = n / 2;
    while chunk >= 1 {
        for start in (0..n).step_by(chunk) {
            let mut s = spec.clone();
            s.nodes.drain(start..(start + chunk).min(n));
            push(&s);
        }
        chunk /= 2;
    }
    for i in 0..n {
        if !spec.nodes[i].control_inputs.is_empty() || !spec.nodes[i].collections.is_empty() {
            let mut s = spec.clone();
            s.nodes[i].control_inputs.clear();
            s.nodes[i].collections.clear();
            push(&s);
        }
    }
    out
}

/// Greedily shrinks a crashing text while its signature stays the same,
/// within `budget` runs.
pub fn minimize(
    runner: &mut Runner,
    text: &str,
    signature: &str,
    budget: usize,
) -> Result<String, HarnessError> {
    let mut best = text.to_string();
    let mut runs = 0;
    'outer: loop {
        for cand in shrink_candidates(&best) {
            if cand.len() >= best.len() {
                continue;
            }
            if runs >= budget {
                break 'outer;
            }
            runs += 1;
            if runner.run(&cand)?.signature() == signature {
                best = cand;
                continue 'outer;
            }
        }
        break;
    }
    Ok(best)
}

/// A file name for a finding: its class and a hash of its signature.
pub fn finding_file_name(f: &Finding) -> String {
    format!(
        "{}-{:016x}.ron",
        f.first.verdict.class.name(),
        fnv(f.signature.as_bytes())
    )
}

/// The text of a finding as a regression file: a comment saying what it
/// is, then the input.
pub fn finding_file_text(f: &Finding, text: &str) -> String {
    let v = &f.first.verdict;
    let mut s = String::new();
    s += &format!("// gradc-fuzz: {}\n", f.signature.replace('\n', " "));
    s += &format!(
        "// {}: {}\n",
        v.place,
        v.message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>()
    );
    s += &format!(
        "// found as {} ({})\n",
        f.first.name,
        f.first
            .recipe
            .chars()
            .take(500)
            .collect::<String>()
            .replace('\n', " ")
    );
    s += text;
    if !text.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harness_errors_say_what_failed() {
        let missing = Path::new("/nonexistent/gradc-fuzz-regressions");
        match ron_files(missing) {
            Err(HarnessError::Io { what, source }) => {
                assert_eq!(what, missing.display().to_string());
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        let bad = HarnessError::from(parse_result("@@result\tnonsense").unwrap_err());
        assert!(
            matches!(&bad, HarnessError::Worker(m) if m.contains("bad result line")),
            "{bad}"
        );
    }

    #[test]
    fn messages_normalize() {
        assert_eq!(
            normalize("memory allocation of 800000000 bytes failed at 'x7'"),
            "memory allocation of N bytes failed at '_'"
        );
    }

    #[test]
    fn result_lines_round_trip() {
        let v = Verdict {
            class: Class::Panic,
            place: "a.rs:1:2".into(),
            message: "two\tlines\nand \\ a backslash".into(),
            skipped: true,
            millis: 12,
        };
        let line = format!(
            "@@result\t{}\t{}\t{}\t{}\t{}",
            v.class.name(),
            escape(&v.place),
            escape(&v.message),
            u8::from(v.skipped),
            v.millis
        );
        assert_eq!(parse_result(&line), Ok(v));
    }
}
