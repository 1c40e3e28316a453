//! The staged rows of a large table, on local disk until the run commits, and their
//! de-duplication on the table's key.
//!
//! The rows go, in staging order, to one Arrow IPC file, each with its position in the run
//! (`_ord`); their keys (with the position) go to [`PARTITIONS`] files by a hash of the key, so
//! that every copy of a key is in the same, small, file. The commit reads one key partition at a
//! time into memory and marks, with a hash set, every row that is not the first of its key (the
//! first delivery of an event) or not the last (the last version of an entity), or whose key the
//! table holds already ([`Partitions::know`]); then the rows stream once from their file past
//! that mark, one bit per row. No sort of the whole load, no second copy of it on disk, and the
//! rows reach the table in the order they came (a time-ordered export stays time-ordered in its
//! files, which is what lets readers skip them).
//!
//! IPC and not Parquet: the files are written and read back once, on the same machine, so they
//! need no encoding (Parquet's dictionaries and statistics were a sixth of an ingest's time).
//! The one encoding they get is for text columns that repeat one value for long runs of rows
//! (the audit columns: the file a row came from, the run): those are staged as a number into
//! their distinct values ([`Repeated`]) and turned back into text as the rows are read. They were
//! half the bytes staged per event of the ingest benchmark (a file URL of 60 bytes and a run id
//! of 36, beside an event of about 90).
//! A load whose keys are so many that one partition of them would not fit in a quarter of the
//! memory budget is de-duplicated by DataFusion's sort instead ([`Partitions::fits`]), which
//! spills.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::BuildHasher;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use deltalake::arrow::buffer::{BooleanBuffer, Buffer};
use deltalake::arrow::compute::{cast, concat_batches, filter_record_batch, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type, UInt64Type};
use deltalake::arrow::ipc::reader::FileReader;
use deltalake::arrow::ipc::writer::FileWriter;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::stream::RecordBatchReceiverStream;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use crate::lake::spill::SpillDir;
use crate::{Error, Result};

/// Partitions of the keys: a load whose keys take up to 64 times a quarter of the memory
/// budget is de-duplicated in memory, a partition at a time.
pub const PARTITIONS: usize = 64;

/// The position of each staged row in the run, which decides the winner of a key.
pub const ORD: &str = "_ord";

type Writer = FileWriter<BufWriter<File>>;

