SELECT pgmq.send('bench_pgmq', '{"n": 1}');
