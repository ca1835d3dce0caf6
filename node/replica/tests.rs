//! The writer's own behaviour, over a projector that derives nothing: its bounded queue and
//! its durability timer. The apply path, held envelopes and quarantine are tested through
//! nodes (tests/it: hostile, quarantine, sync, convergence, backup) and the simulator
//! (`sync::sim`).

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// A projector that derives nothing: these tests are about the writer, not the domain.
struct NoProjections;

impl Projector for NoProjections {
    fn project(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
        Ok(())
    }
    fn record(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
        Ok(())
    }
    fn before_commit(&self, _: &WriteTransaction, _: Option<u64>) -> Result<bool> {
        Ok(true)
    }
    fn reindex(&self, _: &WriteTransaction) -> Result<ReindexReport> {
        Ok(ReindexReport::default())
    }
    fn reindex_audit(&self, _: &WriteTransaction) -> Result<()> {
        Ok(())
    }
}

/// Defers its end-of-batch work whenever the batch gives it a budget (peers' changes
/// arriving), like the FIFO cost of a long replay.
struct DeferringProjections;

impl Projector for DeferringProjections {
    fn project(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
        Ok(())
    }
    fn record(&self, _: &mut Ctx<'_>, _: &Projected<'_>) -> Result<()> {
        Ok(())
    }
    fn before_commit(&self, _: &WriteTransaction, budget: Option<u64>) -> Result<bool> {
        Ok(budget.is_none())
    }
    fn reindex(&self, _: &WriteTransaction) -> Result<ReindexReport> {
        Ok(ReindexReport::default())
    }
    fn reindex_audit(&self, _: &WriteTransaction) -> Result<()> {
        Ok(())
    }
}

fn writer() -> (Writer, Arc<Shared>, std::thread::JoinHandle<()>) {
    writer_with(Arc::new(NoProjections))
}

fn writer_with(
    projector: Arc<dyn Projector>,
) -> (Writer, Arc<Shared>, std::thread::JoinHandle<()>) {
    let shared = Arc::new(Shared::new(Default::default()));
    let engine = Engine::new(
        Store::memory().expect("an in-memory store"),
        shared.clone(),
        crate::identity::new_signing_key(),
        projector,
    )
    .expect("an engine");
    let (writer, thread) = Writer::spawn(engine);
    (writer, shared, thread)
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Closes the writer and waits for its thread to end.
async fn stop(writer: Writer, thread: std::thread::JoinHandle<()>) {
    writer.close().await;
    drop(writer);
    thread.join().expect("the writer thread ends");
}

/// Holds the writer thread inside a job until the returned sender is dropped or sent to.
async fn block(writer: &Writer) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
    let (release, wait) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = oneshot::channel();
    let w = writer.clone();
    let task = tokio::spawn(async move {
        w.write(move |_| {
            let _ = started_tx.send(());
            let _ = wait.recv();
            Ok(())
        })
        .await
        .expect("the blocking job commits");
    });
    started.await.expect("the writer runs the blocking job");
    (release, task)
}

/// A full queue refuses further jobs until there is room: the write that found it full
/// and was given up never runs, and the queue never holds more than [`QUEUE`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_writes_wait() {
    let (writer, _shared, thread) = writer();
    let (release, blocker) = block(&writer).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let mut queued = Vec::new();
    for _ in 0..QUEUE {
        let (w, ran) = (writer.clone(), ran.clone());
        queued.push(tokio::spawn(async move {
            w.write(move |_| Ok(ran.fetch_add(1, SeqCst))).await
        }));
    }
    wait_for("the queue to fill", Duration::from_secs(10), || {
        writer.queued() == QUEUE
    })
    .await;
    // One more: its future stays pending without its job entering the queue.
    let extra_ran = Arc::new(AtomicUsize::new(0));
    let extra = {
        let extra_ran = extra_ran.clone();
        writer.write(move |_| Ok(extra_ran.fetch_add(1, SeqCst)))
    };
    let mut extra = Box::pin(extra);
    assert!(
        futures::poll!(extra.as_mut()).is_pending(),
        "a write to a full queue waits"
    );
    assert_eq!(
        writer.queued(),
        QUEUE,
        "the queue holds no more than its bound"
    );
    drop(extra);
    release.send(()).expect("the blocking job waits");
    blocker.await.expect("the blocking job ends");
    for q in queued {
        q.await
            .expect("a queued write ends")
            .expect("a queued write commits");
    }
    assert_eq!(ran.load(SeqCst), QUEUE, "every queued job ran");
    writer
        .write(|_| Ok(()))
        .await
        .expect("a later write commits");
    assert_eq!(
        extra_ran.load(SeqCst),
        0,
        "the write given up while the queue was full was never queued"
    );
    stop(writer, thread).await;
}

