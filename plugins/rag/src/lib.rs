//! The `rag` analyzer.
