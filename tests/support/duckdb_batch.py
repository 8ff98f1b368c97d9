"""The reference job (crds/fixtures/valid/tx-stats.yaml) as the batch query a user would check
Kappa's index with, in DuckDB: exact aggregates and SQL's percentile_disc.

Usage: duckdb_batch.py FILE OUT. Reads the NDJSON file FILE (no malformed lines: the batch
query has no dead-letter path) and writes one JSON object per window and key to OUT, with
window_start in epoch milliseconds, every aggregate of the job computed exactly (distinct users
with count(DISTINCT), p95 with quantile_disc, which is percentile_disc) and n, the number of
latencies the percentile saw.

Used by engine/cli/tests/sql_batch.rs; tests/run.sh installs the pinned duckdb."""
import json
import sys

import duckdb

path, out = sys.argv[1], sys.argv[2]
quoted = path.replace("'", "''")
QUERY = f"""
SELECT epoch_ms(time_bucket(INTERVAL 1 minute, event_time)) AS window_start, server, tx_type,
       count(*) AS tx_count, sum(amount) AS amount_sum,
       min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, avg(latency_ms) AS latency_avg,
       count(*) FILTER (WHERE status = 'fail') AS failures,
       count(DISTINCT user_id) AS users,
       quantile_disc(latency_ms, 0.95) AS latency_p95,
       count(latency_ms) AS n
FROM read_ndjson('{quoted}', columns = {{
    event_time: 'TIMESTAMPTZ', logged_time: 'TIMESTAMPTZ', server: 'VARCHAR', tx_type: 'VARCHAR',
    status: 'VARCHAR', amount: 'DOUBLE', latency_ms: 'BIGINT', user_id: 'VARCHAR'}})
WHERE status != 'test' AND logged_time - event_time <= INTERVAL 3 days
GROUP BY ALL
ORDER BY ALL
"""
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
cursor = con.execute(QUERY)
names = [d[0] for d in cursor.description]
with open(out, "w") as f:
    for row in cursor.fetchall():
        f.write(json.dumps(dict(zip(names, row))) + "\n")
