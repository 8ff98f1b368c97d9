//! The topic monitor: a background thread with its own Kafka client that keeps the topic's
//! partition list and every partition's watermarks fresh, so the hot loop never waits on a
//! metadata or watermark round trip. It is how the engine learns about added partitions and how
//! it computes lag.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::kafka::{KafkaSource, Watermarks};
use super::SourceError;

/// What the monitor saw last.
#[derive(Debug, Clone, Default)]
pub struct TopicView {
    /// Watermarks per partition (every partition of the topic).
    pub watermarks: BTreeMap<u32, Watermarks>,
    /// When it was refreshed.
    pub refreshed: Option<Instant>,
    /// The last refresh error, if the last refresh failed.
    pub error: Option<String>,
}

/// A running topic monitor; stops when dropped.
#[derive(Debug)]
pub struct TopicMonitor {
    view: Arc<Mutex<TopicView>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TopicMonitor {
    /// Starts monitoring `topic` every `interval`. The first refresh happens before this
    /// returns, so the view is never empty for an existing topic.
    pub fn start(
        config: &ClientConfig,
        topic: &str,
        group: &str,
        interval: Duration,
    ) -> Result<Self, SourceError> {
        // A consumer of its own: metadata and watermark requests, never assigned or polled.
        let client = KafkaSource::new(config, topic, &format!("{group}.monitor"))?;
        let view = Arc::new(Mutex::new(TopicView::default()));
        refresh(&client, &view);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (view, stop) = (Arc::clone(&view), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("kappa-topic-monitor".into())
                .spawn(move || {
                    let mut next = Instant::now() + interval;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        if Instant::now() >= next {
                            refresh(&client, &view);
                            next = Instant::now() + interval;
                        }
                    }
                })
                .expect("spawn the topic monitor thread")
        };
        Ok(Self { view, stop, thread: Some(thread) })
    }

    /// The latest view.
    pub fn view(&self) -> TopicView {
        self.view.lock().expect("monitor lock").clone()
    }
}

impl Drop for TopicMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn refresh(client: &KafkaSource, view: &Mutex<TopicView>) {
    let result = client.partitions().and_then(|parts| {
        parts
            .into_iter()
            .map(|p| client.fetch_watermarks(p).map(|w| (p, w)))
            .collect::<Result<BTreeMap<_, _>, _>>()
    });
    let mut v = view.lock().expect("monitor lock");
    match result {
        Ok(marks) => {
            v.watermarks = marks;
            v.refreshed = Some(Instant::now());
            v.error = None;
        }
        Err(e) => {
            tracing::warn!(topic = client.topic(), error = %e, "topic refresh failed");
            v.error = Some(e.to_string());
        }
    }
}
