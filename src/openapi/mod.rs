//! OpenAPI 3.1 generation from MCP tool listings.
//!
//! Architecture invariant: pure functions over JSON; no I/O, no knowledge of MCP sessions or
//! HTTP handlers, so it is tested and benchmarked on its own.

pub mod document;
pub mod schema;
