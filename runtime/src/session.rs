//! Runs a program: binds feeds, prunes to what the fetches and targets need,
//! infers concrete shapes, evaluates kernels in program order, and keeps the
//! values of variables across runs.
//!
//! **Variable semantics:** every read of a variable in a run sees its value at
//! the start of the run; `Assign`, `AssignAdd` and `AssignSub` update the
//! stored value in program order (so two `AssignAdd`s to one variable in a run
//! both count) and the next run sees the result.

use crate::init::initial_value;
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
    #[error("variable '{name}' has no value: initialize the session or load a checkpoint")]
    Uninitialized { name: String },
    #[error("no variable named '{name}'")]
    UnknownVariable { name: String },
    #[error("variable '{name}' is {expected}, the value given is {got}")]
    VariableType {
        name: String,
        expected: TensorType,
        got: TensorType,
    },
    #[error("node '{node}' ({op}) produced a non-finite value (NaN or Inf)")]
    NonFinite { node: String, op: &'static str },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: &'static str,
        message: String,
    },
}

/// Holds a program and its variables; runs it with feeds, fetches and targets.
pub struct Session {
    program: Program,
    by_name: HashMap<String, usize>,
    /// The value of each variable instruction (None for other instructions).
    store: Vec<Option<Tensor>>,
    /// Check every kernel's output for NaN and Inf, naming the first node that makes one.
    pub check_numerics: bool,
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
        let store = vec![None; program.instrs.len()];
        Ok(Session {
            program,
            by_name,
            store,
            check_numerics: false,
        })
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Gives every variable its initial value. Random initializers draw from a
    /// stream that depends only on `seed` and the variable (its own `seed`, or
    /// its name), so results do not depend on the order of the variables.
    pub fn initialize(&mut self, seed: u64) -> Result<(), RunError> {
        for (i, ins) in self.program.instrs.iter().enumerate() {
            if let Op::Variable {
                shape, initializer, ..
            } = &ins.op
            {
                let value = initial_value(&ins.name, ins.dtype, shape, initializer, seed).map_err(
                    |message| RunError::Node {
                        node: ins.name.clone(),
                        op: "Variable",
                        message,
                    },
                )?;
                self.store[i] = Some(value);
            }
        }
        Ok(())
    }

    /// Names and static types of the variables, in program order.
    pub fn variable_types(&self) -> Vec<(String, TensorType)> {
        self.program
            .instrs
            .iter()
            .filter(|ins| matches!(ins.op, Op::Variable { .. }))
            .map(|ins| (ins.name.clone(), ins.outputs[0].clone()))
            .collect()
    }

    /// The variables' current values, in program order (None where uninitialized).
    pub fn variables(&self) -> Vec<(&str, Option<&Tensor>)> {
        self.program
            .instrs
            .iter()
            .zip(&self.store)
            .filter(|(ins, _)| matches!(ins.op, Op::Variable { .. }))
            .map(|(ins, v)| (ins.name.as_str(), v.as_ref()))
            .collect()
    }

    /// Sets a variable, checking its dtype and shape.
    pub fn set_variable(&mut self, name: &str, value: Tensor) -> Result<(), RunError> {
        let unknown = || RunError::UnknownVariable {
            name: name.to_string(),
        };
        let &i = self.by_name.get(name).ok_or_else(unknown)?;
        let ins = &self.program.instrs[i];
        if !matches!(ins.op, Op::Variable { .. }) {
            return Err(unknown());
        }
        let expected = ins.outputs[0].clone();
        if value.tensor_type() != expected {
            return Err(RunError::VariableType {
                name: name.to_string(),
                expected,
                got: value.tensor_type(),
            });
        }
        self.store[i] = Some(value);
        Ok(())
    }

    /// Resolves a fetch: an output label, a node name, or `node:k` for output k.
    pub fn resolve(&self, name: &str) -> Result<ValueRef, RunError> {
        if let Some(o) = self.program.outputs.iter().find(|o| o.label == name) {
            return Ok(o.value);
        }
        if let Some(&node) = self.by_name.get(name) {
            if !self.program.instrs[node].outputs.is_empty() {
                return Ok(ValueRef { node, output: 0 });
            }
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

    /// Resolves a target: a node to run for its effects (an update op, a `NoOp` group).
    pub fn resolve_target(&self, name: &str) -> Result<usize, RunError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| RunError::UnknownFetch {
                name: name.to_string(),
            })
    }

