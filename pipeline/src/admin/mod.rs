//! Housekeeping and governance: who may run what (`[access]`), `cslake maintain` (retention,
//! compaction, vacuum), `cslake backup` and `restore`, and data-subject requests (`cslake gdpr`,
//! `cslake pii rotate`).

pub mod access;
pub mod backup;
pub mod gdpr;
pub mod maintain;
pub(crate) mod mentions;
