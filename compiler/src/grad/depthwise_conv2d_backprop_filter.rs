//! The gradients of `DepthwiseConv2dNativeBackpropFilter` (`runtime/src/op/depthwise_conv2d_backprop_filter.rs`): those of the
//! matching Conv2D op (`conv2d_backprop_filter.rs`), made depthwise, as TensorFlow's are.

pub(super) const GRADIENT: super::Gradient = super::conv2d_backprop_filter::GRADIENT;
