//! The elementwise functions: one table, one row per function.
//!
//! A row gives the function's name (the op's name in graph files), its
//! scalar function (generic over f32 and f64), its derivative, written once,
//! and its properties. Everything else is made from the table:
//!
//! - the `Op` variant (see `op_enum!` in `op/mod.rs`) and its name;
//! - `UnaryFn` and `BinaryFn`, the steps of a `Fused` program;
//! - the kernels, in place or not, fused or not (`UnaryFn::with`);
//! - the gradient rule: the compiler builds the derivative's nodes from the
//!   program `UnaryFn::derivative` records;
//! - the fused backward epilogue of `Dense` (`ActivationBiasGrad`), which
//!   evaluates the same derivative on numbers, and the pattern the fusion
//!   pass matches, which is the same recorded program.
//!
//! A derivative is an expression over `Sym` values: `dy` (the gradient of
//! the output), the inputs (`x`, or `a` and `b`) and `y` (the output). It
//! returns `grad(..)` (one gradient per input; `None` for an input that gets
//! none) or `Grad::Zero` (the output is constant in the inputs: nothing flows
//! back). Nodes are made in the order the expression evaluates its operands.
//!
//! Properties: `fuse` (the elementwise fusion pass may put it in a `Fused`
//! program), `in_place` (the kernel may overwrite an input), and for binary
//! functions `broadcast` (NumPy broadcasting; without it the inputs have one
//! shape) and `commutes` (f(a, b) = f(b, a) to the bit, so a pattern may
//! match its operands in either order).

use super::Op;
use crate::dtype::Scalar;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::ops::{Add, Div, Mul, Neg, Sub};

