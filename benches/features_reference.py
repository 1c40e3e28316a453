"""The reference for `benches/features.rs`: DuckDB doing what `cslake features --as-of D` does on
the same Delta files, with the project's own SQL. Prints: wall seconds, CPU seconds, peak MB.

    python features_reference.py FILES.json AS_OF VIEW,VIEW,... PROJECT OUT_DIR [GENERATED_DIR]

FILES.json maps each core table to the Parquet files of its current version. The rollups of
sql/rollups/ are written to Parquet first (as cslake materialises them), then the spine, then each
view (after its state, sql/features/VIEW.state.sql, where it keeps one) to Parquet, with 2 threads, as ../shared/perf/duck_cslake.py does.
A view cslake generates (event_metrics) is read from GENERATED_DIR/VIEW.sql, and its state from
GENERATED_DIR/VIEW.state.sql, as the bench wrote them.
"""
import json, os, resource, sys, time

import duckdb

files_json, as_of, views, project, out = sys.argv[1:6]
generated = sys.argv[6] if len(sys.argv) > 6 else None
files = json.load(open(files_json))
os.makedirs(out, exist_ok=True)


def sql(path):
    text = open(path if os.path.isabs(path) else os.path.join(project, path)).read()
    return text.replace("{{as_of}}", f"DATE '{as_of}'").replace("{{where}}", "")


t = time.time()
con = duckdb.connect()
con.execute("SET threads=2")
for table, paths in files.items():
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({paths!r})")
for rollup in sorted(os.listdir(os.path.join(project, "sql/rollups"))):
    name = rollup.removesuffix(".sql")
    target = os.path.join(out, f"{name}.parquet")
    con.execute(f"COPY ({sql('sql/rollups/' + rollup)}) TO '{target}' (FORMAT PARQUET)")
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{target}')")
con.execute("CREATE TABLE spine AS " + sql("sql/spine.sql"))
# computed once per date for the views that read it, as cslake does
con.execute("CREATE TABLE active_users AS " + sql("sql/active_users.sql"))
for view in views.split(","):
    # a view's state (sql/features/VIEW.state.sql), computed from scratch as a full build does
    state = f"sql/features/{view}.state.sql"
    own_state = os.path.join(generated, f"{view}.state.sql") if generated else None
    if own_state and os.path.exists(own_state):
        state = own_state
    if os.path.exists(state if os.path.isabs(state) else os.path.join(project, state)):
        con.execute(f"CREATE TABLE {view}_state AS {sql(state)}")
    target = os.path.join(out, f"{view}.parquet")
    own = os.path.join(generated, f"{view}.sql") if generated else None
    path = own if own and os.path.exists(own) else f"sql/features/{view}.sql"
    con.execute(f"COPY ({sql(path)}) TO '{target}' (FORMAT PARQUET)")
wall = time.time() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
