//! Training jobs: the trainer core (aiaa train), TensorBoard events, export, and the trainer service.