/// Many more concurrent writers than the queue holds all get through: none waits forever,
/// none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_beyond_the_bound_all_complete() {
    let (writer, shared, thread) = writer();
    let (release, blocker) = block(&writer).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let n = 4 * QUEUE;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (w, ran) = (writer.clone(), ran.clone());
            tokio::spawn(async move {
                w.write(move |_| {
                    ran.fetch_add(1, SeqCst);
                    Ok(i)
                })
                .await
            })
        })
        .collect();
    wait_for("the queue to fill", Duration::from_secs(10), || {
        writer.queued() == QUEUE
    })
    .await;
    release.send(()).expect("the blocking job waits");
    blocker.await.expect("the blocking job ends");
    let mut seen = Vec::with_capacity(n);
    for t in tasks {
        seen.push(t.await.expect("a write ends").expect("a write commits"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every writer got its answer"
    );
    assert_eq!(ran.load(SeqCst), n, "every job ran once");
    assert!(
        shared.jobs.load(SeqCst) == n as u64 + 1,
        "every job was acknowledged by a commit"
    );
    stop(writer, thread).await;
}

/// A commit of peers' changes made without a sync to disk is synced by the writer itself
/// within [`MAX_UNSYNCED`], with no further job and no task outside it asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaxed_commit_is_synced_without_another_job() {
    let (writer, shared, thread) = writer();
    writer
        .write(|ctx| {
            ctx.relaxed();
            Ok(())
        })
        .await
        .expect("a relaxed job commits");
    let committed = Instant::now();
    assert!(
        shared.unsynced.load(SeqCst),
        "the relaxed commit was not synced"
    );
    let commits = shared.commits.load(SeqCst);
    wait_for("the writer to sync", Duration::from_secs(5), || {
        !shared.unsynced.load(SeqCst)
    })
    .await;
    assert!(
        committed.elapsed() < MAX_UNSYNCED + Duration::from_millis(250),
        "synced {:?} after the relaxed commit",
        committed.elapsed()
    );
    assert_eq!(
        shared.commits.load(SeqCst),
        commits + 1,
        "one durable commit of the writer's own synced it"
    );
    stop(writer, thread).await;
}

/// Relaxed jobs arriving without a pause (a long catch-up) never let the writer's timer
/// fire; they must not starve the sync: every unsynced commit is followed by a durable one
/// within [`MAX_UNSYNCED`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_jobs_without_a_pause_do_not_starve_the_sync() {
    let (writer, _shared, thread) = writer();
    // What each job saw: when it ran, and since when the writer had something unsynced.
    let seen = Arc::new(std::sync::Mutex::new(
        Vec::<(Instant, Option<Instant>)>::new(),
    ));
    let until = Instant::now() + 4 * MAX_UNSYNCED;
    let streams: Vec<_> = (0..4)
        .map(|_| {
            let (w, seen) = (writer.clone(), seen.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let seen = seen.clone();
                    w.write(move |ctx| {
                        ctx.relaxed();
                        let since = ctx.engine.unsynced_since;
                        seen.lock()
                            .expect("not poisoned")
                            .push((Instant::now(), since));
                        Ok(())
                    })
                    .await
                    .expect("a relaxed job commits");
                }
            })
        })
        .collect();
    for s in streams {
        s.await.expect("a stream of jobs ends");
    }
    let seen = seen.lock().expect("not poisoned").clone();
    let mut syncs = 0;
    for pair in seen.windows(2) {
        let [(_, Some(since)), (after, now)] = pair else {
            continue;
        };
        if now.as_ref() == Some(since) {
            continue;
        }
        // The first job to see a different state ran after the sync that ended this one.
        syncs += 1;
        assert!(
            *after - *since <= MAX_UNSYNCED,
            "a commit stayed unsynced for {:?} while jobs kept arriving",
            *after - *since
        );
    }
    assert!(syncs >= 3, "the stream was synced only {syncs} times");
    stop(writer, thread).await;
}

/// The end-of-batch work a projector deferred while peers' changes arrived is done once
/// they stop, [`FIFO_QUIET`] later, with no further job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_work_is_done_once_peers_are_quiet() {
    let (writer, shared, thread) = writer_with(Arc::new(DeferringProjections));
    writer
        .write(|ctx| {
            ctx.relaxed();
            Ok(())
        })
        .await
        .expect("a relaxed job commits");
    let committed = Instant::now();
    assert!(shared.fifo_deferred.load(SeqCst), "the work was deferred");
    wait_for("the deferred work", Duration::from_secs(5), || {
        !shared.fifo_deferred.load(SeqCst)
    })
    .await;
    assert!(
        committed.elapsed() >= FIFO_QUIET,
        "the deferred work waited for quiet"
    );
    assert!(!shared.unsynced.load(SeqCst), "and the commit was synced");
    stop(writer, thread).await;
}
