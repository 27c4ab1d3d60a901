//! State shared by the sessions (on the bridge's threads or in process) and the control
//! plane: the active policy, the policy registry, the env ids in use, counters and the
//! decision-latency histogram.

use hdrhistogram::Histogram;
use malcolm_policies::{LearnerStatus, Mode, PolicyError, PolicyFactory};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Makes a policy factory from a name (baselines and learners). The server keeps one factory
/// per name so switching away from a learner and back keeps what it learned.
pub type FactoryMaker =
    dyn Fn(&str) -> Result<Arc<dyn PolicyFactory>, PolicyError> + Send + Sync + 'static;

/// Monotonic counters (and one gauge, `envs_connected`), read by the control plane.
#[derive(Debug, Default)]
pub struct Counters {
    /// Open sessions (a gauge).
    pub envs_connected: AtomicU64,
    pub steps: AtomicU64,
    pub decisions: AtomicU64,
    /// Requests answered with an Error (refusals of bad input included).
    pub errors: AtomicU64,
    /// Sessions ended without Close: silent past the timeout, or their connection dropped.
    pub sessions_expired: AtomicU64,
    /// Of those, the ones whose connection ZeroMQ reported gone (the env died, or sent a
    /// message above the hard cap).
    pub disconnects: AtomicU64,
    pub episodes: AtomicU64,
    pub outcomes: AtomicU64,
    pub outcomes_missed: AtomicU64,
    /// Tasks placed on a remote node while the origin's uplink or the target's downlink was
    /// PFC-paused in the Step's link state (behind a paused link at decision time).
    pub placed_behind_paused: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The active policy with a generation number: sessions re-create their per-session policy
/// when the generation changes (control-plane `SetPolicy` / `LoadCheckpoint`).
struct Active {
    generation: u64,
    factory: Arc<dyn PolicyFactory>,
}

pub struct Shared {
    active: RwLock<Active>,
    /// Mirrors `active.factory.decides_inline()` for the bridge's per-message check.
    inline: AtomicBool,
    factories: Mutex<HashMap<String, Arc<dyn PolicyFactory>>>,
    maker: Box<FactoryMaker>,
    /// Env id -> session id of the open sessions (env ids are unique among them).
    env_ids: Mutex<HashMap<String, u64>>,
    pub counters: Counters,
    /// Agent-side time to handle a Step (receive to reply queued), nanoseconds. Reset by
    /// whoever reports an interval (the metrics stream).
    decide_ns: Mutex<Histogram<u64>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("policy", &self.policy_name())
            .finish_non_exhaustive()
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

impl Shared {
    /// Starts with the policy `initial` made by `maker`.
    pub fn new(initial: &str, maker: Box<FactoryMaker>) -> Result<Arc<Self>, PolicyError> {
        let factory = maker(initial)?;
        let mut factories = HashMap::new();
        factories.insert(factory.name().to_string(), factory.clone());
        Ok(Arc::new(Self {
            inline: AtomicBool::new(factory.decides_inline()),
            active: RwLock::new(Active {
                generation: 1,
                factory,
            }),
            factories: Mutex::new(factories),
            maker,
            env_ids: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            decide_ns: Mutex::new(new_histogram()),
        }))
    }

    /// Serves `factory` and nothing else (in-process runs: every other name is unknown).
    pub fn fixed(factory: Arc<dyn PolicyFactory>) -> Arc<Self> {
        let name = factory.name().to_string();
        let only = factory.clone();
        Self::new(
            &name,
            Box::new(move |n: &str| {
                if n == only.name() {
                    Ok(only.clone())
                } else {
                    Err(PolicyError::UnknownPolicy(n.to_string()))
                }
            }),
        )
        .expect("the fixed factory makes itself")
    }

    /// The active factory and its generation.
    pub fn active(&self) -> (u64, Arc<dyn PolicyFactory>) {
        let a = self.active.read().expect("active policy lock");
        (a.generation, a.factory.clone())
    }

    pub fn generation(&self) -> u64 {
        self.active.read().expect("active policy lock").generation
    }

    /// Whether the active policy decides cheaply enough to run on the receiving thread
    /// (`PolicyFactory::decides_inline`).
    pub fn decides_inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    pub fn policy_name(&self) -> String {
        self.active().1.name().to_string()
    }

    /// Makes `name` the active policy (reusing the factory made earlier for that name), keeping
    /// the current mode.
    pub fn set_policy(&self, name: &str) -> Result<Arc<dyn PolicyFactory>, PolicyError> {
        let mode = self.active().1.mode();
        let factory = {
            let mut map = self.factories.lock().expect("factories lock");
            match map.get(name) {
                Some(f) => f.clone(),
                None => {
                    let f = (self.maker)(name)?;
                    map.insert(name.to_string(), f.clone());
                    map.insert(f.name().to_string(), f.clone());
                    f
                }
            }
        };
        factory.set_mode(mode);
        self.bump(factory.clone());
        Ok(factory)
    }

    /// Marks the active policy as changed (new weights loaded): sessions rebuild their policy.
    pub fn bump(&self, factory: Arc<dyn PolicyFactory>) {
        let mut a = self.active.write().expect("active policy lock");
        a.generation += 1;
        self.inline
            .store(factory.decides_inline(), Ordering::Relaxed);
        a.factory = factory;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.active().1.set_mode(mode);
    }

    pub fn mode(&self) -> Mode {
        self.active().1.mode()
    }

    pub fn learner_status(&self) -> LearnerStatus {
        self.active().1.status()
    }

    /// Claims `env_id` for `session`; `Err` with the session that holds it.
    pub fn claim_env_id(&self, env_id: &str, session: u64) -> Result<(), u64> {
        let mut ids = self.env_ids.lock().expect("env ids lock");
        match ids.get(env_id) {
            Some(&other) if other != session => Err(other),
            _ => {
                ids.insert(env_id.to_string(), session);
                Ok(())
            }
        }
    }

    /// Releases `env_id` if `session` holds it.
    pub fn release_env_id(&self, env_id: &str, session: u64) {
        let mut ids = self.env_ids.lock().expect("env ids lock");
        if ids.get(env_id) == Some(&session) {
            ids.remove(env_id);
        }
    }

    pub fn record_decide_ns(&self, ns: u64) {
        if let Ok(mut h) = self.decide_ns.lock() {
            h.saturating_record(ns.max(1));
        }
    }

    /// (p50, p99, count) of the decision latency since the last call, then resets.
    pub fn take_decide_percentiles(&self) -> (u64, u64, u64) {
        let mut h = self.decide_ns.lock().expect("latency lock");
        let r = (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.len());
        h.reset();
        r
    }
}
