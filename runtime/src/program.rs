//! The compiled program: what the compiler lowers to and the runtime runs.
//! Serializable (RON), so `gradc compile` can save it and the runtime alone can load it.

use crate::{DType, Op, TensorType};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One output of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ValueRef {
    pub node: usize,
    pub output: usize,
}

/// One node of the program; `inputs` refer to earlier instructions only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instr {
    pub name: String,
    pub op: Op,
    pub dtype: DType,
    pub inputs: Vec<ValueRef>,
    /// Static types from compile-time inference (shapes may be symbolic).
    pub outputs: Vec<TensorType>,
    /// Instructions that must run before this one (control dependencies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub control: Vec<usize>,
}

/// A named value the program offers by default (a graph output or a requested gradient).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedOutput {
    /// What to call it when printing, e.g. `price` or `d(price)/d(apple)`.
    pub label: String,
    pub value: ValueRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    /// In topological order.
    pub instrs: Vec<Instr>,
    pub outputs: Vec<NamedOutput>,
    /// Whether an optimizer rewrote the graph this program was lowered from.
    /// It may have folded, merged or fused an intermediate node into its
    /// consumers, so a feed of that node would reach some of them and not
    /// others: such a program is fed only at its placeholders and variables
    /// (compile with the feeds named, or unoptimized, to feed others).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optimized: bool,
}

/// Version tag written at the head of a saved program.
pub const PROGRAM_FORMAT: &str = "gradc-program-v1";

#[derive(Serialize, Deserialize)]
#[serde(rename = "GradcProgram")]
struct SavedProgram {
    format: String,
    program: Program,
}

impl Program {
    /// The saved form: RON, one instruction a line (a diff of two programs
    /// reads instruction by instruction; fully indented, a 100k-node
    /// program takes three times the bytes and 60% more time to write).
    pub fn to_ron(&self) -> Result<String, String> {
        let saved = SavedProgram {
            format: PROGRAM_FORMAT.to_string(),
            program: self.clone(),
        };
        ron::ser::to_string_pretty(
            &saved,
            ron::ser::PrettyConfig::default()
                .struct_names(true)
                .depth_limit(3),
        )
        .map_err(|e| e.to_string())
    }

    /// Whether `text` looks like a saved program rather than a graph file.
    pub fn is_program_text(text: &str) -> bool {
        text.trim_start().starts_with("GradcProgram")
    }

    pub fn from_ron(text: &str) -> Result<Program, String> {
        let saved: SavedProgram = ron::from_str(text).map_err(|e| e.to_string())?;
        if saved.format != PROGRAM_FORMAT {
            return Err(format!(
                "unsupported program format {:?}, expected {PROGRAM_FORMAT:?}",
                saved.format
            ));
        }
        saved.program.validate()?;
        Ok(saved.program)
    }

    /// Writes the program atomically: to a temporary file beside `path`, then renamed.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = self.to_ron()?;
        crate::io::write_atomic(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Program, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Program::from_ron(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Checks what a hand-edited or corrupt file could break: references go backwards
    /// to existing outputs and op arities hold.
    pub fn validate(&self) -> Result<(), String> {
        let check = |v: &ValueRef, before: usize, what: &str| -> Result<(), String> {
            match self.instrs.get(v.node) {
                Some(i) if v.node < before && v.output < i.outputs.len() => Ok(()),
                _ => Err(format!(
                    "{what} refers to a missing or later value {}:{}",
                    v.node, v.output
                )),
            }
        };
        for (k, ins) in self.instrs.iter().enumerate() {
            for v in &ins.inputs {
                check(v, k, &format!("instruction {k} ({})", ins.name))?;
            }
            if let Some(c) = ins.control.iter().find(|&&c| c >= k) {
                return Err(format!(
                    "instruction {k} ({}) has a control input {c} that does not precede it",
                    ins.name
                ));
            }
            let ok = match ins.op.arity() {
                crate::Arity::Exactly(n) => ins.inputs.len() == n,
                crate::Arity::AtLeast(n) => ins.inputs.len() >= n,
            };
            if !ok {
                return Err(format!(
                    "instruction {k} ({}): {} takes {} inputs",
                    ins.name,
                    ins.op.name(),
                    ins.op.arity()
                ));
            }
            let updated = &ins.inputs[..ins.op.updated_inputs().min(ins.inputs.len())];
            if updated.len() == 2 && updated[0].node == updated[1].node {
                return Err(format!(
                    "instruction {k} ({}): {} updates two variables, given the same one twice",
                    ins.name,
                    ins.op.name()
                ));
            }
            for (j, v) in updated.iter().enumerate() {
                let target = &self.instrs[v.node];
                if !matches!(target.op, Op::Variable { .. }) {
                    return Err(format!(
                        "instruction {k} ({}): {} must take a variable as its input {j}, not {} ({})",
                        ins.name,
                        ins.op.name(),
                        target.name,
                        target.op.name()
                    ));
                }
            }
        }
        for o in &self.outputs {
            check(&o.value, self.instrs.len(), &format!("output {}", o.label))?;
        }
        Ok(())
    }
}
