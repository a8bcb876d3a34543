//! Results do not depend on the thread count: the BN-MLP train step (matrix
//! products split over threads by rows or columns, elementwise ops, Fused
//! kernels and batch norm's passes split one part a thread) gives the same
//! bits on 1, 2, 3 and 16 threads, step after step, compiled as a plain graph (Moments and
//! BatchNormalization) and as `gradc train` and `gradc bench` compile it
//! (FusedBatchNorm and its gradient). Its own test binary, as the thread
//! count is process-wide.

mod common;

use common::repo_path;
use gradc::compiler::{Compiler, Source};
use gradc::runtime::{Session, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Losses and final variables of `steps` train steps of bn_mlp_512 at batch
/// 128, its batch norm fused before differentiation when `prefused`.
fn train(steps: usize, prefused: bool) -> (Vec<u32>, Vec<(String, Vec<u64>)>) {
    let path = repo_path("graphs/bn_mlp_512.ron");
    let programs = if prefused {
        let text = std::fs::read_to_string(&path).expect("read");
        let spec = gradc::compiler::schema::parse(&text).expect("parses");
        let p = Compiler::new(Source::file(&spec, &text, "bn_mlp_512.ron"))
            .compile_train()
            .expect("compiles");
        assert!(p
            .train
            .instrs
            .iter()
            .any(|i| i.op.name() == "FusedBatchNormGrad"));
        p
    } else {
        let graph = gradc::compiler::graph_from_file(&path).expect("graph builds");
        Compiler::new(graph).compile_train().expect("compiles")
    };
    let mut session = Session::new(programs.train).expect("valid");
    session.initialize(3).expect("initializes");
    let x = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[128, 784]), |i| {
        ((i[0] * 31 + i[1] * 7) % 256) as f32 / 256.0
    }));
    let t = Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[128, 10]), |i| {
        f32::from(u8::from(i[1] == i[0] % 10))
    }));
    let mut feeds = vec![
        (session.resolve_feed("x").expect("x"), &x),
        (session.resolve_feed("t").expect("t"), &t),
    ];
    let training = Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 1.0));
    if let Ok(flag) = session.resolve_feed("training") {
        feeds.push((flag, &training));
    }
    let target = session
        .resolve_target(&programs.train_op)
        .expect("train op");
    let loss = [session.resolve(&programs.loss).expect("loss")];
    let mut out = Vec::new();
    let losses = gradc::runtime::with_threads(|| {
        (0..steps)
            .map(|_| {
                session
                    .run_with_targets_into(&feeds, &loss, &[target], &mut out)
                    .expect("step runs");
                (out[0].first_f64().expect("a loss") as f32).to_bits()
            })
            .collect()
    });
    let variables = session
        .variables()
        .into_iter()
        .map(|(name, v)| {
            let bits = v
                .map(|t| t.to_f64_vec().into_iter().map(f64::to_bits).collect())
                .unwrap_or_default();
            (name.to_string(), bits)
        })
        .collect();
    (losses, variables)
}

/// One, two, three and sixteen threads (more than this machine may have:
/// the work is cut into as many parts, whichever threads run them).
#[test]
fn train_steps_give_the_same_bits_on_any_thread_count() {
    for prefused in [false, true] {
        gradc::runtime::set_threads(1);
        let one = train(4, prefused);
        for threads in [2, 3, 16] {
            gradc::runtime::set_threads(threads);
            let other = train(4, prefused);
            gradc::runtime::set_threads(1);
            assert_eq!(
                one.0, other.0,
                "losses ({threads} threads, prefused: {prefused})"
            );
            assert!(
                one.1.iter().any(|(_, v)| v.len() > 100_000),
                "the large weights are compared"
            );
            for ((name, a), (_, b)) in one.1.iter().zip(&other.1) {
                assert!(
                    a == b,
                    "variable {name} differs between 1 and {threads} threads (prefused: {prefused})"
                );
            }
        }
    }
}
