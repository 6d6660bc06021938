//! The group-commit writer: many appenders, one writer thread, one fsync per
//! batch, each appender told when its own entries are durable.
//!
//! Runtime-agnostic: plain std threads, a mutex-protected queue and condition
//! variables. An async caller can run `Ticket::wait` on a blocking pool.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::fs::lock;
use crate::log::{Log, PendingSync};
use crate::options::{GroupCommitOptions, SyncPolicy};

/// Where an acknowledged submission landed: every index in
/// `first_index..=last_index` is durable (as the sync policy defines it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Index of the submission's first entry.
    pub first_index: u64,
    /// Index of its last entry.
    pub last_index: u64,
}

#[derive(Debug)]
enum Request {
    /// Entries whose indexes the caller chose; they must continue the log.
    Entries(Vec<Entry>),
    /// Payloads that the writer numbers with the next free indexes.
    Payloads {
        term: u64,
        kind: u8,
        payloads: Vec<Bytes>,
    },
}

impl Request {
    fn entries_count(&self) -> usize {
        match self {
            Request::Entries(entries) => entries.len(),
            Request::Payloads { payloads, .. } => payloads.len(),
        }
    }

    fn payload_bytes(&self) -> u64 {
        match self {
            Request::Entries(entries) => {
                entries.iter().map(|entry| entry.payload.len() as u64).sum()
            }
            Request::Payloads { payloads, .. } => payloads.iter().map(|p| p.len() as u64).sum(),
        }
    }
}

/// The writer's end of one submission. If the writer dies without answering
/// (a panic), the channel closes and the waiting appender gets
/// `Error::WriterStopped` instead of waiting forever.
#[derive(Debug)]
struct Reply {
    sender: mpsc::SyncSender<Result<AppendReceipt>>,
}

impl Reply {
    fn send(self, result: Result<AppendReceipt>) {
        // The appender may have dropped its ticket; nobody is left to tell.
        let _ = self.sender.send(result);
    }
}

/// A pending submission; [`Ticket::wait`] blocks until it is durable or failed.
#[derive(Debug)]
pub struct Ticket {
    receiver: mpsc::Receiver<Result<AppendReceipt>>,
}

impl Ticket {
    /// Blocks until the writer answers.
    pub fn wait(self) -> Result<AppendReceipt> {
        self.receiver.recv().unwrap_or(Err(Error::WriterStopped))
    }

    /// Waits at most `timeout`; `None` when the writer has not answered yet.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<AppendReceipt>> {
        match self.receiver.recv_timeout(timeout) {
            Ok(result) => Some(result),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Error::WriterStopped)),
        }
    }
}

#[derive(Debug)]
struct Submission {
    request: Request,
    reply: Reply,
}

#[derive(Debug, Default)]
struct Queue {
    submissions: VecDeque<Submission>,
    stopping: bool,
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    log: Mutex<Log>,
    queue: Mutex<Queue>,
    /// Signalled when work arrives or the writer must stop.
    work: Condvar,
    /// Signalled when the queue has room again.
    room: Condvar,
    options: GroupCommitOptions,
    batches_count: Mutex<BatchStatistics>,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStatistics {
    /// Batches written.
    pub batches_count: u64,
    /// Fsyncs issued.
    pub syncs_count: u64,
    /// Entries written.
    pub entries_count: u64,
}

/// Shares one [`Log`] between many appending threads.
///
/// A single writer thread drains the queue of submissions in batches of at
/// most `batch_entries_max` entries and `batch_bytes_max` bytes, appends them,
/// fsyncs once (per the sync policy) and then answers every submission of the
/// batch. Reads, truncations and compactions go through [`GroupCommit::with_log`].
#[derive(Debug)]
pub struct GroupCommit {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the writer thread over `log`.
    pub fn start(log: Log, options: GroupCommitOptions) -> Result<Self> {
        options.validate()?;
        let shared = Arc::new(Shared {
            log: Mutex::new(log),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            options,
            batches_count: Mutex::new(BatchStatistics::default()),
        });
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("conclave-log-writer".into())
            .spawn(move || run_writer(&writer_shared))
            .map_err(|error| Error::io("spawn writer", std::path::Path::new("."), &error))?;
        Ok(Self {
            shared,
            writer: Some(writer),
        })
    }

    /// Appends entries that continue the log; blocks until they are durable.
    pub fn append(&self, entries: Vec<Entry>) -> Result<AppendReceipt> {
        self.submit(Request::Entries(entries))?.wait()
    }

