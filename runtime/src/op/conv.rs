//! What the convolution ops share: their attributes' checks, the output
//! size and padding of each spatial axis (TensorFlow's rules), and the
//! index maths of the direct kernels. The ops are `conv2d.rs`,
//! `conv2d_backprop_input.rs` and `conv2d_backprop_filter.rs`.

use super::{DataFormat, Op, Padding};
use crate::shape::Dim;
use crate::Shape;
use ndarray::{ArrayViewD, ArrayViewMutD};

/// A convolution's attributes, as every convolution op has them.
pub struct Conv<'a> {
    pub strides: &'a [i64],
    pub padding: Padding,
    pub explicit_paddings: &'a [i64],
    pub dilations: &'a [i64],
    pub data_format: DataFormat,
}

/// The attributes of a convolution op, and whether it is depthwise.
fn conv_parts(op: &Op) -> Option<(Conv<'_>, bool)> {
    let depthwise = matches!(
        op,
        Op::DepthwiseConv2dNative { .. }
            | Op::DepthwiseConv2dNativeBackpropInput { .. }
            | Op::DepthwiseConv2dNativeBackpropFilter { .. }
    );
    match op {
        Op::Conv2D {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::FusedConv2D {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
            ..
        }
        | Op::Conv2DBackpropInput {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::Conv2DBackpropFilter {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::DepthwiseConv2dNative {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::DepthwiseConv2dNativeBackpropInput {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        }
        | Op::DepthwiseConv2dNativeBackpropFilter {
            strides,
            padding,
            explicit_paddings,
            dilations,
            data_format,
        } => Some((
            Conv {
                strides,
                padding: *padding,
                explicit_paddings,
                dilations,
                data_format: *data_format,
            },
            depthwise,
        )),
        _ => None,
    }
}

/// Which of a convolution's three ops: the forward one or a backprop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    Forward,
    BackpropInput,
    BackpropFilter,
}

/// Which pooling op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    MaxPool,
    MaxPoolGrad,
    MaxPoolGradGrad,
    AvgPool,
    AvgPoolGrad,
}

impl Op {
    /// A convolution's attributes (of the forward op or a backprop, plain or
    /// depthwise), and whether it is depthwise; None for other ops.
    pub fn conv_attrs(&self) -> Option<(Conv<'_>, bool)> {
        conv_parts(self)
    }

    /// A pooling's (ksize, strides, padding, data_format), of the forward
    /// op or a gradient; None for other ops.
    pub fn pool_attrs(&self) -> Option<(&[i64], &[i64], Padding, DataFormat)> {
        pool_parts(self)
    }

    /// The convolution op of `kind` with this convolution's attributes,
    /// depthwise if this one is (what the convolutions' gradients are made
    /// of); None if this is not a convolution.
    pub fn conv_like(&self, kind: ConvKind) -> Option<Op> {
        let (c, depthwise) = conv_parts(self)?;
        let (strides, explicit_paddings, dilations) = (
            c.strides.to_vec(),
            c.explicit_paddings.to_vec(),
            c.dilations.to_vec(),
        );
        let (padding, data_format) = (c.padding, c.data_format);
        macro_rules! make {
            ($variant:ident) => {
                Op::$variant {
                    strides,
                    padding,
                    explicit_paddings,
                    dilations,
                    data_format,
                }
            };
        }
        Some(match (kind, depthwise) {
            (ConvKind::Forward, false) => make!(Conv2D),
            (ConvKind::BackpropInput, false) => make!(Conv2DBackpropInput),
            (ConvKind::BackpropFilter, false) => make!(Conv2DBackpropFilter),
            (ConvKind::Forward, true) => make!(DepthwiseConv2dNative),
            (ConvKind::BackpropInput, true) => make!(DepthwiseConv2dNativeBackpropInput),
            (ConvKind::BackpropFilter, true) => make!(DepthwiseConv2dNativeBackpropFilter),
        })
    }

    /// The pooling op of `kind` with this pooling's attributes (what the
    /// poolings' gradients are made of); None if this is not a pooling.
    pub fn pool_like(&self, kind: PoolKind) -> Option<Op> {
        let (ksize, strides, padding, data_format) = pool_parts(self)?;
        let (ksize, strides) = (ksize.to_vec(), strides.to_vec());
        macro_rules! make {
            ($variant:ident) => {
                Op::$variant {
                    ksize,
                    strides,
                    padding,
                    data_format,
                }
            };
        }
        Some(match kind {
            PoolKind::MaxPool => make!(MaxPool),
            PoolKind::MaxPoolGrad => make!(MaxPoolGrad),
            PoolKind::MaxPoolGradGrad => make!(MaxPoolGradGrad),
            PoolKind::AvgPool => make!(AvgPool),
            PoolKind::AvgPoolGrad => make!(AvgPoolGrad),
        })
    }
}

impl<'a> Conv<'a> {
    /// The attributes of a convolution op.
    pub fn of(op: &'a Op) -> Result<Conv<'a>, String> {
        conv_parts(op)
            .map(|(c, _)| c)
            .ok_or_else(|| format!("{} is not a convolution", op.name()))
    }

    /// Where the batch, the two spatial axes and the channels are.
    pub fn axes(&self) -> [usize; 4] {
        match self.data_format {
            DataFormat::NHWC => [0, 1, 2, 3],
            DataFormat::NCHW => [0, 2, 3, 1],
        }
    }

    /// The strides and dilations of the two spatial axes, checked: four
    /// entries each (in the data format's order), 1 on the batch and the
    /// channels, at least 1 on the spatial axes (TensorFlow's rules).
    pub(super) fn spatial(&self) -> Result<[Axis; 2], String> {
        let [n, h, w, c] = self.axes();
        let four = |name: &str, v: &[i64]| -> Result<[usize; 2], String> {
            if v.len() != 4 || v[n] != 1 || v[c] != 1 || v[h] < 1 || v[w] < 1 {
                return Err(format!(
                    "{name} must be 4 entries, 1 on the batch and channels and at least 1 on the \
                     spatial axes ({:?}), got {v:?}",
                    self.data_format
                ));
            }
            Ok([v[h] as usize, v[w] as usize])
        };
        let s = four("strides", self.strides)?;
        let d = four("dilations", self.dilations)?;
        let pads = match self.padding {
            Padding::EXPLICIT => {
                let p = self.explicit_paddings;
                if p.len() != 8
                    || p.iter().any(|&v| v < 0)
                    || p[2 * n] + p[2 * n + 1] + p[2 * c] + p[2 * c + 1] != 0
                {
                    return Err(format!(
                        "explicit_paddings must be 8 entries, a (before, after) pair per axis, \
                         none negative and 0 on the batch and channels, got {p:?}"
                    ));
                }
                Some([
                    [p[2 * h] as usize, p[2 * h + 1] as usize],
                    [p[2 * w] as usize, p[2 * w + 1] as usize],
                ])
            }
            _ if !self.explicit_paddings.is_empty() => {
                return Err(format!(
                    "explicit_paddings are for padding EXPLICIT, got {:?} with {:?}",
                    self.explicit_paddings, self.padding
                ))
            }
            _ => None,
        };
        Ok([0, 1].map(|k| Axis {
            stride: s[k],
            dilation: d[k],
            explicit: pads.map(|p| p[k]),
        }))
    }

    /// The output spatial sizes and the padding before each, for an input of
    /// spatial sizes `size` and a filter of spatial sizes `kernel`.
    pub(super) fn geometry(
        &self,
        size: [usize; 2],
        kernel: [usize; 2],
    ) -> Result<[Extent; 2], String> {
        let axes = self.spatial()?;
        let mut out = [Extent::default(); 2];
        for k in 0..2 {
            out[k] = axes[k].extent(self.padding, size[k], kernel[k])?;
        }
        Ok(out)
    }

    /// The shape of a tensor of this data format from (batch, height, width, channels).
    pub fn shape(&self, [n, h, w, c]: [Dim; 4]) -> Shape {
        match self.data_format {
            DataFormat::NHWC => Shape(vec![n, h, w, c]),
            DataFormat::NCHW => Shape(vec![n, c, h, w]),
        }
    }

    /// (batch, height, width, channels) of a rank-4 shape in this data format.
    pub fn split(&self, what: &str, s: &Shape) -> Result<[Dim; 4], String> {
        if s.rank() != 4 {
            return Err(format!("{what} must have rank 4, got {s}"));
        }
        Ok(self.axes().map(|a| s.0[a].clone()))
    }

    /// (height, width), known, of a rank-4 shape in this data format.
    pub fn spatial_sizes(&self, what: &str, s: &Shape) -> Result<[usize; 2], String> {
        let [_, h, w, _] = self.split(what, s)?;
        match (h.known(), w.known()) {
            (Some(h), Some(w)) => Ok([h, w]),
            _ => Err(format!("{what} {s} must have known spatial sizes")),
        }
    }

    /// `x` (in this data format) as a view indexed (batch, height, width, channels).
    pub fn nhwc<'v, T>(&self, x: ArrayViewD<'v, T>) -> ArrayViewD<'v, T> {
        match self.data_format {
            DataFormat::NHWC => x,
            DataFormat::NCHW => x.permuted_axes(vec![0, 2, 3, 1]),
        }
    }

    /// `nhwc` for writing.
    pub fn nhwc_mut<'v, T>(&self, x: ArrayViewMutD<'v, T>) -> ArrayViewMutD<'v, T> {
        match self.data_format {
            DataFormat::NHWC => x,
            DataFormat::NCHW => x.permuted_axes(vec![0, 2, 3, 1]),
        }
    }
}

