//! The bounded sampling queue of the live demo: worker threads (never the async runtime) take
//! jobs in order, waiting jobs learn their position, owners cancel their own jobs, and each client
//! has a rate limit. Finished jobs stay a few minutes so a reconnecting page can replay them.

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cemiface_app::demo_protocol::{FrameMeta, JobRequest, ServerEvent, Timings, FRAME_FINAL, FRAME_PREVIEW};

use super::job::Job;
use super::model::{DemoModel, Outcome, StepPreview};
use super::png_text;
use super::DemoError;
use crate::demo::model::Inquiry;
use crate::web::rate_limit::RateLimiter;

/// Queue settings (`cemiface serve` options).
#[derive(Debug, Clone)]
pub struct QueueLimits {
    /// Jobs sampled at the same time (worker threads).
    pub workers: usize,
    /// Most jobs waiting (not running) at once.
    pub max_queue: usize,
    /// Most jobs one client may have queued or running.
    pub max_active_per_client: usize,
    /// Submissions per client per minute.
    pub jobs_per_minute: u32,
    /// Most jobs one address may have queued or running, whatever client ids it uses: its share
    /// of the queue (fresh client ids cost nothing, addresses do).
    pub max_active_per_address: usize,
    /// Submissions per address per minute.
    pub address_jobs_per_minute: u32,
    /// How long a finished job stays available for replay.
    pub keep_finished: Duration,
    /// Compute E_id similarity of x̂0 at every step.
    pub step_similarity: bool,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Arc<Job>>,
    jobs: HashMap<u64, Arc<Job>>,
    next_id: u64,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    limits: QueueLimits,
    /// Jobs per minute, per client and per network.
    submissions: RateLimiter,
    model: Arc<DemoModel>,
}

/// The queue; cheap to clone.
#[derive(Clone)]
pub struct SamplingQueue {
    shared: Arc<Shared>,
}

impl SamplingQueue {
    /// Starts `limits.workers` worker threads over `model`.
    pub fn start(model: Arc<DemoModel>, limits: QueueLimits) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            limits,
            submissions: RateLimiter::default(),
            model,
        });
        for i in 0..shared.limits.workers.max(1) {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("demo-sampler-{i}"))
                .spawn(move || worker(&s))
                .expect("spawning a sampler thread");
        }
        Self { shared }
    }

    pub fn limits(&self) -> &QueueLimits {
        &self.shared.limits
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job for client `owner` at address `addr`, or says which limit it hit.
    pub fn submit(
        &self,
        owner: &str,
        addr: &str,
        request: JobRequest,
        inquiry: Inquiry,
    ) -> Result<Arc<Job>, DemoError> {
        let limits = &self.shared.limits;
        let mut st = self.state();
        let now = Instant::now();
        st.jobs
            .retain(|_, j| j.log().finished.is_none_or(|t| now - t < limits.keep_finished));
        let active =
            |pick: &dyn Fn(&Job) -> bool| st.jobs.values().filter(|j| pick(j) && !j.finished()).count();
        let mine = active(&|j| j.owner == owner);
        if mine >= limits.max_active_per_client {
            return Err(DemoError::too_many(format!(
                "you already have {mine} job(s) queued or running; wait for them or cancel one"
            )));
        }
        let from_addr = active(&|j| j.addr == addr);
        if from_addr >= limits.max_active_per_address {
            return Err(DemoError::too_many(format!(
                "{from_addr} jobs from your network are queued or running (the most one network may \
                 hold); wait for them or cancel one"
            )));
        }
        if st.waiting.len() >= limits.max_queue {
            return Err(DemoError::busy(format!(
                "the queue is full ({} jobs waiting); try again in a minute",
                limits.max_queue
            )));
        }
        let addr_key = format!("addr:{addr}");
        let per_minute = [
            (owner, limits.jobs_per_minute, "jobs per minute"),
            (
                addr_key.as_str(),
                limits.address_jobs_per_minute,
                "jobs per minute from one network",
            ),
        ];
        if let Err((i, wait)) = self
            .shared
            .submissions
            .hit_all(&per_minute.map(|(k, n, _)| (k, n)))
        {
            let (_, limit, whose) = per_minute[i];
            return Err(DemoError::too_many(format!(
                "rate limit: {limit} {whose}; try again in {wait} s"
            )));
        }
        st.next_id += 1;
        let job = Arc::new(Job::new(
            st.next_id,
            owner.to_owned(),
            addr.to_owned(),
            request,
            inquiry,
        ));
        st.jobs.insert(job.id, job.clone());
        st.waiting.push_back(job.clone());
        let (position, queue_size) = (st.waiting.len(), st.waiting.len());
        job.push_event(false, |seq| ServerEvent::Queued {
            job_id: job.id,
            seq,
            position,
            queue_size,
        });
        drop(st);
        self.shared.work.notify_one();
        Ok(job)
    }

    /// The job `id` if `owner` owns it (others get "not found", never a hint that it exists).
    pub fn get(&self, owner: &str, id: u64) -> Result<Arc<Job>, DemoError> {
        self.state()
            .jobs
            .get(&id)
            .filter(|j| j.owner == owner)
            .cloned()
            .ok_or_else(|| DemoError::not_found(format!("no job {id} of yours")))
    }

    /// Cancels a queued job at once, or a running one at its next step.
    pub fn cancel(&self, owner: &str, id: u64) -> Result<(), DemoError> {
        let job = self.get(owner, id)?;
        job.request_cancel();
        let mut st = self.state();
        if let Some(i) = st.waiting.iter().position(|j| j.id == id) {
            st.waiting.remove(i);
            job.push_event(true, |seq| ServerEvent::Cancelled {
                job_id: id,
                seq,
                steps_done: 0,
            });
            announce_positions(&st.waiting);
        }
        Ok(())
    }

    /// Stops the workers after their current job; queued jobs are cancelled.
    pub fn stop(&self) {
        let mut st = self.state();
        st.stopping = true;
        for j in st.waiting.drain(..) {
            j.push_event(true, |seq| ServerEvent::Cancelled {
                job_id: j.id,
                seq,
                steps_done: 0,
            });
        }
        for j in st.jobs.values() {
            j.request_cancel();
        }
        drop(st);
        self.shared.work.notify_all();
    }
}

