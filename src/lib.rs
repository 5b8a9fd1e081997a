//! mcpo: an MCP-to-OpenAPI proxy that keeps answering when upstreams misbehave.
//!
//! The library holds every subsystem; `src/main.rs` is only the command-line edge.
//! See `ARCHITECTURE.md` for the map of modules and the invariants between them.

pub mod bounds;
pub mod cache;
pub mod catalog;
pub mod chaos;
pub mod cli;
pub mod config;
pub mod failure;
pub mod fake;
pub mod heap;
pub mod html;
pub mod http;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod openapi;
pub mod recovery;
pub mod redact;
pub mod reference;
pub mod reload;
pub mod result_type;
pub mod serve;
pub mod shared_cache;
pub mod upstream;
