//! Who may run what. `[access]` in `cslake.toml` maps actors to roles and roles to commands;
//! every command is checked before it touches the lake, and a refusal is audited like any run.
//!
//! What a command line can and cannot enforce: whoever holds the store's credentials can write
//! the lake's objects without cslake. The roles here decide what cslake itself will do for an
//! actor; [`store_policy`] prints the least-privilege S3 bucket policy of a role, so the store
//! enforces the same line for the credentials that role is given (`docs/security.md`).
//!
//! Actors: the OS user, or the name a scheduler passes in `CSLAKE_ACTOR` / `--actor`. A name is a
//! claim, so with `[access]` only the OS users listed in `delegates` (the scheduler's service
//! account) may run commands as another actor, and the audit row records both.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::settings::AccessConfig;
use crate::{Error, Result, Settings};

/// What a command does, which decides the built-in roles that may run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// Reads the lake, writes only its own audit row.
    Read,
    /// A step of the nightly job (writes its zone).
    Job,
    /// A person's action on the day's work list (completes a task, acknowledges an alert).
    Human,
    /// Reaches personal data, removes history or overrides a decision.
    Privileged,
    /// Touches no lake (generates files, prints a policy).
    Local,
}

/// Every command cslake has, by the name the audit log and `[access.roles]` use: the subcommand
/// path, plus the flag that changes what it does (`query --reveal`, `report --deliver`).
pub const COMMANDS: &[(&str, Class)] = &[
    ("demo", Class::Job),
    ("generate", Class::Local),
    ("ingest", Class::Job),
    ("features", Class::Job),
    ("features list", Class::Read),
    ("features describe", Class::Read),
    ("features stats", Class::Read),
    ("features training-set", Class::Job),
    ("features event-types", Class::Job),
    ("train", Class::Job),
    ("evaluate", Class::Job),
    ("score", Class::Job),
    ("act", Class::Job),
    ("analytics", Class::Job),
    ("publish", Class::Job),
    ("report", Class::Read),
    ("report --deliver", Class::Job),
    ("run", Class::Job),
    ("backfill", Class::Job),
    ("backup", Class::Job),
    ("models list", Class::Read),
    ("models show", Class::Read),
    ("models promote", Class::Privileged),
    ("models rollback", Class::Privileged),
    ("health suggest-weights", Class::Read),
    ("playbooks list", Class::Read),
    ("playbooks validate", Class::Read),
    ("playbooks dry-run", Class::Read),
    ("playbooks stats", Class::Read),
    ("content recommend", Class::Job),
    ("content effectiveness", Class::Job),
    ("content search", Class::Read),
    ("tasks list", Class::Read),
    ("tasks complete", Class::Human),
    ("alerts list", Class::Read),
    ("alerts ack", Class::Human),
    ("campaigns report", Class::Read),
    ("account", Class::Read),
    ("query", Class::Read),
    ("query --reveal", Class::Privileged),
    ("tables", Class::Read),
    ("lineage", Class::Read),
    ("runs list", Class::Read),
    ("runs show", Class::Read),
    ("maintain", Class::Privileged),
    ("restore", Class::Privileged),
    ("gdpr erase", Class::Privileged),
    ("gdpr export", Class::Privileged),
    ("pii rotate", Class::Privileged),
    ("access whoami", Class::Local),
    ("access policy", Class::Local),
    // a cluster's processes: they compute what commands send them and write nothing to the lake
    ("cluster scheduler", Class::Local),
    ("cluster executor", Class::Local),
];

/// The class of a command; a name cslake does not know is privileged (refused unless a role
/// names it), so a new command is closed until someone opens it.
pub fn class(command: &str) -> Class {
    COMMANDS
        .iter()
        .find(|(c, _)| *c == command)
        .map_or(Class::Privileged, |(_, k)| *k)
}

/// The built-in roles, what each may run, and what each is for.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("admin", "every command"),
    (
        "engineer",
        "the nightly job, reads, people's actions, maintain and model promotion/rollback; not gdpr, restore, pii rotate or query --reveal",
    ),
    (
        "scheduler",
        "the nightly job, reads and maintain; not model promotion, people's actions or privileged commands",
    ),
    ("csm", "reads, and completing tasks and acknowledging alerts"),
    ("analyst", "reads only"),
];

