//! The gradients of `DepthwiseConv2dNativeBackpropInput` (`runtime/src/op/depthwise_conv2d_backprop_input.rs`): those of the
//! matching Conv2D op (`conv2d_backprop_input.rs`), made depthwise, as TensorFlow's are.

pub(super) const GRADIENT: super::Gradient = super::conv2d_backprop_input::GRADIENT;