    /// Runs what the fetches need and returns the fetched values in order.
    pub fn run(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        fetches: &[ValueRef],
    ) -> Result<Vec<Tensor>, RunError> {
        self.run_with_targets(feeds, fetches, &[])
    }

    /// Runs what the fetches and the targets need (TensorFlow's `session.run(fetches)`
    /// with ops among them); returns the fetched values in order.
    pub fn run_with_targets(
        &mut self,
        feeds: &HashMap<String, Tensor>,
        fetches: &[ValueRef],
        targets: &[usize],
    ) -> Result<Vec<Tensor>, RunError> {
        let instrs = &self.program.instrs;
        // Any node may be fed (TensorFlow's feed_dict); placeholders must be.
        let mut fed: Vec<Option<&Tensor>> = vec![None; instrs.len()];
        for (name, t) in feeds {
            let &i = self
                .by_name
                .get(name)
                .ok_or_else(|| RunError::UnknownFeed { name: name.clone() })?;
            if instrs[i].outputs.len() != 1 || instrs[i].op.is_stateful() {
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
        if let Some(&t) = targets.iter().find(|&&t| t >= instrs.len()) {
            return Err(RunError::UnknownFetch {
                name: format!("instruction {t}"),
            });
        }
        // Which instructions the fetches and targets need; a fed node needs nothing upstream.
        let mut needed = vec![false; instrs.len()];
        let mut stack: Vec<usize> = fetches
            .iter()
            .map(|v| v.node)
            .chain(targets.iter().copied())
            .collect();
        while let Some(n) = stack.pop() {
            if !std::mem::replace(&mut needed[n], true) && fed[n].is_none() {
                stack.extend(instrs[n].inputs.iter().map(|v| v.node));
                stack.extend(instrs[n].control.iter().copied());
            }
        }
        let mut bindings: HashMap<String, (usize, String)> = HashMap::new();
        let mut values: Vec<Option<Vec<Tensor>>> = vec![None; instrs.len()];
        // Variables are read before anything runs: a run sees start-of-run values.
        for (i, ins) in instrs.iter().enumerate() {
            if needed[i] && fed[i].is_none() && matches!(ins.op, Op::Variable { .. }) {
                let v = self.store[i]
                    .clone()
                    .ok_or_else(|| RunError::Uninitialized {
                        name: ins.name.clone(),
                    })?;
                values[i] = Some(vec![v]);
            }
        }
        for (i, ins) in instrs.iter().enumerate() {
            if !needed[i] || values[i].is_some() {
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
            } else if let Op::NoOp = ins.op {
                Vec::new()
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
                if ins.op.is_stateful() {
                    let var = ins.inputs[0].node;
                    let current =
                        self.store[var]
                            .as_ref()
                            .ok_or_else(|| RunError::Uninitialized {
                                name: instrs[var].name.clone(),
                            })?;
                    let new = match ins.op {
                        Op::AssignAdd => kernels::eval(&Op::Add, &[current, args[1]], &out_types)
                            .map_err(node_err)?,
                        Op::AssignSub => kernels::eval(&Op::Sub, &[current, args[1]], &out_types)
                            .map_err(node_err)?,
                        _ => vec![args[1].clone()],
                    };
                    self.store[var] = Some(new[0].clone());
                    new
                } else {
                    kernels::eval(&ins.op, &args, &out_types).map_err(node_err)?
                }
            };
            if self.check_numerics && outs.iter().any(|t| !t.is_finite()) {
                return Err(RunError::NonFinite {
                    node: ins.name.clone(),
                    op: ins.op.name(),
                });
            }
            values[i] = Some(outs);
        }
        Ok(fetches
            .iter()
            .map(|v| values[v.node].as_ref().expect("fetched nodes are needed")[v.output].clone())
            .collect())
    }
}

/// Checks a feed against its node's type; binds symbolic dims, which must agree across feeds.
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
