//! Export: a program (the inference program of a trained graph, or a graph's
//! forward program) as an ONNX model.
//!
//! Placeholders become the graph's inputs, with their symbolic dimensions as
//! `dim_param`s. Every value that depends on no placeholder (the variables,
//! and what the program computes from them alone, such as batch norm folded
//! into a weight) is computed once with the session's variables and written
//! as an initializer. Every other instruction is written by its op's rule in
//! `rules.rs` as standard ONNX ops; an op without one is an error naming the
//! node, and nothing is returned.

mod rules;

use crate::attr;
use crate::proto::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto};
use gradc_runtime::{DType, Instr, Op, RunError, Session, Tensor, TensorType, ValueRef};
use std::collections::{HashMap, HashSet};

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// The values the model outputs: program output labels or node names
    /// (`"logits"`, `"y"`); the program's outputs when empty.
    pub outputs: Vec<String>,
}

/// Why a program cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A requested output the program does not have.
    #[error("no output or node named '{name}' in the program; its outputs are {choices}")]
    UnknownOutput { name: String, choices: String },
    /// An output named twice.
    #[error("the output '{0}' is named twice")]
    DuplicateOutput(String),
    /// Nothing to export.
    #[error("the program has no outputs: name the values to export")]
    NoOutputs,
    /// An instruction whose op ONNX cannot express (as gradc writes it).
    #[error("node '{node}' ({op}) has no ONNX counterpart: {why}")]
    Unsupported {
        node: String,
        op: &'static str,
        why: String,
    },
    /// The values computed once from the variables could not be computed.
    #[error("computing the model's constant values: {0}")]
    Constants(#[source] RunError),
}

