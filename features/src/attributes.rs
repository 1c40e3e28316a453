//! `account_attributes`: account fields a company keeps beyond cslake's columns (its CRM's custom
//! properties: channel, contract type, employees, region, ...) as model features, declared in
//! `[features.attributes]` rather than written as SQL. Values are read as of each date from
//! `core.attribute_history` (the version valid on the date, not today's), so a training row at a
//! past date sees what was known then. Numbers become one column each; a category becomes the
//! share of the date's customer accounts with the same value (frequency encoding: leak-free, as
//! it never reads a label, and stable whatever new values appear) and, for the levels the
//! configuration lists, one 0/1 column per level.

use crate::event_metrics::slug;
use crate::registry::FeatureView;
use crate::{Error, Result};

/// The view's name, and the table `features.<name>` it is kept in.
pub const ATTRIBUTES_VIEW: &str = "account_attributes";

/// `core.accounts` columns that may be declared as categories: descriptions of the company that do
/// not follow the account's fate. The lake keeps only their latest value, so they are read as
/// they are now; columns that change with the account (plan, seats, mrr, status, contract dates)
/// are refused: their current value would tell a past training row its own future.
pub const STATIC_COLUMNS: [&str; 3] = ["industry", "segment", "country"];

/// One declared attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    Numeric(String),
    /// A category and the levels that get a 0/1 column of their own.
    Categorical {
        name: String,
        levels: Vec<String>,
    },
}

