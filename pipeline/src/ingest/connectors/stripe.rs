//! Stripe: customers → accounts, subscriptions, invoices (with payment status). A secret or
//! restricted key in `STRIPE_API_KEY` (bearer). Lists page with `starting_after` = the last
//! id while `has_more`. Customers and invoices are read incrementally by `created[gte]`;
//! invoices look back 35 days so that an invoice paid (or failed) after it was created is read
//! again. Subscriptions change state long after they are created (cancellations), and
//! Stripe's list filters only by creation, so they are read in full on every run.
//!
//! Amounts are in the currency's minor unit; MRR is the sum over the subscription's items of
//! price × quantity, normalised to a month by the price's interval.

use std::collections::HashMap;

use serde_json::Value;
use url::Url;

use crate::Result;
use crate::ingest::connectors::rest::{
    ApiSource, Connector, Page, Shape, Stream, build_stream, objects, path,
};
use crate::settings::{AuthConfig, IncrementalConfig, PagingConfig, PagingKind, SourceKind, TableMapping};

pub const BASE: &str = "https://api.stripe.com/";

/// ISO 4217 currencies Stripe treats as zero-decimal.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof",
    "xpf",
];

fn mapping(path: &str, columns: &[(&str, &str)], incremental: Option<&str>) -> TableMapping {
    TableMapping {
        path: Some(path.into()),
        records: Some("data".into()),
        paging: Some(PagingConfig {
            kind: PagingKind::LastId,
            param: Some("starting_after".into()),
            has_more: Some("has_more".into()),
            limit_param: Some("limit".into()),
            page_size: Some(100),
            ..Default::default()
        }),
        incremental: Some(IncrementalConfig {
            field: "created".into(),
            param: Some("created[gte]".into()),
            lookback: incremental.map(str::to_string),
        }),
        columns: columns
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ignore: vec!["object".into(), "livemode".into()],
        ..Default::default()
    }
}

pub fn builtin() -> Vec<(&'static str, TableMapping)> {
    let mut subscriptions = mapping(
        "v1/subscriptions",
        &[
            ("subscription_id", "id"),
            ("account_id", "customer"),
            ("plan", "cslake_plan"),
            ("seats", "cslake_seats"),
            ("mrr", "cslake_mrr"),
            ("start_date", "start_date"),
            ("end_date", "ended_at"),
            ("status", "status"),
            ("bill_period_months", "cslake_period_months"),
            ("renewal_date", "cslake_renewal"),
        ],
        None,
    );
    subscriptions.incremental = None;
    subscriptions.params.insert("status".into(), "all".into());
    vec![
        (
            "accounts",
            mapping(
                "v1/customers",
                &[
                    ("account_id", "id"),
                    ("name", "name"),
                    ("country", "address.country"),
                    ("created_date", "created"),
                ],
                None,
            ),
        ),
        ("subscriptions", subscriptions),
        (
            "invoices",
            mapping(
                "v1/invoices",
                &[
                    ("invoice_id", "id"),
                    ("account_id", "customer"),
                    ("issued_date", "created"),
                    ("due_date", "due_date"),
                    ("amount", "cslake_amount"),
                    ("status", "status"),
                    ("paid_date", "status_transitions.paid_at"),
                    ("payment_failures", "cslake_payment_failures"),
                ],
                Some("35d"),
            ),
        ),
    ]
}

fn streams(src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
    src.table_mappings(&builtin())?
        .into_iter()
        .map(|(spec, m)| {
            let shape = match spec.name {
                "subscriptions" => Shape::StripeSubscription,
                "invoices" => Shape::StripeInvoice,
                _ => Shape::Records,
            };
            let cursor = cursors.get(spec.name).map(String::as_str);
            build_stream(base, spec, spec.name.into(), m, cursor, shape)
        })
        .collect()
}

