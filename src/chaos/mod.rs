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
//! Architecture invariant: nothing here performs I/O other than [`scenario::parse_scenario_file`]
//! reading its one file. The runtime (fake-server hub, load driver, the proxy as a child process)
//! builds on these types and feeds them what it measured.

pub mod report;
pub mod scenario;
pub mod verdict;
