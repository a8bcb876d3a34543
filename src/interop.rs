//! `gradc export` and `gradc import`: graph files and ONNX models.

use crate::compiler::{self, Compiler, RunNames, Source};
use crate::onnx::import::{Loss, TrainOptions};
use crate::onnx::{ExportOptions, ImportOptions};
use crate::runtime::Session;
use crate::{train, Error};
use prost::Message;
use std::path::{Path, PathBuf};

/// What `export_graph` wrote.
pub struct ExportSummary {
    pub outputs: Vec<String>,
    pub inputs: Vec<String>,
    pub nodes: usize,
    pub initializers: usize,
    pub bytes: usize,
}

/// Compiles `file`'s inference program (with a train section) or its
/// forward program, with its variables from `checkpoint` or their
/// initializers (seeded by `seed`), and writes it to `onnx` atomically.
/// `outputs` picks what the model outputs; the graph's outputs by default.
pub fn export_graph(
    file: &Path,
    onnx: &Path,
    checkpoint: Option<&Path>,
    seed: u64,
    outputs: &[String],
) -> Result<ExportSummary, Error> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| Error::Io(format!("{name}: {e}")))?;
    if crate::runtime::Program::is_program_text(&text) {
        return Err(Error::Usage(format!(
            "{name} is a compiled program; gradc export takes the graph file it was compiled from"
        )));
    }
    let spec = compiler::schema::parse_file(&text, &name)?;
    let fetches: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let names = RunNames {
        fetches: &fetches,
        feeds: &[],
    };
    let c = Compiler::new(Source::file(&spec, &text, &name)).run_names(names);
    let program = if spec.train.is_some() {
        c.inference().compile()?.program
    } else {
        c.compile()?.program
    };
    // Without a train section the program also offers the requested
    // gradients; the model is the forward graph: its outputs only.
    let gradients: Vec<String> = spec
        .gradients
        .iter()
        .flat_map(|g| {
            g.wrt
                .iter()
                .map(|w| compiler::schema::gradient_name(&g.of, w))
        })
        .collect();
    let outputs: Vec<String> = if outputs.is_empty() {
        program
            .outputs
            .iter()
            .map(|o| o.label.clone())
            .filter(|l| !gradients.contains(l))
            .collect()
    } else {
        outputs.to_vec()
    };
    let mut session = Session::new(program).map_err(Error::run("loading the program"))?;
    session
        .initialize(seed)
        .map_err(Error::run("initialization"))?;
    if let Some(path) = checkpoint {
        train::restore(&mut session, &train::checkpoint_file(path))?;
    }
    let model = crate::onnx::export(
        &mut session,
        &ExportOptions {
            outputs: outputs.clone(),
        },
    )
    .map_err(|source| Error::Export {
        file: name.clone(),
        source: Box::new(source),
    })?;
    let bytes = model.encode_to_vec();
    crate::runtime::io::write_atomic(onnx, &bytes)
        .map_err(|e| Error::Io(format!("{}: {e}", onnx.display())))?;
    let graph = model.graph.unwrap_or_default();
    Ok(ExportSummary {
        outputs,
        inputs: graph.input.iter().map(|i| i.name.clone()).collect(),
        nodes: graph.node.len(),
        initializers: graph.initializer.len(),
        bytes: bytes.len(),
    })
}

/// How `import_model` adds a train section.
pub struct ImportTrain {
    pub loss: Loss,
    pub labels: String,
    pub logits: Option<String>,
    pub data: PathBuf,
}

/// What `import_model` wrote.
pub struct ImportSummary {
    pub weights: PathBuf,
    pub variables: usize,
}

/// Reads the ONNX model `model` and writes the graph file `output` and,
/// beside it, the safetensors file of its variables (`output` with the
/// extension `.safetensors`). Both are made before either is written.
pub fn import_model(
    model: &Path,
    output: &Path,
    train: Option<ImportTrain>,
) -> Result<ImportSummary, Error> {
    let source = model.display().to_string();
    let bytes = std::fs::read(model).map_err(|e| Error::Io(format!("{source}: {e}")))?;
    let weights = output.with_extension("safetensors");
    if weights == output {
        return Err(Error::Usage(format!(
            "-o {}: the graph file needs another extension than the weights file beside it (.safetensors)",
            output.display()
        )));
    }
    let file_name = |p: &Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", p.display())))
    };
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let train = match train {
        None => None,
        Some(t) => {
            let dir = output.parent().unwrap_or(Path::new(""));
            let path = relative_to(dir, &t.data);
            let path = path.display().to_string();
            let data = if t.data.is_dir() {
                format!("Mnist({path:?})")
            } else if t.data.extension().is_some_and(|e| e == "npz") {
                format!("Npz(train: {path:?})")
            } else {
                return Err(Error::Usage(format!(
                    "--data {}: a directory of MNIST files or an .npz file",
                    t.data.display()
                )));
            };
            Some(TrainOptions {
                loss: t.loss,
                labels: t.labels,
                output: t.logits,
                data,
            })
        }
    };
    let imported = crate::onnx::import(
        &bytes,
        &ImportOptions {
            name: stem,
            weights: file_name(&weights)?,
            source: file_name(model)?,
            train,
        },
    )
    .map_err(|e| Error::Import {
        file: source.clone(),
        source: Box::new(e),
    })?;
    // The graph must parse as gradc reads it before anything is written.
    compiler::schema::parse(&imported.text)?;
    let tensors: Vec<(&str, &crate::runtime::Tensor)> = imported
        .weights
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    // The weights go to a file of their own name last, so that a graph
    // that cannot be written leaves no weights behind.
    let metadata = std::collections::BTreeMap::from([("source".to_string(), source.clone())]);
    let staged = weights.with_extension("safetensors.partial");
    crate::io::checkpoint::save(&staged, &tensors, &metadata)?;
    let written = crate::runtime::io::write_atomic(output, imported.text.as_bytes())
        .map_err(|e| Error::Io(format!("{}: {e}", output.display())))
        .and_then(|()| {
            std::fs::rename(&staged, &weights)
                .map_err(|e| Error::Io(format!("{}: {e}", weights.display())))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    written?;
    Ok(ImportSummary {
        weights,
        variables: tensors.len(),
    })
}

/// `target` as a path relative to the directory `base`, where both resolve
/// (`target` as it is otherwise).
fn relative_to(base: &Path, target: &Path) -> PathBuf {
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let (Ok(b), Ok(t)) = (base.canonicalize(), target.canonicalize()) else {
        return target.to_path_buf();
    };
    let common = b
        .components()
        .zip(t.components())
        .take_while(|(x, y)| x == y)
        .count();
    let mut rel = PathBuf::new();
    for _ in b.components().skip(common) {
        rel.push("..");
    }
    for c in t.components().skip(common) {
        rel.push(c);
    }
    rel
}
