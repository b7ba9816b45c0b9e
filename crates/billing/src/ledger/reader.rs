//! The reader thread: SQL reads (settlement selections, receipt lookups) run on their own connection and
//! thread, so an async caller never blocks its runtime on SQLite.

use std::sync::mpsc;

use rusqlite::Connection;

/// A read to run against the reader's connection.
pub(super) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// Runs read jobs until every sender is gone.
pub(super) fn reader_loop(conn: Connection, jobs: mpsc::Receiver<ReadJob>) {
    while let Ok(job) = jobs.recv() {
        job(&conn);
    }
}
