"""Reads every table of a cslake lake the way its users' tools do, and reports where a reader disagrees
with what cslake says the table is (`cslake tables --format json`): python deltalake (delta-rs),
polars' read_delta, and DuckDB's read_parquet over the files of the version cslake described.

    python tests/readers.py TABLES.json        # prints one JSON object: {"checked": N, "problems": [...]}

Each problem names the reader, the table and what differs (a column's type, the row count, or the
reader's error). The test suite runs it on a lake that has run every step (tests/e2e.rs).
"""

import json
import sys

import deltalake
import duckdb
import polars as pl

# Delta type -> (polars dtype text prefix, DuckDB type)
PRIMITIVES = {
    "string": ("String", "VARCHAR"),
    "long": ("Int64", "BIGINT"),
    "integer": ("Int32", "INTEGER"),
    "short": ("Int16", "SMALLINT"),
    "byte": ("Int8", "TINYINT"),
    "double": ("Float64", "DOUBLE"),
    "float": ("Float32", "FLOAT"),
    "boolean": ("Boolean", "BOOLEAN"),
    "date": ("Date", "DATE"),
    "timestamp": ("Datetime(time_unit='us', time_zone='UTC')", "TIMESTAMP WITH TIME ZONE"),
    "timestamp_ntz": ("Datetime(time_unit='us', time_zone=None)", "TIMESTAMP"),
    "binary": ("Binary", "BLOB"),
}


def expected_polars(delta_type: str) -> str:
    if delta_type.startswith("array<"):
        return "List("
    if delta_type.startswith("struct<"):
        return "Struct("
    return PRIMITIVES[delta_type][0]


def expected_duckdb(delta_type: str) -> str:
    if delta_type.startswith("array<"):
        return "[]"
    if delta_type.startswith("struct<"):
        return "STRUCT("
    return PRIMITIVES[delta_type][1]


def delta_json_type(t) -> str:
    """A field type from delta-rs' schema JSON in cslake's spelling (nested types by kind)."""
    if isinstance(t, str):
        return t
    return {"array": "array<", "struct": "struct<", "map": "map<"}[t["type"]]


def check(table: dict, problems: list):
    name, location, rows = table["table"], table["location"], table["rows"]
    # the version cslake described: tables such as ops.runs gain rows with every command since
    version = table.get("version")
    columns = {c["name"]: c["type"] for c in table["columns"]}
    partitions = set(table["partitioned_by"])

    def problem(reader, what):
        problems.append({"reader": reader, "table": name, "problem": what})

    # python deltalake: the log's schema, and the rows its own scan reads
    try:
        dt = deltalake.DeltaTable(location, version=version)
        fields = json.loads(dt.schema().to_json())["fields"]
        seen = {f["name"]: delta_json_type(f["type"]) for f in fields}
        for col, ty in columns.items():
            want = ty if not (ty.startswith("array<") or ty.startswith("struct<")) else ty.split("<")[0] + "<"
            if seen.get(col) != want:
                problem("deltalake", f"{col}: {seen.get(col)} in the log, cslake says {ty}")
        n = dt.to_pyarrow_table().num_rows
        if rows is not None and n != rows:
            problem("deltalake", f"{n} rows, cslake says {rows}")
        files = dt.file_uris()
    except Exception as e:  # noqa: BLE001 - the reader's own error is the finding
        problem("deltalake", f"{type(e).__name__}: {e}")
        files = None

    # polars: read_delta goes through delta-rs' scan and casts nothing
    try:
        df = pl.read_delta(location, version=version)
        if rows is not None and df.height != rows:
            problem("polars", f"{df.height} rows, cslake says {rows}")
        for col, ty in columns.items():
            got = str(df.schema.get(col))
            if not got.startswith(expected_polars(ty)):
                problem("polars", f"{col}: {got}, expected {expected_polars(ty)} for {ty}")
    except Exception as e:  # noqa: BLE001
        problem("polars", f"{type(e).__name__}: {e}")

    # DuckDB over the Parquet files themselves (partition columns live in the log, not the files)
    if files:
        try:
            con = duckdb.connect()
            rel = con.read_parquet(files, union_by_name=True)
            got = dict(zip(rel.columns, [str(t) for t in rel.types]))
            for col, ty in columns.items():
                if col in partitions:
                    continue
                want = expected_duckdb(ty)
                g = got.get(col, "missing")
                ok = g.endswith(want) if want == "[]" else g.startswith(want) if want == "STRUCT(" else g == want
                if not ok:
                    problem("duckdb", f"{col}: {g} in the files, expected {want} for {ty}")
            n = con.execute("SELECT COUNT(*) FROM read_parquet(?)", [files]).fetchone()[0]
            if rows is not None and n != rows:
                problem("duckdb", f"{n} rows in the files, cslake says {rows}")
        except Exception as e:  # noqa: BLE001
            problem("duckdb", f"{type(e).__name__}: {e}")
    elif files is not None and rows:
        problem("deltalake", f"no files, cslake says {rows} rows")


def main(path):
    with open(path) as f:
        tables = json.load(f)
    problems = []
    for t in tables:
        check(t, problems)
    print(json.dumps({"checked": len(tables), "problems": problems}))


if __name__ == "__main__":
    main(sys.argv[1])
