//! aiaa infer and aiaa evaluate: predictions and reports over a datalist, with simulated clicks.
