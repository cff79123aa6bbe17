//! The fork driver's run directory: the plan's initial world ([`crate::plan::setup`]) written
//! to real files, each secret file 0600 and written atomically, and recorded in the history.

use std::path::Path;

use pool_core::store::Store;

use super::log::EventLog;
use crate::issuer::Issuer;
use crate::plan::external_path;
use crate::plan::setup::{external_write, initial_records, initial_world, keys};
use crate::scenario::Scenario;

/// Build the issuer (ledger at `ledger`) with the run's initial token families and API keys,
/// and write the initial store (from `user`'s shape, if given) and external files into `dir`.
pub fn prepare(
    sc: &Scenario,
    seed: u64,
    dir: &Path,
    now_ms: u64,
    ledger: &Path,
    log: &EventLog,
    user: Option<&Store>,
) -> std::io::Result<Issuer> {
    let keys = keys(sc, seed);
    let mut server = Issuer::new(keys.issuer.clone(), ledger)?;
    let (store, externals) = initial_world(sc, keys, server.state_mut(), now_ms, user)?;
    for (source, bytes) in externals {
        write_private(&external_path(dir, &source), &bytes)?;
        log.push(external_write(&source, &bytes).1);
    }
    let bytes = store.to_bytes();
    write_private(&dir.join("auth.json"), &bytes)?;
    for ev in initial_records(sc, &store, &bytes) {
        log.push(ev);
    }
    Ok(server)
}

/// Write a 0600 file atomically (temp + rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".poolcheck.")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
