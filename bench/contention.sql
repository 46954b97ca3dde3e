\set s random(1, 4)
SELECT bench_try_append('hot-' || :s);
