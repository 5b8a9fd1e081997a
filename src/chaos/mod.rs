//! `mcpo chaos`: run a fault scenario against a proxy and judge it by its SLOs.
//!
//! This folder holds the parts of a chaos run that are pure data and arithmetic, so that they can
//! be tested without processes, sockets or clocks:
//!
//! - [`scenario`] reads a scenario file strictly into a [`scenario::Scenario`]: every unknown key,
//!   bad duration or impossible schedule is an error naming the file, line and key.
//! - [`verdict`] turns the records of a run (one per request) and the fault events into SLO
//!   results, exactly as `SCENARIOS.md` defines recovery time, recovery rate and success rate.
//! - [`report`] renders a run for people and CI: JSON, JUnit XML and one self-contained HTML page.
//!
//! The runtime builds on them:
//!
//! - [`hub`] is the fault hub every fake server connects to (protocol in `fake::wire`);
//! - [`load`] drives open-loop load and records every request;
//! - [`procs`] starts and watches the processes of a run and finds what they left behind;
//! - [`progress`] shows the run live; [`run`] puts it all together, in order.
//!
//! Architecture invariant: `scenario`, `verdict` and `report` perform no I/O other than
//! [`scenario::parse_scenario_file`] reading its one file. The runtime talks to the proxy only
//! over HTTP, as a user would: it never imports `http`, `upstream` or `serve`.

/// An annotated scenario, valid as it is: what `mcpo chaos --example` prints.
pub const EXAMPLE: &str = include_str!("example.yaml");

pub mod answers;
pub mod caller;
pub mod hub;
pub mod load;
pub mod procs;
pub mod progress;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod verdict;
