//! Rate limiting of the WARN lines about bad input from one source: a burst per window, then
//! one line with the count of what was suppressed.

use std::time::{Duration, Instant};

/// Refusals logged at WARN per session and window; the rest are counted and summarised.
const WARN_BURST: u32 = 5;
/// The window of [`WARN_BURST`].
const WARN_WINDOW: Duration = Duration::from_secs(10);
/// Rate limit for WARN lines about bad input from one source: a burst per window, then one
/// line with the count of what was suppressed.
#[derive(Debug)]
pub struct WarnLimiter {
    window_start: Instant,
    in_window: u32,
    suppressed: u64,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        Self {
            window_start: Instant::now(),
            in_window: 0,
            suppressed: 0,
        }
    }
}

impl WarnLimiter {
    /// `Some(suppressed since the last line)` when this one may be logged.
    pub fn allow(&mut self) -> Option<u64> {
        if self.window_start.elapsed() >= WARN_WINDOW {
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        if self.in_window < WARN_BURST {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}
