//! The gradients of `DepthwiseConv2dNative` (`runtime/src/op/depthwise_conv2d.rs`): those of the
//! matching Conv2D op (`conv2d.rs`), made depthwise, as TensorFlow's are.

pub(super) const GRADIENT: super::Gradient = super::conv2d::GRADIENT;
