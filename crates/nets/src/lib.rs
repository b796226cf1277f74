//! Networks, losses, optimizers, learning-rate policies, checkpoints and TorchScript export on
//! tch (libtorch).
