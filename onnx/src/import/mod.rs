//! Import: an ONNX model as a gradc graph file.
//!
//! Each ONNX node becomes a gradc node of the same name (sanitized: no
//! leading `/`, no `:`), or a few nodes named after it where gradc spells the
//! op in several (a `Gemm` with a bias is a `MatMul` and a `BiasAdd`). Graph
//! inputs become placeholders, their `dim_param`s symbolic dimensions.
//! Initializers become variables whose `Safetensors` initializer reads
//! their values from the weights file written next to the graph; a
//! convolution's filter is stored as gradc's [kh, kw, in, out].
//! Initializers read as attributes (a `Reshape`'s shape, `Squeeze` axes)
//! are read when importing and stored nowhere.
//!
//! Every op the importer reads is a row of `ops::OPS`; a model with others
//! is refused with every one of them listed.

mod ops;

use crate::proto::ModelProto;
use crate::tensor::{from_proto, gradc_dtype, onnx_dtype_name};
use gradc_runtime::{DType, Dim, Initializer, Literal, Op, Shape, Tensor, TensorType};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

pub use ops::supported_ops;

/// A loss to add, with its labels placeholder, so that the imported graph trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// Class indices (int64 [batch]) and `SparseSoftmaxCrossEntropyWithLogits`.
    SparseSoftmaxCrossEntropy,
    /// One-hot or soft labels of the output's shape and `SoftmaxCrossEntropyWithLogits`.
    SoftmaxCrossEntropy,
    /// Targets of the output's shape and the mean of `SquaredDifference`.
    MeanSquaredError,
}

/// A train section for the imported graph.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub loss: Loss,
    /// The labels placeholder's name.
    pub labels: String,
    /// The model output the loss reads; the first output when absent.
    pub output: Option<String>,
    /// The data source as the graph file writes it, e.g. `Mnist("../data/mnist")`.
    pub data: String,
}

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// The graph's name.
    pub name: String,
    /// The weights file as the graph's variables name it (relative to the graph file).
    pub weights: String,
    /// Where the model came from, for the file's header comment.
    pub source: String,
    pub train: Option<TrainOptions>,
}

/// An imported model: the graph file's text and the variables' values.
#[derive(Debug)]
pub struct Imported {
    pub text: String,
    pub weights: Vec<(String, Tensor)>,
}

/// An ONNX node gradc does not read.
#[derive(Clone, Debug, PartialEq)]
pub struct UnsupportedNode {
    pub node: String,
    pub op: String,
}

/// Why a model cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not an ONNX model: {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error(
        "the model uses opset {found} of the default ONNX domain; gradc reads opsets 13 to 22"
    )]
    Opset { found: i64 },
    #[error("the model uses ops of the domain '{0}', which gradc does not read")]
    Domain(String),
    #[error("{} node(s) of ops gradc does not import:\n{}\nsupported: {}", .0.len(), list(.0), supported_ops().join(", "))]
    Unsupported(Vec<UnsupportedNode>),
    #[error("node '{node}' ({op}): {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("initializer '{name}': {reason}")]
    Initializer { name: String, reason: String },
    #[error("graph input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error("graph output '{name}': {reason}")]
    Output { name: String, reason: String },
    #[error("{0}")]
    Train(String),
}

fn list(nodes: &[UnsupportedNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("  node '{}': {}", n.node, n.op))
        .collect::<Vec<_>>()
        .join("\n")
}

fn default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

