//! Where a test points the EMF recorder: CloudWatch reads the documents from the Lambda's
//! stdout, so a test reads them from this writer instead.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// A writer for `Metrics::writing_to` that keeps what is written, shared between clones.
#[derive(Clone, Default)]
pub struct EmfCapture(Arc<Mutex<Vec<u8>>>);

impl Write for EmfCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl EmfCapture {
    /// The documents written since the last call, one JSON object per line.
    ///
    /// # Panics
    /// When a line is not a JSON document: EMF is one document per line.
    pub fn documents(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("an EMF line is not JSON ({e}): {l}"))
            })
            .collect()
    }
}