/// The table. `elementwise_table!((callback) { extra })` calls
/// `callback! { { extra } unary { rows } binary { rows } }`.
#[doc(hidden)]
#[macro_export]
macro_rules! elementwise_table {
    (($($callback:tt)+) { $($extra:tt)* }) => {
        $($callback)+! {
            { $($extra)* }
            unary {
                /// -x
                Neg [fuse, in_place] |x| -x
                    => |dy, x, y| grad(-dy);
                /// e^x
                Exp [fuse, in_place] |x| x.exp()
                    => |dy, x, y| grad(dy * y);
                /// The natural logarithm.
                Log [fuse, in_place] |x| x.ln()
                    => |dy, x, y| grad(dy / x);
                /// x·x
                Square [fuse, in_place] |x| x * x
                    => |dy, x, y| grad(dy * (x.c(2.0) * x));
                Sqrt [fuse, in_place] |x| x.sqrt()
                    => |dy, x, y| grad((dy.c(0.5) * dy) / y);
                /// 1 / sqrt(x)
                Rsqrt [fuse, in_place] |x| x.sqrt().recip()
                    => |dy, x, y| {
                        let y3 = y.pow(3.0);
                        grad(dy * (y.c(-0.5) * y3))
                    };
                /// max(x, 0), keeping NaN.
                Relu [fuse, in_place] |x| relu(x)
                    => |dy, x, y| grad(dy.relu_grad(y));
                /// 1 / (1 + e^-x), without overflow for large |x|.
                Sigmoid [fuse, in_place] |x| sigmoid(x)
                    => |dy, x, y| grad(dy * (y * (y.c(1.0) - y)));
                Tanh [fuse, in_place] |x| x.tanh()
                    => |dy, x, y| grad(dy * (y.c(1.0) - y.square()));
                /// log(1 + e^x), computed stably as max(x, 0) + log(1 + e^-|x|).
                Softplus [fuse, in_place] |x| softplus(x)
                    => |dy, x, y| grad(dy * x.sigmoid());
                /// |x|; its gradient at 0 is 0, as TensorFlow's.
                Abs [fuse, in_place] |x| x.abs()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Sign));
                /// -1, 0 or 1 by the sign of x (NaN for NaN, -0 for -0); no gradient.
                Sign [fuse, in_place] |x| sign(x)
                    => |dy, x, y| Grad::Zero;
                Sin [fuse, in_place] |x| x.sin()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Cos));
                Cos [fuse, in_place] |x| x.cos()
                    => |dy, x, y| grad(-(dy * x.apply(UnaryFn::Sin)));
                /// Its gradient as TensorFlow's: dy · (1 / cos x)².
                Tan [fuse, in_place] |x| x.tan()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Cos).apply(UnaryFn::Reciprocal).square());
                Asin [fuse, in_place] |x| x.asin()
                    => |dy, x, y| grad(dy * (x.c(1.0) - x.square()).apply(UnaryFn::Rsqrt));
                Acos [fuse, in_place] |x| x.acos()
                    => |dy, x, y| grad(-(dy * (x.c(1.0) - x.square()).apply(UnaryFn::Rsqrt)));
                Atan [fuse, in_place] |x| x.atan()
                    => |dy, x, y| grad(dy / (x.c(1.0) + x.square()));
                Sinh [fuse, in_place] |x| x.sinh()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Cosh));
                Cosh [fuse, in_place] |x| x.cosh()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Sinh));
                Atanh [fuse, in_place] |x| x.atanh()
                    => |dy, x, y| grad(dy / (x.c(1.0) - x.square()));
                /// log(1 + x), exact for small x.
                Log1p [fuse, in_place] |x| x.ln_1p()
                    => |dy, x, y| grad(dy / (x.c(1.0) + x));
                /// e^x - 1, exact for small x.
                Expm1 [fuse, in_place] |x| x.exp_m1()
                    => |dy, x, y| grad(dy * x.apply(UnaryFn::Exp));
                /// 1 / x
                Reciprocal [fuse, in_place] |x| x.recip()
                    => |dy, x, y| grad(-(dy * (y * y)));
                /// The Gauss error function.
                Erf [fuse, in_place] |x| x.erf()
                    => |dy, x, y| grad(dy * (x.c(std::f64::consts::FRAC_2_SQRT_PI) * (-x.square()).apply(UnaryFn::Exp)));
                /// The complementary error function 1 − erf(x), exact where erf is near 1.
                Erfc [fuse, in_place] |x| x.erfc()
                    => |dy, x, y| grad(dy * (x.c(-std::f64::consts::FRAC_2_SQRT_PI) * (-x.square()).apply(UnaryFn::Exp)));
                /// x·Φ(x), Φ the standard normal's distribution function, as
                /// x·erfc(−x/√2)/2 (TensorFlow's `tf.nn.gelu`, exact form).
                Gelu [fuse, in_place] |x| gelu(x)
                    => |dy, x, y| {
                        // Φ(x) + x·φ(x), φ(x) = e^(−x²/2) / √(2π).
                        let cdf = x.c(0.5) * (x * x.c(-std::f64::consts::FRAC_1_SQRT_2)).apply(UnaryFn::Erfc);
                        let pdf = x.c(0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2)
                            * (x.square() * x.c(-0.5)).apply(UnaryFn::Exp);
                        grad(dy * (cdf + x * pdf))
                    };
                /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), the tanh approximation
                /// of Gelu (`tf.nn.gelu(approximate=True)`).
                GeluTanh [fuse, in_place] |x| gelu_tanh(x)
                    => |dy, x, y| {
                        // u = c·(x + a·x³), t = tanh u: y′ = (1 + t)/2 + x·(1 − t²)·c·(1 + 3a·x²)/2.
                        let u = x.c(GELU_C) * (x + x.c(GELU_A) * x.pow(3.0));
                        let t = u.apply(UnaryFn::Tanh);
                        let du = x.c(GELU_C) * (x.c(1.0) + x.c(3.0 * GELU_A) * x.square());
                        let half = x.c(0.5);
                        grad(dy * (half * (x.c(1.0) + t) + half * x * (x.c(1.0) - t.square()) * du))
                    };
                /// The largest integer not above x; no gradient.
                Floor [fuse, in_place] |x| x.floor()
                    => |dy, x, y| Grad::Zero;
                /// The smallest integer not below x; no gradient.
                Ceil [fuse, in_place] |x| x.ceil()
                    => |dy, x, y| Grad::Zero;
                /// The nearest integer, halves to the even one (TensorFlow's
                /// banker's rounding); no gradient.
                Round [fuse, in_place] |x| round_half_even(x)
                    => |dy, x, y| Grad::Zero;
                /// x / (1 + |x|)
                Softsign [fuse, in_place] |x| softsign(x)
                    => |dy, x, y| {
                        let d = x.c(1.0) + x.apply(UnaryFn::Abs);
                        grad(dy / (d * d))
                    };
                /// x for x > 0, else e^x - 1 (TensorFlow's `tf.nn.elu`).
                Elu [fuse, in_place] |x| elu(x)
                    => |dy, x, y| {
                        // 1 for x >= 0, else y + 1: both exact.
                        let up = x.ge(x.c(0.0));
                        grad(dy * (up + (x.c(1.0) - up) * (y + y.c(1.0))))
                    };
                /// scale · elu(x) with elu's negative side scaled by alpha
                /// (TensorFlow's `tf.nn.selu` constants).
                Selu [fuse, in_place] |x| selu(x)
                    => |dy, x, y| {
                        let up = x.ge(x.c(0.0));
                        let below = y + y.c(SELU_SCALE * SELU_ALPHA);
                        grad(dy * (up * up.c(SELU_SCALE) + (x.c(1.0) - up) * below))
                    };
                /// x for x > 0, else alpha · x (TensorFlow's `tf.nn.leaky_relu`),
                /// alpha rounded to f32 as TensorFlow's attribute is.
                LeakyRelu { alpha } [fuse, in_place] |x| leaky_relu(x, alpha)
                    => |dy, x, y| {
                        // 1 for x > 0, else alpha: both exact.
                        let down = x.c(0.0).ge(x);
                        grad(dy * ((x.c(1.0) - down) + down * down.c(f64::from(alpha as f32))))
                    };
                /// x ^ exponent, for a constant exponent (an integral one uses
                /// repeated multiplication, so negative bases work for it).
                Pow { exponent } [fuse, in_place] |x| pow_scalar(x, exponent)
                    => |dy, x, y| {
                        let p = x.pow(exponent - 1.0);
                        grad(dy * (x.c(exponent) * p))
                    };
            }
            binary {
                Add [fuse, in_place, broadcast, commutes] |a, b| a + b
                    => |dy, a, b, y| grads(dy, dy);
                Sub [fuse, in_place, broadcast] |a, b| a - b
                    => |dy, a, b, y| grads(dy, -dy);
                Mul [fuse, in_place, broadcast, commutes] |a, b| a * b
                    => |dy, a, b, y| grads(dy * b, dy * a);
                Div [fuse, in_place, broadcast] |a, b| a / b
                    => |dy, a, b, y| grads(dy / b, -(dy * y / b));
                /// The larger of a and b; NaN if either is NaN (like `np.maximum`).
                /// The gradient goes to a on ties, as in TensorFlow.
                Maximum [fuse, in_place, broadcast] |a, b| maximum(a, b)
                    => |dy, a, b, y| {
                        let da = dy * a.ge(b);
                        grads(da, dy - da)
                    };
                /// The smaller of a and b; NaN if either is NaN (like `np.minimum`).
                /// The gradient goes to a on ties, as in TensorFlow.
                Minimum [fuse, in_place, broadcast] |a, b| minimum(a, b)
                    => |dy, a, b, y| {
                        let da = dy * b.ge(a);
                        grads(da, dy - da)
                    };
                /// (a - b)²
                SquaredDifference [fuse, in_place, broadcast, commutes] |a, b| (a - b) * (a - b)
                    => |dy, a, b, y| {
                        let d = dy.c(2.0) * dy * (a - b);
                        grads(d, -d)
                    };
                /// Inputs (logits x, labels z) of one shape: the sigmoid
                /// cross-entropy max(x, 0) − x·z + log(1 + e^−|x|), TensorFlow's
                /// stable form of `tf.nn.sigmoid_cross_entropy_with_logits`.
                SigmoidCrossEntropyWithLogits [fuse, in_place] |a, b| sigmoid_cross_entropy(a, b)
                    => |dy, a, b, y| grads(dy * (a.sigmoid() - b), -(dy * a));
                /// floor(a / b) (TensorFlow's `tf.math.floordiv`); no gradient.
                FloorDiv [fuse, in_place, broadcast] |a, b| (a / b).floor()
                    => |dy, a, b, y| Grad::Zero;
                /// a − floor(a / b)·b, the sign of b's (TensorFlow's `tf.math.floormod`).
                FloorMod [fuse, in_place, broadcast] |a, b| floor_mod(a, b)
                    => |dy, a, b, y| grads(dy, -(dy * (a / b).apply(UnaryFn::Floor)));
                /// 1 where a >= b else 0, in the inputs' float type: the mask
                /// gradient rules multiply by (GreaterEqual gives a Bool). No gradient.
                GreaterEqualMask [fuse, in_place, broadcast] |a, b| greater_equal(a, b)
                    => |dy, a, b, y| Grad::Zero;
                /// 1 where a == b else 0, in the inputs' float type (Equal
                /// gives a Bool). No gradient.
                EqualMask [fuse, in_place, broadcast, commutes] |a, b| equal(a, b)
                    => |dy, a, b, y| Grad::Zero;
                /// Gradient of Relu: inputs (dy, x) of one shape, dy where x > 0 else 0.
                /// Linear in dy with a piecewise-constant mask.
                ReluGrad [fuse, in_place] |a, b| relu_grad_at(a, b)
                    => |dy, a, b, y| Grad::Of([Some(dy.relu_grad(b)), None]);
            }
        }
    };
}

