//! The canonical `core/` tables every source maps into, and the zones of the lake.

use std::sync::Arc;

use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The zones of the lake, in the order bare table names are resolved.
pub const ZONES: &[&str] = &[
    "core",
    "scores",
    "features",
    "training",
    "models",
    "ops",
    "actions",
    "analytics",
];

/// The type of a canonical column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Str,
    Int,
    Float,
    Bool,
    Date,
    Timestamp,
}

impl ColType {
    pub fn arrow(self) -> DataType {
        match self {
            ColType::Str => DataType::Utf8,
            ColType::Int => DataType::Int64,
            ColType::Float => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ColType::Str => "text",
            ColType::Int => "an integer",
            ColType::Float => "a number",
            ColType::Bool => "true/false",
            ColType::Date => "a date (YYYY-MM-DD)",
            ColType::Timestamp => "a timestamp (RFC 3339, e.g. 2026-01-31T09:30:00Z)",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub required: bool,
    /// Other header names this column is recognised by (case and punctuation are ignored).
    pub aliases: &'static [&'static str],
    /// Words a source may write for a value, mapped before the cast (case is ignored), e.g.
    /// `monthly` → `1` for a period in months; a table's own `values` map replaces them.
    pub words: &'static [(&'static str, &'static str)],
}

const fn col(name: &'static str, ty: ColType, required: bool, aliases: &'static [&'static str]) -> Column {
    Column {
        name,
        ty,
        required,
        aliases,
        words: &[],
    }
}

impl Column {
    const fn with_words(mut self, words: &'static [(&'static str, &'static str)]) -> Column {
        self.words = words;
        self
    }
}

/// How billing periods are written in exports, in months.
const PERIOD_WORDS: &[(&str, &str)] = &[
    ("month", "1"),
    ("monthly", "1"),
    ("quarter", "3"),
    ("quarterly", "3"),
    ("semiannual", "6"),
    ("semi-annual", "6"),
    ("semiannually", "6"),
    ("half-yearly", "6"),
    ("year", "12"),
    ("yearly", "12"),
    ("annual", "12"),
    ("annually", "12"),
    ("biennial", "24"),
    ("two-year", "24"),
];

/// How a table is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Merged on its key: the latest version of each row wins.
    Entity,
    /// Appended, de-duplicated on its key (`event_id`).
    Event,
}

#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    pub key: &'static str,
    pub kind: Kind,
    pub columns: &'static [Column],
    /// Unmapped source fields are kept as a JSON object in an `attributes` column.
    pub keeps_attributes: bool,
    /// Rows reference an account (`account_id`) that must exist.
    pub references_account: bool,
}

use ColType::*;

pub const ACCOUNTS: TableSpec = TableSpec {
    name: "accounts",
    key: "account_id",
    kind: Kind::Entity,
    keeps_attributes: true,
    references_account: false,
    columns: &[
        col(
            "account_id",
            Str,
            true,
            &["id", "company_id", "customer_id", "account", "group_id"],
        ),
        col("name", Str, false, &["account_name", "company_name", "company"]),
        col("industry", Str, false, &["vertical", "sector"]),
        col("segment", Str, false, &["tier", "customer_segment"]),
        col("plan", Str, false, &["plan_name", "product"]),
        col("seats", Int, false, &["licenses", "seat_count", "licensed_seats"]),
        col("mrr", Float, false, &["monthly_recurring_revenue", "mrr_usd"]),
        col(
            "contract_start",
            Date,
            false,
            &["contract_start_date", "start_date"],
        ),
        col(
            "contract_end",
            Date,
            false,
            &["contract_end_date", "renewal_date", "end_date"],
        ),
        col("csm_id", Str, false, &["owner_id", "csm", "account_owner"]),
        col("country", Str, false, &["billing_country"]),
        col(
            "created_date",
            Date,
            false,
            &["created_at", "signup_date", "created"],
        ),
        col("status", Str, false, &["account_status"]),
    ],
};

