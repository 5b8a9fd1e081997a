//! OpenAPI 3.1 generation from MCP tool listings.

pub mod schema;
