//! PostgreSQL for BI tools that read a database (Metabase, Superset, Power BI): each lake table
//! becomes a table `<schema>.<zone>_<name>` with a primary key, created on first use and migrated
//! when the lake table gains columns; one day's partition is upserted in one transaction (staged
//! with COPY, `INSERT … ON CONFLICT DO UPDATE`, then the partition's rows that are no longer in
//! the lake are deleted), so a re-run of a day leaves exactly that day's rows. `_cslake_sync`
//! records when each partition was last written. TLS follows the URL's `sslmode`.

use std::fmt::Write as _;

use deltalake::arrow::array::{Array, ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Schema, TimeUnit};
use deltalake::arrow::json::writer::{EncoderOptions, NullableEncoder, make_encoder};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::SinkExt;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Errors from PostgreSQL, with the table they concern.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL {what}: {message}")]
pub struct PgError {
    pub what: String,
    pub message: String,
}

fn err(what: impl Into<String>, e: impl std::fmt::Display) -> PgError {
    // the server's own message (DbError) carries the detail the Display of Error hides
    PgError {
        what: what.into(),
        message: e.to_string(),
    }
}

fn db_err(what: impl Into<String>, e: tokio_postgres::Error) -> PgError {
    let message = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => explained(&e),
    };
    PgError {
        what: what.into(),
        message,
    }
}

/// A client-side error with its causes ("error performing TLS handshake" alone does not say
/// which certificate check failed), and what to do about the common ones.
fn explained(e: &tokio_postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(message, ": {s}");
        source = s.source();
    }
    let hint = if message.contains("UnknownIssuer") {
        Some(
            "the server's certificate is not signed by a CA this machine trusts: set [publish.postgres] ca_file to the PEM of the CA that signed it",
        )
    } else if message.contains("NotValidForName") {
        Some(
            "the server's certificate is not issued for the host name in the URL: connect with the name on the certificate",
        )
    } else if message.contains("Expired") {
        Some("the server's certificate has expired")
    } else if message.to_lowercase().contains("connection refused") {
        Some("nothing accepts connections at that host and port: is PostgreSQL running and listening there?")
    } else if message.contains("server does not support TLS") {
        Some("the URL asks for TLS (sslmode=require) but the server does not offer it")
    } else if message.contains("failed to lookup address") || message.contains("Name or service not known") {
        Some("the host name does not resolve")
    } else {
        None
    };
    match hint {
        Some(h) => format!("{message} ({h})"),
        None => message,
    }
}

/// `"name"` with quotes doubled: identifiers from the lake are quoted, never spliced raw.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Lists, structs and maps: published as JSON (`jsonb`), which SQL and BI tools can query.
fn is_nested(t: &DataType) -> bool {
    matches!(
        t,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _)
    )
}

/// The PostgreSQL type of an Arrow column (nested types as `jsonb`, unusual ones as text).
pub fn pg_type(t: &DataType) -> &'static str {
    match t {
        DataType::Boolean => "boolean",
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint",
        DataType::Int32 | DataType::UInt16 => "integer",
        DataType::Int64 | DataType::UInt32 => "bigint",
        DataType::UInt64 | DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => "numeric",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "double precision",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "timestamptz",
        DataType::Timestamp(
            TimeUnit::Second | TimeUnit::Millisecond | TimeUnit::Microsecond | TimeUnit::Nanosecond,
            None,
        ) => "timestamp",
        t if is_nested(t) => "jsonb",
        _ => "text",
    }
}

/// How a column's values are written into COPY's CSV.
enum Cell<'a> {
    Text(ArrayFormatter<'a>),
    Json(NullableEncoder<'a>),
}

/// One day (or other partition) of a lake table, to upsert.
#[derive(Clone, Copy)]
pub struct Partition<'a> {
    /// The PostgreSQL table's name (in the sink's schema).
    pub table: &'a str,
    pub schema: &'a Schema,
    pub batches: &'a [RecordBatch],
    /// The primary key (it includes the partition column).
    pub keys: &'a [&'a str],
    /// The partition column and its value (as text, e.g. `2026-10-31`).
    pub column: &'a str,
    pub value: &'a str,
    pub run_id: &'a str,
}

