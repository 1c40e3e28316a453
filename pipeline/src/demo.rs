//! A seeded, streaming B2B SaaS generator: accounts, contacts, subscriptions over time, invoices,
//! daily usage per user, tickets, NPS and CSM meetings. Churn and expansion are *caused* by
//! behaviour (falling usage, low seat utilisation, open tickets, failed payments, detractor NPS;
//! high utilisation and advanced-feature adoption), plus unobserved shocks, so that no single
//! feature gives the label away. Accounts are simulated one at a time and written as they finish,
//! so memory does not grow with the number of accounts or events.
//!
//! Long file: one simulation whose per-account state (users, subscriptions, tickets, training)
//! is shared by every step of a day; splitting it would pass that state through a dozen functions.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use cslake_sinks::{FileFormat, FileWriter};

use crate::ingest::records::{BatchBuilder, Value};
use crate::lake::schema::{self, TableSpec};
use crate::{Progress, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub accounts: usize,
    /// Days of history ending at `end` (usage, tickets and NPS are emitted in this window;
    /// subscriptions and invoices go back to each account's signup).
    pub days: i64,
    pub end: NaiveDate,
    pub seed: u64,
    pub format: FileFormat,
    pub out: PathBuf,
    /// Usage events per file part.
    pub events_per_file: usize,
    /// How churn depends on what the data shows.
    pub churn: ChurnProfile,
}

/// How the generator decides churn at each renewal, from the account's observable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChurnProfile {
    /// A logit that is a weighted sum of seat utilisation, usage trend, open tickets, failed
    /// payments, an NPS detractor flag and the segment: what logistic regression can learn.
    #[default]
    Linear,
    /// Churn driven by thresholds and interactions only: contract type x tenure (monthly
    /// contracts leave in their first four months, annual ones at their first renewal); low seat
    /// use (< 50% active) together with an open ticket; a failed payment, but only where seats are
    /// well used (>= 80%); monthly contracts whose seats are full (>= 90%: a U in utilisation).
    /// What trees can learn and a linear logit cannot.
    Interactions,
}

impl std::str::FromStr for ChurnProfile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linear" => Ok(Self::Linear),
            "interactions" => Ok(Self::Interactions),
            other => Err(format!("unknown churn profile '{other}': linear or interactions")),
        }
    }
}

/// Rows written per table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenStats {
    pub tables: Vec<(String, usize)>,
    pub files: usize,
}

/// xoshiro256** seeded with splitmix64: fast, deterministic on every platform.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Self([next(), next(), next(), next()])
    }
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
    fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.f() * (hi - lo + 1) as f64) as i64
    }
    fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.f() * items.len() as f64) as usize % items.len()]
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Logistics",
];
const COUNTRIES: &[&str] = &["US", "US", "US", "GB", "DE", "FR", "CA", "AU", "NL", "SE"];
const PLANS: &[(&str, f64)] = &[("starter", 25.0), ("growth", 45.0), ("enterprise", 75.0)];
const ROLES: &[&str] = &[
    "Admin",
    "Manager",
    "Analyst",
    "Engineer",
    "Executive",
    "Operations",
];
const FIRST: &[&str] = &[
    "Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena", "Mo", "Nia",
    "Omar", "Pia",
];
const LAST: &[&str] = &[
    "Smith", "Garcia", "Kim", "Müller", "Rossi", "Okafor", "Silva", "Nguyen", "Cohen", "Larsen", "Patel",
    "Dubois",
];
const WORDS: &[&str] = &[
    "Acme", "Blue", "Nimbus", "Vertex", "Pioneer", "Summit", "Harbor", "Quantum", "Atlas", "Cedar", "Orbit",
    "Lumen",
];
const SUFFIX: &[&str] = &[
    "Labs",
    "Systems",
    "Group",
    "Health",
    "Retail",
    "Logistics",
    "Analytics",
    "Works",
    "Partners",
];
/// (event type, base probability per active user-day, advanced feature)
const EVENT_TYPES: &[(&str, f64, bool)] = &[
    ("view_dashboard", 0.55, false),
    ("create_report", 0.22, false),
    ("export_data", 0.10, false),
    ("api_call", 0.12, true),
    ("advanced_analytics", 0.10, true),
    ("invite_user", 0.01, false),
];