fn io_error(path: &Path) -> impl Fn(deltalake::arrow::error::ArrowError) -> Error + '_ {
    move |e| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn create(path: &Path, schema: &Schema) -> Result<Writer> {
    let file = File::create(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    FileWriter::try_new_buffered(file, schema).map_err(io_error(path))
}

/// IPC files of keys, one per partition, created as their first key arrives.
struct KeyFiles {
    folder: PathBuf,
    prefix: &'static str,
    writers: Vec<Option<Writer>>,
    /// Each partition's size in memory.
    sizes: Vec<usize>,
    /// The files closed so far, by partition.
    closed: Vec<Option<PathBuf>>,
}

impl KeyFiles {
    fn new(folder: &Path, prefix: &'static str) -> Self {
        Self {
            folder: folder.to_path_buf(),
            prefix,
            writers: (0..PARTITIONS).map(|_| None).collect(),
            sizes: vec![0; PARTITIONS],
            closed: vec![None; PARTITIONS],
        }
    }

    fn path(&self, p: usize) -> PathBuf {
        self.folder.join(format!("{}-{p:02}.arrow", self.prefix))
    }

    /// Appends `keys` (and their rows' positions, when given) to their partitions, in order.
    fn write(&mut self, keys: StringArray, ords: Option<ArrayRef>) -> Result<()> {
        let parts = partition_of(&keys);
        let mut fields = vec![Field::new("key", DataType::Utf8, true)];
        let mut columns: Vec<ArrayRef> = vec![Arc::new(keys)];
        if let Some(ords) = ords {
            fields.push(Field::new(ORD, DataType::UInt64, false));
            columns.push(ords);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        let (sorted, starts) = by_partition(&batch, &parts)?;
        for p in 0..PARTITIONS {
            let (lo, hi) = (starts[p], starts[p + 1]);
            if lo == hi {
                continue;
            }
            let piece = sorted.slice(lo, hi - lo);
            if self.writers[p].is_none() {
                self.writers[p] = Some(create(&self.path(p), &piece.schema())?);
            }
            let path = self.path(p);
            let written = self.writers[p].as_mut().expect("writer").write(&piece);
            written.map_err(io_error(&path))?;
            self.sizes[p] += sliced_size(&piece);
        }
        Ok(())
    }

    fn largest(&self) -> usize {
        self.sizes.iter().copied().max().unwrap_or(0)
    }

    /// Closes the files written to, ready to be read.
    fn close(&mut self) -> Result<()> {
        for p in 0..PARTITIONS {
            if let Some(mut w) = self.writers[p].take() {
                let path = self.path(p);
                let closed = w.finish();
                closed.map_err(io_error(&path))?;
                self.closed[p] = Some(path);
            }
        }
        Ok(())
    }
}

/// Text columns staged as numbers into their distinct values (see the module's documentation).
#[derive(Debug, Default)]
struct Repeated {
    /// Per column: its index in the staged rows, its distinct values in order of first sight
    /// and where each is in that list.
    columns: Vec<(usize, Vec<String>, HashMap<String, u32>)>,
}

impl Repeated {
    /// The columns of `names` that `schema` has as text.
    fn of(schema: &Schema, names: &[&str]) -> Self {
        let columns = names
            .iter()
            .filter_map(|n| schema.index_of(n).ok())
            .filter(|&i| *schema.field(i).data_type() == DataType::Utf8)
            .map(|i| (i, Vec::new(), HashMap::new()))
            .collect();
        Self { columns }
    }

    /// The schema of the staged file: the columns as numbers.
    fn encoded_schema(&self, schema: &Schema) -> SchemaRef {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (i, _, _) in &self.columns {
            fields[*i] = fields[*i].clone().with_data_type(DataType::UInt32);
        }
        Arc::new(Schema::new(fields))
    }

    /// `batch` with the columns as numbers.
    fn encode(&mut self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for (i, values, ids) in &mut self.columns {
            let text = batch.column(*i).as_string::<i32>();
            let mut id = |v: &str| match ids.get(v) {
                Some(id) => *id,
                None => {
                    let id = values.len() as u32;
                    values.push(v.to_string());
                    ids.insert(v.to_string(), id);
                    id
                }
            };
            columns[*i] = Arc::new(match one_value(text) {
                Some(v) => UInt32Array::from_value(id(v), text.len()),
                None => text.iter().map(|v| v.map(&mut id)).collect(),
            });
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }

    /// A staged `batch` with the columns as text again, in `schema`.
    fn decode(&self, batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
        let mut columns = batch.columns().to_vec();
        for (i, values, _) in &self.columns {
            let ids = batch.column(*i).as_primitive::<UInt32Type>();
            let at = |id: u32| values.get(id as usize).map(String::as_str).unwrap_or_default();
            let first = (ids.null_count() == 0 && !ids.is_empty()).then(|| ids.value(0));
            columns[*i] = match first {
                Some(id) if ids.values().iter().all(|x| *x == id) => {
                    Arc::new(StringArray::new_repeated(at(id), ids.len()))
                }
                _ => Arc::new(ids.iter().map(|id| id.map(at)).collect::<StringArray>()),
            };
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// The value of every row of `text`, when they all hold the same one (no nulls): one pass over
/// the offsets and one comparison of the bytes with themselves shifted by a value's length.
fn one_value(text: &StringArray) -> Option<&str> {
    if text.is_empty() || text.null_count() > 0 {
        return None;
    }
    let offsets = text.value_offsets();
    let len = offsets[1] - offsets[0];
    if !offsets.windows(2).all(|w| w[1] - w[0] == len) {
        return None;
    }
    let bytes = &text.value_data()[offsets[0] as usize..offsets[text.len()] as usize];
    let len = len as usize;
    (bytes[len..] == bytes[..bytes.len() - len]).then(|| text.value(0))
}

/// Staged rows being written to disk.
pub struct Spill {
    dir: tempfile::TempDir,
    key: &'static str,
    /// The staged rows' schema (with `_ord`), and the file's (see [`Repeated`]).
    schema: Option<(SchemaRef, SchemaRef)>,
    /// The text columns to stage as numbers.
    repeat: &'static [&'static str],
    repeated: Repeated,
    rows_file: Option<Writer>,
    keys: KeyFiles,
    /// Rows staged so far.
    pub rows: u64,
    /// Their size in memory, as they were staged.
    pub bytes: usize,
}

impl Spill {
    /// An empty spill of `table` (keyed on `key`) in a new folder of `folder`; the text columns
    /// of `repeat` hold one value for long runs of rows.
    pub fn create(
        folder: &SpillDir,
        table: &str,
        key: &'static str,
        repeat: &'static [&'static str],
    ) -> Result<Self> {
        let dir = folder.subfolder(&format!("{table}-"))?;
        let keys = KeyFiles::new(dir.path(), "keys");
        Ok(Self {
            dir,
            key,
            schema: None,
            repeat,
            repeated: Repeated::default(),
            rows_file: None,
            keys,
            rows: 0,
            bytes: 0,
        })
    }

    fn rows_path(&self) -> PathBuf {
        self.dir.path().join("rows.arrow")
    }

    /// Appends `batches`, in staging order.
    pub fn append(&mut self, batches: Vec<RecordBatch>) -> Result<()> {
        for batch in batches {
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            self.bytes += batch.get_array_memory_size();
            let ord: ArrayRef = Arc::new(UInt64Array::from_iter_values(self.rows..self.rows + n as u64));
            let batch = crate::lake::query::append_column(
                &batch,
                Field::new(ORD, DataType::UInt64, false),
                ord.clone(),
            )?;
            self.rows += n as u64;
            let encoded = match &self.schema {
                None => {
                    self.repeated = Repeated::of(&batch.schema(), self.repeat);
                    let encoded = self.repeated.encoded_schema(&batch.schema());
                    self.rows_file = Some(create(&self.rows_path(), &encoded)?);
                    self.schema = Some((batch.schema(), encoded.clone()));
                    encoded
                }
                Some((s, _)) if s != &batch.schema() => {
                    return Err(Error::Job(format!(
                        "staging {}: a batch's columns differ from the first's",
                        self.dir.path().display()
                    )));
                }
                Some((_, encoded)) => encoded.clone(),
            };
            let path = self.rows_path();
            let staged = self.repeated.encode(&batch, &encoded)?;
            let written = self.rows_file.as_mut().expect("rows file").write(&staged);
            written.map_err(io_error(&path))?;
            self.keys.write(key_text(&batch, self.key)?, Some(ord))?;
        }
        Ok(())
    }

    /// Closes the files: the staged rows, ready to be read back.
    pub fn finish(mut self) -> Result<Partitions> {
        let path = self.rows_path();
        if let Some(mut w) = self.rows_file.take() {
            let closed = w.finish();
            closed.map_err(io_error(&path))?;
        }
        self.keys.close()?;
        let known = KeyFiles::new(self.dir.path(), "known");
        Ok(Partitions {
            schema: self.schema.map_or_else(|| Arc::new(Schema::empty()), |(s, _)| s),
            repeated: self.repeated,
            rows_file: path,
            dir: self.dir,
            keys: self.keys,
            known,
            rows: self.rows,
            bytes: self.bytes,
        })
    }
}

/// The staged rows of a table, with their keys partitioned.
pub struct Partitions {
    dir: tempfile::TempDir,
    /// The table's columns and `_ord`.
    schema: SchemaRef,
    /// How the file holds the repeated text columns.
    repeated: Repeated,
    rows_file: PathBuf,
    /// The staged keys, partitioned.
    keys: KeyFiles,
    /// Keys the table holds already, partitioned the same way.
    known: KeyFiles,
    pub rows: u64,
    pub bytes: usize,
}

impl std::fmt::Debug for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions")
            .field("dir", &self.dir.path())
            .field("rows", &self.rows)
            .finish()
    }
}

impl Partitions {
    /// The staged rows (with `_ord`), in staging order, as a table (for a de-duplication by sort).
    pub fn rows(self: Arc<Self>) -> Result<StreamingTable> {
        let schema = self.schema.clone();
        let all = Firsts {
            schema: schema.clone(),
            kept: (0..schema.fields().len()).collect(),
            keep_last: false,
            every_row: true,
            parts: self,
        };
        Ok(StreamingTable::try_new(schema, vec![Arc::new(all)])?)
    }

    /// Whether the largest partition of keys, with the table's keys of it, fits in `budget`
    /// bytes of memory.
    pub fn fits(&self, budget: usize) -> bool {
        self.keys.largest().saturating_add(self.known.largest()) <= budget
    }

    /// Records the keys the table holds (`keys`, a stream of one-column batches), partitioned
    /// like the staged ones: a staged row whose key is among them is not new and is dropped.
    /// Stops early, returning false, as soon as a partition of them outgrows `budget`.
    pub async fn know(&mut self, mut keys: SendableRecordBatchStream, budget: usize) -> Result<bool> {
        while let Some(batch) = keys.next().await {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.known.write(text_of(batch.column(0))?, None)?;
            if !self.fits(budget) {
                return Ok(false);
            }
        }
        self.known.close()?;
        Ok(true)
    }

    /// The first row of each key (the last with `keep_last`) in staging order, without `_ord`,
    /// as a DataFrame: when it runs, the keys are read a partition at a time, then the rows.
    pub fn first_per_key(self: Arc<Self>, ctx: &SessionContext, keep_last: bool) -> Result<DataFrame> {
        let kept: Vec<usize> = (0..self.schema.fields().len())
            .filter(|&i| self.schema.field(i).name() != ORD)
            .collect();
        let schema: SchemaRef = Arc::new(self.schema.project(&kept)?);
        let firsts = Firsts {
            schema: schema.clone(),
            kept,
            keep_last,
            every_row: false,
            parts: self,
        };
        let table = StreamingTable::try_new(schema, vec![Arc::new(firsts)])?;
        Ok(ctx.read_table(Arc::new(table))?)
    }

    /// One bit per staged row: set for the rows to keep.
    fn keep(&self, keep_last: bool) -> Result<BooleanBuffer> {
        let mut bits = vec![0xffu8; (self.rows as usize).div_ceil(8)];
        let key_schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new(ORD, DataType::UInt64, false),
        ]));
        let known_schema = Arc::new(Schema::new(vec![Field::new("key", DataType::Utf8, true)]));
        for (p, path) in self.keys.closed.iter().enumerate() {
            let Some(path) = path else { continue };
            let keys = read_ipc(path, &key_schema)?;
            let known = match &self.known.closed[p] {
                Some(k) => Some(text_of(read_ipc(k, &known_schema)?.column(0))?),
                None => None,
            };
            let text = text_of(keys.column(0))?;
            let ords = keys.column(1).as_primitive::<UInt64Type>();
            for i in losers(&text, known.as_ref(), keep_last) {
                let ord = ords.value(i) as usize;
                bits[ord / 8] &= !(1u8 << (ord % 8));
            }
        }
        Ok(BooleanBuffer::new(Buffer::from_vec(bits), 0, self.rows as usize))
    }
}

