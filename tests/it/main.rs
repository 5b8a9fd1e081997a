//! The integration tests, in one binary (ripgrep's layout): one link instead of one per file.
//! Each module starts the real `mcpo` binary or its library on 127.0.0.1 against real servers.

mod common;

mod chaos;
mod chaos_gallery;
mod chaos_invalid;
mod cli_config;
mod cli_surface;
mod concurrency;
mod demo;
mod docs_reference;
mod fake_faults;
mod hardening;
mod hostile;
mod mcp_endpoint;
mod oauth;
mod observability;
mod openwebui;
mod promises;
mod proxy_contract;
mod recovery;
mod reload;
mod rolling;
mod schema_props;
mod shared_cache;
mod shutdown;
mod sse;
mod tls;
mod transports;
mod upstream_redirects;
