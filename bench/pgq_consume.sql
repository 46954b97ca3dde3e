SELECT bench_pgq_consume();