/// The batches of an IPC file, as one.
fn read_ipc(path: &Path, schema: &SchemaRef) -> Result<RecordBatch> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let reader = FileReader::try_new_buffered(file, None).map_err(io_error(path))?;
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(io_error(path))?;
    Ok(concat_batches(schema, &batches)?)
}

/// Marks the losers of each key, then streams the staged rows past the mark (`every_row`: streams
/// them all, unmarked).
struct Firsts {
    schema: SchemaRef,
    kept: Vec<usize>,
    keep_last: bool,
    every_row: bool,
    parts: Arc<Partitions>,
}

impl std::fmt::Debug for Firsts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firsts").field("parts", &self.parts).finish()
    }
}

impl PartitionStream for Firsts {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (parts, kept, keep_last, every_row) = (
            self.parts.clone(),
            self.kept.clone(),
            self.keep_last,
            self.every_row,
        );
        // reading and filtering the staged rows blocks: a task of its own, aborted when the
        // stream is dropped, its error (if any) the stream's last item
        let mut out = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let tx = out.tx();
        out.spawn_blocking(move || {
            let failed = |e: Error| DataFusionError::External(Box::new(e));
            let keep = if every_row {
                BooleanBuffer::new_set(parts.rows as usize)
            } else {
                parts.keep(keep_last).map_err(failed)?
            };
            let path = &parts.rows_file;
            let file = File::open(path)
                .map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })
                .map_err(failed)?;
            let reader = FileReader::try_new_buffered(file, None)
                .map_err(io_error(path))
                .map_err(failed)?;
            let mut at = 0usize;
            for batch in reader {
                let out = batch.map_err(io_error(path)).and_then(|b| {
                    let mask = BooleanArray::new(keep.slice(at, b.num_rows()), None);
                    at += b.num_rows();
                    let b = if mask.true_count() == b.num_rows() {
                        b
                    } else {
                        filter_record_batch(&b, &mask)?
                    };
                    parts
                        .repeated
                        .decode(&b, &parts.schema)?
                        .project(&kept)
                        .map_err(Error::from)
                });
                if tx.blocking_send(out.map_err(failed)).is_err() {
                    break; // the reader stopped
                }
            }
            Ok(())
        });
        out.build()
    }
}