/// Does a built-in role allow `command`?
fn built_in_allows(role: &str, command: &str) -> Option<bool> {
    let k = class(command);
    let operational = ["maintain", "models promote", "models rollback"];
    Some(match role {
        "admin" => true,
        "engineer" => {
            matches!(k, Class::Read | Class::Job | Class::Human | Class::Local)
                || operational.contains(&command)
        }
        "scheduler" => matches!(k, Class::Read | Class::Job | Class::Local) || command == "maintain",
        "csm" => matches!(k, Class::Read | Class::Human | Class::Local),
        "analyst" => matches!(k, Class::Read | Class::Local),
        _ => return None,
    })
}

/// The actor of this command, its roles, and the rules they come from.
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    /// The actor roles are looked up for (the claimed name, or the OS user).
    pub actor: String,
    /// The OS user the process runs as.
    pub os_user: String,
    pub roles: Vec<String>,
    /// False without `[access]`: every command is open (single-user lakes, the demo).
    pub enforced: bool,
    #[serde(skip)]
    config: AccessConfig,
}

impl Access {
    /// Resolves the actor's roles. With `[access]`, an actor name that is not the OS user is
    /// accepted only from a delegate (exit 2 otherwise).
    pub fn resolve(settings: &Settings) -> Result<Self> {
        let os_user = crate::settings::os_user();
        let actor = settings.actor.clone();
        let Some(config) = settings.file.access.clone() else {
            // no [access]: one team, one lake; every command is open
            return Ok(Self {
                actor,
                os_user,
                roles: vec!["admin".into()],
                enforced: false,
                config: AccessConfig::default(),
            });
        };
        validate(&config)?;
        if actor != os_user && !config.delegates.iter().any(|d| d == &os_user) {
            return Err(Error::Denied(format!(
                "OS user '{os_user}' may not run commands as '{actor}' (--actor / CSLAKE_ACTOR): only the OS users \
                 in [access] delegates may; run without it, or add '{os_user}' to delegates"
            )));
        }
        let roles = roles_of(&config, &actor);
        Ok(Self {
            actor,
            os_user,
            roles,
            enforced: true,
            config,
        })
    }

    /// The name the audit log records: the actor, and the OS user who ran it on its behalf.
    pub fn audit_name(&self) -> String {
        if self.actor == self.os_user {
            self.actor.clone()
        } else {
            format!("{} (via {})", self.actor, self.os_user)
        }
    }

    pub fn allows(&self, command: &str) -> bool {
        !self.enforced
            || self
                .roles
                .iter()
                .any(|r| role_allows(&self.config, r, command, 0))
    }

    /// Refuses (exit 2) a command none of the actor's roles allows, naming the roles that would.
    pub fn check(&self, command: &str) -> Result<()> {
        if self.allows(command) {
            return Ok(());
        }
        let mut could: Vec<String> = BUILT_IN
            .iter()
            .map(|(r, _)| r.to_string())
            .chain(self.config.roles.keys().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|r| role_allows(&self.config, r, command, 0))
            .collect();
        could.sort();
        let roles = if self.roles.is_empty() {
            "no role".to_string()
        } else {
            format!("roles: {}", self.roles.join(", "))
        };
        Err(Error::Denied(format!(
            "actor '{}' ({roles}) may not run '{command}'; roles that may: {}. Roles are given in [access] of cslake.toml",
            self.actor,
            could.join(", ")
        )))
    }

    /// Every command this actor may run.
    pub fn commands(&self) -> Vec<&'static str> {
        COMMANDS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| self.allows(c))
            .collect()
    }
}

/// An actor's roles: its own entry (exact, else the longest `prefix*` pattern), else the
/// default roles.
fn roles_of(config: &AccessConfig, actor: &str) -> Vec<String> {
    if let Some(r) = config.actors.get(actor) {
        return r.clone();
    }
    config
        .actors
        .iter()
        .filter_map(|(pattern, roles)| {
            let prefix = pattern.strip_suffix('*')?;
            actor.starts_with(prefix).then_some((prefix.len(), roles))
        })
        .max_by_key(|(n, _)| *n)
        .map_or_else(|| config.default_roles.clone(), |(_, r)| r.clone())
}

