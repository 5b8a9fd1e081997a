//! Lossless conversion of a tool's JSON Schema into OpenAPI 3.1 form (stub, being written).
