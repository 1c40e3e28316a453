//! The generator's random stream and its fixed vocabularies: names, industries, plans, event
//! types with their base rates, and the content catalogue.

/// xoshiro256** seeded with splitmix64: fast, deterministic on every platform.
pub(super) struct Rng([u64; 4]);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
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
    pub(super) fn next_u64(&mut self) -> u64 {
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
    pub(super) fn f(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    pub(super) fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.f() * (hi - lo + 1) as f64) as i64
    }
    pub(super) fn normal(&mut self) -> f64 {
        let u = self.f().max(1e-12);
        let v = self.f();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
    pub(super) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.f() * items.len() as f64) as usize % items.len()]
    }
}

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub(super) const INDUSTRIES: &[&str] = &[
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Education",
    "Media",
    "Logistics",
];
pub(super) const COUNTRIES: &[&str] = &["US", "US", "US", "GB", "DE", "FR", "CA", "AU", "NL", "SE"];
pub(super) const PLANS: &[(&str, f64)] = &[("starter", 25.0), ("growth", 45.0), ("enterprise", 75.0)];
pub(super) const ROLES: &[&str] = &[
    "Admin",
    "Manager",
    "Analyst",
    "Engineer",
    "Executive",
    "Operations",
];
pub(super) const FIRST: &[&str] = &[
    "Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena", "Mo", "Nia",
    "Omar", "Pia",
];
pub(super) const LAST: &[&str] = &[
    "Smith", "Garcia", "Kim", "Müller", "Rossi", "Okafor", "Silva", "Nguyen", "Cohen", "Larsen", "Patel",
    "Dubois",
];
pub(super) const WORDS: &[&str] = &[
    "Acme", "Blue", "Nimbus", "Vertex", "Pioneer", "Summit", "Harbor", "Quantum", "Atlas", "Cedar", "Orbit",
    "Lumen",
];
pub(super) const SUFFIX: &[&str] = &[
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
pub(super) const EVENT_TYPES: &[(&str, f64, bool)] = &[
    ("view_dashboard", 0.55, false),
    ("create_report", 0.22, false),
    ("export_data", 0.10, false),
    ("api_call", 0.12, true),
    ("advanced_analytics", 0.10, true),
    ("invite_user", 0.01, false),
];

/// The content catalog: (kind, title, what it teaches, segment it is written for). Titles name
/// the event type they teach, so search and recommendations have something real to match.
pub(super) const CONTENT_ITEMS: &[(&str, &str, &str, Option<&str>)] = &[
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
pub(super) const CONTENT_AGE_DAYS: i64 = 900;
