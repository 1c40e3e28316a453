//! Loading a large table from its staged rows (`super::spill`): how its rows are
//! de-duplicated depends on their size, the table's and the memory budget.

use deltalake::datafusion::prelude::{DataFrame, SessionContext};

use super::spill::{self, Partitions};
use super::{AUDIT_COLUMNS, Staged, dedupe};
use crate::lake::schema::Kind;
use crate::{Lake, Result};

/// De-duplicates `spill` and writes it to the table of `st` in one commit: what it wrote, and
/// how it was de-duplicated (for the log).
pub(super) async fn load(
    lake: &Lake,
    st: &Staged,
    mut spill: Partitions,
    run_id: &str,
) -> Result<(cslake_sinks::WriteStats, &'static str)> {
    let ctx = lake.session().await?;
    let key = st.spec.key;
    let target = lake.target("core", st.spec.name).with_unique(&[st.spec.key]);
    // a table created empty (every core table is, on the first ingest) has no key to compare
    let exists = target
        .open()
        .await?
        .is_some_and(|t| t.snapshot().is_ok_and(|s| s.log_data().num_files() > 0));
    // a partition at a time in memory, within a quarter of the budget
    let budget = lake.memory_limit().map_or(usize::MAX, |m| m / 4);
    // The first delivery of an event wins, and an event the table holds is not inserted
    // again. When the staged rows would take more than a quarter of the memory budget,
    // the table's keys are read once and partitioned like the staged rows, and each
    // partition's staged rows are compared with its keys in memory; a smaller load (a
    // day's events) is merged, which holds the staged rows in memory instead.
    let mut compared = false;
    if st.spec.kind == Kind::Event && exists && spill.bytes > budget && spill.fits(budget) {
        let keys = ctx
            .sql(&format!("SELECT \"{key}\" FROM core.{}", st.spec.name))
            .await?
            .execute_stream()
            .await?;
        compared = spill.know(keys, budget).await?;
    }
    let in_memory = spill.fits(budget);
    let spill = std::sync::Arc::new(spill);
    let how = match st.spec.kind {
        Kind::Event if compared => "compared with the table's keys",
        Kind::Event if exists && (spill.bytes > budget || !in_memory) => "sorted with the table's keys",
        _ if !in_memory => "sorted",
        Kind::Event if exists => "partitioned, merged",
        _ => "partitioned",
    };
    let stats = match st.spec.kind {
        Kind::Event if compared => {
            let df = spill.clone().first_per_key(&ctx, false)?;
            target.append_df(df, &ctx, run_id).await?
        }
        // Too large for that (more than 64 times a quarter of the budget, with the
        // table's keys): one sort of the table's keys and the staged rows (table first,
        // then in staging order), which spills to disk; a staged row that comes first
        // for its key is new.
        Kind::Event if exists && (spill.bytes > budget || !in_memory) => {
            spill_table(&ctx, &spill)?;
            let columns = spill_columns(&ctx, key).await?;
            let cols = columns.join(", ");
            let nulls: String = columns[1..].iter().map(|c| format!("NULL AS {c}, ")).collect();
            let sorted = ctx
                .sql(&format!(
                    "SELECT \"{key}\", {nulls}false AS _cslake_new, 0 AS _ord FROM core.{table} \
                     UNION ALL SELECT {cols}, true AS _cslake_new, _ord FROM _cslake_spill \
                     ORDER BY \"{key}\", _cslake_new, _ord",
                    table = st.spec.name
                ))
                .await?;
            let df = dedupe::first_per_key(&ctx, sorted, key, Some("_cslake_new"), &["_cslake_new", "_ord"])?;
            target.append_df(df, &ctx, run_id).await?
        }
        // a load larger than 64 times a quarter of the budget: sorted, spilling
        Kind::Event | Kind::Entity if !in_memory => {
            spill_table(&ctx, &spill)?;
            let cols = spill_columns(&ctx, key).await?.join(", ");
            let order = if st.spec.kind == Kind::Event { "" } else { " DESC" };
            let sorted = ctx
                .sql(&format!(
                    "SELECT {cols}, _ord FROM _cslake_spill ORDER BY \"{key}\", _ord{order}"
                ))
                .await?;
            let df = dedupe::first_per_key(&ctx, sorted, key, None, &["_ord"])?;
            write_deduplicated(st, &target, df, &ctx, exists, run_id).await?
        }
        Kind::Event | Kind::Entity => {
            let df = spill.clone().first_per_key(&ctx, st.spec.kind == Kind::Entity)?;
            write_deduplicated(st, &target, df, &ctx, exists, run_id).await?
        }
    };
    Ok((stats, how))
}

/// Writes a large table's de-duplicated staged rows: events the table lacks are inserted (a
/// merge on the key), entities upserted (the last version of each key).
async fn write_deduplicated(
    st: &Staged,
    target: &cslake_sinks::DeltaTarget,
    df: DataFrame,
    ctx: &SessionContext,
    exists: bool,
    run_id: &str,
) -> Result<cslake_sinks::WriteStats> {
    Ok(match st.spec.kind {
        Kind::Event if exists => target.insert_new_df(df, st.spec.key, ctx, run_id).await?,
        Kind::Event => target.append_df(df, ctx, run_id).await?,
        Kind::Entity => {
            let compare = st.compare_columns();
            target
                .upsert_df(df, &[st.spec.key], &compare, &AUDIT_COLUMNS, ctx, run_id)
                .await?
        }
    })
}

/// `ctx` with the staged rows registered as `_cslake_spill`.
fn spill_table(ctx: &SessionContext, spill: &std::sync::Arc<Partitions>) -> Result<()> {
    ctx.register_table("_cslake_spill", std::sync::Arc::new(spill.clone().rows()?))?;
    Ok(())
}

/// The staged columns, quoted, the key first (as the union with the table's keys needs them),
/// without `_ord`.
async fn spill_columns(ctx: &SessionContext, key: &str) -> Result<Vec<String>> {
    let mut columns = vec![format!("\"{key}\"")];
    columns.extend(
        ctx.table("_cslake_spill")
            .await?
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|c| c != spill::ORD && c != key)
            .map(|c| format!("\"{c}\"")),
    );
    Ok(columns)
}
