//! Writes batches of documents on the async runtime while the engine loop goes on reading the
//! source, and hands each outcome back to the loop. The loop decides what to send and when
//! (see [`kappa_engine::delivery`]); this only carries batches to the sink and answers back.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_engine::delivery::Batch;

use super::{BatchLimits, Sink, SinkError, WriteReport};

/// One batch's outcome.
#[derive(Debug)]
pub struct Written {
    /// The batch (its documents are needed to dead-letter the ones the index refused).
    pub batch: Batch,
    /// What the sink reported, or why it gave up (its retry budget is spent).
    pub result: Result<WriteReport, SinkError>,
    /// How long the write took, retries included.
    pub elapsed: Duration,
}

/// Sends batches to the sink in the background.
#[derive(Debug)]
pub struct SinkWriter {
    sink: Arc<Sink>,
    runtime: tokio::runtime::Handle,
    done: Sender<Written>,
    written: Receiver<Written>,
}

impl SinkWriter {
    /// A writer into `sink` whose requests run on `runtime`.
    pub fn new(sink: Arc<Sink>, runtime: tokio::runtime::Handle) -> Self {
        let (done, written) = mpsc::channel();
        Self { sink, runtime, done, written }
    }

    /// The size of one bulk request (see [`Sink::batch_limits`]).
    pub fn limits(&self) -> BatchLimits {
        self.sink.batch_limits()
    }

    /// Starts writing `batch`; its outcome arrives through [`Self::written`].
    pub fn send(&self, batch: Batch) {
        let sink = Arc::clone(&self.sink);
        let done = self.done.clone();
        self.runtime.spawn(async move {
            let started = Instant::now();
            let result = sink.write(&batch.docs).await;
            // The loop is gone only when the engine stops, and then the outcome is moot: the
            // batch is in the last checkpoint and is written again by the next run.
            let _ = done.send(Written { batch, result, elapsed: started.elapsed() });
        });
    }

    /// The next finished batch, waiting at most `wait` for one (zero: do not wait).
    pub fn written(&self, wait: Duration) -> Option<Written> {
        if wait.is_zero() {
            return self.written.try_recv().ok();
        }
        self.written.recv_timeout(wait).ok()
    }
}