/// The content catalog: (kind, title, what it teaches, segment it is written for). Titles name
/// the event type they teach, so search and recommendations have something real to match.
const CONTENT_ITEMS: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "guide",
        "Getting started: your first dashboard",
        "view_dashboard",
        None,
    ),
    ("video", "Dashboards in five minutes", "view_dashboard", None),
    (
        "guide",
        "Building a report your team will read",
        "create_report",
        None,
    ),
    ("course", "Reporting fundamentals", "create_report", None),
    ("template", "Weekly report template", "create_report", None),
    (
        "guide",
        "Exporting data to spreadsheets and BI",
        "export_data",
        None,
    ),
    (
        "course",
        "API basics: keys, limits and your first call",
        "api_call",
        Some("Enterprise"),
    ),
    ("guide", "Automating with the API", "api_call", None),
    (
        "course",
        "Advanced analytics: cohorts and funnels",
        "advanced_analytics",
        None,
    ),
    (
        "video",
        "Advanced analytics webinar recording",
        "advanced_analytics",
        None,
    ),
    (
        "best_practice",
        "Rolling out to your whole team",
        "invite_user",
        None,
    ),
    ("guide", "Inviting and managing users", "invite_user", Some("SMB")),
];

/// The first piece of content is published this long before the data's last day.
const CONTENT_AGE_DAYS: i64 = 900;

struct TableOut {
    spec: &'static TableSpec,
    builder: BatchBuilder,
    writer: Option<FileWriter>,
    part: usize,
    rows_in_part: usize,
    rows: usize,
    split: bool,
}

struct Writers {
    out: PathBuf,
    format: FileFormat,
    per_file: usize,
    tables: Vec<TableOut>,
    files: usize,
}

impl Writers {
    /// Removes the files an earlier generation wrote (in any format), so a smaller data set
    /// does not leave stale parts behind for the next ingest.
    fn clear(out: &Path) -> Result<()> {
        let io = |path: &Path, source| crate::Error::Io {
            path: path.display().to_string(),
            source,
        };
        for spec in schema::CORE_TABLES {
            for ext in ["csv", "ndjson", "parquet"] {
                let file = out.join(format!("{}.{ext}", spec.name));
                if file.exists() {
                    std::fs::remove_file(&file).map_err(|e| io(&file, e))?;
                }
            }
            let dir = out.join(spec.name);
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            }
        }
        Ok(())
    }

    fn new(out: &Path, format: FileFormat, per_file: usize) -> Self {
        let tables = schema::CORE_TABLES
            .iter()
            .map(|spec| TableOut {
                spec,
                builder: BatchBuilder::new(spec),
                writer: None,
                part: 0,
                rows_in_part: 0,
                rows: 0,
                split: spec.name == "usage_events",
            })
            .collect();
        Self {
            out: out.to_path_buf(),
            format,
            per_file,
            tables,
            files: 0,
        }
    }

    fn push(&mut self, table: &str, values: Vec<Value>) -> Result<()> {
        let i = self.tables.iter().position(|t| t.spec.name == table).unwrap_or(0);
        self.tables[i].builder.push(values, None);
        if self.tables[i].builder.len() >= 8192 {
            self.flush(i)?;
        }
        Ok(())
    }

    fn flush(&mut self, i: usize) -> Result<()> {
        let t = &mut self.tables[i];
        if t.builder.is_empty() {
            return Ok(());
        }
        let mut batch = t.builder.finish_data()?;
        if t.spec.name == "accounts" {
            batch = with_custom_fields(&batch)?;
        }
        if t.split && t.rows_in_part >= self.per_file {
            if let Some(w) = t.writer.take() {
                w.finish()?;
            }
            t.rows_in_part = 0;
        }
        if t.writer.is_none() {
            t.part += 1;
            let ext = self.format.extension();
            let path = if t.split {
                self.out
                    .join(t.spec.name)
                    .join(format!("part-{:05}.{ext}", t.part))
            } else {
                self.out.join(format!("{}.{ext}", t.spec.name))
            };
            t.writer = Some(FileWriter::create(&path, self.format, batch.schema())?);
            self.files += 1;
        }
        if let Some(w) = t.writer.as_mut() {
            w.write(&batch)?;
        }
        t.rows += batch.num_rows();
        t.rows_in_part += batch.num_rows();
        Ok(())
    }

    fn finish(mut self) -> Result<GenStats> {
        for i in 0..self.tables.len() {
            self.flush(i)?;
        }
        let mut stats = GenStats {
            files: self.files,
            ..Default::default()
        };
        for t in self.tables {
            if let Some(w) = t.writer {
                w.finish()?;
            }
            stats.tables.push((t.spec.name.to_string(), t.rows));
        }
        Ok(stats)
    }
}

