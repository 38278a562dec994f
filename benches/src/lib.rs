//! Baselines for the criterion benches (see the benches issue).
