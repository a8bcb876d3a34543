//! TwoLayerNet (784-50-10, batch 100, SGD) on MNIST: one train step, and
//! inference over the 10,000 test images. Threads for matrix products come
//! from GRADC_THREADS (default 1):
//!   GRADC_THREADS=2 cargo bench --bench two_layer_net
//! (criterion's loop runs outside `gradc_runtime::with_threads`, so with 2
//! threads each product wakes the other thread; `gradc bench` keeps it spinning.)

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gradc::compiler::{self, Compiler};
use gradc::io::dataset::{Batches, Mnist};
use gradc::runtime::Session;
use std::collections::HashMap;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let threads = std::env::var("GRADC_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    gradc::runtime::set_threads(threads);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let g =
        compiler::graph_from_file(&root.join("graphs/two_layer_net.ron")).expect("example builds");
    let p = Compiler::new(g).compile_train().expect("compiles");
    let (train, test) = Mnist::load(root.join("data/mnist"))
        .and_then(Mnist::into_datasets)
        .expect("MNIST");
    let mut s = Session::new(p.train).expect("valid");
    s.initialize(1).expect("init");
    let target = s.resolve_target(&p.train_op).expect("train op");
    let loss = s.resolve(&p.loss).expect("loss");
    let mut batches = Batches::shuffled_full(train.len(), 100, 1).expect("batches");
    let (mut x, mut t) = train.batch_buffers(100);

    let mut group = c.benchmark_group("two_layer_net");
    group.throughput(Throughput::Elements(100));
    group.bench_function("train_step_batch100", |b| {
        b.iter(|| {
            train
                .gather_into(batches.next_batch(), &mut x, &mut t)
                .expect("gather");
            let feeds = HashMap::from([("x".to_string(), x.clone()), ("t".to_string(), t.clone())]);
            s.run_with_targets(&feeds, &[loss], &[target])
                .expect("step")
        })
    });

    let mut e = Session::new(p.eval).expect("valid");
    for (name, v) in s.variables() {
        e.set_variable(name, v.expect("initialized").clone())
            .expect("same variables");
    }
    let acc = e.resolve("accuracy").expect("accuracy");
    group.throughput(Throughput::Elements(test.len() as u64));
    group.sample_size(20);
    group.bench_function("inference_test_set_batch1000", |b| {
        b.iter(|| {
            let (mut x, mut t) = test.batch_buffers(1000);
            for rows in test.chunks(1000).expect("chunks") {
                test.rows_into(rows, &mut x, &mut t).expect("rows");
                let feeds =
                    HashMap::from([("x".to_string(), x.clone()), ("t".to_string(), t.clone())]);
                e.run(&feeds, &[acc]).expect("inference");
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
