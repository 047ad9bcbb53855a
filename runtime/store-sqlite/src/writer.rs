//! The one writer: a thread that owns the write connection and runs every write job in
//! a batch, one transaction and one fsync for all the jobs waiting (group commit).
//!
//! Each job runs inside its own savepoint, so a job that fails leaves the others of its
//! batch intact. Callers hear back only after the batch's `COMMIT` returned: a write
//! acknowledged is a write on disk (`synchronous=FULL` in WAL mode).

use std::sync::mpsc;
use std::thread::JoinHandle;

use fluxo_store::{StoreError, StoreErrorKind};
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Jobs taken into one transaction at most.
const MAX_BATCH: usize = 512;

/// Delivers a job's result once its batch's fate is known.
type Finisher = Box<dyn FnOnce(Result<(), (StoreErrorKind, String)>) + Send>;

/// A write job: runs on the writer's connection, says whether it succeeded (its
/// savepoint is kept) and how to answer its caller; or is answered without running.
trait WriteJob: Send {
    fn run(self: Box<Self>, connection: &Connection) -> (bool, Finisher);
    fn abort(self: Box<Self>, kind: StoreErrorKind, message: String);
    /// Answers with the batch's failure, without running.
    fn aborted(self: Box<Self>) -> Finisher;
}

type Job = Box<dyn WriteJob>;

struct Pending<W, T> {
    work: W,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<W, T> WriteJob for Pending<W, T>
where
    W: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, connection: &Connection) -> (bool, Finisher) {
        let Self { work, reply } = *self;
        let result = work(connection);
        let ok = result.is_ok();
        let finish: Finisher = Box::new(move |committed| {
            let answer = match committed {
                Ok(()) => result,
                Err((kind, message)) => Err(StoreError::new(kind, message)),
            };
            let _ = reply.send(answer);
        });
        (ok, finish)
    }

    fn abort(self: Box<Self>, kind: StoreErrorKind, message: String) {
        let _ = self.reply.send(Err(StoreError::new(kind, message)));
    }

    fn aborted(self: Box<Self>) -> Finisher {
        let reply = self.reply;
        Box::new(move |committed| {
            let (kind, message) = committed.err().unwrap_or((
                StoreErrorKind::Transient,
                "the batch was rolled back".to_owned(),
            ));
            let _ = reply.send(Err(StoreError::new(kind, message)));
        })
    }
}

/// The handle to the writer thread.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer thread on `connection`.
    pub(crate) fn start(connection: Connection) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("fluxo-sqlite-writer".to_owned())
            .spawn(move || run(&connection, &receiver))
            .map_err(|error| {
                StoreError::permanent(format!("could not start the writer thread: {error}"))
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the next batch and returns its result once the batch committed.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(Pending { work, reply });
        self.sender
            .as_ref()
            .ok_or_else(|| StoreError::permanent("the store is closed"))?
            .send(job)
            .map_err(|_| StoreError::permanent("the store's writer stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::permanent("the store's writer stopped mid-write"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(connection: &Connection, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            let (kind, message) = classify(&error);
            for job in batch {
                job.abort(kind, message.clone());
            }
            continue;
        }
        let mut finishers = Vec::with_capacity(batch.len());
        // A job whose savepoint cannot be closed may have left partial writes in the
        // transaction: then nothing of the batch is committed.
        let mut poisoned = None;
        for job in batch {
            if poisoned.is_some() {
                finishers.push(job.aborted());
                continue;
            }
            if let Err(error) = connection.execute_batch("SAVEPOINT job") {
                // Never run a job outside its savepoint.
                let (kind, message) = classify(&error);
                job.abort(kind, message);
                continue;
            }
            let (ok, finish) = job.run(connection);
            let end = if ok {
                "RELEASE job"
            } else {
                "ROLLBACK TO job; RELEASE job"
            };
            if let Err(error) = connection.execute_batch(end) {
                poisoned = Some(classify(&error));
            }
            finishers.push(finish);
        }
        let committed = match poisoned {
            None => connection
                .execute_batch("COMMIT")
                .map_err(|error| classify(&error)),
            Some((kind, message)) => Err((kind, format!("the batch was rolled back: {message}"))),
        };
        if committed.is_err() {
            // Best effort: a failed COMMIT may already have ended the transaction, and
            // the next batch's BEGIN reports a connection that cannot continue.
            let _ = connection.execute_batch("ROLLBACK");
        }
        for finish in finishers {
            finish(committed.clone());
        }
    }
}

/// Busy and locked databases are transient; everything else is permanent.
pub(crate) fn classify(error: &rusqlite::Error) -> (StoreErrorKind, String) {
    let kind = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreErrorKind::Transient
        }
        Some(rusqlite::ErrorCode::ConstraintViolation) => StoreErrorKind::Conflict,
        _ => StoreErrorKind::Permanent,
    };
    (kind, format!("sqlite: {error}"))
}

/// A SQLite error as a store error.
pub(crate) fn sql(error: rusqlite::Error) -> StoreError {
    let (kind, message) = classify(&error);
    StoreError::new(kind, message).with_source(error)
}