    /// Appends payloads numbered by the writer; blocks until they are durable.
    pub fn append_payloads(
        &self,
        term: u64,
        kind: u8,
        payloads: Vec<Bytes>,
    ) -> Result<AppendReceipt> {
        self.submit_payloads(term, kind, payloads)?.wait()
    }

    /// Queues entries that continue the log; the ticket says when they are durable.
    pub fn submit_entries(&self, entries: Vec<Entry>) -> Result<Ticket> {
        self.submit(Request::Entries(entries))
    }

    /// Queues payloads numbered by the writer; the ticket says when they are durable.
    pub fn submit_payloads(&self, term: u64, kind: u8, payloads: Vec<Bytes>) -> Result<Ticket> {
        self.submit(Request::Payloads {
            term,
            kind,
            payloads,
        })
    }

    fn submit(&self, request: Request) -> Result<Ticket> {
        let (sender, receiver) = mpsc::sync_channel(1);
        let mut queue = lock(&self.shared.queue);
        while queue.submissions.len() >= self.shared.options.queue_submissions_max && !queue.stopped
        {
            queue = self
                .shared
                .room
                .wait(queue)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if queue.stopping || queue.stopped {
            return Err(Error::WriterStopped);
        }
        queue.submissions.push_back(Submission {
            request,
            reply: Reply { sender },
        });
        drop(queue);
        self.shared.work.notify_one();
        Ok(Ticket { receiver })
    }

    /// Runs `action` on the log under its lock (reads, truncation, compaction).
    /// The writer waits meanwhile.
    pub fn with_log<R>(&self, action: impl FnOnce(&mut Log) -> R) -> R {
        action(&mut lock(&self.shared.log))
    }

    /// The writer's counters so far.
    pub fn statistics(&self) -> BatchStatistics {
        *lock(&self.shared.batches_count)
    }

    /// Stops the writer after it has answered every queued submission and
    /// hands the log back.
    pub fn stop(mut self) -> Result<Log> {
        self.stop_writer();
        let shared = Arc::clone(&self.shared);
        drop(self);
        match Arc::try_unwrap(shared) {
            Ok(shared) => Ok(shared
                .log
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)),
            Err(_) => Err(Error::WriterStopped),
        }
    }

