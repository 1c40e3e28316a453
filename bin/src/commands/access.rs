//! `cslake access whoami | policy`: the caller's roles, and the store policy of a role.

use cslake_pipeline::Error;
use cslake_pipeline::admin::access::{self as rules, Access};

use super::Ctx;
use crate::cli::AccessAction;
use crate::out;
use crate::summary::Summary;

pub fn access(ctx: &Ctx, action: AccessAction) -> anyhow::Result<Summary> {
    let config = ctx.settings.file.access.clone().unwrap_or_default();
    match action {
        AccessAction::Whoami => {
            let me = match &ctx.access {
                Some(a) => a.clone(),
                None => Access::resolve(&ctx.settings)?,
            };
            out!("Actor: {} (OS user {})", me.actor, me.os_user);
            if me.enforced {
                out!(
                    "Roles: {}",
                    if me.roles.is_empty() {
                        "none".to_string()
                    } else {
                        me.roles.join(", ")
                    }
                );
            } else {
                out!("Roles: no [access] in cslake.toml: every command is open to whoever runs cslake");
            }
            let commands = me.commands();
            out!("May run: {}", commands.join(", "));
            let roles = rules::role_table(&config);
            Ok(Summary::succeeded("access whoami")
                .with("actor", &me.actor)
                .with("os_user", &me.os_user)
                .with("enforced", me.enforced)
                .with("roles", &me.roles)
                .with("commands", commands)
                .with("role_commands", roles))
        }
        AccessAction::Policy { role } => {
            let lake = &ctx.settings.lake;
            let policy = rules::store_policy(&config, &role, lake)?;
            let text = serde_json::to_string_pretty(&policy).map_err(|e| Error::Job(e.to_string()))?;
            // the policy is the output: a pipe into a file or `aws s3api put-bucket-policy` gets JSON only
            out!("{text}");
            Ok(Summary::succeeded("access policy").silent())
        }
    }
}
