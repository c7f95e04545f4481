//! The `moderation` analyzer.
