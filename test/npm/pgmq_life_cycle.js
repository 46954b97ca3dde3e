// The whole life cycle of a pgmq queue, driven by the published pgmq-js
// client, unchanged, against the event_store_pgmq layer.  pgmq-js has no
// read_with_poll: that one call goes through its pool as plain SQL.
// Connection: the PG* environment variables.  Exits non-zero on failure.
'use strict';
const assert = require('node:assert/strict');
const { Pgmq } = require('pgmq-js');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const pgmq = await Pgmq.new(
    {
      host: process.env.PGHOST,
      port: Number(process.env.PGPORT),
      database: process.env.PGDATABASE,
      user: process.env.PGUSER,
      ssl: false,
    },
    // The layer is event_store_pgmq, not the pgmq extension.
    { skipExtensionCreation: true },
  );
  const q = 'life_cycle';
  let step = 0;
  const ok = (what) => console.log(`ok ${++step} - ${what}`);

  try {
    await pgmq.queue.create(q);
    assert.ok((await pgmq.queue.list()).some((x) => x.name === q));
    ok('create, list');

    const id1 = await pgmq.msg.send(q, { n: 1 });
    const [id2, id3] = await pgmq.msg.sendBatch(q, [{ n: 2 }, { n: 3 }]);
    assert.ok(id1 < id2 && id2 < id3);
    ok('send, send_batch');

    // A visibility timeout of 1 second: invisible, then visible again.
    const first = await pgmq.msg.read(q, 1);
    assert.equal(first.msgId, id1);
    assert.equal(first.readCount, 1);
    assert.deepEqual(first.message, { n: 1 });
    assert.ok(first.vt > first.enqueuedAt);
    const rest = await pgmq.msg.readBatch(q, 30, 10);
    assert.deepEqual(rest.map((m) => m.msgId), [id2, id3]);
    assert.equal(await pgmq.msg.read(q, 30), undefined);
    ok('read with a visibility timeout');

    const { rows } = await pgmq.pool.query(
      'SELECT * FROM pgmq.read_with_poll($1, 30, 1, 10, 100)', [q]);
    assert.equal(rows.length, 1);
    assert.equal(Number(rows[0].msg_id), id1);
    assert.equal(rows[0].read_ct, 2);
    ok('the timeout expires: read_with_poll gets the message again');

    const reset = await pgmq.msg.setVt(q, id2, 0);
    assert.equal(reset.msgId, id2);
    const again = await pgmq.msg.read(q, 30);
    assert.equal(again.msgId, id2);
    assert.equal(again.readCount, 2);
    ok('set_vt');

    assert.equal(await pgmq.msg.archive(q, id1), true);
    assert.equal(await pgmq.msg.delete(q, id2), true);
    assert.equal(await pgmq.msg.delete(q, id2), false);
    const archived = await pgmq.pool.query(
      'SELECT msg_id, message FROM pgmq.archived_messages WHERE queue_name = $1', [q]);
    assert.deepEqual(archived.rows.map((r) => Number(r.msg_id)), [id1]);
    ok('archive, delete');

    const [id4, id5, id6, id7] = await pgmq.msg.sendBatch(q, [{ n: 4 }, { n: 5 }, { n: 6 }, { n: 7 }]);
    assert.deepEqual(await pgmq.msg.archiveBatch(q, [id4, id5]), [id4, id5]);
    assert.deepEqual(await pgmq.msg.deleteBatch(q, [id6, 999999999]), [id6]);
    ok('archive and delete by batch');

    const popped = await pgmq.msg.pop(q);
    assert.equal(popped.msgId, id7);
    assert.equal(await pgmq.msg.pop(q), undefined);
    ok('pop');

    const metrics = await pgmq.queue.getMetrics(q);
    assert.equal(metrics.queueName, q);
    assert.equal(metrics.queueLength, 1);  // id3, leased
    assert.equal(metrics.totalMessages, 4);  // id3 and three archived
    assert.ok((await pgmq.queue.getAllMetrics()).some((m) => m.queueName === q));
    ok('metrics, metrics_all');

    await pgmq.queue.purge(q);
    assert.equal((await pgmq.queue.getMetrics(q)).queueLength, 0);
    await pgmq.queue.drop(q);
    assert.ok(!(await pgmq.queue.list()).some((x) => x.name === q));
    ok('purge, drop');
  } finally {
    await pgmq.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
