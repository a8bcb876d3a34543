//! Predicting with a trained model: `gradc run --inference` on a checkpoint
//! that `gradc train` wrote, and `--checkpoint` as a directory or a file in
//! every command that takes one.

mod common;

use common::{gradc, repo_path, stderr};
use std::path::Path;

fn ok(args: &[&str]) -> String {
    let o = gradc(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes one MNIST-like row of 784 pixels to `path`.
fn image(path: &Path) {
    let x = ndarray::Array2::from_shape_fn((1, 784), |(_, j)| ((j * 7) % 256) as f32 / 255.0);
    ndarray_npy::write_npy(path, &x).expect("write");
}

#[test]
fn train_then_predict_from_the_checkpoint_directory_or_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = repo_path("graphs/two_layer_net.ron");
    let graph = graph.to_str().expect("utf-8");
    let ck_dir = dir.path().join("ck");
    let out = dir.path().join("out");
    let (ck, out) = (
        ck_dir.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    ok(&[
        "train",
        graph,
        "--steps",
        "30",
        "--quiet",
        "--checkpoint",
        ck,
        "--out",
        out,
    ]);
    let input = dir.path().join("x.npy");
    image(&input);
    let feed = format!("x={}", input.display());

    // The outputs (loss, accuracy) need the labels: the predicted class y is what the image determines.
    let by_dir = ok(&[
        "run",
        graph,
        "--inference",
        "--checkpoint",
        ck,
        "--feed",
        &feed,
    ]);
    let file = ck_dir.join("checkpoint.safetensors");
    let file = file.to_str().expect("utf-8");
    let by_file = ok(&[
        "run",
        graph,
        "--inference",
        "--checkpoint",
        file,
        "--feed",
        &feed,
    ]);
    assert_eq!(
        by_dir, by_file,
        "a directory stands for its checkpoint.safetensors"
    );
    let class: Option<u8> = by_dir
        .trim()
        .strip_prefix("y = [")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|k| k.parse().ok());
    assert!(class.is_some_and(|k| k < 10), "{by_dir}");
    // The trained weights, not the initial ones: the logits differ from initialization's.
    let logits = |ck: Option<&str>| {
        let mut a = vec![
            "run",
            graph,
            "--inference",
            "--feed",
            &feed,
            "--fetch",
            "logits",
        ];
        a.extend(ck.map(|c| ["--checkpoint", c]).into_iter().flatten());
        ok(&a)
    };
    let trained = logits(Some(ck));
    assert!(
        trained.starts_with("logits = [[") && trained.matches(',').count() == 9,
        "{trained}"
    );
    assert_ne!(logits(None), trained);
    // With the labels fed, the outputs are the loss and the accuracy.
    let labels = dir.path().join("t.npy");
    let mut t = ndarray::Array2::<f32>::zeros((1, 10));
    t[[0, 3]] = 1.0;
    ndarray_npy::write_npy(&labels, &t).expect("write");
    let both = format!("t={}", labels.display());
    let scored = ok(&[
        "run",
        graph,
        "--inference",
        "--checkpoint",
        ck,
        "--feed",
        &feed,
        "--feed",
        &both,
    ]);
    assert!(
        scored.starts_with("loss = ") && scored.contains("accuracy = "),
        "{scored}"
    );

    // eval takes the directory too, and train a .safetensors file.
    let eval = ok(&["eval", graph, "--checkpoint", ck]);
    assert!(eval.contains("accuracy"), "{eval}");
    let as_file = dir.path().join("one.safetensors");
    let as_file = as_file.to_str().expect("utf-8");
    ok(&[
        "train",
        graph,
        "--steps",
        "5",
        "--quiet",
        "--checkpoint",
        as_file,
        "--out",
        out,
    ]);
    assert!(Path::new(as_file).is_file());
    ok(&["eval", graph, "--checkpoint", as_file]);

    // --inference on a compiled program (it has no train section to prune).
    let program = dir.path().join("p.ron");
    let program = program.to_str().expect("utf-8");
    ok(&["compile", graph, "-o", program]);
    let o = gradc(&["run", program, "--inference", "--feed", &feed]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is a compiled program: --inference compiles"),
        "{}",
        stderr(&o)
    );
    // --inference on a graph without a train section, and nothing determined.
    let o = gradc(&["run", "graphs/apple.ron", "--inference"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--inference needs a graph with a train section"),
        "{}",
        stderr(&o)
    );
    let o = gradc(&["run", graph, "--inference", "--checkpoint", ck]);
    assert!(!o.status.success());
    assert!(
        stderr(&o)
            .contains("nothing in the inference program is determined by the feeds; feed x, t"),
        "{}",
        stderr(&o)
    );
}
