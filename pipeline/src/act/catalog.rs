//! `cslake content search "QUERY"`: full-text search over the content catalogue (`core.content`)
//! for CSMs and scripts. The catalogue is read and indexed in memory with tantivy on each search
//! (a catalogue is thousands of items, indexed in milliseconds; nothing to keep in step with the
//! lake). Title, tags, what the item teaches (`create_report` also as "create report") and its
//! kind are searched, the title weighing most; the query takes tantivy's syntax (words, "phrases",
//! `+must`, `-not`, `title:word`) and anything it cannot parse is read as plain words.

use deltalake::arrow::array::RecordBatch;
use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{STORED, Schema, TEXT, Value};
use tantivy::{Index, IndexWriter, TantivyDocument};

use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Lake, Result};

/// One search result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    pub rank: usize,
    pub score: f32,
    pub content_id: String,
    pub title: String,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub teaches: Option<String>,
    pub tags: Option<String>,
    pub segment: Option<String>,
    pub language: Option<String>,
}

fn search_error(e: tantivy::TantivyError) -> Error {
    Error::Job(format!("content search: {e}"))
}

/// The items that best match `query`, at most `limit`.
pub async fn search(lake: &Lake, query: &str, limit: usize) -> Result<Vec<Hit>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "core.content") {
        return Err(Error::Config(
            "no content catalogue: ingest content.csv (or a [[sources]] table `content`) first".into(),
        ));
    }
    let batches = sql(
        &ctx,
        "SELECT content_id, title, kind, url, teaches, tags, segment, language FROM core.content ORDER BY content_id",
    )
    .await?;
    search_batches(&batches, query, limit)
}

/// Searches rows of `core.content`.
pub fn search_batches(batches: &[RecordBatch], query: &str, limit: usize) -> Result<Vec<Hit>> {
    let mut items: Vec<Hit> = Vec::new();
    for b in batches {
        let col = |c: &str| strings(b, c);
        let (id, title, kind, url, teaches, tags, segment, language) = (
            col("content_id")?,
            col("title")?,
            col("kind")?,
            col("url")?,
            col("teaches")?,
            col("tags")?,
            col("segment")?,
            col("language")?,
        );
        for i in 0..b.num_rows() {
            items.push(Hit {
                rank: 0,
                score: 0.0,
                content_id: id[i].clone().unwrap_or_default(),
                title: title[i].clone().unwrap_or_default(),
                kind: kind[i].clone(),
                url: url[i].clone(),
                teaches: teaches[i].clone(),
                tags: tags[i].clone(),
                segment: segment[i].clone(),
                language: language[i].clone(),
            });
        }
    }
    if items.is_empty() || query.trim().is_empty() {
        return Ok(Vec::new());
    }

    let mut schema = Schema::builder();
    let row = schema.add_u64_field("row", STORED);
    let title = schema.add_text_field("title", TEXT);
    let tags = schema.add_text_field("tags", TEXT);
    let teaches = schema.add_text_field("teaches", TEXT);
    let kind = schema.add_text_field("kind", TEXT);
    let index = Index::create_in_ram(schema.build());
    let mut writer: IndexWriter = index
        .writer_with_num_threads(1, 15_000_000)
        .map_err(search_error)?;
    // identifiers read as words too: `create_report` is found by "report"
    let words = |s: &Option<String>| s.as_deref().unwrap_or_default().replace(['_', '-'], " ");
    for (i, item) in items.iter().enumerate() {
        let mut doc = TantivyDocument::default();
        doc.add_u64(row, i as u64);
        doc.add_text(title, &item.title);
        doc.add_text(tags, words(&item.tags));
        doc.add_text(
            teaches,
            format!(
                "{} {}",
                item.teaches.as_deref().unwrap_or_default(),
                words(&item.teaches)
            ),
        );
        doc.add_text(kind, words(&item.kind));
        writer.add_document(doc).map_err(search_error)?;
    }
    writer.commit().map_err(search_error)?;
    let reader = index.reader().map_err(search_error)?;
    let searcher = reader.searcher();
    let mut parser = QueryParser::for_index(&index, vec![title, tags, teaches, kind]);
    parser.set_field_boost(title, 2.0);
    parser.set_conjunction_by_default();
    let (parsed, _errors) = parser.parse_query_lenient(query);
    let mut found = searcher
        .search(&parsed, &TopDocs::with_limit(limit.max(1)).order_by_score())
        .map_err(search_error)?;
    if found.is_empty() {
        // no item has every word: the items with any of them, best first
        let mut any = QueryParser::for_index(&index, vec![title, tags, teaches, kind]);
        any.set_field_boost(title, 2.0);
        let (parsed, _errors) = any.parse_query_lenient(query);
        found = searcher
            .search(&parsed, &TopDocs::with_limit(limit.max(1)).order_by_score())
            .map_err(search_error)?;
    }
    let mut hits = Vec::new();
    for (score, address) in found {
        let doc: TantivyDocument = searcher.doc(address).map_err(search_error)?;
        let Some(i) = doc.get_first(row).and_then(|v| v.as_u64()) else {
            continue;
        };
        let mut hit = items[i as usize].clone();
        hit.rank = hits.len() + 1;
        hit.score = score;
        hits.push(hit);
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::StringArray;
    use deltalake::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    fn catalogue() -> RecordBatch {
        let col = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as _;
        let fields = [
            "content_id",
            "title",
            "kind",
            "url",
            "teaches",
            "tags",
            "segment",
            "language",
        ]
        .map(|n| Field::new(n, DataType::Utf8, true));
        RecordBatch::try_new(
            Arc::new(deltalake::arrow::datatypes::Schema::new(fields.to_vec())),
            vec![
                col(vec![Some("C1"), Some("C2"), Some("C3")]),
                col(vec![
                    Some("Building a report your team will read"),
                    Some("API basics"),
                    Some("Rolling out to the whole team"),
                ]),
                col(vec![Some("guide"), Some("course"), Some("best_practice")]),
                col(vec![None, None, None]),
                col(vec![Some("create_report"), Some("api_call"), Some("invite_user")]),
                col(vec![Some("reporting"), Some("developers, automation"), None]),
                col(vec![None, Some("Enterprise"), None]),
                col(vec![Some("en"); 3]),
            ],
        )
        .unwrap()
    }

    #[test]
    fn titles_tags_and_what_an_item_teaches_are_searched() {
        let b = [catalogue()];
        let ids = |q: &str| -> Vec<String> {
            search_batches(&b, q, 10)
                .unwrap()
                .into_iter()
                .map(|h| h.content_id)
                .collect()
        };
        assert_eq!(ids("report"), ["C1"], "a title word, and create_report as words");
        assert_eq!(ids("automation"), ["C2"], "a tag");
        assert_eq!(ids("api_call"), ["C2"], "an event type as written");
        assert_eq!(ids("team"), ["C3", "C1"], "the shorter title weighs more");
        assert_eq!(
            ids("best practice team"),
            ["C3"],
            "every word where one item has them all"
        );
        assert_eq!(ids("report automation"), ["C1", "C2"], "else any word");
        assert_eq!(ids("\"unclosed"), Vec::<String>::new(), "a broken query is words");
        assert!(ids("").is_empty());
    }
}
