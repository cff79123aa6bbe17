//! A process's event log: one JSON line per [`Record`], appended and unbuffered, so a killed
//! process leaves every event it recorded before the kill.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use crate::history::{now_ns, Ev, ProcId, Record};

pub struct EventLog {
    proc: ProcId,
    file: Mutex<File>,
}

impl EventLog {
    pub fn create(path: &Path, proc: ProcId) -> std::io::Result<EventLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(EventLog {
            proc,
            file: Mutex::new(file),
        })
    }

    pub fn proc(&self) -> ProcId {
        self.proc
    }

    /// Append one record stamped now.
    pub fn push(&self, ev: Ev) {
        self.push_for(self.proc, ev)
    }

    /// Append one record stamped now, attributed to another process (the harness records
    /// workers' exits).
    pub fn push_for(&self, proc: ProcId, ev: Ev) {
        self.push_record(Record {
            t_ns: now_ns(),
            proc,
            ev,
        })
    }

    /// Append one record stamped at an earlier time `t_ns` (a bound the caller knows, such as
    /// the moment a subject was last sent a line, for an event it reported since).
    pub fn push_at(&self, t_ns: u64, ev: Ev) {
        self.push_record(Record {
            t_ns,
            proc: self.proc,
            ev,
        })
    }

    fn push_record(&self, rec: Record) {
        let mut line = serde_json::to_vec(&rec).expect("records serialize");
        line.push(b'\n');
        // A failed log write must not change what the worker does; the run's history will
        // simply lack the record, which the parent reports as a short log.
        let _ = self.file.lock().expect("log lock").write_all(&line);
    }
}
