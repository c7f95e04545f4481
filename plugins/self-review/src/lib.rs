//! The `self-review` analyzer.
