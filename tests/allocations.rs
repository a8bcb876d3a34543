//! Steady-state runs allocate nothing of their own: after warm-up, a train
//! step (and an inference batch) of TwoLayerNet through
//! `Session::run_with_targets_into` makes no allocation except the packing
//! buffer that ndarray's matrixmultiply backend allocates inside every matrix
//! product (one per call, which gradc cannot supply). The test measures how
//! many allocations one bare `general_mat_mul` makes and requires exactly that
//! many per MatMul, so it asserts zero outright if the backend ever stops
//! allocating.
//!
//! Allocations are counted by a global allocator, only on the test's own
//! thread and only inside `count`. Matrix products run on one thread
//! (`MATMUL_NUM_THREADS=1`, set before the first product): with more,
//! matrixmultiply's worker threads do part of the work and are not counted.

mod common;

use common::repo_path;
use gradc::runtime::{Op, Session, Tensor};
use ndarray::{Array2, ArrayD, IxDyn};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// The smallest alignment among the counted allocations.
static MIN_ALIGN: AtomicUsize = AtomicUsize::new(usize::MAX);

fn note(layout: Layout) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        MIN_ALIGN.fetch_min(layout.align(), Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting only touches atomics and a const-initialized thread local, which
// do not allocate.
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

/// Allocations (and the smallest alignment among them) made by `f` on this thread.
fn count(f: impl FnOnce()) -> (usize, usize) {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    MIN_ALIGN.store(usize::MAX, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        MIN_ALIGN.load(Ordering::Relaxed),
    )
}

/// How many allocations one matrix product makes inside ndarray's backend, and their alignment.
fn per_matrix_product() -> (usize, usize) {
    let a = Array2::<f32>::ones((100, 784));
    let b = Array2::<f32>::ones((784, 50));
    let mut c = Array2::<f32>::zeros((100, 50));
    let mut product = || ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c);
    product(); // the first product also sets up the backend's thread pool
    count(product)
}

/// A batch of 100 examples: pixels in [0, 1) and one-hot labels.
fn batch() -> (Tensor, Tensor) {
    let x = ArrayD::from_shape_fn(IxDyn(&[100, 784]), |i| {
        ((i[0] * 31 + i[1] * 7) % 256) as f32 / 256.0
    });
    let t = ArrayD::from_shape_fn(IxDyn(&[100, 10]), |i| {
        f32::from(u8::from(i[1] == i[0] % 10))
    });
    (Tensor::F32(x), Tensor::F32(t))
}

/// Matrix products in the program: MatMul nodes and the optimizer's fused Dense nodes.
fn matmuls(session: &Session) -> usize {
    let instrs = &session.program().instrs;
    instrs
        .iter()
        .filter(|i| matches!(i.op, Op::MatMul { .. } | Op::Dense { .. }))
        .count()
}

#[test]
fn steady_state_steps_allocate_nothing_but_the_matrix_product_backend_s_packing_buffers() {
    // Before any matrix product: matrixmultiply reads this once.
    std::env::set_var("MATMUL_NUM_THREADS", "1");
    let (per_product, product_align) = per_matrix_product();
    println!("one matrix product: {per_product} allocation(s), alignment {product_align}");

    let graph = gradc::compiler::graph_from_file(&repo_path("graphs/two_layer_net.ron"))
        .expect("graph builds");
    let programs = gradc::compiler::compile_training(graph).expect("compiles");
    let (x, t) = batch();
    const WARM_UP: usize = 3;
    const STEPS: usize = 20;

    // Training: the train op as target, the loss fetched into a reused tensor.
    let mut train = Session::new(programs.train.clone()).expect("valid");
    train.initialize(1).expect("initializes");
    let feeds = [
        (train.resolve_feed("x").expect("x"), &x),
        (train.resolve_feed("t").expect("t"), &t),
    ];
    let target = train.resolve_target(&programs.train_op).expect("train op");
    let loss = [train.resolve(&programs.loss).expect("loss")];
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
    let (allocations, align) = count(|| {
        for _ in 0..STEPS {
            step(&mut out, &mut losses);
        }
    });
    let expected = STEPS * matmuls(&train) * per_product;
    println!("{STEPS} train steps: {allocations} allocation(s), {expected} expected from matrix products");
    assert_eq!(
        allocations, expected,
        "train steps allocate only inside matrix products"
    );
    assert!(
        allocations == 0 || align == product_align,
        "alignment {align}"
    );
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
    let (allocations, align) = count(|| {
        for _ in 0..STEPS {
            run(&mut out);
        }
    });
    let expected = STEPS * matmuls(&eval) * per_product;
    println!("{STEPS} inference batches: {allocations} allocation(s), {expected} expected from matrix products");
    assert_eq!(
        allocations, expected,
        "inference allocates only inside matrix products"
    );
    assert!(
        allocations == 0 || align == product_align,
        "alignment {align}"
    );
    assert_eq!(out, first, "inference is deterministic");
    assert_eq!(out.len(), 2);
}