/// The key column as text (keys are text in every table; anything else is cast).
fn key_text(batch: &RecordBatch, key: &str) -> Result<StringArray> {
    let col = batch
        .column_by_name(key)
        .ok_or_else(|| Error::Job(format!("staging: no key column {key}")))?;
    text_of(col)
}

fn text_of(col: &ArrayRef) -> Result<StringArray> {
    Ok(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().clone(),
        _ => cast(col, &DataType::Utf8)?.as_string::<i32>().clone(),
    })
}

/// The rows of `batch` ordered by their partition (`parts`), stably, and where each partition
/// starts (`PARTITIONS + 1` offsets).
fn by_partition(batch: &RecordBatch, parts: &[u8]) -> Result<(RecordBatch, [usize; PARTITIONS + 1])> {
    let mut starts = [0usize; PARTITIONS + 1];
    for &p in parts {
        starts[p as usize + 1] += 1;
    }
    for p in 0..PARTITIONS {
        starts[p + 1] += starts[p];
    }
    let mut next = starts;
    let mut order = vec![0u32; parts.len()];
    for (i, &p) in parts.iter().enumerate() {
        order[next[p as usize]] = i as u32;
        next[p as usize] += 1;
    }
    Ok((take_record_batch(batch, &UInt32Array::from(order))?, starts))
}

