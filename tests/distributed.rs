//! A train step compiled for several ranks (what `mpirun -np N gradc train`
//! runs): one `AllReduceMean` averages every gradient before the updates, in
//! one buffer. The run itself is tests/mpi.rs (the `mpi` feature).

mod common;

use common::repo_path;
use gradc::compiler::{self, Compiler, Source};
use gradc::runtime::{DType, Session, Tensor};
use std::collections::HashMap;

fn compiled_for(ranks: usize) -> compiler::TrainPrograms {
    let path = repo_path("graphs/two_layer_net.ron");
    let text = std::fs::read_to_string(&path).expect("graph");
    let mut spec = compiler::schema::parse(&text).expect("parses");
    if let Some(t) = spec.train.as_mut() {
        t.ranks = Some(ranks);
    }
    let file = path.display().to_string();
    Compiler::new(Source::file(&spec, &text, &file))
        .compile_train()
        .expect("compiles")
}

#[test]
fn the_train_step_for_two_ranks_averages_every_gradient_in_one_exchange() {
    let p = compiled_for(2);
    let reduces: Vec<_> = p
        .train
        .instrs
        .iter()
        .filter(|i| matches!(i.op, gradc::runtime::Op::AllReduceMean { .. }))
        .collect();
    assert_eq!(reduces.len(), 1, "one exchange a step");
    assert_eq!(reduces[0].outputs.len(), 4, "W1, b1, W2, b2 in one buffer");
    insta::assert_snapshot!(compiler::print::program_text(&p.train));
    // One rank: no exchange at all, the program as a plain compile makes it.
    let one = compiled_for(1);
    assert!(one
        .train
        .instrs
        .iter()
        .all(|i| !matches!(i.op, gradc::runtime::Op::AllReduceMean { .. })));
    assert!(p.eval == one.eval, "inference does not exchange");
}

#[test]
fn a_step_compiled_for_two_ranks_run_alone_says_how_to_start_it() {
    let p = compiled_for(2);
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(1).expect("init");
    let target = s.resolve_target(&p.train_op).expect("train op");
    let feeds = HashMap::from([
        (
            "x".to_string(),
            Tensor::zeros(DType::F32, &[4, 784]).expect("x"),
        ),
        (
            "t".to_string(),
            Tensor::zeros(DType::F32, &[4, 10]).expect("t"),
        ),
    ]);
    let e = s
        .run_with_targets(&feeds, &[], &[target])
        .expect_err("no second rank");
    assert!(
        e.to_string()
            .contains("compiled for 2 ranks and runs on 1: start it with `mpirun -np 2`"),
        "{e}"
    );
}

#[test]
fn grad_and_dot_show_the_exchange_of_a_train_step_for_n_ranks() {
    let grad = common::gradc(&["grad", "graphs/two_layer_net.ron", "--ranks", "2"]);
    assert!(grad.status.success(), "{}", common::stderr(&grad));
    let text = common::stdout(&grad);
    assert!(
        text.contains("AllReduce/AllReduceMean = AllReduceMean{ranks: 2}("),
        "{text}"
    );
    assert!(text.contains(
        "ApplyGradientDescent(W1, GradientDescent/learning_rate, AllReduce/AllReduceMean)"
    ));
    let plain = common::stdout(&common::gradc(&["grad", "graphs/two_layer_net.ron"]));
    assert!(
        !plain.contains("AllReduce"),
        "one process exchanges nothing"
    );
    let dot = common::gradc(&["dot", "graphs/two_layer_net.ron", "--ranks", "2"]);
    assert!(common::stdout(&dot).contains("AllReduceMean"));
    for (args, message) in [
        (
            vec!["grad", "graphs/apple.ron", "--ranks", "2"],
            "--ranks needs a graph with a train section",
        ),
        (
            vec!["grad", "graphs/two_layer_net.ron", "--ranks", "0"],
            "--ranks must be at least 1",
        ),
    ] {
        let o = common::gradc(&args);
        assert!(!o.status.success());
        assert!(
            common::stderr(&o).contains(message),
            "{}",
            common::stderr(&o)
        );
    }
}

/// A gradc built without the `mpi` feature, started by mpirun with several
/// processes, stops instead of having each process train alone and write the
/// same files.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    let o = common::gradc_with_env(
        &[
            "train",
            "graphs/two_layer_net.ron",
            "--steps",
            "1",
            "--quiet",
        ],
        &[("OMPI_COMM_WORLD_SIZE", "2")],
    );
    assert!(!o.status.success());
    assert!(
        common::stderr(&o)
            .contains("built without the `mpi` feature: build it with --features mpi"),
        "{}",
        common::stderr(&o)
    );
}
