//! Retrying a failed event: how long to wait before the next attempt, and
//! which refusals no retry can change.

use std::time::Duration;

use crate::handler::Rejection;
use crate::settings::events::EventPolicy;

/// The pause before retrying an event whose handler failed `failures` times
/// in a row: 100 ms, doubling up to 5 s.
pub(super) fn retry_pause(failures: u32) -> Duration {
    let millis = 50u64.saturating_mul(1 << failures.min(7));
    Duration::from_millis(millis.min(5_000))
}

/// Whether a rejection ends the event's handling at once: it is marked
/// permanent, its code is one of the policy's `final_codes`, or its payload
/// did not decode.
pub(super) fn refused_for_good(policy: &EventPolicy, rejection: &Rejection) -> bool {
    rejection.is_permanent()
        || rejection.is_undecodable()
        || rejection
            .code()
            .is_some_and(|code| policy.final_codes.iter().any(|c| c == code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pause_grows_and_caps() {
        assert_eq!(retry_pause(1).as_millis(), 100);
        assert_eq!(retry_pause(2).as_millis(), 200);
        assert_eq!(retry_pause(7).as_millis(), 5_000);
        assert_eq!(retry_pause(u32::MAX).as_millis(), 5_000);
    }
}