/// One spatial axis's stride, dilation and explicit padding.
#[derive(Clone, Copy)]
pub(super) struct Axis {
    stride: usize,
    dilation: usize,
    explicit: Option<[usize; 2]>,
}

/// One spatial axis of a convolution: its output size, the padding before
/// it, the stride and the dilation.
#[derive(Clone, Copy, Default, Debug, PartialEq)]
pub(super) struct Extent {
    pub out: usize,
    pub before: usize,
    pub stride: usize,
    pub dilation: usize,
}

impl Extent {
    /// The input position output `o` and filter tap `t` read, if inside.
    #[inline]
    pub fn input(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        let at = o
            .checked_mul(self.stride)?
            .checked_add(t.checked_mul(self.dilation)?)?;
        at.checked_sub(self.before).filter(|&i| i < size)
    }
}

impl Axis {
    /// TensorFlow's sizes: VALID `ceil((in - k_eff + 1) / s)`; SAME `ceil(in / s)`
    /// with `max((out - 1)·s + k_eff - in, 0)` padding, the odd pixel at the
    /// end; EXPLICIT `(in + pads - k_eff) / s + 1`; k_eff = (k - 1)·d + 1.
    fn extent(&self, padding: Padding, size: usize, k: usize) -> Result<Extent, String> {
        let eff = k
            .checked_sub(1)
            .and_then(|k1| k1.checked_mul(self.dilation))
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| {
                format!(
                    "a filter of size {k} (dilation {}) is empty or too large",
                    self.dilation
                )
            })?;
        let s = self.stride;
        let (out, before) = match padding {
            Padding::VALID => {
                if size < eff {
                    return Err(format!(
                        "a filter of size {k} (dilated to {eff}) is larger than the input's {size} with VALID padding"
                    ));
                }
                ((size - eff) / s + 1, 0)
            }
            Padding::SAME => {
                let out = size.div_ceil(s);
                let reach = (out.saturating_sub(1) * s).saturating_add(eff);
                (out, reach.saturating_sub(size) / 2)
            }
            Padding::EXPLICIT => {
                let [b, a] = self.explicit.unwrap_or_default();
                let padded = size
                    .checked_add(b)
                    .and_then(|v| v.checked_add(a))
                    .ok_or_else(|| format!("explicit paddings {b} and {a} are too large"))?;
                if padded < eff {
                    return Err(format!(
                        "a filter of size {k} (dilated to {eff}) is larger than the padded input's {padded}"
                    ));
                }
                ((padded - eff) / s + 1, b)
            }
        };
        Ok(Extent {
            out,
            before,
            stride: s,
            dilation: self.dilation,
        })
    }
}