pub const CONTACTS: TableSpec = TableSpec {
    name: "contacts",
    key: "contact_id",
    kind: Kind::Entity,
    keeps_attributes: true,
    references_account: true,
    columns: &[
        col("contact_id", Str, true, &["id", "user_id"]),
        col("account_id", Str, true, &["company_id", "customer_id"]),
        col("email", Str, false, &["email_address"]),
        col("name", Str, false, &["full_name"]),
        col("role", Str, false, &["title", "job_title"]),
        col("created_date", Date, false, &["created_at", "created"]),
    ],
};

pub const SUBSCRIPTIONS: TableSpec = TableSpec {
    name: "subscriptions",
    key: "subscription_id",
    kind: Kind::Entity,
    keeps_attributes: false,
    references_account: true,
    columns: &[
        col("subscription_id", Str, true, &["id"]),
        col("account_id", Str, true, &["customer_id", "company_id"]),
        col("plan", Str, false, &["plan_name", "product_id"]),
        col("seats", Int, false, &["quantity", "licenses"]),
        col("mrr", Float, true, &["monthly_amount", "amount"]),
        col("start_date", Date, true, &["started_at", "period_start"]),
        col(
            "end_date",
            Date,
            false,
            &["ended_at", "period_end", "canceled_at", "cancelled_at"],
        ),
        col("status", Str, false, &[]),
        col("change_type", Str, false, &["change", "reason"]),
        // how often it renews, in months (`monthly`, `annual`, ... are read too): 12 when unknown
        col(
            "bill_period_months",
            Int,
            false,
            &[
                "billing_period_months",
                "billing_period",
                "billing_interval",
                "billing_cycle",
                "interval_months",
                "term_months",
                "period_months",
            ],
        )
        .with_words(PERIOD_WORDS),
        // the end of the current billing period or term, where the source knows it
        col(
            "renewal_date",
            Date,
            false,
            &[
                "current_period_end",
                "next_renewal_date",
                "renews_at",
                "renewal_at",
                "term_end",
            ],
        ),
    ],
};

pub const INVOICES: TableSpec = TableSpec {
    name: "invoices",
    key: "invoice_id",
    kind: Kind::Entity,
    keeps_attributes: false,
    references_account: true,
    columns: &[
        col("invoice_id", Str, true, &["id"]),
        col("account_id", Str, true, &["customer_id", "company_id"]),
        col(
            "issued_date",
            Date,
            true,
            &["created", "invoice_date", "issued_at"],
        ),
        col("due_date", Date, false, &["due"]),
        col("amount", Float, true, &["amount_due", "total"]),
        col("status", Str, false, &[]),
        col("paid_date", Date, false, &["paid_at"]),
        col(
            "payment_failures",
            Int,
            false,
            &["failed_attempts", "attempt_failures"],
        ),
    ],
};

pub const USAGE_EVENTS: TableSpec = TableSpec {
    name: "usage_events",
    key: "event_id",
    kind: Kind::Event,
    keeps_attributes: false,
    references_account: true,
    columns: &[
        col("event_id", Str, true, &["id", "message_id", "messageid"]),
        col(
            "account_id",
            Str,
            true,
            // Segment-style exports carry the account as the group of the call
            &[
                "group_id",
                "company_id",
                "customer_id",
                "context.groupId",
                "properties.groupId",
            ],
        ),
        col("contact_id", Str, false, &["user_id", "userid"]),
        col("event_type", Str, true, &["event", "event_name", "type"]),
        col(
            "event_time",
            Timestamp,
            true,
            &["timestamp", "occurred_at", "time"],
        ),
        col(
            "quantity",
            Float,
            false,
            &["count", "value", "properties.quantity", "properties.count"],
        ),
    ],
};

pub const INTERACTIONS: TableSpec = TableSpec {
    name: "interactions",
    key: "interaction_id",
    kind: Kind::Entity,
    keeps_attributes: false,
    references_account: true,
    columns: &[
        col("interaction_id", Str, true, &["id", "ticket_id"]),
        col("account_id", Str, true, &["company_id", "customer_id"]),
        col("contact_id", Str, false, &["user_id", "requester_id"]),
        col("kind", Str, true, &["type", "channel"]),
        col(
            "occurred_at",
            Timestamp,
            true,
            &["created_at", "timestamp", "start_time"],
        ),
        col("resolved_at", Timestamp, false, &["closed_at", "solved_at"]),
        col("status", Str, false, &[]),
        col("priority", Str, false, &[]),
        col("score", Float, false, &["nps", "rating"]),
        col("subject", Str, false, &["title", "summary"]),
        col("csm_id", Str, false, &["owner_id", "agent_id"]),
    ],
};