/// The memory a slice of a batch takes (`get_array_memory_size` counts the whole buffers).
fn sliced_size(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

/// The partition of each row's key.
fn partition_of(keys: &StringArray) -> Vec<u8> {
    let hasher = foldhash::fast::FixedState::with_seed(0x6373_6c61_6b65);
    keys.iter()
        .map(|k| (hasher.hash_one(k.unwrap_or("")) % PARTITIONS as u64) as u8)
        .collect()
}

/// The rows (of one partition's keys, in staging order) that lose: all but the first of each
/// key (the last with `keep_last`), and every row whose key is `known`.
fn losers(keys: &StringArray, known: Option<&StringArray>, keep_last: bool) -> Vec<usize> {
    let n = keys.len();
    let mut seen: HashSet<&str, foldhash::fast::RandomState> =
        HashSet::with_capacity_and_hasher(n + known.map_or(0, Array::len), Default::default());
    if let Some(known) = known {
        seen.extend(known.iter().flatten());
    }
    let mut out = Vec::new();
    let mut visit = |i: usize| {
        let k = if keys.is_null(i) { "" } else { keys.value(i) };
        if !seen.insert(k) {
            out.push(i);
        }
    };
    if keep_last {
        (0..n).rev().for_each(&mut visit);
    } else {
        (0..n).for_each(&mut visit);
    }
    out
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::Int64Array;
    use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    fn batch(ids: &[&str], values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn rows(parts: Arc<Partitions>, keep_last: bool) -> Vec<(String, i64)> {
        let ctx = SessionContext::new();
        let out = parts
            .first_per_key(&ctx, keep_last)
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert!(out.iter().all(|b| b.schema().column_with_name(ORD).is_none()));
        let mut rows: Vec<(String, i64)> = out
            .iter()
            .flat_map(|b| {
                let ids = b.column(0).as_string::<i32>().clone();
                let v = b
                    .column(1)
                    .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                    .clone();
                (0..b.num_rows()).map(move |i| (ids.value(i).to_string(), v.value(i)))
            })
            .collect();
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn the_first_or_last_copy_of_each_key_wins_across_appends() {
        let root = tempfile::tempdir().unwrap();
        let folder = SpillDir::create(root.path()).unwrap();
        let ids: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
        let stage = || {
            let mut spill = Spill::create(&folder, "t", "id", &[]).unwrap();
            // every key twice, in two appends; "k7" three times
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            spill
                .append(vec![batch(&refs, &vec![1; 500]), batch(&["k7"], &[2])])
                .unwrap();
            spill.append(vec![batch(&refs, &vec![3; 500])]).unwrap();
            assert_eq!(spill.rows, 1001);
            Arc::new(spill.finish().unwrap())
        };
        let first = rows(stage(), false).await;
        assert_eq!(first.len(), 500);
        assert!(first.iter().all(|(_, v)| *v == 1), "the first delivery wins");
        let last = rows(stage(), true).await;
        assert_eq!(last.len(), 500);
        assert!(last.iter().all(|(_, v)| *v == 3), "the last version wins");
        let parts = stage();
        // the staged rows read as a table, `_ord` and all (what the sort falls back to)
        let ctx = SessionContext::new();
        ctx.register_table("staged", Arc::new(parts.clone().rows().unwrap()))
            .unwrap();
        let n = ctx
            .sql("SELECT count(*), count(DISTINCT _ord), count(DISTINCT id) FROM staged")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let counts: Vec<i64> = (0..3)
            .map(|c| {
                n[0].column(c)
                    .as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                    .value(0)
            })
            .collect();
        assert_eq!(counts, [1001, 1001, 500]);
        assert!(
            parts.keys.closed.iter().flatten().count() > 1,
            "keys are spread over partitions"
        );
        assert!(parts.fits(usize::MAX) && !parts.fits(0));
    }

    #[tokio::test]
    async fn repeated_text_is_staged_as_numbers_and_read_back_as_it_was() {
        let root = tempfile::tempdir().unwrap();
        let folder = SpillDir::create(root.path()).unwrap();
        let with_source = |ids: &[&str], sources: Vec<Option<&str>>| {
            let b = batch(ids, &vec![1; ids.len()]);
            crate::lake::query::append_column(
                &b,
                Field::new("_source", DataType::Utf8, true),
                Arc::new(StringArray::from(sources)),
            )
            .unwrap()
        };
        let mut spill = Spill::create(&folder, "t", "id", &["_source", "missing"]).unwrap();
        spill
            .append(vec![
                // one file's rows, then the next file's, then a batch of mixed, empty and null
                with_source(&["a", "b", "c"], vec![Some("file:///x/1.csv"); 3]),
                with_source(&["d", "e"], vec![Some("file:///x/2.csv"); 2]),
                with_source(
                    &["f", "g", "h", "i"],
                    vec![Some("file:///x/1.csv"), None, Some(""), Some("file:///x/2.csv")],
                ),
                with_source(&["j", "k"], vec![Some(""), Some("")]),
                // same lengths, different text: not one value
                with_source(&["l", "m"], vec![Some("ab"), Some("ba")]),
            ])
            .unwrap();
        let parts = Arc::new(spill.finish().unwrap());
        let ctx = SessionContext::new();
        ctx.register_table("staged", Arc::new(parts.clone().rows().unwrap()))
            .unwrap();
        let out = ctx
            .sql("SELECT id, _source FROM staged ORDER BY _ord")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let got: Vec<(String, Option<String>)> = out
            .iter()
            .flat_map(|b| {
                let (id, src) = (b.column(0).as_string::<i32>(), b.column(1).as_string::<i32>());
                (0..b.num_rows())
                    .map(|i| {
                        (
                            id.value(i).to_string(),
                            (!src.is_null(i)).then(|| src.value(i).to_string()),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let want: Vec<(String, Option<String>)> = [
            ("a", Some("file:///x/1.csv")),
            ("b", Some("file:///x/1.csv")),
            ("c", Some("file:///x/1.csv")),
            ("d", Some("file:///x/2.csv")),
            ("e", Some("file:///x/2.csv")),
            ("f", Some("file:///x/1.csv")),
            ("g", None),
            ("h", Some("")),
            ("i", Some("file:///x/2.csv")),
            ("j", Some("")),
            ("k", Some("")),
            ("l", Some("ab")),
            ("m", Some("ba")),
        ]
        .into_iter()
        .map(|(i, s)| (i.to_string(), s.map(str::to_string)))
        .collect();
        assert_eq!(got, want);
        // five distinct values, each held once, not a copy per row
        assert_eq!(parts.repeated.columns[0].1.len(), 5);
    }

    #[test]
    fn one_value_means_every_row_holds_the_same_text() {
        let one = |v: Vec<Option<&str>>| one_value(&StringArray::from(v)).map(str::to_string);
        assert_eq!(one(vec![Some("ab"); 4]).as_deref(), Some("ab"));
        assert_eq!(one(vec![Some(""); 3]).as_deref(), Some(""));
        assert_eq!(one(vec![Some("ab"), Some("ba")]), None);
        assert_eq!(one(vec![Some("ab"), Some("abc")]), None);
        assert_eq!(one(vec![Some("ab"), None]), None);
        assert_eq!(one(vec![]), None);
        // a slice of a longer array
        let a = StringArray::from(vec!["x", "ab", "ab", "y"]);
        assert_eq!(one_value(&a.slice(1, 2)), Some("ab"));
        assert_eq!(one_value(&a.slice(0, 2)), None);
    }

    #[tokio::test]
    async fn keys_the_table_holds_are_not_new() {
        let root = tempfile::tempdir().unwrap();
        let folder = SpillDir::create(root.path()).unwrap();
        let mut spill = Spill::create(&folder, "t", "id", &[]).unwrap();
        spill
            .append(vec![batch(&["a", "b", "c", "b", "d"], &[1, 2, 3, 4, 5])])
            .unwrap();
        let mut parts = spill.finish().unwrap();
        let known = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("event_id", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from(vec![Some("b"), None, Some("x")]))],
        )
        .unwrap();
        let stream = RecordBatchStreamAdapter::new(
            known.schema(),
            futures::stream::iter(vec![Ok(known.clone()), Ok(known)]),
        );
        assert!(parts.know(Box::pin(stream), usize::MAX).await.unwrap());
        let out = rows(Arc::new(parts), false).await;
        assert_eq!(
            out,
            [("a".to_string(), 1), ("c".to_string(), 3), ("d".to_string(), 5)]
        );
        // the keys outgrow a tiny budget: not compared in memory
        let mut spill = Spill::create(&folder, "t", "id", &[]).unwrap();
        spill.append(vec![batch(&["a"], &[1])]).unwrap();
        let mut parts = spill.finish().unwrap();
        let many: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let known = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("event_id", DataType::Utf8, true)])),
            vec![Arc::new(StringArray::from_iter_values(many))],
        )
        .unwrap();
        let stream = RecordBatchStreamAdapter::new(known.schema(), futures::stream::iter(vec![Ok(known)]));
        assert!(!parts.know(Box::pin(stream), 64).await.unwrap());
    }
}