/// A filter's spatial sizes (known, at least 1) and its input and output channels.
pub(super) fn filter_dims(f: &Shape) -> Result<(usize, usize, Dim, Dim), String> {
    match f.0.as_slice() {
        [kh, kw, c, o] => match (kh.known(), kw.known()) {
            (Some(kh), Some(kw)) if kh >= 1 && kw >= 1 => Ok((kh, kw, c.clone(), o.clone())),
            _ => Err(format!(
                "a filter's spatial sizes must be known and at least 1, got {f}"
            )),
        },
        _ => Err(format!(
            "a filter must have rank 4 [kh, kw, in, out], got {f}"
        )),
    }
}

/// `{strides: .., padding: .., ...}`, as every convolution prints its attributes.
pub(super) fn attrs_text(op: &Op) -> String {
    let Ok(c) = Conv::of(op) else {
        return String::new();
    };
    format!(
        "{{strides: {:?}, padding: {:?}, explicit_paddings: {:?}, dilations: {:?}, data_format: {:?}}}",
        c.strides, c.padding, c.explicit_paddings, c.dilations, c.data_format
    )
}

static NO_DILATION: [i64; 4] = [1; 4];

/// A pooling op's attributes as the geometry of a convolution without
/// dilation, and its window's (height, width).
pub(super) fn pool(op: &Op) -> Result<(Conv<'_>, [usize; 2]), String> {
    let (ksize, strides, padding, data_format) =
        pool_parts(op).ok_or_else(|| format!("{} is not a pooling", op.name()))?;
    if padding == Padding::EXPLICIT {
        return Err("pooling pads VALID or SAME".into());
    }
    let conv = Conv {
        strides,
        padding,
        explicit_paddings: &[],
        dilations: &NO_DILATION,
        data_format,
    };
    let [n, h, w, c] = conv.axes();
    if ksize.len() != 4 || ksize[n] != 1 || ksize[c] != 1 || ksize[h] < 1 || ksize[w] < 1 {
        return Err(format!(
            "ksize must be 4 entries, 1 on the batch and channels and at least 1 on the \
             spatial axes ({data_format:?}), got {ksize:?}"
        ));
    }
    Ok((conv, [ksize[h] as usize, ksize[w] as usize]))
}

