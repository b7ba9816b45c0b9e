//! Runs blocking work (file I/O, fsync, whole-file hashing) on a dedicated thread and awaits it, so the async
//! [`BlobStore`](crate::BlobStore) methods never stall the caller's executor. No runtime dependency: the future
//! is woken from the worker thread, so it works under tokio, smol or a plain `block_on` alike (tokio's
//! `spawn_blocking` would panic outside a tokio runtime). A thread per call costs tens of microseconds, which
//! is noise next to the file operations it carries.

use crate::error::{Error, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

/// The future of [`run`].
pub(crate) struct Blocking<T> {
    slot: Arc<Mutex<Slot<T>>>,
    spawn_error: Option<std::io::Error>,
}

/// Runs `f` on a new thread named `what`; the returned future resolves to its result. A panic in `f` or a
/// failure to start the thread becomes [`Error::Blocking`] naming `what`.
pub(crate) fn run<T, F>(what: &'static str, f: F) -> impl Future<Output = Result<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(format!("zg-storage {what}"))
        .spawn(move || {
            let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let waker = match theirs.lock() {
                Ok(mut s) => {
                    s.value = Some(value);
                    s.waker.take()
                }
                // Only a panic while holding the lock poisons it, and neither side panics there.
                Err(_) => None,
            };
            if let Some(w) = waker {
                w.wake();
            }
        });
    let fut = Blocking {
        slot,
        spawn_error: spawned.err(),
    };
    async move { fut.await.map_err(|reason| Error::Blocking { what, reason }) }
}

impl<T> Future for Blocking<T> {
    type Output = std::result::Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.spawn_error.take() {
            return Poll::Ready(Err(format!("cannot start a thread: {e}")));
        }
        let Ok(mut s) = self.slot.lock() else {
            return Poll::Ready(Err("worker state poisoned".into()));
        };
        match s.value.take() {
            Some(Ok(v)) => Poll::Ready(Ok(v)),
            Some(Err(panic)) => Poll::Ready(Err(panic_message(&*panic))),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .map_or_else(
            || "the worker panicked".to_owned(),
            |m| format!("the worker panicked: {m}"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        // A minimal executor: park until woken. No tokio, to prove the future needs no runtime.
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    #[test]
    fn runs_on_another_thread_without_a_runtime() {
        let here = std::thread::current().id();
        let there = block_on(run("test", move || std::thread::current().id())).unwrap();
        assert_ne!(here, there);
    }

    #[test]
    #[allow(clippy::panic, reason = "the panic is the test")]
    fn a_panic_is_a_typed_error() {
        let e = block_on(run("test", || -> u8 { panic!("boom") })).unwrap_err();
        assert!(
            matches!(&e, Error::Blocking { what: "test", reason } if reason.contains("boom")),
            "{e:?}"
        );
    }
}
