//! One snapshot of the canonical gradient-graph text per file in graphs/.
//! A new example gets a snapshot the first time the tests run (and fails CI
//! until that snapshot is committed).

use gradc::compiler::{self, passes::Pipeline, Compiler, Source};

#[test]
fn gradient_graphs() {
    insta::glob!("../graphs", "*.ron", |path| {
        let g = compiler::graph_from_file(path).unwrap_or_else(|e| panic!("{e}"));
        let text = compiler::print::graph_text(&g).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_snapshot!(text);
    });
}

#[test]
fn printing_is_deterministic() {
    insta::glob!("../graphs", "*.ron", |path| {
        let a = compiler::print::graph_text(&compiler::graph_from_file(path).expect("builds"))
            .expect("prints");
        let b = compiler::print::graph_text(&compiler::graph_from_file(path).expect("builds"))
            .expect("prints");
        assert_eq!(a, b);
    });
}

/// The BatchNorm layer expanded, with its gradient and update graph, for rank 2
/// and 4, NHWC and NCHW, fused and not; and the inference graph of each.
#[test]
fn batch_norm_layer_expansions() {
    for (rank, format, fused) in [
        (2, "NHWC", false),
        (2, "NHWC", true),
        (4, "NHWC", false),
        (4, "NHWC", true),
        (4, "NCHW", false),
        (4, "NCHW", true),
    ] {
        let shape = if rank == 2 {
            r#"["batch", 3]"#
        } else if format == "NHWC" {
            r#"["batch", 2, 2, 3]"#
        } else {
            r#"["batch", 3, 2, 2]"#
        };
        let text = format!(
            r#"Graph(name: "bn", dtype: F32, nodes: [
                (name: "x", op: Placeholder(shape: {shape})),
                (name: "training", op: Placeholder(shape: [])),
                (name: "bn", op: BatchNorm(scale: true, fused: {fused}, data_format: {format}, is_training: "training"), inputs: ["x"]),
                (name: "sq", op: Square, inputs: ["bn"]),
                (name: "loss", op: Mean(), inputs: ["sq"]),
            ], train: (loss: "loss", optimizer: GradientDescent(learning_rate: 0.1), training_flag: "training"))"#
        );
        let spec = compiler::schema::parse(&text).expect("parses");
        let source = || Source::file(&spec, &text, "bn.ron");
        let train = Compiler::new(source())
            .training_flag(1.0)
            .passes(Pipeline::none())
            .graph()
            .expect("builds");
        let inference = Compiler::new(source())
            .inference()
            .passes(Pipeline::none())
            .graph()
            .expect("builds");
        let out = format!(
            "{}\n# ---- inference graph ----\n{}",
            compiler::print::graph_text(&train).expect("prints"),
            compiler::print::graph_text(&inference).expect("prints")
        );
        let fused_name = if fused { "fused" } else { "unfused" };
        insta::assert_snapshot!(format!("batch_norm_rank{rank}_{format}_{fused_name}"), out);
    }
}

#[test]
fn optimized_graphs() {
    // What `gradc grad FILE --optimized` prints: the default pipeline,
    // composites fused before differentiation included.
    insta::glob!("../graphs", "*.ron", |path| {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let spec = compiler::schema::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let file = path.display().to_string();
        let out = Compiler::new(Source::file(&spec, &text, &file))
            .passes(Pipeline::default_passes().verify_always())
            .keep_graph()
            .compile()
            .unwrap_or_else(|e| panic!("{e}"));
        let (g, reports) = (out.graph.expect("kept"), out.reports);
        let mut text = compiler::print::graph_text(&g).unwrap_or_else(|e| panic!("{e}"));
        text.push_str("# passes\n");
        let prefused: Vec<String> = g
            .prefused
            .iter()
            .map(|(p, n)| format!("{p} x{n}"))
            .collect();
        text.push_str(&format!("prefuse: {}\n", prefused.join(", ")));
        for r in reports {
            let fired: Vec<String> = r
                .fired
                .iter()
                .map(|(rule, n)| format!("{rule} x{n}"))
                .collect();
            text.push_str(&format!("{}: {}\n", r.name, fired.join(", ")));
        }
        insta::assert_snapshot!(text);
    });
}

/// The programs `gradc train` runs for every example with a train section,
/// as compiled: the train step (training flag 1, composites fused before
/// differentiation: FusedBatchNorm, Dense and its backward
/// ActivationBiasGrad, Fused kernels) and the inference program (flag 0,
/// batch norm folded into the weights).
#[test]
fn train_and_inference_programs() {
    insta::glob!("../graphs", "*.ron", |path| {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let spec = compiler::schema::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        if spec.train.is_none() {
            return;
        }
        let file = path.display().to_string();
        let p = Compiler::new(Source::file(&spec, &text, &file))
            .compile_train()
            .unwrap_or_else(|e| panic!("{e}"));
        let out = format!(
            "# train op: {}\n{}\n# ---- inference program ----\n{}",
            p.train_op,
            compiler::print::program_text(&p.train),
            compiler::print::program_text(&p.eval)
        );
        insta::assert_snapshot!(out);
    });
}
