"""Runs generated queries on DuckDB for Cairn's differential test.

Usage: duckdb_runner.py DATA_DIR QUERIES_FILE OUT_FILE

DATA_DIR holds t0.parquet, t1.parquet, ... which become tables of the same
names. QUERIES_FILE has one JSON object per line, {"id": n, "sql": "..."};
OUT_FILE gets one JSON object per line, {"id": n, "rows": [[...], ...]} or
{"id": n, "error": "..."}. Decimals become floats; other values map to JSON
as they are.
"""

import decimal
import json
import pathlib
import sys

import duckdb


def cell(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return str(v)
    return v


def main():
    data_dir, queries_file, out_file = sys.argv[1:4]
    con = duckdb.connect()
    for table in sorted(pathlib.Path(data_dir).glob("*.parquet")):
        con.execute(
            f"CREATE TABLE {table.stem} AS SELECT * FROM read_parquet('{table}')"
        )
    with open(queries_file) as queries, open(out_file, "w") as out:
        for line in queries:
            query = json.loads(line)
            try:
                rows = con.execute(query["sql"]).fetchall()
                result = {"id": query["id"], "rows": [[cell(v) for v in r] for r in rows]}
            except Exception as e:  # every failure is reported, never raised
                result = {"id": query["id"], "error": str(e).splitlines()[0]}
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