/// Tells every waiting job its new position.
fn announce_positions(waiting: &VecDeque<Arc<Job>>) {
    let n = waiting.len();
    for (i, j) in waiting.iter().enumerate() {
        j.push_event(false, |seq| ServerEvent::Queued {
            job_id: j.id,
            seq,
            position: i + 1,
            queue_size: n,
        });
    }
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if st.stopping {
                    return;
                }
                if let Some(j) = st.waiting.pop_front() {
                    announce_positions(&st.waiting);
                    break j;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        run_job(shared, &job);
    }
}

fn run_job(shared: &Shared, job: &Job) {
    if job.cancel_requested() {
        job.push_event(true, |seq| ServerEvent::Cancelled {
            job_id: job.id,
            seq,
            steps_done: 0,
        });
        return;
    }
    let started = Instant::now();
    let queued_ms = (started - job.submitted).as_millis() as u64;
    job.push_event(false, |seq| ServerEvent::Started {
        job_id: job.id,
        seq,
        request: job.request.clone(),
    });
    let targets = job.request.targets();
    let meta = |p: &StepPreview, seq: u64| {
        let elapsed_ms = started.elapsed().as_millis() as u64;
        FrameMeta {
            job_id: job.id,
            seq,
            step: p.step,
            steps: p.steps,
            t: p.t,
            m: targets.clone(),
            similarity: p.similarity.clone(),
            elapsed_ms,
            eta_ms: elapsed_ms * u64::from(p.steps - p.step) / u64::from(p.step.max(1)),
            mime: "image/png".into(),
            width: p.width,
            height: p.height,
        }
    };
    let result = shared
        .model
        .run(&job.inquiry, &job.request, shared.limits.step_similarity, |p| {
            job.push_frame(FRAME_PREVIEW, |seq| meta(p, seq), &p.png);
            if job.cancel_requested() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
    match result {
        Ok(Outcome::Finished { last, sampling_ms }) => {
            let timings = Timings {
                queued_ms,
                sampling_ms,
                per_step_ms: sampling_ms as f64 / f64::from(last.steps),
            };
            // The result carries its settings (A1111's `parameters` text chunk).
            let text = png_text::parameters(&job.request, &shared.model.info, &last.similarity);
            let png =
                png_text::with_text(&last.png, png_text::KEYWORD, &text).unwrap_or_else(|_| last.png.clone());
            job.push_frame(
                FRAME_FINAL,
                |seq| FrameMeta {
                    t: 0,
                    ..meta(&last, seq)
                },
                &png,
            );
            job.push_event(true, |seq| ServerEvent::Done {
                job_id: job.id,
                seq,
                similarity: last.similarity.clone(),
                timings,
            });
        }
        Ok(Outcome::Stopped { steps_done }) => job.push_event(true, |seq| ServerEvent::Cancelled {
            job_id: job.id,
            seq,
            steps_done,
        }),
        Err(e) => {
            tracing::error!(job = job.id, error = %e, "demo job failed");
            job.push_event(true, |_| ServerEvent::Error {
                job_id: Some(job.id),
                code: "sampling_failed".into(),
                message: format!("sampling failed: {e}"),
            });
        }
    }
}
