//! Shared test helpers: one way to build, run and check graphs from text.
#![allow(dead_code)]

use gradc::compiler::{self, Compiler, Graph, RunNames};
use gradc::gradcheck::{gradcheck, Check};
use gradc::runtime::{Session, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Builds a graph from RON text (file name "test.ron" in errors).
pub fn graph(text: &str) -> Graph {
    match compiler::graph_from_str(text, "test.ron") {
        Ok(g) => g,
        Err(e) => panic!("graph does not build: {e}"),
    }
}

/// The compile error of a graph that must not build.
pub fn compile_error(text: &str) -> gradc::compiler::CompileError {
    match compiler::graph_from_str(text, "test.ron") {
        Ok(_) => panic!("graph built but should not have"),
        Err(e) => e,
    }
}

/// Compiles and runs `g`, fetching the named outputs as f64 vectors.
pub fn run(g: &Graph, feeds: &HashMap<String, Tensor>, fetches: &[&str]) -> Vec<Vec<f64>> {
    let names = RunNames {
        fetches,
        feeds: &[],
    };
    let program = Compiler::new(g.clone())
        .run_names(names)
        .compile()
        .expect("fetches exist, and it compiles")
        .program;
    let mut s = Session::new(program).expect("valid program");
    let refs: Vec<_> = fetches
        .iter()
        .map(|f| s.resolve(f).expect("fetch exists"))
        .collect();
    s.run(feeds, &refs)
        .expect("runs")
        .iter()
        .map(Tensor::to_f64_vec)
        .collect()
}

/// Runs the finite-difference check on every gradient `g` requests; panics with
/// the failing rows.
pub fn assert_gradcheck(
    what: &str,
    g: &Graph,
    feeds: &HashMap<String, Tensor>,
    tolerance: Option<f64>,
) -> Vec<Check> {
    let checks = gradcheck(g, feeds, tolerance)
        .unwrap_or_else(|e| panic!("{what}: gradcheck failed to run: {e}"));
    assert!(!checks.is_empty(), "{what}: no gradients requested");
    let bad: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    assert!(
        bad.is_empty(),
        "{what}: gradients disagree with finite differences: {bad:#?}"
    );
    checks
}

pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: lengths differ: {got:?} vs {want:?}"
    );
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: got {a}, want {b} (all: {got:?})"
        );
    }
}

/// Random values for every placeholder, symbolic dimensions `batch`.
pub fn random_feeds(
    p: &gradc::runtime::Program,
    batch: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> HashMap<String, Tensor> {
    p.instrs
        .iter()
        .filter(|i| matches!(i.op, gradc::runtime::Op::Placeholder { .. }))
        .map(|i| {
            let t = &i.outputs[0];
            let shape: Vec<usize> = t
                .shape
                .0
                .iter()
                .map(|d| d.known().unwrap_or(batch))
                .collect();
            let n = shape.iter().product();
            let data = (0..n)
                .map(|_| rand::Rng::random_range(rng, -1.0..1.0))
                .collect();
            (
                i.name.clone(),
                Tensor::from_f64(t.dtype, &shape, data).expect("fits"),
            )
        })
        .collect()
}

/// Runs the `gradc` binary in the repository root.
pub fn gradc(args: &[&str]) -> std::process::Output {
    gradc_with_env(args, &[])
}

/// [`gradc`] with environment variables set (the rest inherited).
pub fn gradc_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gradc"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo_path(""))
        .output()
        .expect("gradc runs")
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