fn minor_to_major(amount: f64, currency: Option<&str>) -> f64 {
    if currency.is_some_and(|c| ZERO_DECIMAL.contains(&c.to_ascii_lowercase().as_str())) {
        amount
    } else {
        amount / 100.0
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
}

/// Adds `cslake_mrr`, `cslake_plan` and `cslake_seats` from the subscription's items, and
/// `cslake_period_months` (its price's billing interval, when it is whole months) and
/// `cslake_renewal` (the end of the current period: on the subscription before API version
/// 2025-03-31, on its items since).
pub fn enrich_subscription(sub: &mut Value) {
    let Some(items) = path(sub, "items.data").and_then(Value::as_array) else {
        return;
    };
    let (mut mrr, mut seats) = (0.0, 0i64);
    let mut plan: Option<String> = None;
    let mut period_months: Option<f64> = None;
    let renewal = sub.get("current_period_end").cloned().or_else(|| {
        items
            .iter()
            .find_map(|i| i.get("current_period_end").filter(|v| !v.is_null()).cloned())
    });
    for item in items {
        let quantity = number(item.get("quantity")).unwrap_or(1.0);
        let price = item.get("price").or_else(|| item.get("plan"));
        let Some(price) = price else { continue };
        let unit = number(price.get("unit_amount_decimal"))
            .or_else(|| number(price.get("unit_amount")))
            .or_else(|| number(price.get("amount")))
            .unwrap_or(0.0);
        let currency = price.get("currency").and_then(Value::as_str);
        let recurring = price.get("recurring").unwrap_or(price);
        let every = number(recurring.get("interval_count")).unwrap_or(1.0).max(1.0);
        let interval = recurring.get("interval").and_then(Value::as_str);
        if period_months.is_none() {
            period_months = match interval {
                Some("year") => Some(12.0 * every),
                Some("month") => Some(every),
                _ => None,
            };
        }
        let per_month = match interval {
            Some("year") => 1.0 / 12.0,
            Some("week") => 52.0 / 12.0,
            Some("day") => 365.0 / 12.0,
            _ => 1.0,
        } / every;
        mrr += minor_to_major(unit * quantity, currency) * per_month;
        seats += quantity as i64;
        if plan.is_none() {
            plan = ["nickname", "lookup_key", "product", "id"]
                .iter()
                .find_map(|k| price.get(*k).and_then(Value::as_str).map(str::to_string));
        }
    }
    // a subscription's discount is not applied: MRR here is list price, as Stripe's own
    // dashboard reports it before coupons
    if let Some(map) = sub.as_object_mut() {
        map.insert("cslake_mrr".into(), Value::from((mrr * 100.0).round() / 100.0));
        map.insert("cslake_seats".into(), Value::from(seats));
        if let Some(p) = plan {
            map.insert("cslake_plan".into(), Value::from(p));
        }
        if let Some(m) = period_months {
            map.insert("cslake_period_months".into(), Value::from(m as i64));
        }
        if let Some(r) = renewal.filter(|v| !v.is_null()) {
            map.insert("cslake_renewal".into(), r);
        }
    }
}

/// Adds `cslake_amount` (major units) and `cslake_payment_failures`.
pub fn enrich_invoice(inv: &mut Value) {
    let currency = inv.get("currency").and_then(Value::as_str).map(str::to_string);
    let amount = number(inv.get("amount_due")).or_else(|| number(inv.get("total")));
    let attempts = number(inv.get("attempt_count")).unwrap_or(0.0) as i64;
    let paid = inv.get("paid").and_then(Value::as_bool).unwrap_or(false)
        || inv.get("status").and_then(Value::as_str) == Some("paid");
    let failures = if paid { attempts - 1 } else { attempts }.max(0);
    if let Some(map) = inv.as_object_mut() {
        if let Some(a) = amount {
            map.insert(
                "cslake_amount".into(),
                Value::from(minor_to_major(a, currency.as_deref())),
            );
        }
        map.insert("cslake_payment_failures".into(), Value::from(failures));
    }
}

/// Stripe (`kind = "stripe"`).
pub struct Stripe;

impl Connector for Stripe {
    fn kind(&self) -> SourceKind {
        SourceKind::Stripe
    }

    fn base_url(&self) -> Option<&'static str> {
        Some(BASE)
    }

    fn default_auth(&self) -> AuthConfig {
        AuthConfig {
            kind: "bearer".into(),
            token_env: Some("STRIPE_API_KEY".into()),
            ..Default::default()
        }
    }

    fn requests_per_second(&self) -> Option<f64> {
        Some(20.0)
    }

    fn builtin(&self) -> Vec<(&'static str, TableMapping)> {
        builtin()
    }

    fn streams(&self, src: &ApiSource, base: &Url, cursors: &HashMap<String, String>) -> Result<Vec<Stream>> {
        streams(src, base, cursors)
    }

    fn page(&self, shape: Shape, origin: String, mut items: Vec<Value>) -> Result<Page> {
        for v in &mut items {
            match shape {
                Shape::StripeSubscription => enrich_subscription(v),
                Shape::StripeInvoice => enrich_invoice(v),
                _ => {}
            }
        }
        Ok(Page::Batch(objects(origin, items)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mrr_is_normalised_to_a_month_over_items() {
        let mut sub = json!({"id": "sub_1", "items": {"data": [
            {"quantity": 10, "price": {"id": "price_pro", "nickname": "Pro", "unit_amount": 2500, "currency": "usd",
                "recurring": {"interval": "month", "interval_count": 1}}},
            {"quantity": 1, "price": {"id": "price_addon", "unit_amount": 120000, "currency": "usd",
                "recurring": {"interval": "year", "interval_count": 1}}}
        ]}});
        enrich_subscription(&mut sub);
        assert_eq!(sub["cslake_mrr"], json!(350.0));
        assert_eq!(sub["cslake_seats"], json!(11));
        assert_eq!(sub["cslake_plan"], json!("Pro"));
        // the first item's interval is the subscription's billing period; no period end given
        assert_eq!(sub["cslake_period_months"], json!(1));
        assert!(sub.get("cslake_renewal").is_none());
        // the current period's end: on the items since API version 2025-03-31, before on the subscription
        let mut annual = json!({"items": {"data": [{"quantity": 3, "current_period_end": 1798761600,
            "price": {"unit_amount": 120000, "currency": "usd", "recurring": {"interval": "year", "interval_count": 2}}}]}});
        enrich_subscription(&mut annual);
        assert_eq!(annual["cslake_period_months"], json!(24));
        assert_eq!(annual["cslake_renewal"], json!(1798761600));
        let mut old = json!({"current_period_end": 1790000000, "items": {"data": [{"quantity": 1,
            "price": {"unit_amount": 100, "currency": "usd", "recurring": {"interval": "week"}}}]}});
        enrich_subscription(&mut old);
        assert!(old.get("cslake_period_months").is_none());
        assert_eq!(old["cslake_renewal"], json!(1790000000));
        let mut jpy = json!({"items": {"data": [{"quantity": 1, "price": {"unit_amount": 5000, "currency": "jpy", "recurring": {"interval": "month"}}}]}});
        enrich_subscription(&mut jpy);
        assert_eq!(jpy["cslake_mrr"], json!(5000.0));
    }

    #[test]
    fn invoices_in_major_units_with_failed_attempts() {
        let mut inv = json!({"amount_due": 129900, "currency": "eur", "attempt_count": 3, "status": "paid", "paid": true});
        enrich_invoice(&mut inv);
        assert_eq!(inv["cslake_amount"], json!(1299.0));
        assert_eq!(inv["cslake_payment_failures"], json!(2));
    }
}
