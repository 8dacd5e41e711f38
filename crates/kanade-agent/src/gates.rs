//! Gates (filled in next).