/// The gradc graph of an ONNX model's bytes.
pub fn import(bytes: &[u8], options: &ImportOptions) -> Result<Imported, ImportError> {
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or(ImportError::NoGraph)?;
    for o in &model.opset_import {
        if default_domain(&o.domain) {
            if !(13..=22).contains(&o.version) {
                return Err(ImportError::Opset { found: o.version });
            }
        } else if graph.node.iter().any(|n| n.domain == o.domain) {
            return Err(ImportError::Domain(o.domain.clone()));
        }
    }
    let unsupported: Vec<UnsupportedNode> = graph
        .node
        .iter()
        .filter(|n| ops::handler(&n.op_type).is_none() || !default_domain(&n.domain))
        .map(|n| UnsupportedNode {
            node: if n.name.is_empty() {
                n.output.first().cloned().unwrap_or_default()
            } else {
                n.name.clone()
            },
            op: if default_domain(&n.domain) {
                n.op_type.clone()
            } else {
                format!("{}.{}", n.domain, n.op_type)
            },
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(ImportError::Unsupported(unsupported));
    }

    let mut im = Importer {
        nodes: Vec::new(),
        used: HashSet::new(),
        values: HashMap::new(),
        consts: HashMap::new(),
        weights: Vec::new(),
        weights_file: options.weights.clone(),
        dtype: DType::F32,
        graph_outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
    };
    for t in &graph.initializer {
        let value = from_proto(t).map_err(|reason| ImportError::Initializer {
            name: t.name.clone(),
            reason,
        })?;
        im.consts.insert(
            t.name.clone(),
            Const {
                value,
                trainable: true,
            },
        );
    }
    // The graph's inputs (older exporters list the initializers among them too).
    let mut first_float = None;
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !im.consts.contains_key(&i.name))
        .collect();
    for input in inputs {
        let t = value_type(input, &input.name).map_err(|reason| ImportError::Input {
            name: input.name.clone(),
            reason,
        })?;
        if t.dtype.is_float() && first_float.is_none() {
            first_float = Some(t.dtype);
        }
        let name = im.fresh(&input.name);
        im.nodes.push(Node {
            name: name.clone(),
            op: Op::Placeholder {
                shape: t.shape.clone(),
            },
            inputs: vec![],
            dtype: t.dtype,
        });
        im.values.insert(input.name.clone(), Val { r: name, t });
    }
    im.dtype = first_float.unwrap_or(DType::F32);
    for node in &graph.node {
        let Some(handler) = ops::handler(&node.op_type) else {
            continue; // listed as unsupported above
        };
        let name = im.node_name(node);
        let outs = handler(&mut im, node, &name).map_err(|reason| ImportError::Node {
            node: if node.name.is_empty() {
                name.clone()
            } else {
                node.name.clone()
            },
            op: node.op_type.clone(),
            reason,
        })?;
        for (onnx, v) in node.output.iter().zip(outs) {
            if !onnx.is_empty() {
                im.values.insert(onnx.clone(), v);
            }
        }
    }
    let mut outputs = Vec::new();
    for o in &graph.output {
        let v = im.value(&o.name).map_err(|reason| ImportError::Output {
            name: o.name.clone(),
            reason,
        })?;
        outputs.push((o.name.clone(), v));
    }
    let train = match &options.train {
        Some(t) => Some(im.add_loss(t, &outputs)?),
        None => None,
    };
    Ok(Imported {
        text: im.text(options, &model, &outputs, train.as_deref()),
        weights: im.weights,
    })
}

/// A tensor type of a graph input or output: its element type and shape,
/// `dim_param`s as symbolic dimensions.
fn value_type(v: &crate::proto::ValueInfoProto, name: &str) -> Result<TensorType, String> {
    use crate::proto::tensor_shape_proto::dimension::Value as D;
    use crate::proto::type_proto::Value;
    let Some(Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("not a tensor".into());
    };
    let dtype = gradc_dtype(t.elem_type).ok_or_else(|| {
        format!(
            "element type {} is not one gradc has (float, double, int32, int64, bool)",
            onnx_dtype_name(t.elem_type)
        )
    })?;
    let shape = t.shape.as_ref().ok_or("its shape is not given")?;
    let dims = shape
        .dim
        .iter()
        .enumerate()
        .map(|(k, d)| match &d.value {
            Some(D::DimValue(n)) if *n >= 0 => Ok(Dim::Known(*n as usize)),
            Some(D::DimParam(p)) if !p.is_empty() => Ok(Dim::Sym(p.as_str().into())),
            Some(D::DimValue(n)) => Err(format!("dimension {k} is {n}")),
            // An unnamed dimension is its own symbol.
            _ => Ok(Dim::Sym(format!("{}_dim{k}", sanitize(name)).into())),
        })
        .collect::<Result<_, String>>()?;
    Ok(TensorType {
        dtype,
        shape: Shape(dims),
    })
}

