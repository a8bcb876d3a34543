//! The compiled program: what the compiler lowers to and the runtime runs.
//! Serializable (RON), so `gradc compile` can save it and the runtime alone can load it.

use crate::{Arity, DType, Op, TensorType};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// Why a program cannot be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The program does not serialize (RON).
    #[error("{0}")]
    Serialize(ron::Error),
    /// The text is not a saved program (RON syntax or structure).
    #[error("{0}")]
    Parse(ron::error::SpannedError),
    /// A saved program of another format version.
    #[error("unsupported program format {found:?}, expected {PROGRAM_FORMAT:?}")]
    Format { found: String },
    /// The program breaks what `Program::validate` checks.
    #[error(transparent)]
    Invalid(#[from] InvalidProgram),
    /// The file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that holds no valid program: why, after the file's path.
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: Box<ProgramError>,
    },
}

impl ProgramError {
    /// The error itself, without the file it is in.
    pub fn cause(&self) -> &ProgramError {
        match self {
            ProgramError::File { source, .. } => source.cause(),
            e => e,
        }
    }
}

/// What `Program::validate` finds wrong: instruction `instr` (named `name`)
/// or an output of a hand-edited or corrupt program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidProgram {
    /// An input that is not an output of an earlier instruction.
    #[error("instruction {instr} ({name}) refers to a missing or later value {}:{}", value.node, value.output)]
    Input {
        instr: usize,
        name: String,
        value: ValueRef,
    },
    /// A program output that is not an output of an instruction.
    #[error("output {label} refers to a missing or later value {}:{}", value.node, value.output)]
    Output { label: String, value: ValueRef },
    /// A control input that does not come before the instruction.
    #[error("instruction {instr} ({name}) has a control input {control} that does not precede it")]
    Control {
        instr: usize,
        name: String,
        control: usize,
    },
    /// The wrong number of inputs for the op.
    #[error("instruction {instr} ({name}): {op} takes {arity} inputs")]
    Arity {
        instr: usize,
        name: String,
        op: &'static str,
        arity: Arity,
    },
    /// An update of two variables given one variable twice.
    #[error("instruction {instr} ({name}): {op} updates two variables, given the same one twice")]
    SameVariable {
        instr: usize,
        name: String,
        op: &'static str,
    },
    /// An update whose target (input `input`) is not a variable.
    #[error("instruction {instr} ({name}): {op} must take a variable as its input {input}, not {target} ({target_op})")]
    NotAVariable {
        instr: usize,
        name: String,
        op: &'static str,
        input: usize,
        target: String,
        target_op: &'static str,
    },
}

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
    pub fn to_ron(&self) -> Result<String, ProgramError> {
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
        .map_err(ProgramError::Serialize)
    }

    /// Whether `text` looks like a saved program rather than a graph file.
    pub fn is_program_text(text: &str) -> bool {
        text.trim_start().starts_with("GradcProgram")
    }

    pub fn from_ron(text: &str) -> Result<Program, ProgramError> {
        let saved: SavedProgram = ron::from_str(text).map_err(ProgramError::Parse)?;
        if saved.format != PROGRAM_FORMAT {
            return Err(ProgramError::Format {
                found: saved.format,
            });
        }
        saved.program.validate()?;
        Ok(saved.program)
    }

    /// Writes the program atomically: to a temporary file beside `path`, then renamed.
    pub fn save(&self, path: &Path) -> Result<(), ProgramError> {
        let text = self.to_ron()?;
        crate::io::write_atomic(path, text.as_bytes()).map_err(|source| ProgramError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Program, ProgramError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProgramError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Program::from_ron(&text).map_err(|e| ProgramError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Checks what a hand-edited or corrupt file could break: references go backwards
    /// to existing outputs and op arities hold.
    pub fn validate(&self) -> Result<(), InvalidProgram> {
        let exists = |v: &ValueRef, before: usize| {
            self.instrs
                .get(v.node)
                .is_some_and(|i| v.node < before && v.output < i.outputs.len())
        };
        for (k, ins) in self.instrs.iter().enumerate() {
            let name = || ins.name.clone();
            if let Some(&value) = ins.inputs.iter().find(|v| !exists(v, k)) {
                return Err(InvalidProgram::Input {
                    instr: k,
                    name: name(),
                    value,
                });
            }
            if let Some(&control) = ins.control.iter().find(|&&c| c >= k) {
                return Err(InvalidProgram::Control {
                    instr: k,
                    name: name(),
                    control,
                });
            }
            let op = ins.op.name();
            let arity = ins.op.arity();
            let ok = match arity {
                Arity::Exactly(n) => ins.inputs.len() == n,
                Arity::AtLeast(n) => ins.inputs.len() >= n,
            };
            if !ok {
                return Err(InvalidProgram::Arity {
                    instr: k,
                    name: name(),
                    op,
                    arity,
                });
            }
            let updated = &ins.inputs[..ins.op.updated_inputs().min(ins.inputs.len())];
            if updated.len() == 2 && updated[0].node == updated[1].node {
                return Err(InvalidProgram::SameVariable {
                    instr: k,
                    name: name(),
                    op,
                });
            }
            for (j, v) in updated.iter().enumerate() {
                let target = &self.instrs[v.node];
                if !matches!(target.op, Op::Variable { .. }) {
                    return Err(InvalidProgram::NotAVariable {
                        instr: k,
                        name: name(),
                        op,
                        input: j,
                        target: target.name.clone(),
                        target_op: target.op.name(),
                    });
                }
            }
        }
        if let Some(o) = self
            .outputs
            .iter()
            .find(|o| !exists(&o.value, self.instrs.len()))
        {
            return Err(InvalidProgram::Output {
                label: o.label.clone(),
                value: o.value,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Initializer, Literal, Shape};

    fn instr(name: &str, op: Op, inputs: &[usize]) -> Instr {
        Instr {
            name: name.into(),
            op,
            dtype: DType::F64,
            inputs: inputs
                .iter()
                .map(|&node| ValueRef { node, output: 0 })
                .collect(),
            outputs: vec![TensorType {
                dtype: DType::F64,
                shape: Shape::known(&[]),
            }],
            control: Vec::new(),
        }
    }

    fn constant(name: &str) -> Instr {
        instr(name, Op::Const(Literal::Scalar(1.0)), &[])
    }

    fn variable(name: &str) -> Instr {
        let op = Op::Variable {
            shape: Shape::known(&[]),
            initializer: Box::new(Initializer::Zeros),
            trainable: true,
        };
        instr(name, op, &[])
    }

    /// The instructions, the last one the output.
    fn program(instrs: Vec<Instr>) -> Program {
        let last = instrs.len() - 1;
        Program {
            name: "p".into(),
            instrs,
            outputs: vec![NamedOutput {
                label: "y".into(),
                value: ValueRef {
                    node: last,
                    output: 0,
                },
            }],
            optimized: false,
        }
    }

    fn invalid(instrs: Vec<Instr>) -> InvalidProgram {
        program(instrs).validate().expect_err("invalid")
    }

    #[test]
    fn each_invalid_program_names_the_instruction() {
        let ok = program(vec![constant("a"), instr("b", Op::Neg, &[0])]);
        ok.validate().expect("valid");

        let e = invalid(vec![constant("a"), instr("b", Op::Neg, &[1])]);
        let value = ValueRef { node: 1, output: 0 };
        assert_eq!(
            e,
            InvalidProgram::Input {
                instr: 1,
                name: "b".into(),
                value
            }
        );
        assert_eq!(
            e.to_string(),
            "instruction 1 (b) refers to a missing or later value 1:0"
        );

        let mut p = ok.clone();
        p.outputs[0].value.output = 1;
        let e = p.validate().expect_err("no output 1");
        assert!(matches!(e, InvalidProgram::Output { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            "output y refers to a missing or later value 1:1"
        );

        let mut p = ok.clone();
        p.instrs[0].control = vec![1];
        let e = p.validate().expect_err("control input 1 of 0");
        assert!(
            matches!(
                e,
                InvalidProgram::Control {
                    instr: 0,
                    control: 1,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "instruction 0 (a) has a control input 1 that does not precede it"
        );

        let e = invalid(vec![constant("a"), instr("b", Op::Add, &[0])]);
        assert_eq!(
            e,
            InvalidProgram::Arity {
                instr: 1,
                name: "b".into(),
                op: "Add",
                arity: Arity::Exactly(2)
            }
        );
        assert_eq!(e.to_string(), "instruction 1 (b): Add takes 2 inputs");

        let momentum = Op::ApplyMomentum {
            use_nesterov: false,
        };
        let e = invalid(vec![
            variable("v"),
            constant("a"),
            instr("u", momentum, &[0, 0, 1, 1, 1]),
        ]);
        assert!(
            matches!(e, InvalidProgram::SameVariable { instr: 2, .. }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "instruction 2 (u): ApplyMomentum updates two variables, given the same one twice"
        );

        let e = invalid(vec![constant("a"), instr("s", Op::Assign, &[0, 0])]);
        assert_eq!(
            e,
            InvalidProgram::NotAVariable {
                instr: 1,
                name: "s".into(),
                op: "Assign",
                input: 0,
                target: "a".into(),
                target_op: "Const",
            }
        );
        assert_eq!(
            e.to_string(),
            "instruction 1 (s): Assign must take a variable as its input 0, not a (Const)"
        );
        program(vec![
            variable("v"),
            constant("a"),
            instr("s", Op::Assign, &[0, 1]),
        ])
        .validate()
        .expect("a variable is assigned");
    }

    #[test]
    fn each_program_error_says_why_it_cannot_be_saved_or_loaded() {
        let ok = program(vec![constant("a"), instr("b", Op::Neg, &[0])]);
        let text = ok.to_ron().expect("saves");
        assert_eq!(Program::from_ron(&text).expect("loads"), ok);

        // Nested deeper than RON's recursion limit.
        let deep = (0..200).fold(Literal::Scalar(0.0), |l, _| Literal::List(vec![l]));
        let e = program(vec![instr("c", Op::Const(deep), &[])])
            .to_ron()
            .expect_err("too deep");
        assert!(matches!(e, ProgramError::Serialize(_)), "{e}");

        let e = Program::from_ron("GradcProgram(format: \"other\")").expect_err("no program");
        assert!(matches!(e, ProgramError::Parse(_)), "{e}");
        let other = text.replace(PROGRAM_FORMAT, "gradc-program-v0");
        let e = Program::from_ron(&other).expect_err("another format");
        assert!(matches!(&e, ProgramError::Format { found } if found == "gradc-program-v0"));
        assert_eq!(
            e.to_string(),
            "unsupported program format \"gradc-program-v0\", expected \"gradc-program-v1\""
        );
        let broken = program(vec![constant("a"), instr("b", Op::Neg, &[1])]);
        let e = Program::from_ron(&broken.to_ron().expect("saves")).expect_err("invalid");
        assert!(
            matches!(
                e,
                ProgramError::Invalid(InvalidProgram::Input { instr: 1, .. })
            ),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("gradc-program-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let missing = dir.join("missing.ron");
        let e = Program::load(&missing).expect_err("no file");
        assert!(
            matches!(&e, ProgramError::Io { path, .. } if *path == missing),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", missing.display())),
            "{e}"
        );
        // A directory cannot be replaced by the program.
        let e = ok.save(&dir).expect_err("a directory");
        assert!(matches!(e, ProgramError::Io { .. }), "{e}");
        let garbage = dir.join("garbage.ron");
        std::fs::write(&garbage, "GradcProgram(").expect("writes");
        let e = Program::load(&garbage).expect_err("not a program");
        assert!(
            matches!(&e, ProgramError::File { path, .. } if *path == garbage),
            "{e}"
        );
        assert!(matches!(e.cause(), ProgramError::Parse(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}: ", garbage.display())),
            "{e}"
        );
        let saved = dir.join("ok.ron");
        ok.save(&saved).expect("saves");
        assert_eq!(Program::load(&saved).expect("loads"), ok);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
