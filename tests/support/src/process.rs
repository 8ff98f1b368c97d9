//! Child processes of a test: waiting for one to exit, by polling, up to a limit.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// How often [`exit_within`] looks.
const POLL: Duration = Duration::from_millis(50);

/// The exit status of `child` once it has exited, polling for up to `limit`; `None` if it is
/// still running then (the caller decides whether to kill it).
pub fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