/// A value of the gradc graph: how a node's input names it and its type.
#[derive(Clone, Debug)]
pub(crate) struct Val {
    pub r: String,
    pub t: TensorType,
}

/// An initializer or `Constant` not yet made a node.
struct Const {
    value: Tensor,
    trainable: bool,
}

/// A gradc node of the graph file.
struct Node {
    name: String,
    op: Op,
    inputs: Vec<String>,
    dtype: DType,
}

pub(crate) struct Importer {
    nodes: Vec<Node>,
    used: HashSet<String>,
    values: HashMap<String, Val>,
    consts: HashMap<String, Const>,
    weights: Vec<(String, Tensor)>,
    weights_file: String,
    /// The graph's dtype: its first float input's.
    dtype: DType,
    graph_outputs: Vec<String>,
}

/// A name gradc reads as a node name: no leading `/` and no `:` (which names an output).
fn sanitize(s: &str) -> String {
    let s = s.trim_start_matches('/').replace(':', "_");
    if s.is_empty() || s.starts_with("d(") {
        format!("_{s}")
    } else {
        s
    }
}

fn dtype_text(d: DType) -> String {
    ron::to_string(&d).unwrap_or_else(|_| d.to_string())
}

impl Importer {
    /// `hint` sanitized, with a number after it if taken.
    fn fresh(&mut self, hint: &str) -> String {
        crate::unique_name(&mut self.used, sanitize(hint))
    }

    /// The gradc name of a node: its output's when that is a graph output,
    /// else the node's (its output's when it has none).
    fn node_name(&mut self, node: &crate::proto::NodeProto) -> String {
        let out = node.output.first().map(String::as_str).unwrap_or("");
        let hint = if self.graph_outputs.iter().any(|o| o == out) || node.name.is_empty() {
            if out.is_empty() {
                node.op_type.as_str()
            } else {
                out
            }
        } else {
            node.name.as_str()
        };
        // Not taken yet: the node's last gradc node takes it (`add`).
        let name = self.fresh(hint);
        self.used.remove(&name);
        name
    }

    /// The constant value of input `name`, if it is an initializer or a `Constant`'s.
    pub fn constant(&self, name: &str) -> Option<&Tensor> {
        self.consts.get(name).map(|c| &c.value)
    }

    /// Marks an initializer not yet read as state that training does not
    /// change (a batch norm's statistics).
    pub fn freeze(&mut self, name: &str) {
        if let Some(c) = self.consts.get_mut(name) {
            c.trainable = false;
        }
    }

    /// Registers the output of a `Constant` node.
    pub fn add_constant(&mut self, name: &str, value: Tensor) {
        self.consts.insert(
            name.to_string(),
            Const {
                value,
                trainable: false,
            },
        );
    }