/// The model of `session`'s program, its variables as they are in the session.
pub fn export(session: &mut Session, options: &ExportOptions) -> Result<ModelProto, ExportError> {
    let program = session.program().clone();
    let instrs = &program.instrs;
    // The outputs: (ONNX name, value).
    let outputs: Vec<(String, ValueRef)> = if options.outputs.is_empty() {
        program
            .outputs
            .iter()
            .map(|o| (o.label.clone(), o.value))
            .collect()
    } else {
        options
            .outputs
            .iter()
            .map(|name| match session.resolve(name) {
                Ok(v) => Ok((name.clone(), v)),
                Err(_) => Err(ExportError::UnknownOutput {
                    name: name.clone(),
                    choices: program
                        .outputs
                        .iter()
                        .map(|o| o.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            })
            .collect::<Result<_, _>>()?
    };
    if outputs.is_empty() {
        return Err(ExportError::NoOutputs);
    }
    for (k, (name, _)) in outputs.iter().enumerate() {
        if outputs[..k].iter().any(|(n, _)| n == name) {
            return Err(ExportError::DuplicateOutput(name.clone()));
        }
    }

    // What the outputs need, and which of it depends on no placeholder.
    let mut needed = vec![false; instrs.len()];
    for (_, v) in &outputs {
        needed[v.node] = true;
    }
    for k in (0..instrs.len()).rev() {
        if needed[k] {
            for v in &instrs[k].inputs {
                needed[v.node] = true;
            }
        }
    }
    let mut constant = vec![false; instrs.len()];
    for (k, i) in instrs.iter().enumerate() {
        constant[k] = match i.op {
            Op::Variable { .. } | Op::Const(_) => true,
            _ => {
                computable(&i.op)
                    && !i.inputs.is_empty()
                    && i.inputs.iter().all(|v| constant[v.node])
            }
        };
    }
    // The constant values that non-constant nodes (or the outputs) read.
    let mut frontier: Vec<ValueRef> = Vec::new();
    let mut seen = HashSet::new();
    let mut want = |v: ValueRef, frontier: &mut Vec<ValueRef>| {
        if constant[v.node] && seen.insert(v) {
            frontier.push(v);
        }
    };
    for (k, i) in instrs.iter().enumerate() {
        if needed[k] && !constant[k] {
            for v in &i.inputs {
                want(*v, &mut frontier);
            }
        }
    }
    for (_, v) in &outputs {
        want(*v, &mut frontier);
    }
    let values = session
        .run(&HashMap::new(), &frontier)
        .map_err(ExportError::Constants)?;
    let constants: HashMap<ValueRef, Tensor> = frontier.into_iter().zip(values).collect();

    let mut b = Builder::new(instrs, &outputs);
    let mut names: HashMap<ValueRef, String> = HashMap::new();
    let mut inputs = Vec::new();
    for (k, i) in instrs.iter().enumerate() {
        if !needed[k] {
            continue;
        }
        let name_of = |o: usize| value_name(i, o);
        if constant[k] {
            for o in 0..i.outputs.len() {
                let v = ValueRef { node: k, output: o };
                if let Some(t) = constants.get(&v) {
                    b.inits.push(crate::tensor::to_proto(&name_of(o), t));
                    names.insert(v, name_of(o));
                }
            }
            continue;
        }
        if let Op::Placeholder { .. } = i.op {
            inputs.push(attr::value_info(&i.name, &i.outputs[0]));
            names.insert(ValueRef { node: k, output: 0 }, i.name.clone());
            continue;
        }
        let ins: Vec<String> = i
            .inputs
            .iter()
            .map(|v| {
                names
                    .get(v)
                    .cloned()
                    .ok_or_else(|| ExportError::Unsupported {
                        node: instrs[v.node].name.clone(),
                        op: instrs[v.node].op.name(),
                        why: format!(
                            "its output {} is read, and the export writes no such output",
                            v.output
                        ),
                    })
            })
            .collect::<Result<_, _>>()?;
        let types: Vec<&TensorType> = i
            .inputs
            .iter()
            .map(|v| &instrs[v.node].outputs[v.output])
            .collect();
        let first = b.nodes.len();
        b.prefix = i.name.clone();
        let cx = rules::Cx {
            instr: i,
            ins: &ins,
            types: &types,
        };
        let made = rules::rule(&mut b, &cx).map_err(|why| ExportError::Unsupported {
            node: i.name.clone(),
            op: i.op.name(),
            why,
        })?;
        // The values get the instruction's names (`name`, `name:1`, ...).
        for (o, value) in made.into_iter().enumerate() {
            let want = name_of(o);
            let renamed = b.rename(first, &value, &want);
            names.insert(
                ValueRef { node: k, output: o },
                if renamed { want } else { value },
            );
        }
    }
    let mut graph_outputs = Vec::new();
    for (label, v) in &outputs {
        let name = names.get(v).ok_or_else(|| ExportError::Unsupported {
            node: instrs[v.node].name.clone(),
            op: instrs[v.node].op.name(),
            why: format!(
                "its output {} is exported, and the export writes no such output",
                v.output
            ),
        })?;
        if name != label {
            b.nodes.push(NodeProto {
                op_type: "Identity".into(),
                name: format!("{label}/Identity"),
                input: vec![name.clone()],
                output: vec![label.clone()],
                ..Default::default()
            });
        }
        graph_outputs.push(attr::value_info(label, &instrs[v.node].outputs[v.output]));
    }
    Ok(ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: crate::OPSET,
        }],
        producer_name: "gradc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            name: program.name.clone(),
            node: b.nodes,
            initializer: b.inits,
            input: inputs,
            output: graph_outputs,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The ONNX name of output `o` of an instruction: its name, `name:o` after the first.
fn value_name(i: &Instr, o: usize) -> String {
    if o == 0 {
        i.name.clone()
    } else {
        format!("{}:{o}", i.name)
    }
}

/// Whether an op with constant inputs can be computed once at export:
/// not a placeholder, a variable's update or an exchange between processes.
fn computable(op: &Op) -> bool {
    !matches!(
        op,
        Op::Placeholder { .. }
            | Op::Assign
            | Op::AssignAdd
            | Op::AssignSub
            | Op::ApplyGradientDescent
            | Op::ApplyMomentum { .. }
            | Op::NoOp
            | Op::AllReduceMean { .. }
    )
}

/// The nodes and initializers written so far, and the names taken.
pub(crate) struct Builder {
    pub nodes: Vec<NodeProto>,
    pub inits: Vec<TensorProto>,
    used: HashSet<String>,
    /// The instruction being written: its nodes are named after it.
    prefix: String,
}

impl Builder {
    fn new(instrs: &[Instr], outputs: &[(String, ValueRef)]) -> Builder {
        let mut used = HashSet::new();
        for i in instrs {
            for o in 0..i.outputs.len().max(1) {
                used.insert(value_name(i, o));
            }
        }
        used.extend(outputs.iter().map(|(l, _)| l.clone()));
        Builder {
            nodes: Vec::new(),
            inits: Vec::new(),
            used,
            prefix: String::new(),
        }
    }

    /// A name not taken yet, `prefix/hint` or with a number after it.
    fn fresh(&mut self, hint: &str) -> String {
        crate::unique_name(&mut self.used, format!("{}/{hint}", self.prefix))
    }

    /// A node of one output; returns the output's name.
    pub fn op(
        &mut self,
        op_type: &str,
        ins: &[&str],
        attrs: Vec<crate::proto::AttributeProto>,
    ) -> String {
        let out = self.fresh(op_type);
        self.nodes.push(NodeProto {
            op_type: op_type.into(),
            name: out.clone(),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// An initializer; returns its name.
    pub fn init(&mut self, hint: &str, t: &Tensor) -> String {
        let name = self.fresh(hint);
        self.inits.push(crate::tensor::to_proto(&name, t));
        name
    }

    /// A 1-D int64 initializer (axes, shapes, pads).
    pub fn i64s(&mut self, hint: &str, v: &[i64]) -> String {
        let t = Tensor::I64(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v.to_vec())
                .expect("a 1-D shape fits its values"),
        );
        self.init(hint, &t)
    }

    /// A scalar initializer of `dtype`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> String {
        self.init("c", &Tensor::scalar(dtype, v))
    }

    /// Renames `value`, an output of a node written since `first`, to
    /// `want`, where it and every later read of it are; false if
    /// `value` is not such an output (an input passed through).
    fn rename(&mut self, first: usize, value: &str, want: &str) -> bool {
        if value == want {
            return true;
        }
        let Some(at) = self.nodes[first..]
            .iter()
            .position(|n| n.output.iter().any(|o| o == value))
        else {
            return false;
        };
        for n in &mut self.nodes[first + at..] {
            for s in n.output.iter_mut().chain(n.input.iter_mut()) {
                if s == value {
                    *s = want.to_string();
                }
            }
        }
        true
    }
}