/// The pooled shape of `x`: (batch, out height, out width, channels) in the data format.
pub(super) fn pooled(conv: &Conv, window: [usize; 2], x: &Shape) -> Result<Shape, String> {
    let [n, _, _, c] = conv.split("the input", x)?;
    let g = conv.geometry(conv.spatial_sizes("the input", x)?, window)?;
    Ok(conv.shape([n, Dim::Known(g[0].out), Dim::Known(g[1].out), c]))
}

/// A pooling op's (ksize, strides, padding, data_format).
fn pool_parts(op: &Op) -> Option<(&[i64], &[i64], Padding, DataFormat)> {
    match op {
        Op::MaxPool {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::MaxPoolGrad {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::MaxPoolGradGrad {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::AvgPool {
            ksize,
            strides,
            padding,
            data_format,
        }
        | Op::AvgPoolGrad {
            ksize,
            strides,
            padding,
            data_format,
        } => Some((ksize, strides, *padding, *data_format)),
        _ => None,
    }
}

/// `{ksize: .., strides: .., padding: .., data_format: ..}`.
pub(super) fn pool_attrs_text(op: &Op) -> String {
    pool_parts(op).map_or_else(String::new, |(ksize, strides, padding, data_format)| {
        format!(
            "{{ksize: {ksize:?}, strides: {strides:?}, padding: {padding:?}, data_format: {data_format:?}}}"
        )
    })
}

/// A depthwise filter's [kh, kw, C, M], all known, the spatial sizes at least 1.
pub(super) fn depthwise_filter(f: &Shape) -> Result<[usize; 4], String> {
    match f.concrete().as_deref() {
        Some(&[kh, kw, c, m]) if kh >= 1 && kw >= 1 => Ok([kh, kw, c, m]),
        _ => Err(format!(
            "a depthwise filter must be [kh, kw, in, multiplier] of known sizes, got {f}"
        )),
    }
}

/// Whether out_backprop `dy` is what Conv2D makes of the input `x` and filter `f`.
pub(super) fn conv_fits(conv: &Conv, x: &Shape, f: &Shape, dy: &Shape) -> Result<(), String> {
    let [n, _, _, c] = conv.split("the input", x)?;
    let (kh, kw, fc, fo) = filter_dims(f)?;
    let [dn, dh, dw, dc] = conv.split("out_backprop", dy)?;
    let g = conv.geometry(conv.spatial_sizes("the input", x)?, [kh, kw])?;
    let fits = super::unify(&c, &fc).is_ok()
        && super::unify(&n, &dn).is_ok()
        && super::unify(&dc, &fo).is_ok()
        && dh.known() == Some(g[0].out)
        && dw.known() == Some(g[1].out);
    if fits {
        return Ok(());
    }
    Err(format!(
        "out_backprop {dy} is not what Conv2D makes of an input {x} and a filter {f} ({:?})",
        conv.data_format
    ))
}

/// Whether out_backprop `dy` is what DepthwiseConv2dNative makes of the input `x` and filter `f`.
pub(super) fn depthwise_fits(conv: &Conv, x: &Shape, f: &Shape, dy: &Shape) -> Result<(), String> {
    let [n, _, _, c] = conv.split("the input", x)?;
    let [kh, kw, fc, m] = depthwise_filter(f)?;
    let [dn, dh, dw, dc] = conv.split("out_backprop", dy)?;
    let g = conv.geometry(conv.spatial_sizes("the input", x)?, [kh, kw])?;
    let fits = super::unify(&c, &Dim::Known(fc)).is_ok()
        && super::unify(&n, &dn).is_ok()
        && dc.known() == fc.checked_mul(m)
        && dh.known() == Some(g[0].out)
        && dw.known() == Some(g[1].out);
    if fits {
        return Ok(());
    }
    Err(format!(
        "out_backprop {dy} is not what DepthwiseConv2dNative makes of an input {x} and a filter {f} ({:?})",
        conv.data_format
    ))
}