/// The CRM's own fields beyond cslake's columns, as a real export has them: the company's
/// headcount and how it was acquired. They land in `core.accounts.attributes` and become features
/// only where `[features.attributes]` declares them. Derived from the account id (not from the
/// simulation's random stream, which stays as it was) and from the segment; they do not drive
/// churn.
fn with_custom_fields(
    batch: &deltalake::arrow::array::RecordBatch,
) -> Result<deltalake::arrow::array::RecordBatch> {
    use deltalake::arrow::array::{Array, Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;
    const CHANNELS: [&str; 4] = ["sales", "self-serve", "partner", "webinar"];
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .cloned()
    };
    let (Some(ids), Some(segments)) = (column("account_id"), column("segment")) else {
        return Ok(batch.clone());
    };
    let mut employees = Vec::with_capacity(ids.len());
    let mut channels = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        // FNV-1a of the id, mixed by splitmix64's finaliser (ids differ in their last digits
        // only, which FNV leaves in the low bits): stable on every platform
        let mut h = ids.value(i).bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let (lo, hi): (u64, u64) = match segments.value(i) {
            "Enterprise" => (1_000, 20_000),
            "Mid-Market" => (200, 1_000),
            _ => (5, 200),
        };
        employees.push((lo + h % (hi - lo)) as i64);
        channels.push(CHANNELS[((h >> 32) % 4) as usize]);
    }
    let with_employees = crate::lake::query::append_column(
        batch,
        Field::new("employees", DataType::Int64, true),
        Arc::new(Int64Array::from(employees)),
    )?;
    crate::lake::query::append_column(
        &with_employees,
        Field::new("acquisition_channel", DataType::Utf8, true),
        Arc::new(StringArray::from(channels)),
    )
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}
fn d(v: NaiveDate) -> Value {
    Value::Date(v)
}
fn opt_d(v: Option<NaiveDate>) -> Value {
    v.map_or(Value::Null, Value::Date)
}
fn ts(day: NaiveDate, secs: i64) -> Value {
    Value::Ts(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default()) + Duration::seconds(secs))
}

/// Generates the data set into `opts.out`.
pub fn generate(opts: &GenOptions, progress: &dyn Progress) -> Result<GenStats> {
    std::fs::create_dir_all(&opts.out).map_err(|source| crate::Error::Io {
        path: opts.out.display().to_string(),
        source,
    })?;
    Writers::clear(&opts.out)?;
    let mut w = Writers::new(&opts.out, opts.format, opts.events_per_file.max(1));
    let n_csms = (opts.accounts / 60).max(3);
    let teams = ["SMB", "Mid-Market", "Enterprise"];
    for c in 0..n_csms {
        let mut r = Rng::new(opts.seed ^ 0xC5C5 ^ (c as u64) << 20);
        let name = format!("{} {}", r.pick(FIRST), r.pick(LAST));
        let team = teams[c % 3];
        w.push(
            "csms",
            vec![
                s(format!("CSM-{:03}", c + 1)),
                s(name.clone()),
                s(format!(
                    "{}.{}@vendor.example",
                    name.split(' ').next().unwrap_or("csm").to_lowercase(),
                    c + 1
                )),
                s(team),
                Value::Int([80, 45, 20][c % 3]),
            ],
        )?;
    }
    for (rank, (plan, price)) in PLANS.iter().enumerate() {
        w.push(
            "products",
            vec![
                s(*plan),
                s(format!("{}{} plan", &plan[..1].to_uppercase(), &plan[1..])),
                s("plan"),
                Value::Int(rank as i64 + 1),
                Value::Float(*price),
            ],
        )?;
    }
    for (i, (kind, title, teaches, segment)) in CONTENT_ITEMS.iter().enumerate() {
        let id = format!("CNT-{:03}", i + 1);
        let topic = teaches.replace('_', " ");
        w.push(
            "content",
            vec![
                s(id.clone()),
                s(*title),
                s(*kind),
                s(format!("https://help.vendor.example/articles/{id}")),
                s(format!("{topic}, {kind}")),
                s(*teaches),
                segment.map_or(Value::Null, s),
                s("en"),
                ts(
                    opts.end - Duration::days(CONTENT_AGE_DAYS - 60 * i as i64),
                    9 * 3600,
                ),
            ],
        )?;
    }
    progress.start("generate", Some(opts.accounts as u64));
    for a in 0..opts.accounts {
        simulate_account(opts, a, n_csms, &mut w)?;
        progress.advance(1);
    }
    progress.finish();
    w.finish()
}

