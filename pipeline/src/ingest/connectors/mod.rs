//! Connectors: each yields raw records for canonical tables; the ingest job validates, casts,
//! quarantines and loads them the same way for every source. File drops read files
//! ([`files`]); API sources read pages over HTTP through the generic REST engine ([`rest`]),
//! configured by hand ([`rest::Rest`]) or through a vendor's [`Connector`] ([`hubspot`],
//! [`salesforce`], [`stripe`], [`google_calendar`]). A new vendor is one file here implementing
//! the trait, one line in [`connector`], and a case in the conformance suite.

pub mod files;
pub mod google_calendar;
pub mod hubspot;
pub mod rest;
pub mod salesforce;
pub mod stripe;

pub use files::FileDrop;

pub use rest::{ApiSource, Connector};

use crate::Result;
use crate::settings::{SourceConfig, SourceKind};

/// Every API connector, one per `kind` of `[[sources]]`.
pub fn all() -> [&'static dyn Connector; 5] {
    [
        &rest::Rest,
        &hubspot::HubSpot,
        &salesforce::Salesforce,
        &stripe::Stripe,
        &google_calendar::GoogleCalendar,
    ]
}

/// The connector of a `kind`.
pub fn connector(kind: SourceKind) -> &'static dyn Connector {
    match kind {
        SourceKind::Rest => &rest::Rest,
        SourceKind::Hubspot => &hubspot::HubSpot,
        SourceKind::Salesforce => &salesforce::Salesforce,
        SourceKind::Stripe => &stripe::Stripe,
        SourceKind::GoogleCalendar => &google_calendar::GoogleCalendar,
    }
}

/// The API source `config` describes, read through its kind's connector.
pub fn open(config: &SourceConfig) -> Result<ApiSource> {
    ApiSource::open(config, connector(config.kind))
}
