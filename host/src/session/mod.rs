//! One conversation: the pure turn logic ([`machine`], [`queue`], [`runs`]), context
//! compaction ([`compaction`]) and the tokio actor that drives it ([`driver`]).

pub mod compaction;
pub mod driver;
pub mod machine;
pub mod queue;
pub mod runs;

pub use driver::{Answer, Session, SessionClosed};
pub use machine::{SessionSettings, TurnEnd};