/// A role's grant of a command: a configured role's entries are command names, `"group *"` (every
/// `group …` command), `"*"` (every command) or `"@role"` (everything that role may); a
/// configured role replaces a built-in one of the same name.
fn role_allows(config: &AccessConfig, role: &str, command: &str, depth: usize) -> bool {
    if let Some(grants) = config.roles.get(role) {
        return depth < 8
            && grants.iter().any(|g| {
                if g == "*" || g == command {
                    true
                } else if let Some(other) = g.strip_prefix('@') {
                    role_allows(config, other, command, depth + 1)
                } else if let Some(group) = g.strip_suffix(" *") {
                    command.split_whitespace().next() == Some(group)
                } else {
                    false
                }
            });
    }
    built_in_allows(role, command).unwrap_or(false)
}

/// Checks `[access]`: every role named exists, every grant names a command.
pub fn validate(config: &AccessConfig) -> Result<()> {
    let known_role = |r: &str| config.roles.contains_key(r) || BUILT_IN.iter().any(|(b, _)| *b == r);
    let bad = |m: String| Err(Error::Config(format!("[access] {m}")));
    for (actor, roles) in config
        .actors
        .iter()
        .map(|(a, r)| (a.as_str(), r))
        .chain(std::iter::once(("default_roles", &config.default_roles)))
    {
        for r in roles {
            if !known_role(r) {
                return bad(format!(
                    "{actor}: no role '{r}' (built in: {}; or define it in [access.roles])",
                    BUILT_IN.iter().map(|(b, _)| *b).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    let groups: BTreeSet<&str> = COMMANDS
        .iter()
        .filter_map(|(c, _)| c.split_once(' ').map(|(g, _)| g))
        .collect();
    for (role, grants) in &config.roles {
        for g in grants {
            let ok = g == "*"
                || COMMANDS.iter().any(|(c, _)| c == g)
                || g.strip_prefix('@').is_some_and(known_role)
                || g.strip_suffix(" *").is_some_and(|p| groups.contains(p));
            if !ok {
                return bad(format!(
                    "roles.{role}: '{g}' is not a command (e.g. \"query\", \"models promote\"), a group (\"models *\"), \"*\" or a role (\"@analyst\")"
                ));
            }
        }
    }
    Ok(())
}

/// The lake's folders, and which of them a kind of access reaches, for a store policy.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreAccess {
    /// Folders (relative to the lake root) whose objects the role reads.
    pub read: BTreeSet<String>,
    /// Folders the role writes new objects into.
    pub write: BTreeSet<String>,
    /// Folders the role removes objects from (vacuum, released leases).
    pub delete: BTreeSet<String>,
}

/// The tables of `ops`, each its own folder (so a policy can leave one out).
const OPS_TABLES: [&str; 6] = [
    "runs",
    "quarantine",
    "erasures",
    "source_cursors",
    "source_state",
    "feature_stats",
];

/// What the commands of a role need from the store. Every role appends its runs to `ops/runs`
/// (the audit); only `admin` may change `ops/erasures` (the erasure list must not be undone by a
/// job's credentials) or remove objects of `ops/runs` (the audit log; put object lock on it).
pub fn store_access(config: &AccessConfig, role: &str) -> StoreAccess {
    let allows = |c: &str| role_allows(config, role, c, 0);
    let mut a = StoreAccess::default();
    let zones: Vec<&str> = crate::lake::ZONES
        .iter()
        .copied()
        .filter(|z| *z != "ops")
        .collect();
    let ops = |t: &str| format!("ops/{t}");
    let everything: Vec<String> = zones
        .iter()
        .map(|z| z.to_string())
        .chain(OPS_TABLES.iter().map(|t| ops(t)))
        .chain(["_cslake_leases".to_string()])
        .collect();
    // every command that touches the lake writes its audit row
    a.read.insert(ops("runs"));
    a.write.insert(ops("runs"));
    if role_allows(config, role, "restore", 0) && role_allows(config, role, "gdpr erase", 0) {
        // the whole lake, history removal included
        a.read.extend(everything.iter().cloned());
        a.write.extend(everything.iter().cloned());
        a.delete.extend(everything.iter().cloned());
        return a;
    }
    let runs_jobs = COMMANDS
        .iter()
        .any(|(c, k)| matches!(k, Class::Job | Class::Privileged) && allows(c));
    if runs_jobs {
        a.read.extend(everything.iter().cloned());
        for f in &everything {
            if f != "ops/erasures" {
                a.write.insert(f.clone());
                if f != "ops/runs" {
                    a.delete.insert(f.clone());
                }
            }
        }
        return a;
    }
    let reads: &[&str] = if allows("query") || allows("account") {
        &["scores", "analytics", "features"]
    } else {
        &[]
    };
    a.read.extend(reads.iter().map(|z| z.to_string()));
    if allows("tables") || allows("runs list") || allows("lineage") {
        // table listings and the audit read every table's log, not its data
        a.read.insert(ops("runs"));
    }
    if COMMANDS.iter().any(|(c, k)| *k == Class::Human && allows(c)) {
        // completing a task writes the actions zone under its lease
        for f in ["actions", "_cslake_leases"] {
            a.read.insert(f.into());
            a.write.insert(f.into());
            a.delete.insert(f.into());
        }
        a.read.insert("models".into());
    }
    a
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at either end).
fn bucket_and_prefix(lake: &str) -> Result<(String, String)> {
    let rest = lake.strip_prefix("s3://").or_else(|| lake.strip_prefix("s3a://")).ok_or_else(|| {
        Error::Usage(format!(
            "access policy: '{lake}' is not an s3:// lake; a store policy is for S3 and S3-compatible stores (--lake s3://bucket/prefix)"
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Usage(format!("access policy: '{lake}' names no bucket")));
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// The least-privilege bucket policy (IAM JSON) of the credentials given to `role`'s actors, for
/// the lake at `s3://bucket/prefix`.
pub fn store_policy(config: &AccessConfig, role: &str, lake: &str) -> Result<serde_json::Value> {
    let known = config.roles.contains_key(role) || BUILT_IN.iter().any(|(b, _)| *b == role);
    if !known {
        return Err(Error::Usage(format!(
            "access policy: no role '{role}' (built in: {})",
            BUILT_IN.iter().map(|(b, _)| *b).collect::<Vec<_>>().join(", ")
        )));
    }
    let (bucket, prefix) = bucket_and_prefix(lake)?;
    let a = store_access(config, role);
    let key = |folder: &str| {
        if prefix.is_empty() {
            format!("{folder}/*")
        } else {
            format!("{prefix}/{folder}/*")
        }
    };
    let objects = |set: &BTreeSet<String>| -> Vec<String> {
        set.iter()
            .map(|f| format!("arn:aws:s3:::{bucket}/{}", key(f)))
            .collect()
    };
    let mut statements = vec![serde_json::json!({
        "Sid": "ListTheLakeFolders",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [format!("arn:aws:s3:::{bucket}")],
        "Condition": {"StringLike": {"s3:prefix": a.read.iter().map(|f| key(f)).collect::<Vec<_>>()}}
    })];
    for (sid, actions, set) in [
        ("ReadTables", vec!["s3:GetObject"], &a.read),
        ("WriteNewObjects", vec!["s3:PutObject"], &a.write),
        ("RemoveObjects", vec!["s3:DeleteObject"], &a.delete),
    ] {
        if !set.is_empty() {
            statements.push(serde_json::json!({
                "Sid": sid,
                "Effect": "Allow",
                "Action": actions,
                "Resource": objects(set),
            }));
        }
    }
    if !a.delete.contains("ops/runs") {
        statements.push(serde_json::json!({
            "Sid": "TheAuditLogIsAppendOnly",
            "Effect": "Deny",
            "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:BypassGovernanceRetention"],
            "Resource": [format!("arn:aws:s3:::{bucket}/{}", key("ops/runs"))],
        }));
    }
    if !a.write.contains("ops/erasures") {
        statements.push(serde_json::json!({
            "Sid": "TheErasureListIsAdminOnly",
            "Effect": "Deny",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": [format!("arn:aws:s3:::{bucket}/{}", key("ops/erasures"))],
        }));
    }
    Ok(serde_json::json!({
        "Version": "2012-10-17",
        "Statement": statements,
    }))
}

/// Roles and what each may run, for `cslake access whoami` and the docs.
pub fn role_table(config: &AccessConfig) -> BTreeMap<String, Vec<&'static str>> {
    BUILT_IN
        .iter()
        .map(|(r, _)| r.to_string())
        .chain(config.roles.keys().cloned())
        .map(|r| {
            let cmds = COMMANDS
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| role_allows(config, &r, c, 0))
                .collect();
            (r, cmds)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> AccessConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn built_in_roles_split_reads_jobs_and_privileged_commands() {
        let c = AccessConfig::default();
        let may = |r: &str, cmd: &str| role_allows(&c, r, cmd, 0);
        assert!(may("analyst", "query") && may("analyst", "tables") && may("analyst", "report"));
        assert!(
            !may("analyst", "query --reveal")
                && !may("analyst", "ingest")
                && !may("analyst", "tasks complete")
        );
        assert!(may("csm", "tasks complete") && may("csm", "alerts ack") && !may("csm", "score"));
        assert!(
            may("scheduler", "run") && may("scheduler", "maintain") && may("scheduler", "report --deliver")
        );
        assert!(!may("scheduler", "models promote") && !may("scheduler", "gdpr erase"));
        assert!(
            may("engineer", "models promote")
                && !may("engineer", "restore")
                && !may("engineer", "pii rotate")
        );
        assert!(may("admin", "gdpr erase") && may("admin", "query --reveal"));
        // a command cslake does not know is closed to all but admin
        assert!(!may("engineer", "frobnicate") && may("admin", "frobnicate"));
    }

    #[test]
    fn actors_match_exactly_then_by_prefix_then_default() {
        let c = config(
            "actors = { alice = [\"admin\"], \"airflow:*\" = [\"scheduler\"], \"airflow:gdpr*\" = [\"admin\"] }\n\
             default_roles = [\"analyst\"]\n",
        );
        assert_eq!(roles_of(&c, "alice"), ["admin"]);
        assert_eq!(roles_of(&c, "airflow:cslake_daily:score"), ["scheduler"]);
        assert_eq!(roles_of(&c, "airflow:gdpr_requests:erase"), ["admin"]);
        assert_eq!(roles_of(&c, "mallory"), ["analyst"]);
    }

    #[test]
    fn configured_roles_compose_and_are_checked() {
        let c = config(
            "[roles]\nml = [\"@analyst\", \"train\", \"evaluate\", \"models *\"]\nanalyst = [\"query\"]\n",
        );
        assert!(role_allows(&c, "ml", "models rollback", 0));
        assert!(role_allows(&c, "ml", "query", 0));
        // analyst redefined: tables is no longer in it
        assert!(!role_allows(&c, "ml", "tables", 0));
        assert!(validate(&c).is_ok());
        let e = validate(&config("[roles]\nx = [\"qurey\"]\n")).unwrap_err();
        assert!(e.to_string().contains("'qurey' is not a command"), "{e}");
        let e = validate(&config("actors = { bob = [\"superuser\"] }\n")).unwrap_err();
        assert!(e.to_string().contains("bob: no role 'superuser'"), "{e}");
        // a role that includes itself ends
        let looped = config("[roles]\na = [\"@b\"]\nb = [\"@a\"]\n");
        assert!(!role_allows(&looped, "a", "query", 0));
    }

    #[test]
    fn store_policies_follow_the_roles() {
        let c = AccessConfig::default();
        let analyst = store_access(&c, "analyst");
        assert_eq!(
            analyst.read.iter().map(String::as_str).collect::<Vec<_>>(),
            ["analytics", "features", "ops/runs", "scores"]
        );
        assert_eq!(
            analyst.write.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ops/runs"]
        );
        assert!(analyst.delete.is_empty());
        let scheduler = store_access(&c, "scheduler");
        assert!(scheduler.write.contains("core") && !scheduler.write.contains("ops/erasures"));
        assert!(scheduler.delete.contains("features") && !scheduler.delete.contains("ops/runs"));
        let admin = store_access(&c, "admin");
        assert!(admin.write.contains("ops/erasures") && admin.delete.contains("ops/runs"));

        let p = store_policy(&c, "analyst", "s3://acme-lake/cs/prod/").unwrap();
        let text = p.to_string();
        assert!(text.contains("arn:aws:s3:::acme-lake/cs/prod/scores/*"), "{text}");
        assert!(!text.contains("acme-lake/cs/prod/core/*"), "{text}");
        assert!(text.contains("TheAuditLogIsAppendOnly"), "{text}");
        let e = store_policy(&c, "analyst", "./lake").unwrap_err();
        assert!(e.to_string().contains("not an s3:// lake"), "{e}");
        assert!(store_policy(&c, "nobody", "s3://b").is_err());
    }
}
