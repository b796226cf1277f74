//! A bounded pool for the CPU-heavy steps (decoding an upload, tracing contours,
//! rasterising polygons, encoding a mask, parsing big params): each runs on one of tokio's
//! blocking threads, at most one per core at a time. The async threads, which answer
//! `/livez` and move every other request's bytes, never wait on them, and a burst of heavy
//! requests queues here instead of starting hundreds of threads that fight for the cores.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

use crate::error::{GatewayError, Result};

fn permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| {
            let cores = std::thread::available_parallelism().map_or(2, usize::from);
            Arc::new(Semaphore::new(cores))
        })
        .clone()
}

/// Runs `f` on a worker thread once a core is free.
pub async fn cpu<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let permit = permits()
        .acquire_owned()
        .await
        .map_err(|e| GatewayError::Internal(format!("worker pool: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        f()
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("worker task: {e}")))?
}
