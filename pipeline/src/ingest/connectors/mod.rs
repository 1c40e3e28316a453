//! Connectors: each yields raw records for canonical tables; the ingest job validates, casts,
//! quarantines and loads them the same way for every source. File drops read files
//! ([`files`]); API sources ([`api`]) read pages over HTTP ([`http`]), configured generically
//! or through a vendor connector ([`hubspot`], [`salesforce`], [`stripe`], [`google_calendar`]).

pub mod files;
pub mod google_calendar;
pub mod hubspot;
pub mod rest;
pub mod salesforce;
pub mod stripe;

pub use files::FileDrop;
