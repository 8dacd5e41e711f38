//! Executor (filled in next).