/// `Op::Neg | Op::Exp | …`: every unary elementwise op, as a pattern.
#[macro_export]
macro_rules! unary_ops {
    () => {
        $crate::elementwise_table!(($crate::__elementwise_pattern) { unary })
    };
}

/// `Op::Add | Op::Sub | …`: every binary elementwise op, as a pattern.
#[macro_export]
macro_rules! binary_ops {
    () => {
        $crate::elementwise_table!(($crate::__elementwise_pattern) { binary })
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __elementwise_pattern {
    (
        { $which:ident }
        unary { $(
            $(#[$um:meta])* $u:ident $({ $ua:ident })? [$($uf:ident),*]
            |$x:ident| $f:expr => |$udy:ident, $ux:ident, $uy:ident| $ud:expr;
        )* }
        binary { $(
            $(#[$bm:meta])* $b:ident [$($bf:ident),*]
            |$ba:ident, $bb:ident| $g:expr => |$bdy:ident, $bxa:ident, $bxb:ident, $by:ident| $bd:expr;
        )* }
    ) => {
        $crate::__elementwise_pattern!(@ $which [$($crate::Op::$u { .. })|*] [$($crate::Op::$b)|*])
    };
    (@ unary [$($p:tt)*] [$($q:tt)*]) => { $($p)* };
    (@ binary [$($p:tt)*] [$($q:tt)*]) => { $($q)* };
}

/// The type of an attribute of an elementwise function (each is an f64).
macro_rules! attr_f64 {
    ($a:ident) => {
        f64
    };
}

/// An example value of an attribute, for `UnaryFn::EXAMPLES`.
macro_rules! attr_example {
    ($a:ident) => {
        2.5
    };
}

/// One optional gradient per input, or none at all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Grad<V, const N: usize> {
    /// The output is constant in the inputs: no gradient flows back.
    Zero,
    /// One gradient per input; `None` for an input that gets none.
    Of([Option<V>; N]),
}

/// The gradient of a unary function's only input.
pub fn grad<V>(dx: V) -> Grad<V, 1> {
    Grad::Of([Some(dx)])
}

/// The gradients of a binary function's two inputs.
pub fn grads<V>(da: V, db: V) -> Grad<V, 2> {
    Grad::Of([Some(da), Some(db)])
}

/// What a derivative computes with: numbers (a kernel evaluating it) or
/// registers of a recorded program (the gradient rule and fusion patterns).
pub trait Sym:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The constant `v`.
    fn c(self, v: f64) -> Self;
    fn apply(self, f: UnaryFn) -> Self;
    fn apply2(self, f: BinaryFn, b: Self) -> Self;

    fn square(self) -> Self {
        self.apply(UnaryFn::Square)
    }
    fn pow(self, exponent: f64) -> Self {
        self.apply(UnaryFn::Pow(exponent))
    }
    fn sigmoid(self) -> Self {
        self.apply(UnaryFn::Sigmoid)
    }
    /// ReluGrad(self, x): self where x > 0, else 0.
    fn relu_grad(self, x: Self) -> Self {
        self.apply2(BinaryFn::ReluGrad, x)
    }
    /// GreaterEqualMask(self, b): 1 where self >= b, else 0.
    fn ge(self, b: Self) -> Self {
        self.apply2(BinaryFn::GreaterEqualMask, b)
    }
}

impl<T: Scalar> Sym for T {
    fn c(self, v: f64) -> T {
        T::from_f64(v)
    }
    fn apply(self, f: UnaryFn) -> T {
        f.eval(self)
    }
    fn apply2(self, f: BinaryFn, b: T) -> T {
        f.eval(self, b)
    }
}

/// A register of a program being recorded.
#[derive(Clone, Copy)]
pub struct Rec<'p> {
    program: &'p RefCell<Vec<FusedStep>>,
    reg: usize,
}

impl<'p> Rec<'p> {
    fn push(self, step: FusedStep) -> Rec<'p> {
        let mut p = self.program.borrow_mut();
        p.push(step);
        Rec {
            program: self.program,
            reg: p.len() - 1,
        }
    }
}