/// A connection to one database, writing into one schema.
pub struct PgSink {
    client: Client,
    schema: String,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for PgSink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// What one partition sync did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyncStats {
    pub table: String,
    pub rows: u64,
    /// Rows of the partition that were in PostgreSQL but are no longer in the lake.
    pub deleted: u64,
    /// Columns added to an existing table.
    pub added_columns: Vec<String>,
    pub created: bool,
}

impl PgSink {
    /// Connects (`postgres://user:password@host:port/db?sslmode=require` or the key=value form).
    /// `sslmode=require` insists on TLS, `prefer` (the default) uses it when the server offers it,
    /// `disable` never does; certificates are checked against the platform's roots plus
    /// `ca_pem` (a private CA), and the server's name against its certificate.
    pub async fn connect(url: &str, schema: &str, ca_pem: Option<&[u8]>) -> Result<Self, PgError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| err(format!("connection URL {}", redact(url)), e))?;
        let tls = MakeRustlsConnect::new(tls_config(ca_pem)?);
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| db_err(format!("connecting to {}", redact(url)), e))?;
        let conn = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        let s = Self {
            client,
            schema: schema.to_string(),
            conn,
        };
        s.client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; \
                 CREATE TABLE IF NOT EXISTS {schema}._cslake_sync (table_name text NOT NULL, partition_value text NOT NULL, \
                 rows bigint NOT NULL, run_id text, synced_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, partition_value))",
                schema = ident(schema)
            ))
            .await
            .map_err(|e| db_err(format!("schema {schema}"), e))?;
        Ok(s)
    }

    /// The columns a table has now (name → type), empty when it does not exist.
    async fn columns(&self, table: &str) -> Result<Vec<(String, String)>, PgError> {
        let rows = self
            .client
            .query(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                &[&self.schema, &table],
            )
            .await
            .map_err(|e| db_err(format!("reading the columns of {table}"), e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Creates or migrates `table` for `schema`, then upserts the rows of one partition
    /// (`partition_col = partition_value`) on `keys`, all in one transaction.
    pub async fn sync_partition(&mut self, p: &Partition<'_>) -> Result<SyncStats, PgError> {
        let Partition {
            table,
            schema,
            batches,
            keys,
            column: partition_col,
            value: partition_value,
            run_id,
        } = *p;
        for k in keys.iter().chain([&partition_col]) {
            if schema.field_with_name(k).is_err() {
                return Err(err(
                    table,
                    format!("the key column `{k}` is not in the lake table"),
                ));
            }
        }
        let qt = format!("{}.{}", ident(&self.schema), ident(table));
        let existing = self.columns(table).await?;
        let created = existing.is_empty();
        let mut added = Vec::new();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| db_err(format!("{table}: BEGIN"), e))?;
        if created {
            let mut ddl = format!("CREATE TABLE IF NOT EXISTS {qt} (");
            for f in schema.fields() {
                let not_null = if keys.contains(&f.name().as_str()) || f.name() == partition_col {
                    " NOT NULL"
                } else {
                    ""
                };
                let _ = write!(ddl, "{} {}{not_null}, ", ident(f.name()), pg_type(f.data_type()));
            }
            let pk: Vec<String> = keys.iter().map(|k| ident(k)).collect();
            let _ = write!(ddl, "PRIMARY KEY ({}))", pk.join(", "));
            tx.batch_execute(&ddl)
                .await
                .map_err(|e| db_err(format!("creating {table}"), e))?;
            tx.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {} ON {qt} ({})",
                ident(&format!("{table}_{partition_col}_idx")),
                ident(partition_col)
            ))
            .await
            .map_err(|e| db_err(format!("indexing {table}"), e))?;
        } else {
            for f in schema.fields() {
                match existing.iter().find(|(n, _)| n == f.name()) {
                    None => {
                        tx.batch_execute(&format!(
                            "ALTER TABLE {qt} ADD COLUMN {} {}",
                            ident(f.name()),
                            pg_type(f.data_type())
                        ))
                        .await
                        .map_err(|e| db_err(format!("adding column {} to {table}", f.name()), e))?;
                        added.push(f.name().clone());
                    }
                    Some((_, have)) => {
                        let want = pg_type(f.data_type());
                        // a text column (nested values before they were published as JSON)
                        // takes the JSON text as it is
                        let same = have == want
                            || (want == "jsonb" && have == "text")
                            || (want == "timestamptz" && have == "timestamp with time zone")
                            || (want == "timestamp" && have == "timestamp without time zone");
                        // a column that only widens (integer → bigint/numeric/double) is altered;
                        // anything else needs a decision by a person
                        let widen = matches!(
                            (have.as_str(), want),
                            ("smallint", "integer" | "bigint" | "numeric" | "double precision")
                                | ("integer", "bigint" | "numeric" | "double precision")
                                | ("bigint", "numeric" | "double precision")
                        );
                        if widen {
                            tx.batch_execute(&format!(
                                "ALTER TABLE {qt} ALTER COLUMN {c} TYPE {want} USING {c}::{want}",
                                c = ident(f.name())
                            ))
                            .await
                            .map_err(|e| db_err(format!("widening {}.{}", table, f.name()), e))?;
                        } else if !same {
                            return Err(err(
                                table,
                                format!(
                                    "column `{}` is {have} in PostgreSQL but the lake now has {want}: \
                                     drop or rename the PostgreSQL column, then sync again",
                                    f.name()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        // stage with COPY (CSV: an unquoted empty field is NULL, every value is quoted)
        let cols: Vec<String> = schema.fields().iter().map(|f| ident(f.name())).collect();
        tx.batch_execute(&format!(
            "CREATE TEMP TABLE _cslake_stage (LIKE {qt}) ON COMMIT DROP"
        ))
        .await
        .map_err(|e| db_err(format!("{table}: staging"), e))?;
        let sink = tx
            .copy_in(&format!(
                "COPY _cslake_stage ({}) FROM STDIN WITH (FORMAT csv)",
                cols.join(", ")
            ))
            .await
            .map_err(|e| db_err(format!("{table}: COPY"), e))?;
        let mut sink = std::pin::pin!(sink);
        let mut rows = 0u64;
        let opts = FormatOptions::default().with_null("");
        let json_opts = EncoderOptions::default();
        for b in batches {
            let b = b.clone();
            let arrays: Vec<&ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| {
                    b.column_by_name(f.name())
                        .ok_or_else(|| err(table, format!("a batch has no column `{}`", f.name())))
                })
                .collect::<Result<_, _>>()?;
            let mut cells: Vec<Cell> = schema
                .fields()
                .iter()
                .zip(&arrays)
                .map(|(f, col)| {
                    Ok(if is_nested(col.data_type()) {
                        Cell::Json(make_encoder(f, col.as_ref(), &json_opts).map_err(|e| err(table, e))?)
                    } else {
                        Cell::Text(ArrayFormatter::try_new(col.as_ref(), &opts).map_err(|e| err(table, e))?)
                    })
                })
                .collect::<Result<_, PgError>>()?;
            let mut buf = String::new();
            let mut json = Vec::new();
            for i in 0..b.num_rows() {
                for (j, (cell, arr)) in cells.iter_mut().zip(&arrays).enumerate() {
                    if j > 0 {
                        buf.push(',');
                    }
                    if !arr.is_null(i) {
                        let v = match cell {
                            Cell::Text(fmt) => fmt.value(i).to_string(),
                            Cell::Json(enc) => {
                                json.clear();
                                enc.encode(i, &mut json);
                                String::from_utf8_lossy(&json).into_owned()
                            }
                        };
                        buf.push('"');
                        buf.push_str(&v.replace('"', "\"\""));
                        buf.push('"');
                    }
                }
                buf.push('\n');
                rows += 1;
            }
            sink.send(bytes::Bytes::from(buf))
                .await
                .map_err(|e| db_err(format!("{table}: COPY"), e))?;
        }
        sink.as_mut()
            .finish()
            .await
            .map_err(|e| db_err(format!("{table}: COPY"), e))?;
        let updates: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !keys.contains(&f.name().as_str()))
            .map(|f| format!("{c} = EXCLUDED.{c}", c = ident(f.name())))
            .collect();
        let pk: Vec<String> = keys.iter().map(|k| ident(k)).collect();
        let action = if updates.is_empty() {
            "NOTHING".to_string()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        tx.batch_execute(&format!(
            "INSERT INTO {qt} ({c}) SELECT {c} FROM _cslake_stage ON CONFLICT ({pk}) DO {action}",
            c = cols.join(", "),
            pk = pk.join(", ")
        ))
        .await
        .map_err(|e| db_err(format!("{table}: upsert"), e))?;
        let matches: Vec<String> = keys
            .iter()
            .map(|k| format!("s.{c} = t.{c}", c = ident(k)))
            .collect();
        let deleted = tx
            .execute(
                &format!(
                    "DELETE FROM {qt} t WHERE t.{p}::text = $1 AND NOT EXISTS (SELECT 1 FROM _cslake_stage s WHERE {})",
                    matches.join(" AND "),
                    p = ident(partition_col)
                ),
                &[&partition_value],
            )
            .await
            .map_err(|e| db_err(format!("{table}: removing stale rows"), e))?;
        tx.execute(
            &format!(
                "INSERT INTO {}._cslake_sync (table_name, partition_value, rows, run_id, synced_at) VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (table_name, partition_value) DO UPDATE SET rows = EXCLUDED.rows, run_id = EXCLUDED.run_id, synced_at = now()",
                ident(&self.schema)
            ),
            &[&table, &partition_value, &(rows as i64), &run_id],
        )
        .await
        .map_err(|e| db_err(format!("{table}: _cslake_sync"), e))?;
        tx.commit()
            .await
            .map_err(|e| db_err(format!("{table}: COMMIT"), e))?;
        Ok(SyncStats {
            table: format!("{}.{table}", self.schema),
            rows,
            deleted,
            added_columns: added,
            created,
        })
    }
}

/// rustls with the ring provider, the platform's roots and an optional private CA.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, PgError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let extra: Vec<CertificateDer<'static>> = match ca_pem {
        None => Vec::new(),
        Some(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| err("ca_file", format!("not a PEM certificate: {e}")))?,
    };
    if ca_pem.is_some() && extra.is_empty() {
        return Err(err("ca_file", "no certificate in the file"));
    }
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
        .map_err(|e| err("TLS", e))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("TLS", e))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_no_client_auth())
}

/// The URL without its password, for messages.
/// Where a connection string points, for people and audit rows: the server and the database,
/// without user, password or options (`postgresql://db.example:5432/bi`, or `host=… port=…
/// dbname=…` for the key-value form).
pub fn location(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.has_host() => format!(
            "{}://{}{}{}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.port().map(|p| format!(":{p}")).unwrap_or_default(),
            u.path()
        ),
        _ => url
            .split_whitespace()
            .filter(|kv| {
                ["host=", "hostaddr=", "port=", "dbname="]
                    .iter()
                    .any(|k| kv.starts_with(k))
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url
            .split_whitespace()
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_names_the_server_and_database_only() {
        assert_eq!(
            location("postgresql://bi:s3cret@db.example:5433/warehouse?sslmode=require"),
            "postgresql://db.example:5433/warehouse"
        );
        assert_eq!(
            location("host=db.example user=bi password=s3cret dbname=warehouse"),
            "host=db.example dbname=warehouse"
        );
    }

    #[test]
    fn types_identifiers_and_redaction() {
        assert_eq!(pg_type(&DataType::Float64), "double precision");
        assert_eq!(pg_type(&DataType::Date32), "date");
        assert_eq!(
            pg_type(&DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))),
            "timestamptz"
        );
        let factor = deltalake::arrow::datatypes::Field::new("item", DataType::Utf8, true);
        assert_eq!(pg_type(&DataType::List(factor.into())), "jsonb");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("host=h password=secret"), "host=h password=***");
    }
}
