"""The reference for `benches/ingest.rs`: read one events file, de-duplicate on event_id (the
first delivery wins), write Parquet. Prints: rows written, wall seconds, CPU seconds, peak MB.

    python ingest_reference.py duckdb|polars FILE OUT.parquet
"""
import os, resource, sys, time

engine, src, out = sys.argv[1], sys.argv[2], sys.argv[3]
kind = os.path.splitext(src)[1].lstrip(".")
t = time.time()
if engine == "duckdb":
    import duckdb

    con = duckdb.connect()
    read = {
        "parquet": f"read_parquet('{src}')",
        "csv": f"read_csv('{src}', header = true)",
        "ndjson": f"read_json('{src}', format = 'newline_delimited')",
    }[kind]
    con.execute(
        f"COPY (SELECT * EXCLUDE (rn) FROM (SELECT *, row_number() OVER (PARTITION BY event_id) AS rn FROM {read}) "
        f"WHERE rn = 1) TO '{out}' (FORMAT PARQUET)"
    )
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
elif engine == "polars":
    import polars as pl

    scan = {"parquet": pl.scan_parquet, "csv": pl.scan_csv, "ndjson": pl.scan_ndjson}[kind](src)
    scan.unique(subset="event_id", keep="first", maintain_order=True).sink_parquet(out)
    rows = pl.scan_parquet(out).select(pl.len()).collect().item()
else:
    sys.exit(f"unknown engine {engine}")
wall = time.time() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(rows, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