    /// The gradc value of ONNX value `name`; an initializer or constant
    /// read as a tensor becomes a node here, on first use (a scalar a
    /// `Const`, anything else a variable).
    pub fn value(&mut self, name: &str) -> Result<Val, String> {
        if let Some(v) = self.values.get(name) {
            return Ok(v.clone());
        }
        let Some(c) = self.consts.get(name) else {
            return Err(format!(
                "reads '{name}', which no node, input or initializer gives"
            ));
        };
        let (value, trainable) = (c.value.clone(), c.trainable);
        let v = if value.shape().is_empty() {
            let t = value.tensor_type();
            let node = self.fresh(name);
            self.nodes.push(Node {
                name: node.clone(),
                op: Op::Const(Literal::Scalar(value.to_f64_vec()[0])),
                inputs: vec![],
                dtype: t.dtype,
            });
            Val { r: node, t }
        } else {
            self.variable(name, value, trainable)
        };
        self.values.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A scalar constant of `dtype`, named after `hint`.
    pub fn scalar(&mut self, hint: &str, value: f64, dtype: DType) -> Val {
        let node = self.fresh(hint);
        self.nodes.push(Node {
            name: node.clone(),
            op: Op::Const(Literal::Scalar(value)),
            inputs: vec![],
            dtype,
        });
        Val {
            r: node,
            t: TensorType {
                dtype,
                shape: Shape::scalar(),
            },
        }
    }

    /// A variable holding `value`, read from the weights file; named after `hint`.
    pub fn variable(&mut self, hint: &str, value: Tensor, trainable: bool) -> Val {
        let t = value.tensor_type();
        let node = self.fresh(hint);
        self.weights.push((node.clone(), value));
        self.nodes.push(Node {
            name: node.clone(),
            op: Op::Variable {
                shape: t.shape.clone(),
                initializer: Box::new(Initializer::Safetensors(self.weights_file.clone())),
                trainable: trainable && t.dtype.is_float(),
            },
            inputs: vec![],
            dtype: t.dtype,
        });
        Val { r: node, t }
    }

    /// Adds node `name` (a fresh name from it) computing `op` of `inputs`,
    /// its types inferred as the compiler will; its outputs.
    pub fn add(&mut self, name: &str, op: Op, inputs: &[&Val]) -> Result<Vec<Val>, String> {
        let types: Vec<&TensorType> = inputs.iter().map(|v| &v.t).collect();
        let outs = op.infer(self.dtype, &types).map_err(|e| {
            let shapes: Vec<String> = types.iter().map(|t| t.to_string()).collect();
            format!(
                "as gradc's {}: {e} (inputs {})",
                op.name(),
                shapes.join(", ")
            )
        })?;
        let name = self.fresh(name);
        self.nodes.push(Node {
            name: name.clone(),
            op,
            inputs: inputs.iter().map(|v| v.r.clone()).collect(),
            dtype: self.dtype,
        });
        Ok(outs
            .into_iter()
            .enumerate()
            .map(|(k, t)| Val {
                r: if k == 0 {
                    name.clone()
                } else {
                    format!("{name}:{k}")
                },
                t,
            })
            .collect())
    }

    /// `add` for an op of one output.
    pub fn add1(&mut self, name: &str, op: Op, inputs: &[&Val]) -> Result<Val, String> {
        self.add(name, op, inputs)?
            .into_iter()
            .next()
            .ok_or_else(|| "an op of no output".to_string())
    }

    /// The loss, metric and labels nodes of a train section; the section's text.
    fn add_loss(
        &mut self,
        t: &TrainOptions,
        outputs: &[(String, Val)],
    ) -> Result<String, ImportError> {
        let err = ImportError::Train;
        let out = match &t.output {
            Some(o) => outputs
                .iter()
                .find(|(n, _)| n == o)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| {
                    err(format!(
                        "the model has no output '{o}'; its outputs are {}",
                        outputs
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
            None => outputs
                .first()
                .map(|(_, v)| v.clone())
                .ok_or_else(|| err("the model has no output".into()))?,
        };
        let rank = out.t.shape.rank();
        if rank < 1 || !out.t.dtype.is_float() {
            return Err(err(format!(
                "the loss reads '{}' of type {}, which is not a float tensor of rank 1 or more",
                out.r, out.t
            )));
        }
        let sparse = t.loss == Loss::SparseSoftmaxCrossEntropy;
        let label_type = if sparse {
            TensorType {
                dtype: DType::I64,
                shape: Shape(out.t.shape.0[..rank - 1].to_vec()),
            }
        } else {
            out.t.clone()
        };
        if self.used.contains(&sanitize(&t.labels)) {
            return Err(err(format!(
                "the labels placeholder '{}' would take the name of a node of the model",
                t.labels
            )));
        }
        let labels = self.fresh(&t.labels);
        self.nodes.push(Node {
            name: labels.clone(),
            op: Op::Placeholder {
                shape: label_type.shape.clone(),
            },
            inputs: vec![],
            dtype: label_type.dtype,
        });
        let labels = Val {
            r: labels,
            t: label_type,
        };
        let add = |im: &mut Importer, name: &str, op: Op, ins: &[&Val]| {
            im.add1(name, op, ins)
                .map_err(|e| err(format!("adding the loss: {e}")))
        };
        let per = match t.loss {
            Loss::SparseSoftmaxCrossEntropy => add(
                self,
                "ce",
                Op::SparseSoftmaxCrossEntropyWithLogits,
                &[&out, &labels],
            )?,
            Loss::SoftmaxCrossEntropy => add(
                self,
                "ce",
                Op::SoftmaxCrossEntropyWithLogits,
                &[&out, &labels],
            )?,
            Loss::MeanSquaredError => add(
                self,
                "squared_error",
                Op::SquaredDifference,
                &[&out, &labels],
            )?,
        };
        let mean = || Op::Mean {
            axes: None,
            keep_dims: false,
        };
        let loss = add(self, "loss", mean(), &[&per])?;
        let mut metrics = String::new();
        if t.loss != Loss::MeanSquaredError {
            let arg_max = || Op::ArgMax {
                axis: rank as i64 - 1,
                output_type: DType::I64,
            };
            let y = add(self, "y", arg_max(), &[&out])?;
            let label = if sparse {
                labels.clone()
            } else {
                add(self, "label", arg_max(), &[&labels])?
            };
            let hit = add(self, "hit", Op::Equal, &[&y, &label])?;
            let to = self.dtype;
            let correct = add(self, "correct", Op::Cast { to }, &[&hit])?;
            let acc = add(self, "accuracy", mean(), &[&correct])?;
            metrics = format!("\n        metrics: [{:?}],", acc.r);
        }
        let features = self
            .nodes
            .iter()
            .find(|n| matches!(n.op, Op::Placeholder { .. }))
            .map(|n| n.name.clone())
            .ok_or_else(|| err("the model has no input to feed the data to".into()))?;
        Ok(format!(
            "    train: (\n        loss: {:?},\n        optimizer: Adam(learning_rate: 0.001),{metrics}\n        \
             data: (source: {}, features: {features:?}, labels: {:?}),\n        batch_size: 64,\n        epochs: 1,\n    ),\n",
            loss.r, t.data, labels.r
        ))
    }

    /// The graph file.
    fn text(
        &self,
        o: &ImportOptions,
        model: &ModelProto,
        outputs: &[(String, Val)],
        train: Option<&str>,
    ) -> String {
        let mut s = String::new();
        let producer = match (
            model.producer_name.as_str(),
            model.producer_version.as_str(),
        ) {
            ("", _) => String::new(),
            (p, "") => format!(", made by {p}"),
            (p, v) => format!(", made by {p} {v}"),
        };
        let opset = model
            .opset_import
            .iter()
            .find(|o| default_domain(&o.domain))
            .map_or(0, |o| o.version);
        let _ = writeln!(
            s,
            "// Imported by `gradc import` from {} (ONNX opset {opset}{producer}).",
            o.source
        );
        if !self.weights.is_empty() {
            let _ = writeln!(
                s,
                "// The variables' values are in {} (convolution filters as [kh, kw, in, out]).",
                o.weights
            );
        }
        let _ = writeln!(
            s,
            "Graph(\n    name: {:?},\n    dtype: {},\n    nodes: [",
            o.name,
            dtype_text(self.dtype)
        );
        for n in &self.nodes {
            let dtype = if n.inputs.is_empty() && n.dtype != self.dtype {
                format!(", dtype: {}", dtype_text(n.dtype))
            } else {
                String::new()
            };
            let inputs = if n.inputs.is_empty() {
                String::new()
            } else {
                let ins: Vec<String> = n.inputs.iter().map(|i| format!("{i:?}")).collect();
                format!(", inputs: [{}]", ins.join(", "))
            };
            let _ = writeln!(
                s,
                "        (name: {:?}, op: {}{inputs}{dtype}),",
                n.name,
                op_text(&n.op)
            );
        }
        let outs: Vec<String> = outputs.iter().map(|(_, v)| format!("{:?}", v.r)).collect();
        let _ = writeln!(s, "    ],\n    outputs: [{}],", outs.join(", "));
        if let Some(t) = train {
            s.push_str(t);
        }
        s.push_str(")\n");
        s
    }
}

/// An op as the graph file writes it: RON, a space after each `:` and `,`.
fn op_text(op: &Op) -> String {
    let compact = ron::Options::default()
        .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
        .to_string(op)
        .unwrap_or_else(|_| op.name().to_string());
    let mut s = String::with_capacity(compact.len() + 16);
    let mut quoted = false;
    for c in compact.chars() {
        s.push(c);
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c == ':' || c == ',') {
            s.push(' ');
        }
    }
    s
}
