//! The bounded, batching inference queue.
//!
//! One dedicated worker thread owns the [`Classifier`] (and so the device). Requests wait in a
//! bounded channel of `capacity` entries; the worker takes the first, then gathers more until
//! it holds `max_batch` or `max_wait` has passed, runs them as one batch, and answers each on
//! its own oneshot channel. A burst of studies therefore holds at most `capacity` prepared
//! inputs in memory and one batch on the device; async callers get backpressure
//! ([`InferenceQueue::infer`] waits for room without blocking a runtime thread) or a
//! [`MlError::QueueFull`] from [`InferenceQueue::try_submit`].

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use super::data::GrayFrame;
use super::infer::{Classifier, Prediction, Saliency};
use super::MlError;

/// One finished request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub prediction: Prediction,
    pub saliency: Option<Saliency>,
    /// `<name>-<version>` of the model that answered.
    pub model: String,
}

struct Request {
    input: Vec<f32>,
    saliency: bool,
    reply: oneshot::Sender<Result<Answer, MlError>>,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub capacity: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { max_batch: 32, max_wait: Duration::from_millis(5), capacity: 256 }
    }
}

pub struct InferenceQueue {
    tx: Option<SyncSender<Request>>,
    slots: Arc<Semaphore>,
    worker: Option<JoinHandle<()>>,
    model: String,
    pixels: usize,
    prepare: Arc<dyn Fn(&GrayFrame) -> Vec<f32> + Send + Sync>,
}

impl InferenceQueue {
    /// Starts the worker thread that owns `classifier`.
    pub fn start(classifier: Classifier, cfg: QueueConfig) -> InferenceQueue {
        let cap = cfg.capacity.max(1);
        let (tx, rx) = mpsc::sync_channel::<Request>(cap);
        let slots = Arc::new(Semaphore::new(cap));
        let model = classifier.card.id();
        let pixels = classifier.card.input.width * classifier.card.input.height;
        let spec = classifier.card.input.clone();
        let prepare = Arc::new(move |f: &GrayFrame| {
            let f = f.resized(spec.width, spec.height);
            let mut v = Vec::with_capacity(spec.width * spec.height);
            super::infer::normalise_into(&f.pixels, &spec, &mut v);
            v
        });
        let worker_slots = slots.clone();
        let max_batch = cfg.max_batch.max(1);
        let worker = std::thread::Builder::new()
            .name("lucent-ml-infer".into())
            .spawn(move || {
                let id = classifier.card.id();
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    let deadline = Instant::now() + cfg.max_wait;
                    while batch.len() < max_batch {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(left) {
                            Ok(r) => batch.push(r),
                            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                    worker_slots.add_permits(batch.len());
                    run_batch(&classifier, &id, batch);
                }
            })
            .expect("spawn inference thread");
        InferenceQueue { tx: Some(tx), slots, worker: Some(worker), model, pixels, prepare }
    }

    /// The card's input pipeline (resize + normalise), for callers holding a frame.
    pub fn prepare(&self, frame: &GrayFrame) -> Vec<f32> {
        (self.prepare)(frame)
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    fn check(&self, input: &[f32]) -> Result<(), MlError> {
        if input.len() != self.pixels {
            return Err(MlError::Data(format!("input has {} values, the model takes {}", input.len(), self.pixels)));
        }
        Ok(())
    }

    fn send(&self, req: Request) -> Result<(), MlError> {
        match self.tx.as_ref().map(|tx| tx.try_send(req)) {
            Some(Ok(())) => Ok(()),
            Some(Err(TrySendError::Full(_))) => Err(MlError::QueueFull),
            _ => Err(MlError::Device("the inference worker has stopped".into())),
        }
    }

    /// Queues one prepared input without waiting; `QueueFull` when `capacity` requests are
    /// already waiting.
    pub fn try_submit(
        &self,
        input: Vec<f32>,
        saliency: bool,
    ) -> Result<oneshot::Receiver<Result<Answer, MlError>>, MlError> {
        self.check(&input)?;
        let permit = self.slots.try_acquire().map_err(|_| MlError::QueueFull)?;
        permit.forget();
        let (reply, rx) = oneshot::channel();
        self.send(Request { input, saliency, reply }).inspect_err(|_| self.slots.add_permits(1))?;
        Ok(rx)
    }

    /// Queues one input, waiting (asynchronously) for room, and awaits its answer.
    pub async fn infer(&self, input: Vec<f32>, saliency: bool) -> Result<Answer, MlError> {
        self.check(&input)?;
        let permit = self.slots.acquire().await.map_err(|_| MlError::Device("queue closed".into()))?;
        permit.forget();
        let (reply, rx) = oneshot::channel();
        self.send(Request { input, saliency, reply }).inspect_err(|_| self.slots.add_permits(1))?;
        rx.await.map_err(|_| MlError::Device("the inference worker dropped a request".into()))?
    }

    /// Blocking form of [`infer`](Self::infer) for threads outside the async runtime.
    pub fn infer_blocking(&self, input: Vec<f32>, saliency: bool) -> Result<Answer, MlError> {
        self.check(&input)?;
        let (reply, rx) = oneshot::channel();
        let req = Request { input, saliency, reply };
        // Blocking send: waits for room in the channel.
        loop {
            match self.slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        self.send(req).inspect_err(|_| self.slots.add_permits(1))?;
        rx.blocking_recv().map_err(|_| MlError::Device("the inference worker dropped a request".into()))?
    }
}

impl Drop for InferenceQueue {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn run_batch(c: &Classifier, id: &str, batch: Vec<Request>) {
    let want_saliency = batch.iter().any(|r| r.saliency);
    let mut input = Vec::with_capacity(batch.len() * batch[0].input.len());
    for r in &batch {
        input.extend_from_slice(&r.input);
    }
    let result: Result<Vec<(Prediction, Option<Saliency>)>, MlError> = if want_saliency {
        c.predict_with_saliency(&input).map(|v| v.into_iter().map(|(p, s)| (p, Some(s))).collect())
    } else {
        c.predict(&input).map(|v| v.into_iter().map(|p| (p, None)).collect())
    };
    match result {
        Ok(results) => {
            for (r, (prediction, saliency)) in batch.into_iter().zip(results) {
                let saliency = if r.saliency { saliency } else { None };
                let _ = r.reply.send(Ok(Answer { prediction, saliency, model: id.to_string() }));
            }
        }
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(MlError::Device(e.to_string())));
            }
        }
    }
}
