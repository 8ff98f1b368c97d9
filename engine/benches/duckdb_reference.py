"""DuckDB running the reference job as a batch query over the same NDJSON file, for the
engine benchmark (engine/benches/run-bench.sh).

Usage: duckdb_reference.py FILE RECORDS [THREADS [RUNS]]. Without THREADS, prints the median of 3
runs for 2 and 1 threads; with them, prints the seconds of each of RUNS runs (default 1) at
THREADS threads, one per line, so the bench script can interleave them with `kappa run`.

window_start comes back as epoch milliseconds: a TIMESTAMPTZ result needs pytz in Python."""
import statistics
import sys
import time

import duckdb

path, records = sys.argv[1], int(sys.argv[2])
single = len(sys.argv) > 3
QUERY = f"""
SELECT epoch_ms(time_bucket(INTERVAL 1 minute, event_time)) AS window_start, server, tx_type,
       count(*) AS tx_count, sum(amount) AS amount_sum,
       min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, avg(latency_ms) AS latency_avg,
       count(*) FILTER (WHERE status = 'fail') AS failures,
       approx_count_distinct(user_id) AS users,
       approx_quantile(latency_ms, 0.95) AS latency_p95
FROM read_ndjson('{path}', ignore_errors = true, columns = {{
    event_time: 'TIMESTAMPTZ', logged_time: 'TIMESTAMPTZ', server: 'VARCHAR', tx_type: 'VARCHAR',
    status: 'VARCHAR', amount: 'DOUBLE', latency_ms: 'BIGINT', user_id: 'VARCHAR'}})
WHERE status != 'test' AND event_time IS NOT NULL
  AND logged_time - event_time <= INTERVAL 3 days
GROUP BY ALL
"""
for threads in (int(sys.argv[3]),) if single else (2, 1):
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    times = []
    for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 1 if single else 3):
        started = time.perf_counter()
        rows = con.execute(QUERY).fetchall()
        times.append(time.perf_counter() - started)
        if single:
            print(f"{times[-1]:.3f}")
    if not single:
        secs = statistics.median(times)
        print(f"duckdb {threads} thread(s): median {secs:.2f}s, {records / secs / 1e6:.2f} M records/s, {len(rows)} windows")
