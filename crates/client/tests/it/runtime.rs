//! The client never blocks the async runtime it runs on (issue 9, item 11): its durable state (an OS file
//! lock and two fsyncs per request) is written off the runtime, so `zg serve` keeps serving while one
//! request waits for the lock another process holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::common::{chat_body, env};

/// Holds the client's OS lock on its state file for `hold` on another thread, as a second process on
/// the same data dir (`zg inference chat` beside `zg serve`) does while it writes.
fn hold_state_lock(e: &crate::common::Env, hold: Duration) -> std::thread::JoinHandle<()> {
    let path = e
        .dir
        .path()
        .join("client")
        .join(format!("{:#x}", e.customer.address()))
        .join(format!("{:#x}.lock", e.provider));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap();
    f.lock().unwrap();
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        drop(f);
    })
}

/// A task that counts 10 ms ticks: it only advances while the runtime's thread is free.
fn ticker() -> Arc<AtomicU32> {
    let n = Arc::new(AtomicU32::new(0));
    let m = n.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            m.fetch_add(1, Ordering::Relaxed);
        }
    });
    n
}

// `#[tokio::test]` runs on one thread: a blocking call stalls every task on it, the provider included.
#[tokio::test]
async fn waiting_for_the_state_file_lock_does_not_block_the_runtime() {
    let e = env(10).await;
    let client = e.client().await;
    client
        .chat(e.provider, chat_body("warm up", 4, false))
        .await
        .unwrap();
    let hold = Duration::from_millis(800);

    for what in ["state", "chat"] {
        let holder = hold_state_lock(&e, hold);
        let ticks = ticker();
        let t = Instant::now();
        match what {
            "state" => drop(client.state(e.provider).await.unwrap()),
            _ => drop(
                client
                    .chat(e.provider, chat_body("while locked", 4, false))
                    .await
                    .unwrap(),
            ),
        }
        let waited = t.elapsed();
        holder.join().unwrap();
        let n = ticks.load(Ordering::Relaxed);
        assert!(
            waited >= Duration::from_millis(600),
            "{what}: did not wait for the lock ({waited:?})"
        );
        // 800 ms of waiting is about 80 ticks on a free runtime (fewer on a loaded machine); a blocked one, none.
        assert!(
            n >= 15,
            "{what}: the runtime stalled while the client waited for the file lock: {n} ticks in {waited:?}"
        );
    }
}
