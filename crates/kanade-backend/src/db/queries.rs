//! Reads for the API.
