//! The `fact-check` analyzer.
