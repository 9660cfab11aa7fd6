//! Job change events: every change of an upload job's status or progress is published here,
//! in process, for live subscribers.

use tokio::sync::broadcast;

use crate::entity::upload_job;

/// How many events a slow subscriber may fall behind before it misses some (it then reads
/// the job's current state; the last event of a job is always its final state).
const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct JobEvents {
    tx: broadcast::Sender<upload_job::Model>,
}

impl Default for JobEvents {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl JobEvents {
    pub fn publish(&self, job: &upload_job::Model) {
        // No subscriber is not an error.
        let _ = self.tx.send(job.clone());
    }

    pub fn subscribe(&self) -> broadcast::Receiver<upload_job::Model> {
        self.tx.subscribe()
    }
}
