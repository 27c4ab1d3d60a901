//! The learner thread behind Malcolm-Strict ([`crate::strict`]) and Malcolm ([`crate::malcolm`]).
//!
//! It owns the learner, takes transitions over a bounded channel and runs calls (save, load,
//! barrier) on the learner with a reply and a bounded wait. The learner is created on the
//! host's thread and never leaves it (tch tensors are not Sync); everything else reaches it as
//! a [`Call`] through a [`Caller`]. Each turn of the thread first runs the calls that have
//! arrived, then the learner's own loop body (`turn`: take data, update, publish), which is
//! expected to wait briefly for data when there is none. Dropping the [`Host`] stops the
//! thread and joins it.

use malcolm_policies::PolicyError;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a mode switch waits for the learner to acknowledge it (one update takes
/// milliseconds).
pub(crate) const MODE_BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// Work run on the learner thread with the learner.
pub(crate) type Call<L> = Box<dyn FnOnce(&mut L) + Send>;

enum Control<L> {
    Call(Call<L>),
    Shutdown,
}

/// A handle that runs calls on the learner thread; clones outlive the [`Host`] (a call then
/// fails with "learner thread is gone").
pub(crate) struct Caller<L> {
    control: Sender<Control<L>>,
}

impl<L> Clone for Caller<L> {
    fn clone(&self) -> Self {
        Self {
            control: self.control.clone(),
        }
    }
}

impl<L: 'static> Caller<L> {
    /// Runs `f` on the learner thread and returns its result, waiting at most `timeout`.
    pub(crate) fn call<R: Send + 'static>(
        &self,
        timeout: Duration,
        f: impl FnOnce(&mut L) -> R + Send + 'static,
    ) -> Result<R, PolicyError> {
        let (tx, rx) = mpsc::channel();
        let call: Call<L> = Box::new(move |learner| {
            let _ = tx.send(f(learner));
        });
        self.control
            .send(Control::Call(call))
            .map_err(|_| PolicyError::Learner("learner thread is gone".into()))?;
        rx.recv_timeout(timeout).map_err(|_| {
            PolicyError::Learner("learner did not answer within the control timeout".into())
        })
    }

    /// Returns once the learner has finished the turn it was in (at most
    /// [`MODE_BARRIER_TIMEOUT`]): what the caller changed before is seen by every later turn.
    pub(crate) fn barrier(&self) {
        let _ = self.call(MODE_BARRIER_TIMEOUT, |_| ());
    }
}

/// One learner thread: the learner `L`, fed batches of transitions `T`.
pub(crate) struct Host<L, T> {
    caller: Caller<L>,
    data: SyncSender<Vec<T>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<L: 'static, T: Send + 'static> Host<L, T> {
    /// Spawns thread `name` with a data channel of `capacity` batches. `init` creates the
    /// learner on the thread (and publishes its first weights); `start` returns its error, or
    /// "{who} died at start" if the thread ends without answering. Then `turn` runs once per
    /// turn, after the calls that have arrived.
    pub(crate) fn start(
        name: &str,
        who: &str,
        capacity: usize,
        init: impl FnOnce() -> Result<L, PolicyError> + Send + 'static,
        mut turn: impl FnMut(&mut L, &Receiver<Vec<T>>) + Send + 'static,
    ) -> Result<Self, PolicyError> {
        let (control, control_rx) = mpsc::channel::<Control<L>>();
        let (data, data_rx) = mpsc::sync_channel(capacity);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), PolicyError>>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let mut learner = match init() {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    loop {
                        match control_rx.try_recv() {
                            Ok(Control::Call(f)) => f(&mut learner),
                            Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => return,
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                    turn(&mut learner, &data_rx);
                }
            })?;
        let host = Self {
            caller: Caller { control },
            data,
            thread: Mutex::new(Some(thread)),
        };
        ready_rx
            .recv()
            .map_err(|_| PolicyError::Learner(format!("{who} died at start")))??;
        Ok(host)
    }
}

impl<L, T> Host<L, T> {
    /// A handle for calls on the learner thread.
    pub(crate) fn caller(&self) -> &Caller<L> {
        &self.caller
    }

    /// A sender for the learner's data channel (bounded: `try_send` fails when it is full).
    pub(crate) fn data(&self) -> SyncSender<Vec<T>> {
        self.data.clone()
    }
}

impl<L, T> Drop for Host<L, T> {
    fn drop(&mut self) {
        let _ = self.caller.control.send(Control::Shutdown);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A host whose learner sums the transitions it receives.
    fn summing(turns: Arc<AtomicU64>) -> Host<u64, u64> {
        Host::start(
            "test-learner",
            "test learner",
            4,
            || Ok(0u64),
            move |sum, data| {
                turns.fetch_add(1, Ordering::Relaxed);
                if let Ok(v) = data.recv_timeout(Duration::from_millis(2)) {
                    *sum += v.iter().sum::<u64>();
                }
            },
        )
        .unwrap()
    }

    #[test]
    fn calls_run_on_the_learner_and_see_the_data_sent_before() {
        let host = summing(Arc::new(AtomicU64::new(0)));
        host.data().send(vec![1, 2, 3]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while host.caller().call(Duration::from_secs(5), |s| *s).unwrap() != 6 {
            assert!(std::time::Instant::now() < deadline, "data never arrived");
        }
        let name = host
            .caller()
            .call(Duration::from_secs(5), |_| {
                std::thread::current().name().map(String::from)
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some("test-learner"));
    }

    #[test]
    fn barrier_waits_for_the_turn_under_way() {
        // Each turn is busy for a while; a barrier returns only after every turn that had
        // started when it was called has finished.
        let (started, finished) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, f) = (started.clone(), finished.clone());
        let host = Host::<(), u64>::start(
            "test-learner",
            "test learner",
            1,
            || Ok(()),
            move |_, _| {
                s.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
                f.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(3));
            let before = started.load(Ordering::SeqCst);
            host.caller().barrier();
            assert!(finished.load(Ordering::SeqCst) >= before);
        }
        assert!(finished.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn init_errors_come_back_and_calls_after_drop_fail() {
        let err = Host::<u64, u64>::start(
            "test-learner",
            "test learner",
            1,
            || Err(PolicyError::InvalidState("no".into())),
            |_, _| {},
        )
        .err()
        .expect("init fails");
        assert!(err.to_string().contains("no"), "{err}");
        let host = summing(Arc::new(AtomicU64::new(0)));
        let caller = host.caller().clone();
        drop(host);
        let err = caller.call(Duration::from_secs(1), |s| *s).unwrap_err();
        assert!(err.to_string().contains("learner thread is gone"), "{err}");
    }
}