impl Sym for Rec<'_> {
    fn c(self, v: f64) -> Self {
        self.push(FusedStep::Const(v))
    }
    fn apply(self, f: UnaryFn) -> Self {
        self.push(FusedStep::Unary(f, self.reg))
    }
    fn apply2(self, f: BinaryFn, b: Self) -> Self {
        self.push(FusedStep::Binary(f, self.reg, b.reg))
    }
}

macro_rules! rec_ops {
    ($($tr:ident $m:ident $f:ident),*) => {$(
        impl $tr for Rec<'_> {
            type Output = Self;
            fn $m(self, b: Self) -> Self {
                self.apply2(BinaryFn::$f, b)
            }
        }
    )*};
}
rec_ops!(Add add Add, Sub sub Sub, Mul mul Mul, Div div Div);

impl Neg for Rec<'_> {
    type Output = Self;
    fn neg(self) -> Self {
        self.apply(UnaryFn::Neg)
    }
}

/// A derivative as a program: steps over the inputs `Input(0)` = dy, then
/// the op's inputs, then y; `outputs` is the register of each input's
/// gradient (`None`: that input gets none). `None` as a whole: a zero gradient.
#[derive(Clone, Debug, PartialEq)]
pub struct Derivative {
    pub steps: Vec<FusedStep>,
    pub outputs: Vec<Option<usize>>,
}

