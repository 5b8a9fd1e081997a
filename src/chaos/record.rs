//! What the runtime of a chaos run observed beyond the request records, as plain data: the
//! boundary between the runtime (`hub`, `run`) and the pure modules (`verdict`, `report`),
//! so that neither side imports the other's workings.

use std::collections::BTreeMap;
use std::time::Duration;

/// Request ids of the harness's readiness calls start here, far above any load's, so that the
/// ledger can tell the proxy's use of a server under load from the calls that proved it ready.
pub const PROBE_IDS: u64 = 1 << 40;

/// The delivery ledger: proof that the faults reached the servers the proxy talks to, and how
/// much the proxy asked of them.
///
/// Without it a proxy that starts no server at all cannot be told from one that recovers
/// perfectly: no fault reaches it, so nothing ever fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ledger {
    /// Per fault event (its index in the scenario).
    pub events: BTreeMap<usize, Delivery>,
    /// Every fake instance that said hello to the hub, in order.
    pub instances: Vec<InstanceRecord>,
    /// Every `tools/call` a fake received, in order of arrival.
    pub calls: Vec<CallSeen>,
}

/// How far one fault event got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Fake instances that were told about it (a one-shot fault: sent to; a window: in force
    /// on them at some point).
    pub instances_reached: u64,
    /// What it changed: requests answered differently, starts delayed or refused, instances
    /// crashed or made to forget their sessions.
    pub requests_changed: u64,
}

/// One fake server process (or, for HTTP fakes, the harness's long-lived instance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub server: String,
    pub pid: u32,
    pub transport: String,
    /// When it said hello, on the run's clock (0 for instances that came before the load).
    pub connected_at: Duration,
    /// `tools/call` requests it received.
    pub calls: u64,
}

/// One `tools/call` as a fake received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSeen {
    pub at: Duration,
    pub server: String,
    /// The harness request it carries, when its arguments say (`fake::wire::request_of`);
    /// `None` for calls the harness did not make, such as a proxy's own probes.
    pub request: Option<u64>,
}

impl Ledger {
    /// `tools/call` requests the fakes of `server` received.
    pub fn calls_to(&self, server: &str) -> u64 {
        self.instances
            .iter()
            .filter(|i| i.server == server)
            .map(|i| i.calls)
            .sum()
    }

    /// Calls of the load (not readiness calls, not calls the harness did not make) that the
    /// fakes of a server matching `server` received.
    pub fn load_calls_to(&self, server: impl Fn(&str) -> bool) -> u64 {
        self.calls
            .iter()
            .filter(|c| server(&c.server) && c.request.is_some_and(|r| r < PROBE_IDS))
            .count() as u64
    }

    /// When the first instance of a server matching `server` said hello, if one ever did.
    pub fn first_connected(&self, server: impl Fn(&str) -> bool) -> Option<Duration> {
        self.instances
            .iter()
            .filter(|i| server(&i.server))
            .map(|i| i.connected_at)
            .min()
    }

    /// The delivery of event `index` (nothing, if the hub never heard of it).
    pub fn delivery(&self, index: usize) -> Delivery {
        self.events.get(&index).copied().unwrap_or_default()
    }
}