pub const CSMS: TableSpec = TableSpec {
    name: "csms",
    key: "csm_id",
    kind: Kind::Entity,
    keeps_attributes: false,
    references_account: false,
    columns: &[
        col("csm_id", Str, true, &["id", "owner_id"]),
        col("name", Str, false, &[]),
        col("email", Str, false, &[]),
        col("team", Str, false, &[]),
        col("capacity", Int, false, &["max_accounts"]),
    ],
};

pub const PRODUCTS: TableSpec = TableSpec {
    name: "products",
    key: "product_id",
    kind: Kind::Entity,
    keeps_attributes: false,
    references_account: false,
    columns: &[
        col("product_id", Str, true, &["id", "plan"]),
        col("name", Str, false, &[]),
        col("kind", Str, false, &["type"]),
        col("tier_rank", Int, false, &["rank"]),
        col("price_per_seat", Float, false, &["unit_price"]),
    ],
};

/// Sales opportunities (HubSpot deals, Salesforce opportunities): renewals and expansions.
pub const DEALS: TableSpec = TableSpec {
    name: "deals",
    key: "deal_id",
    kind: Kind::Entity,
    keeps_attributes: true,
    references_account: true,
    columns: &[
        col("deal_id", Str, true, &["id", "opportunity_id"]),
        col("account_id", Str, true, &["company_id", "customer_id"]),
        col("name", Str, false, &["deal_name", "title"]),
        col("stage", Str, false, &["deal_stage", "stage_name"]),
        col("kind", Str, false, &["type", "deal_type"]),
        col("amount", Float, false, &["value"]),
        col("close_date", Date, false, &["closed_at", "expected_close"]),
        col("is_closed", Bool, false, &["closed"]),
        col("is_won", Bool, false, &["won"]),
        col("csm_id", Str, false, &["owner_id"]),
        col("created_date", Date, false, &["created_at", "created"]),
    ],
};

/// Words LMS and help-centre exports use for the kind of a piece of content.
const CONTENT_KIND_WORDS: &[(&str, &str)] = &[
    ("article", "guide"),
    ("how-to", "guide"),
    ("howto", "guide"),
    ("doc", "guide"),
    ("tutorial", "course"),
    ("lesson", "course"),
    ("learning path", "course"),
    ("webinar", "video"),
    ("recording", "video"),
    ("best practice", "best_practice"),
    ("best-practice", "best_practice"),
    ("playbook", "best_practice"),
];

/// Words LMS exports use for what a learner did.
const CONTENT_ACTION_WORDS: &[(&str, &str)] = &[
    ("view", "viewed"),
    ("page_view", "viewed"),
    ("opened", "viewed"),
    ("start", "started"),
    ("enrolled", "started"),
    ("in_progress", "started"),
    ("complete", "completed"),
    ("finished", "completed"),
    ("passed", "completed"),
    ("rating", "rated"),
    ("rate", "rated"),
];

/// The training content and best practices the company publishes (help centre, LMS, docs site):
/// what each item teaches (`teaches`: event types or product features, comma-separated) is what
/// recommendations and effectiveness are about.
pub const CONTENT: TableSpec = TableSpec {
    name: "content",
    key: "content_id",
    kind: Kind::Entity,
    keeps_attributes: true,
    references_account: false,
    columns: &[
        col(
            "content_id",
            Str,
            true,
            &["id", "article_id", "course_id", "resource_id"],
        ),
        col("title", Str, true, &["name", "headline"]),
        col("kind", Str, false, &["type", "content_type", "format"]).with_words(CONTENT_KIND_WORDS),
        col("url", Str, false, &["html_url", "link", "permalink"]),
        col("tags", Str, false, &["label_names", "labels", "keywords"]),
        col(
            "teaches",
            Str,
            false,
            &["features", "event_types", "skills", "topics"],
        ),
        col("segment", Str, false, &["audience"]),
        col("language", Str, false, &["locale", "lang"]),
        col(
            "updated_at",
            Timestamp,
            false,
            &["updated", "modified_at", "last_modified", "edited_at"],
        ),
    ],
};

