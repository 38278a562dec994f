//! loom models of the core protocols (see the loom issue).