impl Derivative {
    /// Records `d` called with `inputs` registers (dy, the op's inputs, y).
    fn record<const I: usize, const N: usize>(
        d: impl FnOnce([Rec<'_>; I]) -> Grad<Rec<'_>, N>,
    ) -> Option<Derivative> {
        let program = RefCell::new((0..I).map(FusedStep::Input).collect::<Vec<_>>());
        let regs: [Rec<'_>; I] = std::array::from_fn(|reg| Rec {
            program: &program,
            reg,
        });
        let outputs = match d(regs) {
            Grad::Zero => return None,
            Grad::Of(o) => o.iter().map(|r| r.map(|r| r.reg)).collect(),
        };
        Some(Derivative {
            steps: program.into_inner(),
            outputs,
        })
    }

    /// Whether some step or output reads input `k` (register `k`).
    pub fn reads(&self, k: usize) -> bool {
        self.outputs.contains(&Some(k))
            || self.steps.iter().any(|s| match *s {
                FusedStep::Unary(_, a) => a == k,
                FusedStep::Binary(_, a, b) => a == k || b == k,
                _ => false,
            })
    }
}

/// One step of a `Fused` program; step k writes register k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FusedStep {
    /// The element of input k.
    Input(usize),
    Const(f64),
    Unary(UnaryFn, usize),
    Binary(BinaryFn, usize, usize),
}

/// A call that takes a scalar function of one argument as a closure of its
/// own type (`UnaryFn::with`): the kernels' loops are compiled once per
/// function, with the function inlined.
pub(crate) trait Map1<T> {
    type Out;
    fn call(self, f: impl Fn(T) -> T + Copy + Send + Sync) -> Self::Out;
}

/// `Map1` for functions of two arguments (`BinaryFn::with`).
pub(crate) trait Map2<T> {
    type Out;
    fn call(self, f: impl Fn(T, T) -> T + Copy + Send + Sync) -> Self::Out;
}

