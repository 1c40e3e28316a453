//! What every reader shares: the size of a batch, where a file is, and the byte-order mark.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;

/// Rows per batch: large enough for the column kernels to run at full speed, small enough that a
/// few batches in flight stay a few tens of megabytes.
pub const BATCH_ROWS: usize = 65_536;
/// Text per batch: wide rows end a batch sooner.
pub const BATCH_BYTES: usize = 64 << 20;

/// Where a file is: a local path is read directly, anything else streams from its store.
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: StorePath,
    pub size: u64,
    pub local: Option<std::path::PathBuf>,
}

/// A UTF-8 byte-order mark is not data (spreadsheets write one): skipped before parsing.
pub fn skip_bom<R: std::io::BufRead>(r: &mut R) -> std::io::Result<()> {
    if r.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
        r.consume(3);
    }
    Ok(())
}
