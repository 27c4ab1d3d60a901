//! Replay of recorded task traces (CSV, streamed with one row of look-ahead) and their
//! per-class mean service.

use super::{Estimator, NewTask, TraceSource, TraceTask};
use crate::error::SimError;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct CsvRow {
    arrival_ns: u64,
    origin: u32,
    service_ns: u64,
    deadline_ns: u64,
    size_bytes: u32,
    #[serde(default)]
    class: Option<u32>,
    #[serde(default)]
    estimate_ns: Option<u64>,
}

/// Live trace reader: one row of look-ahead.
pub(crate) struct TraceGen {
    rows: Box<dyn Iterator<Item = Result<TraceTask, SimError>> + Send>,
    next: Option<TraceTask>,
    nodes: u32,
    last_arrival: u64,
    /// For rows without an `estimate_ns`.
    estimator: Option<Estimator>,
}

impl TraceGen {
    /// Opens a trace; `estimator` makes the estimates of rows that carry none (`None`: the
    /// true service, for validation passes that only read).
    pub fn open(
        src: &TraceSource,
        nodes: u32,
        estimator: Option<Estimator>,
    ) -> Result<Self, SimError> {
        let rows: Box<dyn Iterator<Item = Result<TraceTask, SimError>> + Send> = match src {
            TraceSource::Inline(v) => Box::new(v.clone().into_iter().map(Ok)),
            TraceSource::File(path) => {
                let reader = csv::ReaderBuilder::new()
                    .trim(csv::Trim::All)
                    .from_path(path)
                    .map_err(|e| SimError::Trace(format!("{}: {e}", path.display())))?;
                let p = path.clone();
                Box::new(reader.into_deserialize::<CsvRow>().map(move |r| {
                    r.map(|row| TraceTask {
                        arrival_ns: row.arrival_ns,
                        origin: row.origin,
                        service_ns: row.service_ns,
                        deadline_ns: row.deadline_ns,
                        size_bytes: row.size_bytes,
                        class: row.class.unwrap_or(0),
                        estimate_ns: row.estimate_ns,
                    })
                    .map_err(|e| SimError::Trace(format!("{}: {e}", p.display())))
                }))
            }
        };
        let mut g = Self {
            rows,
            next: None,
            nodes,
            last_arrival: 0,
            estimator,
        };
        g.next = g.read()?;
        Ok(g)
    }

    fn read(&mut self) -> Result<Option<TraceTask>, SimError> {
        let Some(row) = self.rows.next() else {
            return Ok(None);
        };
        let t = row?;
        if t.origin >= self.nodes {
            return Err(SimError::Trace(format!(
                "task at {} ns has origin {} but the rack has {} nodes",
                t.arrival_ns, t.origin, self.nodes
            )));
        }
        if t.arrival_ns < self.last_arrival {
            return Err(SimError::Trace(format!(
                "arrivals must not go back in time ({} after {})",
                t.arrival_ns, self.last_arrival
            )));
        }
        if t.service_ns == 0 || t.estimate_ns == Some(0) {
            return Err(SimError::Trace(format!(
                "task at {} ns has zero service or a zero estimate",
                t.arrival_ns
            )));
        }
        self.last_arrival = t.arrival_ns;
        Ok(Some(t))
    }

    pub fn peek_time(&self) -> Option<u64> {
        self.next.map(|t| t.arrival_ns)
    }

    pub fn next(&mut self) -> Result<Option<NewTask>, SimError> {
        let Some(t) = self.next else {
            return Ok(None);
        };
        self.next = self.read()?;
        let estimate_ns = match (t.estimate_ns, self.estimator.as_mut()) {
            (Some(e), _) => e,
            (None, Some(est)) => est.estimate(t.class, t.service_ns),
            (None, None) => t.service_ns,
        };
        Ok(Some(NewTask {
            arrival_ns: t.arrival_ns,
            origin: t.origin,
            service_ns: t.service_ns,
            estimate_ns,
            deadline_ns: t.deadline_ns,
            size_bytes: t.size_bytes,
            class: t.class,
        }))
    }
}

/// Mean true service of each class of a trace (one streamed pass), for
/// [`ServiceEstimate::ClassMean`] estimates of rows without an `estimate_ns`.
pub(crate) fn trace_class_means(
    src: &TraceSource,
    nodes: u32,
) -> Result<Vec<(u32, f64)>, SimError> {
    let mut g = TraceGen::open(src, nodes, None)?;
    let mut sums: Vec<(u32, f64, u64)> = Vec::new();
    while let Some(t) = g.next()? {
        match sums.iter_mut().find(|(c, _, _)| *c == t.class) {
            Some(e) => {
                e.1 += t.service_ns as f64;
                e.2 += 1;
            }
            None => sums.push((t.class, t.service_ns as f64, 1)),
        }
    }
    Ok(sums
        .into_iter()
        .map(|(c, s, n)| (c, s / n as f64))
        .collect())
}