/// What people did with the content: viewed, started, completed, rated (LMS enrolments and
/// completions, help-centre article views).
pub const CONTENT_EVENTS: TableSpec = TableSpec {
    name: "content_events",
    key: "event_id",
    kind: Kind::Event,
    keeps_attributes: false,
    references_account: true,
    columns: &[
        col("event_id", Str, true, &["id"]),
        col(
            "content_id",
            Str,
            true,
            &["article_id", "course_id", "resource_id", "item_id"],
        ),
        col("account_id", Str, true, &["company_id", "customer_id"]),
        col("contact_id", Str, false, &["user_id", "learner_id"]),
        col("action", Str, true, &["event", "event_type", "type", "status"]).with_words(CONTENT_ACTION_WORDS),
        col(
            "event_time",
            Timestamp,
            true,
            &["timestamp", "occurred_at", "time", "completed_at", "created_at"],
        ),
        col("score", Float, false, &["rating", "grade", "percent"]),
    ],
};

/// Every core table, in load order (accounts first so references can be checked).
/// Built-in checks of values that parse but cannot be right (`[ingest.tables.<t>.rules]`
/// replaces them column by column): amounts and counts that cannot be negative, and the times of
/// things that happened, which cannot be far in the future.
pub const DEFAULT_RULES: &[(&str, &str, RuleDefault)] = &[
    ("accounts", "seats", RuleDefault::Min(0.0)),
    ("accounts", "mrr", RuleDefault::Min(0.0)),
    ("accounts", "created_date", RuleDefault::NotAfterDays(2)),
    ("contacts", "created_date", RuleDefault::NotAfterDays(2)),
    ("subscriptions", "seats", RuleDefault::Min(0.0)),
    ("subscriptions", "mrr", RuleDefault::Min(0.0)),
    ("invoices", "payment_failures", RuleDefault::Min(0.0)),
    ("invoices", "issued_date", RuleDefault::NotAfterDays(2)),
    ("invoices", "paid_date", RuleDefault::NotAfterDays(2)),
    ("usage_events", "event_time", RuleDefault::NotAfterDays(2)),
    ("content_events", "event_time", RuleDefault::NotAfterDays(2)),
    ("content_events", "score", RuleDefault::Min(0.0)),
    // not interactions.occurred_at: calendars hold meetings scheduled months ahead
];

/// A built-in rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RuleDefault {
    Min(f64),
    NotAfterDays(i64),
}

pub const CORE_TABLES: &[TableSpec] = &[
    ACCOUNTS,
    CSMS,
    PRODUCTS,
    CONTACTS,
    DEALS,
    SUBSCRIPTIONS,
    INVOICES,
    INTERACTIONS,
    USAGE_EVENTS,
    CONTENT,
    CONTENT_EVENTS,
];

pub fn core_table(name: &str) -> Option<&'static TableSpec> {
    CORE_TABLES.iter().find(|t| t.name == name)
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The schema of the source data (canonical columns only).
    pub fn data_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c.name, c.ty.arrow(), !c.required))
                .collect::<Vec<_>>(),
        ))
    }

    /// The schema of the Delta table: canonical columns, `attributes` where kept, audit columns.
    pub fn table_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), !c.required))
            .collect();
        if self.keeps_attributes {
            fields.push(Field::new("attributes", DataType::Utf8, true));
        }
        fields.push(Field::new("_source", DataType::Utf8, false));
        fields.push(Field::new("_run_id", DataType::Utf8, false));
        fields.push(Field::new("_ingested_at", Timestamp.arrow(), false));
        Arc::new(Schema::new(fields))
    }

    /// Columns compared to decide whether a re-loaded entity changed.
    pub fn compare_columns(&self) -> Vec<&'static str> {
        let mut c: Vec<&'static str> = self.columns.iter().map(|c| c.name).collect();
        if self.keeps_attributes {
            c.push("attributes");
        }
        c
    }
}
