//! `gradc-fuzz`: fuzz campaigns against gradc (see docs/fuzzing.md).
//!
//! ```text
//! cargo run --release -p gradc-fuzz -- --seed 7 --inputs 100000 --out fuzz-out
//! cargo run --release -p gradc-fuzz -- --replay fuzz/regressions/*.ron
//! cargo run --release -p gradc-fuzz -- --one fuzz-out/findings/panic-....ron
//! ```

use clap::Parser;
use gradc_fuzz::campaign::{self, Config, HarnessError, Limits, Runner};
use gradc_fuzz::mutate::Corpus;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "gradc-fuzz",
    about = "Mutates graph files and runs each through gradc in a worker process with a time and memory limit; classifies ok, clean error, panic, abort, hang"
)]
struct Args {
    /// Seed of the campaign: the same seed makes the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Inputs to generate and run.
    #[arg(long, default_value_t = 10_000)]
    inputs: usize,
    /// Worker processes at once (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Deadline of one input, in milliseconds; past it, a hang.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Address-space limit of a worker, in MiB (0: none).
    #[arg(long, default_value_t = 2048)]
    memory_mib: u64,
    /// Seed graphs.
    #[arg(long, default_value = "graphs")]
    graphs: PathBuf,
    /// The regression corpus: replayed first, and used as seeds.
    #[arg(long, default_value = "fuzz/regressions")]
    regressions: PathBuf,
    /// Where findings (minimized) and the summary are written.
    #[arg(long, default_value = "fuzz-out")]
    out: PathBuf,
    /// Runs spent minimizing each finding (0: keep it as found).
    #[arg(long, default_value_t = 200)]
    minimize_runs: usize,
    /// Also write each new crash (a signature no regression file has) into
    /// the regression corpus.
    #[arg(long)]
    save: bool,
    /// Run these files as they are (no mutation) and classify them.
    #[arg(long, num_args = 1.., value_name = "FILE", conflicts_with = "one")]
    replay: Vec<PathBuf>,
    /// Run one file in this process (panics caught; an abort ends it) and
    /// print its verdict.
    #[arg(long, value_name = "FILE")]
    one: Option<PathBuf>,
    /// Print input INDEX of the campaign --seed (its recipe as a comment) and exit.
    #[arg(long, value_name = "INDEX")]
    emit: Option<u64>,
    /// Internal: be a worker (read inputs on stdin, answer on stdout).
    #[arg(long, hide = true)]
    worker: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gradc-fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode, HarnessError> {
    if args.worker {
        campaign::worker(args.memory_mib)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(file) = &args.one {
        let text = std::fs::read_to_string(file).map_err(campaign::io(file.display()))?;
        campaign::limit_memory(args.memory_mib)?;
        campaign::install_panic_hook();
        let v = campaign::run_caught(&text);
        println!(
            "{}: {} {} ({} ms)",
            file.display(),
            v.class.name(),
            v.place,
            v.millis
        );
        if !v.message.is_empty() {
            println!("  {}", v.message);
        }
        return Ok(exit(v.class.is_crash()));
    }
    if let Some(index) = args.emit {
        let corpus = Corpus::load(&[&args.graphs, &args.regressions])
            .map_err(|e| format!("loading the seeds: {e}"))?;
        let input = corpus.generate(args.seed, index);
        println!(
            "// input {index} of seed {}, from {}: {}",
            args.seed,
            input.base,
            input.mutations.join("; ").replace('\n', " ")
        );
        print!("{}", input.text);
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().map_err(campaign::io("the harness binary"))?;
    let limits = Limits {
        timeout: Duration::from_millis(args.timeout_ms),
        memory_mib: args.memory_mib,
    };
    let jobs = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if !args.replay.is_empty() {
        let report = campaign::replay(&exe, &args.replay, limits, jobs)?;
        print!("{}", report.summary());
        return Ok(exit(!report.crashes().is_empty()));
    }

    let regressions = if args.regressions.is_dir() {
        campaign::ron_files(&args.regressions)?
    } else {
        Vec::new()
    };
    println!("replaying {} regression files", regressions.len());
    let replayed = campaign::replay(&exe, &regressions, limits, jobs)?;
    print!("{}", replayed.summary());

    let corpus = Corpus::load(&[&args.graphs, &args.regressions])
        .map_err(|e| format!("loading the seeds: {e}"))?;
    println!(
        "\nfuzzing: seed {}, {} inputs from {} seed graphs, {} jobs, {} ms and {} MiB per input",
        args.seed,
        args.inputs,
        corpus.seeds.len(),
        jobs,
        args.timeout_ms,
        args.memory_mib
    );
    let cfg = Config {
        seed: args.seed,
        inputs: args.inputs,
        jobs,
        limits,
        progress: true,
    };
    let report = campaign::fuzz(&exe, &corpus, &cfg)?;
    let summary = report.summary();
    print!("{summary}");

    let dir = args.out.join("findings");
    std::fs::create_dir_all(&dir).map_err(campaign::io(dir.display()))?;
    let known = known_signatures(&regressions);
    let mut runner = Runner::new(&exe, limits);
    for f in report.findings.values() {
        let text = if args.minimize_runs > 0 {
            campaign::minimize(&mut runner, &f.first.text, &f.signature, args.minimize_runs)?
        } else {
            f.first.text.clone()
        };
        let file = dir.join(campaign::finding_file_name(f));
        write(&file, &campaign::finding_file_text(f, &text))?;
        println!("wrote {} ({} bytes)", file.display(), text.len());
        if args.save && f.first.verdict.class.is_crash() && !known.contains(&f.signature) {
            let file = args.regressions.join(campaign::finding_file_name(f));
            write(&file, &campaign::finding_file_text(f, &text))?;
            println!("  saved as regression {}", file.display());
        }
    }
    let summary_file = args.out.join("summary.txt");
    write(
        &summary_file,
        &format!(
            "regressions:\n{}\nfuzzing (seed {}):\n{summary}",
            replayed.summary(),
            args.seed
        ),
    )?;
    let crashed = !report.crashes().is_empty() || !replayed.crashes().is_empty();
    Ok(exit(crashed))
}

fn exit(crashed: bool) -> ExitCode {
    if crashed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(campaign::io(path.display()))
}

/// Signatures the regression files name in their first line.
fn known_signatures(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| {
            t.lines()
                .next()
                .and_then(|l| l.strip_prefix("// gradc-fuzz: "))
                .map(str::to_string)
        })
        .collect()
}
