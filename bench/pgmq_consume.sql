SELECT count(*) FROM pgmq.delete('bench_pgmq', ARRAY(SELECT msg_id FROM pgmq.read('bench_pgmq', 30, 10)));