    fn stop_writer(&mut self) {
        lock(&self.shared.queue).stopping = true;
        self.shared.work.notify_all();
        if let Some(writer) = self.writer.take() {
            // A panicking writer already reported its assertion; the queue is
            // marked stopped below either way.
            let _ = writer.join();
        }
        let mut queue = lock(&self.shared.queue);
        queue.stopped = true;
        for submission in queue.submissions.drain(..) {
            submission.reply.send(Err(Error::WriterStopped));
        }
        drop(queue);
        self.shared.room.notify_all();
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// Waiting appenders whose entries are written but not yet fsynced.
type Unsynced = Vec<(Reply, AppendReceipt)>;

/// An fsync prepared by the writer, with the appenders it will answer.
struct SyncJob {
    pending: Result<PendingSync>,
    replies: Unsynced,
}

/// Two stages: the writer thread appends batches and prepares fsyncs; a
/// syncer thread runs them and answers the appenders. While one fsync is in
/// flight the writer keeps appending, and the syncer's next fsync covers every
/// batch written meanwhile, so a slow disk means larger batches, not idle time.
fn run_writer(shared: &Shared) {
    let (sender, receiver) = mpsc::sync_channel::<SyncJob>(shared.options.sync_jobs_queued_max);
    std::thread::scope(|scope| {
        scope.spawn(move || run_syncer(shared, &receiver));
        write_batches(shared, &sender);
        // Dropping the sender lets the syncer finish the queued jobs and end.
        drop(sender);
    });
}

fn write_batches(shared: &Shared, sender: &mpsc::SyncSender<SyncJob>) {
    let mut unsynced: Unsynced = Vec::new();
    let mut last_sync = Instant::now();
    loop {
        let Some(batch) = next_batch(shared, !unsynced.is_empty(), last_sync) else {
            if !unsynced.is_empty() {
                let pending = lock(&shared.log).begin_sync();
                send_job(
                    sender,
                    SyncJob {
                        pending,
                        replies: std::mem::take(&mut unsynced),
                    },
                );
            }
            return;
        };
        let mut log = lock(&shared.log);
        let mut entries_count = 0u64;
        for submission in batch {
            entries_count += submission.request.entries_count() as u64;
            match append_request(&mut log, submission.request) {
                Ok(receipt) => unsynced.push((submission.reply, receipt)),
                Err(error) => submission.reply.send(Err(error)),
            }
        }
        {
            // Counted before anyone is answered, so that an appender that got
            // its answer sees its entries in the statistics.
            let mut statistics = lock(&shared.batches_count);
            statistics.batches_count += 1;
            statistics.entries_count += entries_count;
        }
        let sync_due = match shared.options.sync_policy {
            SyncPolicy::EveryBatch => true,
            SyncPolicy::Interval(interval) => last_sync.elapsed() >= interval,
            SyncPolicy::Never => false,
        };
        if sync_due && !unsynced.is_empty() {
            let pending = log.begin_sync();
            drop(log);
            last_sync = Instant::now();
            send_job(
                sender,
                SyncJob {
                    pending,
                    replies: std::mem::take(&mut unsynced),
                },
            );
        } else {
            drop(log);
            if shared.options.sync_policy == SyncPolicy::Never {
                answer(&mut unsynced, &Ok(()));
            }
        }
    }
}

fn send_job(sender: &mpsc::SyncSender<SyncJob>, job: SyncJob) {
    if let Err(mpsc::SendError(mut job)) = sender.send(job) {
        // The syncer is gone (it panicked): nobody will fsync these entries.
        answer(&mut job.replies, &Err(Error::WriterStopped));
    }
}

fn run_syncer(shared: &Shared, receiver: &mpsc::Receiver<SyncJob>) {
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        jobs.extend(receiver.try_iter());
        // The newest job's fsync covers all earlier ones: they wrote to the
        // same active segment, or to segments fsynced when they were sealed.
        let mut newest_result = Ok(());
        if let Some(newest) = jobs.last_mut() {
            let pending = std::mem::replace(&mut newest.pending, Err(Error::WriterStopped));
            newest_result = match pending {
                Ok(pending) => {
                    let result = pending.run();
                    lock(&shared.log).finish_sync(pending, result)
                }
                Err(error) => Err(error),
            };
            lock(&shared.batches_count).syncs_count += 1;
        }
        let newest_position = jobs.len() - 1;
        for (position, mut job) in jobs.into_iter().enumerate() {
            let result = match &job.pending {
                Err(error) if position != newest_position => Err(error.clone()),
                _ => newest_result.clone(),
            };
            answer(&mut job.replies, &result);
        }
    }
}

fn answer(unsynced: &mut Unsynced, sync_result: &Result<()>) {
    for (reply, receipt) in unsynced.drain(..) {
        reply.send(sync_result.clone().map(|()| receipt));
    }
}

/// Waits for work and takes one batch; `None` once stopping with an empty queue.
/// With an interval policy and unsynced appenders waiting, it wakes up when the
/// interval is over and returns an empty batch so that the writer fsyncs.
fn next_batch(shared: &Shared, waiting: bool, last_sync: Instant) -> Option<Vec<Submission>> {
    let mut queue = lock(&shared.queue);
    loop {
        if !queue.submissions.is_empty() {
            break;
        }
        if queue.stopping {
            return None;
        }
        let deadline = match shared.options.sync_policy {
            SyncPolicy::Interval(interval) if waiting => Some(last_sync + interval),
            _ => None,
        };
        match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Some(Vec::new());
                }
                let timeout = deadline
                    .saturating_duration_since(now)
                    .max(Duration::from_micros(1));
                queue = shared
                    .work
                    .wait_timeout(queue, timeout)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poison| poison.into_inner().0);
            }
            None => {
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
    }
    let mut batch = Vec::new();
    let mut entries_count = 0usize;
    let mut bytes_count = 0u64;
    while let Some(next) = queue.submissions.front() {
        let next_entries = next.request.entries_count();
        let next_bytes = next.request.payload_bytes();
        let over = entries_count + next_entries > shared.options.batch_entries_max
            || bytes_count + next_bytes > shared.options.batch_bytes_max;
        if over && !batch.is_empty() {
            break;
        }
        entries_count += next_entries;
        bytes_count += next_bytes;
        if let Some(submission) = queue.submissions.pop_front() {
            batch.push(submission);
        }
    }
    drop(queue);
    shared.room.notify_all();
    Some(batch)
}

fn append_request(log: &mut Log, request: Request) -> Result<AppendReceipt> {
    let first_index = log.last_index() + 1;
    let entries = match request {
        Request::Entries(entries) => entries,
        Request::Payloads {
            term,
            kind,
            payloads,
        } => payloads
            .into_iter()
            .zip(first_index..)
            .map(|(payload, index)| Entry {
                index,
                term,
                kind,
                payload,
            })
            .collect(),
    };
    log.append(&entries)?;
    Ok(AppendReceipt {
        first_index,
        last_index: log.last_index(),
    })
}
