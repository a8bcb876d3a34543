//! Runs a program: binds feeds, prunes to what the fetches need, infers
//! concrete shapes, and evaluates the kernels in program order.

use crate::program::{Program, ValueRef};
use crate::shape::Dim;
use crate::{kernels, Op, Tensor, TensorType};
use std::collections::HashMap;
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum RunError {
    #[error("no feed for placeholder '{name}' ({expected})")]
    MissingFeed { name: String, expected: TensorType },
    #[error("'{name}' is fed but the program has no single-output node of that name")]
    UnknownFeed { name: String },
    #[error("feed '{name}' has dtype {got}, the node is {expected}")]
    FeedDtype {
        name: String,
        expected: TensorType,
        got: crate::DType,
    },
    #[error("feed '{name}' has shape {got:?}, the node is {expected}{detail}")]
    FeedShape {
        name: String,
        expected: TensorType,
        got: Vec<usize>,
        detail: String,
    },
    #[error("no output or node named '{name}' to fetch")]
    UnknownFetch { name: String },
    #[error("invalid program: {message}")]
    InvalidProgram { message: String },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// Holds a program; runs it with feeds and fetches.
pub struct Session {
    program: Program,
    by_name: HashMap<String, usize>,
}

impl Session {
    /// Checks the program (references point backwards, arities hold) and holds it.
    pub fn new(program: Program) -> Result<Session, RunError> {
        program
            .validate()
            .map_err(|message| RunError::InvalidProgram { message })?;
        let by_name = program
            .instrs
            .iter()
            .enumerate()
            .map(|(i, ins)| (ins.name.clone(), i))
            .collect();
        Ok(Session { program, by_name })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Resolves a fetch: an output label, a node name, or `node:k` for output k.
    pub fn resolve(&self, name: &str) -> Result<ValueRef, RunError> {
        if let Some(o) = self.program.outputs.iter().find(|o| o.label == name) {
            return Ok(o.value);
        }
        if let Some(&node) = self.by_name.get(name) {
            return Ok(ValueRef { node, output: 0 });
        }
        if let Some((base, k)) = name.rsplit_once(':') {
            if let (Some(&node), Ok(output)) = (self.by_name.get(base), k.parse::<usize>()) {
                if output < self.program.instrs[node].outputs.len() {
                    return Ok(ValueRef { node, output });
                }
            }
        }
        Err(RunError::UnknownFetch {
            name: name.to_string(),
        })
    }

    /// Runs the part of the program the fetches need and returns the fetched values in order.
    pub fn run(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        fetches: &[ValueRef],
    ) -> Result<Vec<Tensor>, RunError> {
        let instrs = &self.program.instrs;
        // Any node may be fed (TensorFlow's feed_dict); placeholders must be.
        let mut fed: Vec<Option<&Tensor>> = vec![None; instrs.len()];
        for (name, t) in feeds {
            let &i = self
                .by_name
                .get(name)
                .ok_or_else(|| RunError::UnknownFeed { name: name.clone() })?;
            if instrs[i].outputs.len() != 1 {
                return Err(RunError::UnknownFeed { name: name.clone() });
            }
            fed[i] = Some(t);
        }
        for v in fetches {
            if instrs
                .get(v.node)
                .is_none_or(|ins| v.output >= ins.outputs.len())
            {
                return Err(RunError::UnknownFetch {
                    name: format!("{}:{}", v.node, v.output),
                });
            }
        }
        // Which instructions the fetches need; a fed node needs nothing upstream.
        let mut needed = vec![false; instrs.len()];
        let mut stack: Vec<usize> = fetches.iter().map(|v| v.node).collect();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut needed[n], true) && fed[n].is_none() {
                stack.extend(instrs[n].inputs.iter().map(|v| v.node));
            }
        }
        let mut bindings: HashMap<String, (usize, String)> = HashMap::new();
        let mut values: Vec<Option<Vec<Tensor>>> = vec![None; instrs.len()];
        for (i, ins) in instrs.iter().enumerate() {
            if !needed[i] {
                continue;
            }
            let node_err = |message: String| RunError::Node {
                node: ins.name.clone(),
                op: ins.op.name(),
                message,
            };
            let outs = if let Some(t) = fed[i] {
                check_feed(&ins.name, &ins.outputs[0], t, &mut bindings)?;
                vec![t.clone()]
            } else if let Op::Placeholder { .. } = ins.op {
                return Err(RunError::MissingFeed {
                    name: ins.name.clone(),
                    expected: ins.outputs[0].clone(),
                });
            } else {
                let args: Vec<&Tensor> = ins
                    .inputs
                    .iter()
                    .map(|v| {
                        &values[v.node]
                            .as_ref()
                            .expect("validated: inputs precede their users")[v.output]
                    })
                    .collect();
                let types: Vec<TensorType> = args.iter().map(|t| t.tensor_type()).collect();
                let out_types = ins.op.infer(ins.dtype, &types).map_err(node_err)?;
                kernels::eval(&ins.op, &args, &out_types).map_err(node_err)?
            };
            values[i] = Some(outs);
        }
        Ok(fetches
            .iter()
            .map(|v| values[v.node].as_ref().expect("fetched nodes are needed")[v.output].clone())
            .collect())
    }
}

/// Checks a feed against its placeholder; binds symbolic dims, which must agree across feeds.
fn check_feed(
    name: &str,
    expected: &TensorType,
    fed: &Tensor,
    bindings: &mut HashMap<String, (usize, String)>,
) -> Result<(), RunError> {
    if fed.dtype() != expected.dtype {
        return Err(RunError::FeedDtype {
            name: name.into(),
            expected: expected.clone(),
            got: fed.dtype(),
        });
    }
    let got = fed.shape().to_vec();
    let shape_err = |detail: String| RunError::FeedShape {
        name: name.into(),
        expected: expected.clone(),
        got: got.clone(),
        detail,
    };
    if got.len() != expected.shape.rank() {
        return Err(shape_err(String::new()));
    }
    for (d, &n) in expected.shape.0.iter().zip(&got) {
        match d {
            Dim::Known(k) if *k != n => return Err(shape_err(String::new())),
            Dim::Known(_) => {}
            Dim::Sym(s) => match bindings.get(s) {
                Some((m, by)) if *m != n => {
                    return Err(shape_err(format!(" ('{s}' is {m}, bound by feed '{by}')")))
                }
                Some(_) => {}
                None => {
                    bindings.insert(s.clone(), (n, name.to_string()));
                }
            },
        }
    }
    Ok(())
}
