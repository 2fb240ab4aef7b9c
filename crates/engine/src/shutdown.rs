//! Shutdown signalling: a cloneable flag that long-running work checks between units of work.

use tokio::sync::watch;

/// Owner side: trigger once to ask every holder of a [`Shutdown`] to stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Listener side: cheap to clone; `is_requested` between pages, `requested().await` in sleeps.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(sender), Shutdown(receiver))
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// A listener that is never triggered.
    pub fn never() -> Shutdown {
        let (sender, receiver) = watch::channel(false);
        // Keep the channel open forever so `requested()` never resolves.
        std::mem::forget(sender);
        Shutdown(receiver)
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when shutdown is requested.
    pub async fn requested(&mut self) {
        // An error means the trigger was dropped: treat as a request to stop.
        let _ = self.0.wait_for(|requested| *requested).await;
    }

    /// Sleeps for `duration` unless shutdown comes first; returns `false` when interrupted.
    pub async fn sleep(&mut self, duration: std::time::Duration) -> bool {
        if self.is_requested() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.requested() => false,
        }
    }
}