/// Builds the elementwise types from the table.
macro_rules! elementwise_types {
    (
        { }
        unary { $(
            $(#[$um:meta])* $u:ident $({ $ua:ident })? [$($uf:ident),*]
            |$x:ident| $f:expr => |$udy:ident, $ux:ident, $uy:ident| $ud:expr;
        )* }
        binary { $(
            $(#[$bm:meta])* $b:ident [$($bf:ident),*]
            |$ba:ident, $bb:ident| $g:expr => |$bdy:ident, $bxa:ident, $bxb:ident, $by:ident| $bd:expr;
        )* }
    ) => {
        /// Elementwise functions of one argument (the unary elementwise ops).
        #[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
        pub enum UnaryFn {
            $( $(#[$um])* $u $( (attr_f64!($ua)) )?, )*
        }

        /// Elementwise functions of two arguments (the binary elementwise ops).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum BinaryFn {
            $( $(#[$bm])* $b, )*
        }

        impl UnaryFn {
            /// Every function, with an example value for an attribute.
            pub const EXAMPLES: &[UnaryFn] = &[$( UnaryFn::$u $( (attr_example!($ua)) )?, )*];

            /// The function an op applies, if it is one of these.
            pub fn of(op: &Op) -> Option<UnaryFn> {
                match *op {
                    $( Op::$u $({ $ua })? => Some(UnaryFn::$u $(($ua))?), )*
                    _ => None,
                }
            }

            /// The op applying this function.
            pub fn op(self) -> Op {
                match self {
                    $( UnaryFn::$u $(($ua))? => Op::$u $({ $ua })?, )*
                }
            }

            /// The function's name, as an op.
            pub fn name(self) -> &'static str {
                match self {
                    $( UnaryFn::$u { .. } => stringify!($u), )*
                }
            }

            /// The attribute, if the function has one: its name and value.
            pub fn attr(self) -> Option<(&'static str, f64)> {
                match self {
                    $( UnaryFn::$u $(($ua))? => None $(.or(Some((stringify!($ua), $ua))))?, )*
                }
            }

            /// Whether the elementwise fusion pass may put it in a `Fused` program.
            pub fn fusable(self) -> bool {
                match self {
                    $( UnaryFn::$u { .. } => [$(stringify!($uf)),*].contains(&"fuse"), )*
                }
            }

            /// Whether its kernel may write its output over its input.
            pub fn in_place(self) -> bool {
                match self {
                    $( UnaryFn::$u { .. } => [$(stringify!($uf)),*].contains(&"in_place"), )*
                }
            }

            /// Whether no gradient flows back through it (`Grad::Zero`).
            pub fn zero_gradient(self) -> bool {
                matches!(self.derivative_at(0f64, 0.0, 0.0), Grad::Zero)
            }

            /// The function at `x`.
            #[inline(always)]
            pub(crate) fn eval<T: Scalar>(self, x: T) -> T {
                match self {
                    $( UnaryFn::$u $(($ua))? => { let $x = x; $f } )*
                }
            }

            /// Calls `w` with the function as a closure of its own type.
            #[inline(always)]
            pub(crate) fn with<T: Scalar, W: Map1<T>>(self, w: W) -> W::Out {
                match self {
                    $( UnaryFn::$u $(($ua))? => w.call(move |$x: T| $f), )*
                }
            }

            /// The derivative at numbers: the gradient of x given dy, x and y.
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn derivative_at<V: Sym>(self, dy: V, x: V, y: V) -> Grad<V, 1> {
                match self {
                    $( UnaryFn::$u $(($ua))? => { let ($udy, $ux, $uy) = (dy, x, y); $ud } )*
                }
            }

            /// Calls `w` with `(dy, y) -> dx`, the derivative of a function
            /// whose derivative reads y but not x (an activation's), as a
            /// closure of its own type.
            #[inline(always)]
            #[allow(unused_variables)]
            pub(crate) fn with_derivative_of_y<T: Scalar, W: Map2<T>>(self, w: W) -> W::Out {
                match self {
                    $( UnaryFn::$u $(($ua))? => w.call(move |dy: T, y: T| {
                        let ($udy, $ux, $uy) = (dy, y, y);
                        only($ud)
                    }), )*
                }
            }

            /// The derivative as a program over (dy, x, y); None if the
            /// gradient is zero.
            pub fn derivative(self) -> Option<Derivative> {
                Derivative::record(|[dy, x, y]| self.derivative_at(dy, x, y))
            }
        }

        impl BinaryFn {
            /// Every function.
            pub const ALL: &[BinaryFn] = &[$( BinaryFn::$b, )*];

            /// The function an op applies, if it is one of these.
            pub fn of(op: &Op) -> Option<BinaryFn> {
                match *op {
                    $( Op::$b => Some(BinaryFn::$b), )*
                    _ => None,
                }
            }

            /// The op applying this function.
            pub fn op(self) -> Op {
                match self {
                    $( BinaryFn::$b => Op::$b, )*
                }
            }

            /// The function's name, as an op.
            pub fn name(self) -> &'static str {
                match self {
                    $( BinaryFn::$b => stringify!($b), )*
                }
            }

            /// Whether the elementwise fusion pass may put it in a `Fused` program.
            pub fn fusable(self) -> bool {
                match self {
                    $( BinaryFn::$b => [$(stringify!($bf)),*].contains(&"fuse"), )*
                }
            }

            /// Whether its kernel may write its output over an input.
            pub fn in_place(self) -> bool {
                match self {
                    $( BinaryFn::$b => [$(stringify!($bf)),*].contains(&"in_place"), )*
                }
            }

            /// Whether f(a, b) = f(b, a) to the bit.
            pub fn commutes(self) -> bool {
                match self {
                    $( BinaryFn::$b => [$(stringify!($bf)),*].contains(&"commutes"), )*
                }
            }

            /// Whether no gradient flows back through it (`Grad::Zero`).
            pub fn zero_gradient(self) -> bool {
                matches!(self.derivative_at(0f64, 0.0, 0.0, 0.0), Grad::Zero)
            }

            /// Whether the inputs broadcast (NumPy rules); otherwise they have one shape.
            pub fn broadcasts(self) -> bool {
                match self {
                    $( BinaryFn::$b => [$(stringify!($bf)),*].contains(&"broadcast"), )*
                }
            }

            /// The function at `a` and `b`.
            #[inline(always)]
            pub(crate) fn eval<T: Scalar>(self, a: T, b: T) -> T {
                match self {
                    $( BinaryFn::$b => { let ($ba, $bb) = (a, b); $g } )*
                }
            }

            /// Calls `w` with the function as a closure of its own type.
            #[inline(always)]
            pub(crate) fn with<T: Scalar, W: Map2<T>>(self, w: W) -> W::Out {
                match self {
                    $( BinaryFn::$b => w.call(move |$ba: T, $bb: T| $g), )*
                }
            }

            /// The derivative at numbers: the gradients of a and b given dy, a, b and y.
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn derivative_at<V: Sym>(self, dy: V, a: V, b: V, y: V) -> Grad<V, 2> {
                match self {
                    $( BinaryFn::$b => { let ($bdy, $bxa, $bxb, $by) = (dy, a, b, y); $bd } )*
                }
            }

            /// The derivative as a program over (dy, a, b, y); None if the
            /// gradient is zero.
            pub fn derivative(self) -> Option<Derivative> {
                Derivative::record(|[dy, a, b, y]| self.derivative_at(dy, a, b, y))
            }
        }
    };
}

elementwise_table!((elementwise_types) {});

impl UnaryFn {
    /// The function on integers, where TensorFlow has it: computed on i64
    /// and wrapping, so that an i32 narrowed back wraps as TensorFlow's does.
    pub fn int(self) -> Option<fn(i64) -> i64> {
        Some(match self {
            UnaryFn::Neg => i64::wrapping_neg,
            UnaryFn::Abs => i64::wrapping_abs,
            UnaryFn::Sign => i64::signum,
            UnaryFn::Square => |x| x.wrapping_mul(x),
            _ => return None,
        })
    }
}

impl BinaryFn {
    /// The function on integers, where TensorFlow has it (see `UnaryFn::int`);
    /// None from the function for a division by zero.
    pub fn int(self) -> Option<fn(i64, i64) -> Option<i64>> {
        Some(match self {
            BinaryFn::Add => |a, b| Some(a.wrapping_add(b)),
            BinaryFn::Sub => |a, b| Some(a.wrapping_sub(b)),
            BinaryFn::Mul => |a, b| Some(a.wrapping_mul(b)),
            BinaryFn::Maximum => |a, b| Some(a.max(b)),
            BinaryFn::Minimum => |a, b| Some(a.min(b)),
            BinaryFn::SquaredDifference => |a, b| {
                let d = a.wrapping_sub(b);
                Some(d.wrapping_mul(d))
            },
            // Rounded toward negative infinity; the remainder has b's sign.
            BinaryFn::FloorDiv => |a, b| {
                let q = a
                    .checked_div(b)
                    .or_else(|| (b == -1).then(|| a.wrapping_neg()))?;
                Some(if a.wrapping_rem(b) != 0 && (a < 0) != (b < 0) {
                    q - 1
                } else {
                    q
                })
            },
            BinaryFn::FloorMod => |a, b| {
                let r = a.checked_rem(b).or_else(|| (b == -1).then_some(0))?;
                Some(if r != 0 && (r < 0) != (b < 0) {
                    r + b
                } else {
                    r
                })
            },
            _ => return None,
        })
    }
}

/// The single gradient of a unary derivative (zero where there is none).
#[inline(always)]
fn only<T: Scalar>(g: Grad<T, 1>) -> T {
    match g {
        Grad::Of([Some(v)]) => v,
        _ => T::zero(),
    }
}

/// The activation a `Dense` applies: the identity or a unary function whose
/// derivative reads its output only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    Sigmoid,
    Tanh,
}

impl Activation {
    /// Every activation but Linear.
    pub const FUNCTIONS: [Activation; 3] =
        [Activation::Relu, Activation::Sigmoid, Activation::Tanh];

    /// The function applied, None for Linear.
    pub fn unary(self) -> Option<UnaryFn> {
        match self {
            Activation::Linear => None,
            Activation::Relu => Some(UnaryFn::Relu),
            Activation::Sigmoid => Some(UnaryFn::Sigmoid),
            Activation::Tanh => Some(UnaryFn::Tanh),
        }
    }

    /// The activation applying `op`, if Dense can apply it.
    pub fn of(op: &Op) -> Option<Activation> {
        let f = UnaryFn::of(op)?;
        Activation::FUNCTIONS
            .into_iter()
            .find(|a| a.unary() == Some(f))
    }
}

// The scalar functions the table's rows name.

/// max(x, 0), keeping NaN.
#[inline(always)]
pub(crate) fn relu<T: Scalar>(x: T) -> T {
    if x > T::zero() || x.is_nan() {
        x
    } else {
        T::zero()
    }
}

/// 1 / (1 + exp(-x)), without overflow for large |x|.
#[inline(always)]
pub(crate) fn sigmoid<T: Scalar>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// log(1 + e^x) as max(x, 0) + log(1 + e^-|x|): no overflow, and exact to
/// rounding for large |x| (x for large x, e^x for very negative x).
#[inline(always)]
pub(crate) fn softplus<T: Scalar>(x: T) -> T {
    if x.is_nan() {
        return x;
    }
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

/// x ^ e; an integral exponent uses `powi`, so negative bases work for it.
#[inline(always)]
pub(crate) fn pow_scalar<T: Scalar>(v: T, e: f64) -> T {
    if e.fract() == 0.0 && e.abs() <= f64::from(i32::MAX) {
        v.powi(e as i32)
    } else {
        v.powf(T::from_f64(e))
    }
}

/// -1, 0 or 1 by the sign of `x`; ±0 and NaN as they are.
#[inline(always)]
pub(crate) fn sign<T: Scalar>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        x
    }
}

/// The nearest integer to `x`, halves to the even one.
#[inline(always)]
pub(crate) fn round_half_even<T: Scalar>(x: T) -> T {
    let r = x.round();
    if (r - x).abs() == T::from_f64(0.5) {
        // A half: round() went away from zero; the even neighbour is 2·round(x/2).
        T::from_f64(2.0) * (x / T::from_f64(2.0)).round()
    } else {
        r
    }
}

/// x / (1 + |x|)
#[inline(always)]
pub(crate) fn softsign<T: Scalar>(x: T) -> T {
    x / (T::one() + x.abs())
}

/// x·Φ(x) = x·erfc(−x/√2)/2, without erf's cancellation for negative x.
#[inline(always)]
pub(crate) fn gelu<T: Scalar>(x: T) -> T {
    let half = T::from_f64(0.5);
    half * x * (-x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).erfc()
}

/// √(2/π) and the cubic coefficient of Gelu's tanh approximation.
const GELU_C: f64 = 0.797_884_560_802_865_4;
const GELU_A: f64 = 0.044_715;

/// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
#[inline(always)]
pub(crate) fn gelu_tanh<T: Scalar>(x: T) -> T {
    let u = T::from_f64(GELU_C) * (x + T::from_f64(GELU_A) * (x * x * x));
    T::from_f64(0.5) * x * (T::one() + u.tanh())
}

/// x for x > 0, else e^x - 1.
#[inline(always)]
pub(crate) fn elu<T: Scalar>(x: T) -> T {
    if x > T::zero() {
        x
    } else {
        x.exp_m1()
    }
}

/// SELU's constants (Klambauer et al., as TensorFlow has them).
pub(crate) const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub(crate) const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// scale · x for x > 0, else scale · alpha · (e^x - 1).
#[inline(always)]
pub(crate) fn selu<T: Scalar>(x: T) -> T {
    let scale = T::from_f64(SELU_SCALE);
    if x > T::zero() {
        scale * x
    } else {
        scale * T::from_f64(SELU_ALPHA) * x.exp_m1()
    }
}

/// x for x > 0, else alpha · x, with alpha a 32-bit float (TensorFlow's
/// attribute type), so that an f64 graph computes what TensorFlow's does.
#[inline(always)]
pub(crate) fn leaky_relu<T: Scalar>(x: T, alpha: f64) -> T {
    if x > T::zero() {
        x
    } else {
        T::from_f64(f64::from(alpha as f32)) * x
    }
}

/// max(x, 0) − x·z + log(1 + e^−|x|): no overflow for large |x|.
#[inline(always)]
pub(crate) fn sigmoid_cross_entropy<T: Scalar>(x: T, z: T) -> T {
    x.max(T::zero()) - x * z + (-x.abs()).exp().ln_1p()
}

/// The smaller of `a` and `b`; NaN if either is NaN (like `np.minimum`).
#[inline(always)]
pub(crate) fn minimum<T: Scalar>(a: T, b: T) -> T {
    if a <= b || a.is_nan() {
        a
    } else {
        b
    }
}

/// The larger of `a` and `b`; NaN if either is NaN (like `np.maximum`).
#[inline(always)]
pub(crate) fn maximum<T: Scalar>(a: T, b: T) -> T {
    if a >= b || a.is_nan() {
        a
    } else {
        b
    }
}

/// a − floor(a / b)·b as C's `fmod` corrected to b's sign (TensorFlow's
/// floor-mod for floats): exact, unlike the formula.
#[inline(always)]
pub(crate) fn floor_mod<T: Scalar>(a: T, b: T) -> T {
    let r = a % b;
    if r != T::zero() && (r < T::zero()) != (b < T::zero()) {
        r + b
    } else {
        r
    }
}

/// 1 where `a >= b`, else 0.
#[inline(always)]
pub(crate) fn greater_equal<T: Scalar>(a: T, b: T) -> T {
    if a >= b {
        T::one()
    } else {
        T::zero()
    }
}

/// 1 where `a == b`, else 0.
#[inline(always)]
pub(crate) fn equal<T: Scalar>(a: T, b: T) -> T {
    if a == b {
        T::one()
    } else {
        T::zero()
    }
}

/// ReluGrad's scalar rule: `g` where `v > 0`, else 0.
#[inline(always)]
pub(crate) fn relu_grad_at<T: Scalar>(g: T, v: T) -> T {
    if v > T::zero() {
        g
    } else {
        T::zero()
    }
}
