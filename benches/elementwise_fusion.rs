//! Elementwise fusion against the ops it replaces: `y = (a − b)·c`, with `c`
//! one value per row (the shape of SoftmaxCrossEntropy's gradient), run by
//! the session compiled with the `elementwise` pass (one `Fused` node) and
//! without it (Sub, then Mul), on one thread, at sizes from in-cache to
//! memory-bound:
//!   cargo bench --bench elementwise_fusion

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gradc::compiler::{self, passes::Pipeline, Compiler};
use gradc::runtime::{Session, Tensor};
use ndarray::ArrayD;

fn graph(rows: usize, cols: usize) -> String {
    format!(
        "Graph(name: \"fusion\", dtype: F32, nodes: [
            (name: \"a\", op: Placeholder(shape: [{rows}, {cols}])),
            (name: \"b\", op: Placeholder(shape: [{rows}, {cols}])),
            (name: \"c\", op: Placeholder(shape: [{rows}, 1])),
            (name: \"d\", op: Sub, inputs: [\"a\", \"b\"]),
            (name: \"y\", op: Mul, inputs: [\"d\", \"c\"]),
        ], outputs: [\"y\"])"
    )
}

fn session(text: &str, pipeline: Pipeline) -> Session {
    let g = compiler::graph_from_str(text, "fusion.ron").expect("builds");
    let p = Compiler::new(g)
        .passes(pipeline)
        .compile()
        .expect("compiles")
        .program;
    Session::new(p).expect("valid")
}

fn bench(c: &mut Criterion) {
    gradc::runtime::set_threads(1);
    let mut group = c.benchmark_group("elementwise_fusion");
    for (rows, cols) in [(100, 10), (128, 512), (4000, 1000)] {
        let text = graph(rows, cols);
        let value = |shape: &[usize], v: f32| Tensor::F32(ArrayD::from_elem(shape, v));
        let feeds_of = |s: &Session| {
            let feed = |name: &str| s.resolve_feed(name).expect("placeholder");
            [feed("a"), feed("b"), feed("c")]
        };
        let values = [
            value(&[rows, cols], 1.5),
            value(&[rows, cols], 0.5),
            value(&[rows, 1], 0.25),
        ];
        group.throughput(Throughput::Elements((rows * cols) as u64));
        for (label, pipeline) in [
            ("fused", Pipeline::named(&["elementwise"]).expect("a pass")),
            ("unfused", Pipeline::none()),
        ] {
            let mut s = session(&text, pipeline);
            let ids = feeds_of(&s);
            let feeds: Vec<_> = ids.into_iter().zip(&values).collect();
            let y = s.resolve("y").expect("output");
            let mut out = Vec::new();
            group.bench_function(BenchmarkId::new(label, format!("{rows}x{cols}")), |bch| {
                bch.iter(|| {
                    s.run_with_targets_into(&feeds, &[y], &[], &mut out)
                        .expect("runs")
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