struct User {
    id: String,
    propensity: f64,
    power: f64,
    last_active: Option<NaiveDate>,
    /// Content started and the day it will be completed.
    learning: Vec<(NaiveDate, usize)>,
    /// The event types the content this user completed teaches.
    learned: Vec<&'static str>,
}

#[allow(clippy::too_many_lines)]
fn simulate_account(opts: &GenOptions, index: usize, n_csms: usize, w: &mut Writers) -> Result<()> {
    let mut r = Rng::new(opts.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (index as u64 + 1));
    let id = format!("ACC-{:06}", index + 1);
    let start = opts.end - Duration::days(opts.days - 1);
    let seg_draw = r.f();
    let (segment, seat_lo, seat_hi, annual_share, csm_team) = if seg_draw < 0.6 {
        ("SMB", 2, 10, 0.3, 0)
    } else if seg_draw < 0.9 {
        ("Mid-Market", 10, 30, 0.8, 1)
    } else {
        ("Enterprise", 30, 80, 1.0, 2)
    };
    let mut plan_rank: usize = match segment {
        "SMB" => usize::from(r.chance(0.3)),
        "Mid-Market" => {
            if r.chance(0.15) {
                2
            } else if r.chance(0.18) {
                0
            } else {
                1
            }
        }
        _ => {
            if r.chance(0.8) {
                2
            } else {
                1
            }
        }
    };
    let annual = r.chance(annual_share);
    let mut seats = ((seat_lo as f64) * ((seat_hi as f64 / seat_lo as f64).powf(r.f()))).round() as i64;
    let signup = opts.end - Duration::days(r.range(20, opts.days + 730));
    let csm = {
        let team_csms: Vec<usize> = (0..n_csms).filter(|c| c % 3 == csm_team).collect();
        format!(
            "CSM-{:03}",
            team_csms[r.range(0, team_csms.len() as i64 - 1) as usize] + 1
        )
    };
    let industry = r.pick(INDUSTRIES);
    let country = r.pick(COUNTRIES);
    let name = format!("{} {} {}", r.pick(WORDS), r.pick(WORDS), r.pick(SUFFIX));
    // latent, unobserved: product fit and health
    let fit = r.normal();
    let mut h = 0.6 + 0.4 * fit + 0.4 * r.normal();
    let mut declining = false;
    let mut price = PLANS[plan_rank].1 * (1.0 + 0.1 * r.normal()).clamp(0.7, 1.3);
    let advanced_affinity = sigmoid(fit + r.normal());

    let mut users: Vec<User> = Vec::new();
    let mut contact_seq = 0;
    let mut add_users =
        |users: &mut Vec<User>, n: i64, r: &mut Rng, w: &mut Writers, day: NaiveDate| -> Result<()> {
            for _ in 0..n {
                contact_seq += 1;
                let cid = format!("{id}-U{contact_seq:03}");
                let first = r.pick(FIRST);
                let last = r.pick(LAST);
                w.push(
                    "contacts",
                    vec![
                        s(cid.clone()),
                        s(id.clone()),
                        s(format!(
                            "{}.{}{}@{}.example",
                            first.to_lowercase(),
                            last.to_lowercase(),
                            contact_seq,
                            id.to_lowercase()
                        )),
                        s(format!("{first} {last}")),
                        s(r.pick(ROLES)),
                        d(day),
                    ],
                )?;
                users.push(User {
                    id: cid,
                    propensity: r.f().powf(0.7),
                    power: r.f(),
                    last_active: None,
                    learning: Vec::new(),
                    learned: Vec::new(),
                });
            }
            Ok(())
        };
    let initial_users = ((seats as f64) * (0.55 + 0.4 * r.f())).round().max(1.0) as i64;
    add_users(&mut users, initial_users, &mut r, w, signup)?;

    // subscription periods
    let mut sub_seq = 0;
    let mut period_start = signup;
    let mut period_kind = "new";
    let mut churned_on: Option<NaiveDate> = None;
    let mut invoice_seq = 0;
    let mut event_seq: u64 = 0;
    // content: a stream of its own, so the rest of the simulation draws what it always drew
    let mut rc = Rng::new(opts.seed ^ 0xC047_E475 ^ ((index as u64 + 1) << 17));
    let mut content_seq: u64 = 0;
    let published = opts.end - Duration::days(CONTENT_AGE_DAYS);
    let mut ticket_seq = 0;
    let mut open_tickets: Vec<(NaiveDate, Option<NaiveDate>)> = Vec::new();
    let mut failed_payments: Vec<NaiveDate> = Vec::new();
    let mut last_nps: Option<(NaiveDate, f64)> = None;
    let mut daily_events: Vec<f64> = Vec::new(); // events per day since signup
    let mut next_nps = signup + Duration::days(r.range(30, 120));
    let meet_every = match segment {
        "SMB" => 90,
        "Mid-Market" => 45,
        _ => 30,
    };
    let mut next_meeting = signup + Duration::days(r.range(7, meet_every));
    let mut contract_anchor = signup;

    let mut close_period = |w: &mut Writers,
                            end: NaiveDate,
                            status: &str,
                            kind: &str,
                            seats: i64,
                            mrr: f64,
                            plan: &str,
                            start: NaiveDate|
     -> Result<()> {
        sub_seq += 1;
        w.push(
            "subscriptions",
            vec![
                s(format!("{id}-S{sub_seq:02}")),
                s(id.clone()),
                s(plan),
                Value::Int(seats),
                Value::Float((mrr * 100.0).round() / 100.0),
                d(start),
                d(end),
                s(status),
                s(kind),
                Value::Int(if annual { 12 } else { 1 }),
                Value::Null,
            ],
        )
    };

    let mut day = signup;
    while day <= opts.end {
        let in_window = day >= start;
        let t = (day - signup).num_days();
        // weekly: latent health moves
        if day.weekday() == Weekday::Mon {
            if !declining && r.chance(0.004 + 0.01 * f64::from(u8::from(fit < -0.5))) {
                declining = true;
            } else if declining && r.chance(0.03) {
                declining = false;
            }
            let drift = if declining {
                -0.07
            } else {
                0.02 * (0.6 + 0.4 * fit - h)
            };
            h = (h + drift + 0.08 * r.normal()).clamp(-3.0, 3.0);
        }
        // usage
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let activity = sigmoid(1.6 * h - 0.2) * if weekend { 0.15 } else { 1.0 };
        let mut today = 0.0;
        for u in &mut users {
            if !r.chance(0.55 * u.propensity * activity) {
                continue;
            }
            u.last_active = Some(day);
            let logins = 1 + i64::from(r.chance(0.3)) + i64::from(r.chance(0.1));
            today += logins as f64;
            let uid = u.id.clone();
            // training: now and then a user opens a piece of content, often starts it and
            // mostly finishes it within two weeks; what it teaches they then use more
            let mut learn =
                |action: &str, item: usize, at: NaiveDate, score: Option<f64>, w: &mut Writers| {
                    content_seq += 1;
                    if at < start || at > opts.end {
                        return Ok(());
                    }
                    w.push(
                        "content_events",
                        vec![
                            s(format!("{id}-C{content_seq:05}")),
                            s(format!("CNT-{:03}", item + 1)),
                            s(id.clone()),
                            s(uid.clone()),
                            s(action),
                            ts(
                                at,
                                8 * 3600 + (item as i64 * 997 + content_seq as i64 * 131) % (10 * 3600),
                            ),
                            score.map_or(Value::Null, Value::Float),
                        ],
                    )
                };
            let due: Vec<usize> = u
                .learning
                .iter()
                .filter(|(d, _)| *d <= day)
                .map(|(_, i)| *i)
                .collect();
            u.learning.retain(|(d, _)| *d > day);
            for item in due {
                let rating = rc.chance(0.4).then(|| rc.range(3, 5) as f64);
                learn("completed", item, day, None, w)?;
                if let Some(score) = rating {
                    learn("rated", item, day, Some(score), w)?;
                }
                let teaches = CONTENT_ITEMS[item].2;
                if !u.learned.contains(&teaches) {
                    u.learned.push(teaches);
                }
            }
            if day >= published && rc.chance(0.005 * (1.2 - u.power)) {
                let item = rc.range(0, CONTENT_ITEMS.len() as i64 - 1) as usize;
                learn("viewed", item, day, None, w)?;
                if rc.chance(0.6) {
                    learn("started", item, day, None, w)?;
                    if rc.chance(0.7) {
                        u.learning.push((day + Duration::days(rc.range(1, 14)), item));
                    }
                }
            }
            let mut emit = |etype: &str, qty: f64, r: &mut Rng, w: &mut Writers| -> Result<()> {
                if in_window {
                    event_seq += 1;
                    w.push(
                        "usage_events",
                        vec![
                            s(format!("{id}-E{event_seq:07}")),
                            s(id.clone()),
                            s(u.id.clone()),
                            s(etype),
                            ts(day, r.range(7 * 3600, 19 * 3600)),
                            Value::Float(qty),
                        ],
                    )?;
                }
                Ok(())
            };
            emit("login", logins as f64, &mut r, w)?;
            let learned = u.learned.clone();
            for (etype, base, advanced) in EVENT_TYPES {
                let p = if *advanced {
                    if plan_rank == 0 {
                        0.0
                    } else {
                        base * advanced_affinity * (0.5 + u.power)
                    }
                } else {
                    base * (0.4 + u.power)
                };
                if r.chance(p) {
                    let qty = if *etype == "api_call" {
                        r.range(5, 60) as f64
                    } else {
                        r.range(1, 4) as f64
                    };
                    today += qty.min(5.0);
                    emit(etype, qty, &mut r, w)?;
                } else if learned.contains(etype) && rc.chance(0.5 * p / (1.0 - p).max(0.05)) {
                    // trained: half as likely again to use it (drawn from the content stream,
                    // and not counted in the activity the churn simulation reads)
                    emit(etype, 1.0, &mut rc, w)?;
                }
            }
        }
        daily_events.push(today);
        // support tickets
        let ticket_rate = 0.002 * (users.len() as f64).sqrt() * (1.0 + 3.0 * sigmoid(-2.0 * h));
        if r.chance(ticket_rate) {
            ticket_seq += 1;
            let high = r.chance(0.12 + 0.25 * f64::from(u8::from(h < 0.0)));
            let slow = h < 0.0 || high;
            let days_to_resolve = if r.chance(if slow { 0.12 } else { 0.02 }) {
                None
            } else {
                Some((-(r.f().max(1e-9)).ln() * if slow { 12.0 } else { 3.0 }).ceil() as i64)
            };
            let resolved = days_to_resolve
                .map(|n| day + Duration::days(n))
                .filter(|x| *x <= opts.end);
            open_tickets.push((day, resolved));
            if in_window {
                let opened = r.range(8 * 3600, 18 * 3600);
                w.push(
                    "interactions",
                    vec![
                        s(format!("{id}-T{ticket_seq:04}")),
                        s(id.clone()),
                        s(users[r.range(0, users.len() as i64 - 1) as usize].id.clone()),
                        s("ticket"),
                        ts(day, opened),
                        resolved.map_or(Value::Null, |x| ts(x, r.range(8 * 3600, 18 * 3600))),
                        s(if resolved.is_some() { "resolved" } else { "open" }),
                        s(if high {
                            "high"
                        } else if r.chance(0.5) {
                            "normal"
                        } else {
                            "low"
                        }),
                        Value::Null,
                        s(r.pick(&[
                            "Login problem",
                            "Export fails",
                            "Billing question",
                            "Slow dashboard",
                            "Integration error",
                            "Feature request",
                        ])),
                        s(csm.clone()),
                    ],
                )?;
            }
        }
        // NPS survey
        if day >= next_nps {
            next_nps = day + Duration::days(r.range(80, 100));
            if r.chance(0.45) {
                let score = (7.0 + 2.0 * h + 1.8 * r.normal()).round().clamp(0.0, 10.0);
                last_nps = Some((day, score));
                if in_window {
                    ticket_seq += 1;
                    w.push(
                        "interactions",
                        vec![
                            s(format!("{id}-N{ticket_seq:04}")),
                            s(id.clone()),
                            s(users[r.range(0, users.len() as i64 - 1) as usize].id.clone()),
                            s("nps"),
                            ts(day, r.range(8 * 3600, 20 * 3600)),
                            Value::Null,
                            s("answered"),
                            Value::Null,
                            Value::Float(score),
                            s("Quarterly NPS survey"),
                            Value::Null,
                        ],
                    )?;
                }
            }
        }
        // CSM meetings (more often when the CSM sees trouble: a confounder, as in real life)
        if day >= next_meeting {
            let every = if h < 0.0 { meet_every * 2 / 3 } else { meet_every };
            next_meeting = day + Duration::days(r.range(every * 3 / 4, every * 5 / 4));
            if in_window && r.chance(0.8) {
                ticket_seq += 1;
                w.push(
                    "interactions",
                    vec![
                        s(format!("{id}-M{ticket_seq:04}")),
                        s(id.clone()),
                        Value::Null,
                        s("meeting"),
                        ts(day, r.range(9 * 3600, 17 * 3600)),
                        Value::Null,
                        s("held"),
                        Value::Null,
                        Value::Null,
                        s(r.pick(&[
                            "Quarterly business review",
                            "Check-in",
                            "Onboarding session",
                            "Renewal discussion",
                        ])),
                        s(csm.clone()),
                    ],
                )?;
            }
        }
        // billing, renewal and churn decisions on the billing anniversary
        let monthly_anniv = t > 0 && day.day() == signup.day().min(28);
        let yearly_anniv = t > 0
            && day.ordinal() == contract_anchor.ordinal().min(365)
            && day.year() > contract_anchor.year();
        let billing_day = if annual { yearly_anniv } else { monthly_anniv };
        if billing_day {
            let active30 = users
                .iter()
                .filter(|u| u.last_active.is_some_and(|x| (day - x).num_days() < 30))
                .count() as f64;
            let util = active30 / seats.max(1) as f64;
            let n = daily_events.len();
            let last30: f64 = daily_events[n.saturating_sub(30)..].iter().sum();
            let prev30: f64 = daily_events[n.saturating_sub(60)..n.saturating_sub(30)]
                .iter()
                .sum();
            let trend = (last30 + 1.0) / (prev30 + 1.0) - 1.0;
            let open = open_tickets
                .iter()
                .filter(|(o, res)| *o <= day && res.is_none_or(|x| x > day))
                .count() as f64;
            let failed_recent = failed_payments
                .iter()
                .filter(|f| (day - **f).num_days() < 90)
                .count() as f64;
            let detractor = last_nps.is_some_and(|(when, sc)| sc <= 6.0 && (day - when).num_days() < 180);
            let shock = 0.9 * r.normal();
            let flag = |b: bool| f64::from(u8::from(b));
            let logit = match opts.churn {
                ChurnProfile::Linear => {
                    let base = if annual { -1.9 } else { -4.1 };
                    base - 2.2 * (util - 0.5) - 0.9 * trend.clamp(-1.0, 1.0)
                        + 0.35 * open.min(5.0)
                        + 0.7 * failed_recent.min(3.0)
                        + 0.8 * flag(detractor)
                        - 0.3 * flag(segment == "Enterprise")
                        + shock
                }
                ChurnProfile::Interactions => {
                    let tenure = (day - signup).num_days();
                    // contract type x tenure: a monthly contract leaves in its first months
                    // (onboarding that failed) or never; an annual one cannot leave before its
                    // first renewal and is most at risk there, so tenure means opposite things by
                    // contract. Monthly contracts also leave when their seats are full (they
                    // outgrow the plan rather than pay for more): a U in utilisation.
                    let onboarding = !annual && tenure < 120;
                    let first_renewal = annual && tenure < 400;
                    let base = if annual { -4.2 } else { -6.5 };
                    base + 4.0 * flag(onboarding)
                        + 3.8 * flag(first_renewal)
                        + 5.0 * flag(util < 0.5 && open >= 1.0)
                        + 4.5 * flag(util >= 0.8 && failed_recent >= 1.0)
                        + 2.2 * flag(!annual && util >= 0.9)
                        + 0.4 * shock
                }
            };
            let plan = PLANS[plan_rank].0;
            let mrr = seats as f64 * price;
            let old_seats = seats;
            if r.chance(sigmoid(logit)) {
                close_period(w, day, "cancelled", period_kind, seats, mrr, plan, period_start)?;
                churned_on = Some(day);
                break;
            }
            // expansion: high utilisation and advanced adoption lead to more seats or a higher plan
            let expand_p =
                sigmoid(-3.2 + 7.0 * (util - 0.8) + 1.5 * advanced_affinity + 0.8 * h + 0.5 * r.normal());
            let mut change: Option<&str> = None;
            // accounts plateau: seats stop growing at three times the segment's largest start
            // (without it, high utilisation compounds into 100x growth within a few years)
            if seats < seat_hi * 3 && r.chance(expand_p) {
                let added = ((seats as f64) * (0.15 + 0.35 * r.f())).ceil() as i64;
                if plan_rank < 2 && advanced_affinity > 0.6 && r.chance(0.3) {
                    plan_rank += 1;
                    price = PLANS[plan_rank].1 * (1.0 + 0.05 * r.normal()).clamp(0.8, 1.2);
                } else {
                    seats += added;
                }
                change = Some("upgrade");
            } else if util < 0.35 && seats > 2 && r.chance(if annual { 0.35 } else { 0.08 }) {
                seats = ((active30 * 1.3).ceil() as i64).clamp(1, seats - 1);
                change = Some("downgrade");
            } else if annual {
                if r.chance(0.4) {
                    price *= 1.05;
                }
                change = Some("renewal");
            }
            if let Some(kind) = change {
                close_period(w, day, "ended", period_kind, old_seats, mrr, plan, period_start)?;
                period_start = day;
                period_kind = kind;
                if kind == "renewal" {
                    contract_anchor = day;
                }
                let want = ((seats as f64) * (0.55 + 0.4 * sigmoid(h))).round() as i64;
                if want > users.len() as i64 {
                    let n = want - users.len() as i64;
                    add_users(&mut users, n, &mut r, w, day)?;
                }
            }
            // invoice for the period just started
            invoice_seq += 1;
            let amount = seats as f64 * price * if annual { 12.0 } else { 1.0 };
            let due = day + Duration::days(if annual { 30 } else { 7 });
            let fail_p = 0.025 + 0.10 * sigmoid(-2.0 * h - 1.0);
            let failures = if r.chance(fail_p) { r.range(1, 3) } else { 0 };
            let late = r.chance(0.04 + 0.15 * f64::from(u8::from(h < 0.0)));
            let paid = if failures > 0 && r.chance(0.3) {
                None
            } else if failures > 0 || late {
                Some(due + Duration::days(r.range(2, 25)))
            } else {
                Some(day + Duration::days(r.range(0, 5)))
            }
            .filter(|p| *p <= opts.end);
            if failures > 0 {
                failed_payments.push(day);
            }
            w.push(
                "invoices",
                vec![
                    s(format!("{id}-I{invoice_seq:03}")),
                    s(id.clone()),
                    d(day),
                    d(due),
                    Value::Float((amount * 100.0).round() / 100.0),
                    s(if paid.is_some() {
                        "paid"
                    } else if failures > 0 {
                        "failed"
                    } else {
                        "open"
                    }),
                    opt_d(paid),
                    Value::Int(failures),
                ],
            )?;
        }
        day += Duration::days(1);
    }
    if churned_on.is_none() {
        // the current period stays open
        sub_seq += 1;
        w.push(
            "subscriptions",
            vec![
                s(format!("{id}-S{sub_seq:02}")),
                s(id.clone()),
                s(PLANS[plan_rank].0),
                Value::Int(seats),
                Value::Float(((seats as f64 * price) * 100.0).round() / 100.0),
                d(period_start),
                Value::Null,
                s("active"),
                s(period_kind),
                Value::Int(if annual { 12 } else { 1 }),
                Value::Null,
            ],
        )?;
    }
    let contract_end = annual.then(|| contract_anchor + Duration::days(365));
    w.push(
        "accounts",
        vec![
            s(id.clone()),
            s(name),
            s(industry),
            s(segment),
            s(PLANS[plan_rank].0),
            Value::Int(seats),
            Value::Float(if churned_on.is_some() {
                0.0
            } else {
                ((seats as f64 * price) * 100.0).round() / 100.0
            }),
            d(signup),
            opt_d(contract_end),
            s(csm),
            s(country),
            d(signup),
            s(if churned_on.is_some() { "churned" } else { "active" }),
        ],
    )?;
    Ok(())
}