impl Attribute {
    fn name(&self) -> &str {
        match self {
            Attribute::Numeric(n) | Attribute::Categorical { name: n, .. } => n,
        }
    }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn label(s: &str) -> String {
    s.replace('|', "/").replace(['\n', '\r'], " ")
}

/// The generated view over `attributes` (none declared: no view). `backfill`: a date before an
/// account's first recorded version reads that first version (a lake whose history starts at its
/// first load has nothing earlier); otherwise such dates read nothing.
pub fn view(attributes: &[Attribute], backfill: bool) -> Result<Option<FeatureView>> {
    if attributes.is_empty() {
        return Ok(None);
    }
    let err = |message: String| Error::View {
        view: ATTRIBUTES_VIEW.into(),
        path: "[features.attributes]".into(),
        message,
    };
    const CHANGING: [&str; 8] = [
        "plan",
        "seats",
        "mrr",
        "status",
        "contract_start",
        "contract_end",
        "csm_id",
        "created_date",
    ];
    let mut header = vec![
        format!("-- name: {ATTRIBUTES_VIEW}"),
        "-- entity: account".into(),
        "-- grain: one row per account and as_of_date".into(),
        "-- owner: cslake".into(),
        "-- description: Account attributes declared in [features.attributes], as known on the \
         date (numbers; categories as the share of accounts sharing the value and one column per \
         listed level)."
            .into(),
        "-- sources: attribute_history, accounts".into(),
    ];
    let (mut values, mut shares, mut select) = (Vec::new(), Vec::new(), Vec::new());
    let mut taken: Vec<String> = Vec::new();
    let mut column = |base: String| -> String {
        let mut c = base.clone();
        let mut n = 2;
        while taken.contains(&c) {
            c = format!("{base}_{n}");
            n += 1;
        }
        taken.push(c.clone());
        c
    };
    for (i, a) in attributes.iter().enumerate() {
        let name = a.name();
        if CHANGING.contains(&name) {
            return Err(err(format!(
                "'{name}' changes with the account and the lake keeps only its latest value, which would tell \
                 past training rows their future; use the subscription features, or an attribute field whose \
                 history cslake records"
            )));
        }
        let s = slug(name);
        let base = if s.is_empty() {
            format!("attr_{}", i + 1)
        } else {
            format!("attr_{s}")
        };
        let raw = if STATIC_COLUMNS.contains(&name) {
            format!("CAST(a.{name} AS VARCHAR)")
        } else {
            format!("a.attributes ->> {}", lit(name))
        };
        let shown = label(name);
        match a {
            Attribute::Numeric(_) => {
                if STATIC_COLUMNS.contains(&name) {
                    return Err(err(format!("'{name}' is a category, not a number")));
                }
                let c = column(base);
                header.push(format!("-- feature: {c} | {shown} (account attribute)"));
                values.push(format!("TRY_CAST({raw} AS DOUBLE) AS v{i}"));
                select.push(format!("v.v{i} AS {c}"));
            }
            Attribute::Categorical { levels, .. } => {
                let c = column(format!("{base}_share"));
                header.push(format!(
                    "-- feature: {c} | share of the customer accounts with the same {shown}"
                ));
                values.push(format!("COALESCE(CAST({raw} AS VARCHAR), '(missing)') AS v{i}"));
                shares.push(format!(
                    "share{i} AS (\n    SELECT value, CAST(n AS DOUBLE) / CAST(SUM(n) OVER () AS DOUBLE) AS share\n    \
                     FROM (SELECT v{i} AS value, COUNT(*) AS n FROM vals GROUP BY v{i}) c\n)"
                ));
                select.push(format!("share{i}.share AS {c}"));
                for level in levels {
                    let ls = slug(level);
                    let c = column(format!("{base}_is_{}", if ls.is_empty() { "level" } else { &ls }));
                    header.push(format!("-- feature: {c} | {shown} is {}", label(level)));
                    select.push(format!(
                        "CASE WHEN v.v{i} = {} THEN 1.0 ELSE 0.0 END AS {c}",
                        lit(level)
                    ));
                }
            }
        }
    }
    let first = if backfill {
        "\nfirst_known AS (\n    SELECT key AS account_id, attributes,\n        ROW_NUMBER() OVER (PARTITION BY key \
         ORDER BY valid_from, _ingested_at) AS rn\n    FROM attribute_history\n    WHERE table_name = 'accounts'\n),"
    } else {
        ""
    };
    let (first_join, attrs_expr) = if backfill {
        (
            "\n    LEFT JOIN first_known f ON f.account_id = s.account_id AND f.rn = 1",
            "CASE WHEN k.account_id IS NOT NULL THEN k.attributes ELSE f.attributes END",
        )
    } else {
        ("", "k.attributes")
    };
    let share_ctes: String = shares.iter().map(|s| format!(",\n{s}")).collect();
    let share_joins: String = attributes
        .iter()
        .enumerate()
        .filter(|(_, a)| matches!(a, Attribute::Categorical { .. }))
        .map(|(i, _)| format!("\nLEFT JOIN share{i} ON share{i}.value = v.v{i}"))
        .collect();
    let statics = STATIC_COLUMNS
        .iter()
        .map(|c| format!("acc.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "{header}\n--\n-- Generated by cslake from [features.attributes]; do not edit.\n\
         WITH known AS (\n    SELECT key AS account_id, attributes,\n        ROW_NUMBER() OVER (PARTITION BY key \
         ORDER BY valid_from DESC, _ingested_at DESC) AS rn\n    FROM attribute_history\n    \
         WHERE table_name = 'accounts' AND valid_from <= {{{{as_of}}}}\n),{first}\n\
         a AS (\n    SELECT s.account_id, {attrs_expr} AS attributes, {statics}\n    FROM spine s\n    \
         LEFT JOIN known k ON k.account_id = s.account_id AND k.rn = 1{first_join}\n    \
         LEFT JOIN accounts acc ON acc.account_id = s.account_id\n),\n\
         vals AS (\n    SELECT a.account_id,\n        {values}\n    FROM a\n){share_ctes}\n\
         SELECT\n    s.account_id,\n    s.as_of_date,\n    {select}\nFROM spine s\n\
         JOIN vals v ON v.account_id = s.account_id{share_joins}\n",
        header = header.join("\n"),
        values = values.join(",\n        "),
        select = select.join(",\n    "),
    );
    let view = FeatureView::parse(&sql, "generated:account_attributes ([features.attributes])")?;
    if view.features.len() != select.len() {
        return Err(err("an attribute's name broke the generated header".into()));
    }
    Ok(Some(view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_per_kind_and_refusals() {
        let v = view(
            &[
                Attribute::Numeric("Employees".into()),
                Attribute::Categorical {
                    name: "Acquisition Channel".into(),
                    levels: vec!["Partner".into(), "Self-serve".into()],
                },
                Attribute::Categorical {
                    name: "industry".into(),
                    levels: vec![],
                },
            ],
            true,
        )
        .unwrap()
        .unwrap();
        let names: Vec<&str> = v.features.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "attr_employees",
                "attr_acquisition_channel_share",
                "attr_acquisition_channel_is_partner",
                "attr_acquisition_channel_is_self_serve",
                "attr_industry_share"
            ]
        );
        assert!(
            v.sql.contains("attributes ->> 'Acquisition Channel'"),
            "{}",
            v.sql
        );
        assert!(v.sql.contains("CAST(a.industry AS VARCHAR)"), "{}", v.sql);
        assert!(view(&[], true).unwrap().is_none());
        let e = view(
            &[Attribute::Categorical {
                name: "plan".into(),
                levels: vec![],
            }],
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("changes with the account"), "{e}");
    }
}
