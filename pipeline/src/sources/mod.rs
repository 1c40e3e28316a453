//! Connectors: each yields raw records for canonical tables; the ingest job validates, casts,
//! quarantines and loads them the same way for every source.

pub mod calendar;
pub mod demo;
pub mod files;

pub use files::FileDrop;
