//! Steady-state runs allocate nothing: after warm-up, a train step (and an
//! inference batch) of TwoLayerNet through `Session::run_with_targets_into`
//! makes no allocation at all, matrix products included (gradc's GEMM packs
//! into per-thread buffers that stop growing after the first products).
//!
//! Allocations are counted by a global allocator, only on the test's own
//! thread and only inside `count`, where matrix products run on one thread,
//! the default; and on every thread inside `count_all`, for W2 as `gradc
//! bench` runs it on two threads. The tests take turns (`SERIAL`), so that
//! one's threads and allocations never mix with another's.

mod common;

use common::repo_path;
use gradc::compiler::{Compiler, Source, TrainPrograms};
use gradc::runtime::{FeedId, Session, Tensor, ValueRef};
use ndarray::{ArrayD, IxDyn};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Held by each test for its whole run.
static SERIAL: Mutex<()> = Mutex::new(());

/// Whether every thread's allocations are being counted, and their count.
static COUNTING_ALL: AtomicBool = AtomicBool::new(false);
static ALL_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

struct Counting;

thread_local! {
    /// Whether this thread is counting, and its count (per thread, so that
    /// tests running side by side do not count each other's allocations).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note(_layout: Layout) {
    if COUNTING_ALL.load(Ordering::Relaxed) {
        ALL_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting only touches const-initialized thread locals, which do not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(layout);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn count(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made by `f` on every thread (the caller holds `SERIAL`).
fn count_all(f: impl FnOnce()) -> usize {
    ALL_ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING_ALL.store(true, Ordering::SeqCst);
    f();
    COUNTING_ALL.store(false, Ordering::SeqCst);
    ALL_ALLOCATIONS.load(Ordering::SeqCst)
}

/// Puts the thread count back to 1 when dropped, even if the test panics.
struct OneThreadAfter;

impl Drop for OneThreadAfter {
    fn drop(&mut self) {
        gradc::runtime::set_threads(1);
    }
}

/// Takes this test's turn, even after another test panicked holding it.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A batch of 100 examples: pixels in [0, 1) and one-hot labels.
fn batch(rows: usize) -> (Tensor, Tensor) {
    let x = ArrayD::from_shape_fn(IxDyn(&[rows, 784]), |i| {
        ((i[0] * 31 + i[1] * 7) % 256) as f32 / 256.0
    });
    let t = ArrayD::from_shape_fn(IxDyn(&[rows, 10]), |i| {
        f32::from(u8::from(i[1] == i[0] % 10))
    });
    (Tensor::F32(x), Tensor::F32(t))
}

/// A session on the train program, initialized, with the feeds of `x` and
/// `t`, the train op as target and the loss as fetch.
fn train_session<'a>(
    programs: &TrainPrograms,
    x: &'a Tensor,
    t: &'a Tensor,
) -> (Session, [(FeedId, &'a Tensor); 2], usize, [ValueRef; 1]) {
    let mut train = Session::new(programs.train.clone()).expect("valid");
    train.initialize(1).expect("initializes");
    let feeds = [
        (train.resolve_feed("x").expect("x"), x),
        (train.resolve_feed("t").expect("t"), t),
    ];
    let target = train.resolve_target(&programs.train_op).expect("train op");
    let loss = [train.resolve(&programs.loss).expect("loss")];
    (train, feeds, target, loss)
}

#[test]
fn steady_state_steps_and_inference_batches_allocate_nothing() {
    let _turn = serial();
    assert_eq!(
        gradc::runtime::threads(),
        1,
        "products on the test's thread"
    );

    let graph = gradc::compiler::graph_from_file(&repo_path("graphs/two_layer_net.ron"))
        .expect("graph builds");
    let programs = Compiler::new(graph).compile_train().expect("compiles");
    let (x, t) = batch(100);
    const WARM_UP: usize = 3;
    const STEPS: usize = 20;

    // Training: the train op as target, the loss fetched into a reused tensor.
    let (mut train, feeds, target, loss) = train_session(&programs, &x, &t);
    let mut out = Vec::new();
    let mut losses = Vec::with_capacity(WARM_UP + STEPS);
    let mut step = |out: &mut Vec<Tensor>, losses: &mut Vec<f64>| {
        train
            .run_with_targets_into(&feeds, &loss, &[target], out)
            .expect("step runs");
        losses.push(out[0].first_f64().expect("a loss"));
    };
    for _ in 0..WARM_UP {
        step(&mut out, &mut losses);
    }
    let allocations = count(|| {
        for _ in 0..STEPS {
            step(&mut out, &mut losses);
        }
    });
    println!("{STEPS} train steps: {allocations} allocation(s)");
    assert_eq!(allocations, 0, "train steps allocate nothing");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "the steps train: {losses:?}"
    );

    // Inference over a batch: loss and accuracy fetched into reused tensors.
    let mut eval = Session::new(programs.eval.clone()).expect("valid");
    for (name, value) in train.variables() {
        if let Some(v) = value {
            if eval.variable_types().iter().any(|(n, _)| n == name) {
                eval.set_variable(name, v.clone()).expect("same variable");
            }
        }
    }
    let feeds = [
        (eval.resolve_feed("x").expect("x"), &x),
        (eval.resolve_feed("t").expect("t"), &t),
    ];
    let fetches: Vec<_> = std::iter::once(&programs.loss)
        .chain(&programs.metrics)
        .map(|name| eval.resolve(name).expect("fetch"))
        .collect();
    let mut run = |out: &mut Vec<Tensor>| {
        eval.run_with_targets_into(&feeds, &fetches, &[], out)
            .expect("inference runs");
    };
    for _ in 0..WARM_UP {
        run(&mut out);
    }
    let first = out.clone();
    let allocations = count(|| {
        for _ in 0..STEPS {
            run(&mut out);
        }
    });
    println!("{STEPS} inference batches: {allocations} allocation(s)");
    assert_eq!(allocations, 0, "inference allocates nothing");
    assert_eq!(out, first, "inference is deterministic");
    assert_eq!(out.len(), 2);
}

/// Allocations on this thread over 10 train steps after 3 of warm-up.
fn steady_state_allocations(
    train: &mut Session,
    feeds: &[(FeedId, &Tensor)],
    target: usize,
    loss: &[ValueRef],
) -> usize {
    let mut out = Vec::new();
    let mut step = |out: &mut Vec<Tensor>| {
        train
            .run_with_targets_into(feeds, loss, &[target], out)
            .expect("step runs");
    };
    for _ in 0..3 {
        step(&mut out);
    }
    count(|| {
        for _ in 0..10 {
            step(&mut out);
        }
    })
}

#[test]
fn steady_state_adam_train_steps_allocate_nothing() {
    let _turn = serial();
    // Adam's decomposition: slots, the beta powers, their updates.
    let graph = gradc::compiler::graph_from_file(&repo_path("graphs/two_layer_net_adam.ron"))
        .expect("graph builds");
    let programs = Compiler::new(graph).compile_train().expect("compiles");
    let (x, t) = batch(100);
    let (mut train, feeds, target, loss) = train_session(&programs, &x, &t);
    let allocations = steady_state_allocations(&mut train, &feeds, target, &loss);
    assert_eq!(allocations, 0, "Adam train steps allocate nothing");
}

#[test]
fn steady_state_batch_norm_train_steps_allocate_nothing() {
    let _turn = serial();
    // bn_mlp compiled as a plain graph: two BatchNorm layers in training
    // mode (Moments and BatchNormalization, unfused, as the flag is fed),
    // their moving averages.
    let graph =
        gradc::compiler::graph_from_file(&repo_path("graphs/bn_mlp.ron")).expect("graph builds");
    let programs = Compiler::new(graph).compile_train().expect("compiles");
    let (x, t) = batch(100);
    let training = Tensor::F32(ArrayD::from_elem(IxDyn(&[]), 1.0));
    let mut train = Session::new(programs.train).expect("valid");
    train.initialize(1).expect("initializes");
    let feeds = [
        (train.resolve_feed("x").expect("x"), &x),
        (train.resolve_feed("t").expect("t"), &t),
        (train.resolve_feed("training").expect("flag"), &training),
    ];
    let target = train.resolve_target(&programs.train_op).expect("train op");
    let loss = [train.resolve(&programs.loss).expect("loss")];
    let allocations = steady_state_allocations(&mut train, &feeds, target, &loss);
    assert_eq!(allocations, 0, "batch-norm train steps allocate nothing");
}

/// The train programs of the example `file` of graphs/, as `gradc train`
/// and `gradc bench` compile them.
fn example_programs(file: &str) -> TrainPrograms {
    let text = std::fs::read_to_string(repo_path(&format!("graphs/{file}"))).expect("read");
    let spec = gradc::compiler::schema::parse(&text).expect("parses");
    Compiler::new(Source::file(&spec, &text, file))
        .compile_train()
        .expect("compiles")
}

/// Allocations on any thread during `steps` train steps on two threads
/// (batch of `rows`), after three warm-up steps that grow every thread's
/// scratch buffers.
fn two_thread_step_allocations(programs: &TrainPrograms, rows: usize, steps: usize) -> usize {
    let (x, t) = batch(rows);
    let (mut train, feeds, target, loss) = train_session(programs, &x, &t);
    let mut out = Vec::new();
    gradc::runtime::set_threads(2);
    gradc::runtime::with_threads(|| {
        let mut step = || {
            train
                .run_with_targets_into(&feeds, &loss, &[target], &mut out)
                .expect("step runs");
        };
        for _ in 0..3 {
            step();
        }
        count_all(|| {
            for _ in 0..steps {
                step();
            }
        })
    })
}

/// W2 as `gradc bench` runs it: bn_mlp_512.ron compiled by
/// `Compiler::compile_train` (batch norm fused before differentiation into
/// FusedBatchNorm and its gradient, elementwise fusion, ApplyMomentum),
/// batch 128, matrix products, batch norm and elementwise ops split over two
/// threads inside `with_threads`: no allocation on any thread.
#[test]
fn w2_train_steps_on_two_threads_allocate_nothing() {
    let _turn = serial();
    let _restore = OneThreadAfter;
    let programs = example_programs("bn_mlp_512.ron");
    let count_op = |name: &str| {
        programs
            .train
            .instrs
            .iter()
            .filter(|i| i.op.name() == name)
            .count()
    };
    assert_eq!(count_op("FusedBatchNorm"), 2, "the program W2 runs");
    assert!(count_op("Fused") > 0, "with elementwise fusion");
    assert_eq!(
        two_thread_step_allocations(&programs, 128, 10),
        0,
        "W2 train steps on two threads allocate nothing"
    );
}

/// W3 as `gradc bench` runs it: cnn.ron (two convolutions fused with their
/// bias and ReLU, max pooling, their gradients as im2col products in chunks
/// shared between threads), batch 32, on two threads inside `with_threads`:
/// no allocation on any thread once every thread's scratch buffers have grown.
#[test]
fn w3_conv_train_steps_on_two_threads_allocate_nothing() {
    let _turn = serial();
    let _restore = OneThreadAfter;
    let programs = example_programs("cnn.ron");
    for op in [
        "FusedConv2D",
        "Conv2DBackpropInput",
        "Conv2DBackpropFilter",
        "MaxPoolGrad",
    ] {
        assert!(
            programs.train.instrs.iter().any(|i| i.op.name() == op),
            "the train step has {op}"
        );
    }
    assert_eq!(
        two_thread_step_allocations(&programs, 32, 5),
        0,
        "W3 train steps on two threads allocate nothing"
    );
}
