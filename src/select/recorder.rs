//! What real calls measured, kept and learned from off the call path.
//!
//! When on-line tuning settles a bucket, the engine hands the samples to a [`Recorder`]: a
//! background thread appends them to each device's tuning database in the record folder (the user
//! cache; [`TuningDb::append`] locks and replaces atomically, so processes can share it) and, once
//! enough new rows have come in, retrains the learned model ([`Selector::retrain`]) and puts it in
//! use. A call only sends a message: it never waits for a file or for training.
//!
//! Retraining starts after [`RETRAIN_MIN_ROWS`] new rows, or a tenth of the rows the model in use
//! was trained on when that is more: a model of thousands of rows is not retrained for a handful.
//! Dropping the recorder waits for the rows still queued to be written (and for a training already
//! under way); no new training starts once the selector is gone.

use super::db::{Row, TuningDb};
use super::Selector;
use crate::device::DeviceInfo;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

/// New rows that start a retraining at the least.
pub const RETRAIN_MIN_ROWS: usize = 16;

/// Measurements of one device to keep.
struct Batch {
    device: DeviceInfo,
    rows: Vec<Row>,
}

/// The background thread that keeps real calls' measurements and retrains the model.
pub struct Recorder {
    sender: Option<Sender<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts the thread, keeping rows in `dir` and retraining `selector`'s model while it lives.
    pub fn start(dir: PathBuf, selector: Weak<Selector>) -> Self {
        let (sender, batches) = channel::<Batch>();
        let worker = std::thread::Builder::new()
            .name("tilegemm-recorder".into())
            .spawn(move || {
                let mut new_rows = 0;
                for batch in batches {
                    let count = batch.rows.len();
                    match TuningDb::append(&dir, &batch.device, batch.rows) {
                        Ok(_) => new_rows += count,
                        Err(e) => log::warn!("measurements of real calls not kept: {e}"),
                    }
                    let Some(selector) = selector.upgrade() else {
                        continue;
                    };
                    let trained_on = selector.model().map_or(0, |m| m.rows);
                    if new_rows < RETRAIN_MIN_ROWS.max(trained_on / 10) {
                        continue;
                    }
                    new_rows = 0;
                    retrain(&selector, &dir);
                }
            })
            .map_err(|e| log::warn!("no recorder thread ({e}): real calls' rows are not kept"))
            .ok();
        Recorder {
            sender: worker.as_ref().map(|_| sender),
            worker,
        }
    }

    /// Queues `rows` measured on `device` to be kept.
    pub fn keep(&self, device: &DeviceInfo, rows: Vec<Row>) {
        if let Some(sender) = &self.sender {
            let batch = Batch {
                device: device.clone(),
                rows,
            };
            if sender.send(batch).is_err() {
                log::warn!("the recorder thread has stopped: real calls' rows are not kept");
            }
        }
    }
}

fn retrain(selector: &Arc<Selector>, dir: &std::path::Path) {
    let started = Instant::now();
    match selector.retrain(dir) {
        Ok(rows) => log::info!(
            "retrained the model on {rows} rows in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => log::info!("model not retrained: {e}"),
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
