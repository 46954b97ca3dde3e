#!/usr/bin/env node
// A small bank-account service on event_store, with node-postgres (pg).
//
// The same service as examples/python/accounts.py (read its header for the
// whole story): streams account-1, account-2, ... of events Opened,
// Deposited and Withdrawn, and three modes:
//
//   commands  read a stream, decide, append with the expected version and
//             send an outbox notice in the same transaction; on EV001 roll
//             back, read again and retry.  Print the rebuilt balances.
//   work      deliver the notices: outbox_claim, then outbox_ack, or
//             outbox_nack when a delivery fails.
//   consume   keep the read model account_balances from the subscription
//             account_balances, woken by LISTEN, checkpointing in the read
//             model's transaction, reconnecting and catching up when the
//             connection is lost; print what the relay publishes on the
//             NOTIFY channel account_events.  Runs until killed.
//
// Connection settings come from the environment (PGHOST, PGPORT,
// PGDATABASE, PGUSER, ...).  examples/setup.sql creates what it needs.
// Every line printed is one fact, for the test that runs it.
//
// Install with `npm ci` (pg is pinned in package-lock.json), then:
//   node accounts.js commands|work|consume
'use strict';

const pg = require('pg');

const SUBSCRIPTION = 'account_balances';
const NOTICES_TOPIC = 'account_notices';
const RELAY_CHANNEL = 'account_events'; // the notify: sink of setup.sql
const PAGE = Number(process.env.ACCOUNTS_PAGE || 500); // events per read_stream / fetch
const MAX_ATTEMPTS = 10; // of a command that keeps conflicting
const WAIT_MS = 60000; // a consumer reads anyway after this long

// node-postgres returns bigint (positions, versions, message ids, counts)
// as strings: "9" + 1 is "91".  Parse them as BigInt, everywhere.
pg.types.setTypeParser(20 /* int8 */, (text) => BigInt(text));

function out(...words) {
  process.stdout.write(words.join(' ') + '\n');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function connect(name) {
  // A Client of its own per role, not a Pool: a pool may close an idle
  // connection (and its LISTEN) or hand the next query another one.
  const client = new pg.Client({ application_name: name });
  await client.connect();
  return client;
}

// ------------------------------------------------------------- commands

class Refused extends Error {}

async function load(client, stream) {
  const state = { opened: false, balance: 0n };
  let version = null; // no stream yet
  for (;;) {
    const { rows } = await client.query(
      'SELECT version, type, data FROM event_store.read_stream($1, $2, $3)',
      [stream, version === null ? 0n : version + 1n, PAGE]);
    for (const e of rows) {
      version = e.version;
      if (e.type === 'Opened') state.opened = true;
      else if (e.type === 'Deposited') state.balance += BigInt(e.data.amount);
      else if (e.type === 'Withdrawn') state.balance -= BigInt(e.data.amount);
    }
    if (rows.length < PAGE) return { state, version };
  }
}

// Read, decide, append with the expected version and send the notice in one
// transaction; on EV001 roll back, read again and decide anew.
async function execute(client, stream, decide, beforeAppend) {
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const { state, version } = await load(client, stream);
    const { events, notice } = decide(state); // may throw Refused
    if (beforeAppend) await beforeAppend(attempt);
    let messageId;
    await client.query('BEGIN');
    try {
      // jsonb parameters go as JSON text, stringified once: an array passed
      // as it is becomes a PostgreSQL array literal ('{...}', 22P02), and
      // an object stringified twice is stored as one JSON string.
      await client.query('SELECT event_store.append($1, $2::jsonb, $3)',
        [stream, JSON.stringify(events), version === null ? -1n : version]);
      const { rows } = await client.query(
        'SELECT event_store.outbox_send($1, $2::jsonb, key => $3) AS id',
        [NOTICES_TOPIC, JSON.stringify(notice), stream]);
      messageId = rows[0].id;
      await client.query('COMMIT');
    } catch (err) {
      // After an error the transaction is aborted: roll it back (the notice
      // goes with it) before anything else on this connection.
      await client.query('ROLLBACK');
      if (err.code !== 'EV001') throw err;
      out('conflict', stream, attempt);
      continue;
    }
    out('sent', messageId, stream);
    return;
  }
  throw new Error(`${stream}: still conflicting after ${MAX_ATTEMPTS} attempts`);
}

function deposit(amount) {
  return (state) => {
    const events = state.opened ? [] : [{ type: 'Opened', data: { owner: 'someone' } }];
    events.push({ type: 'Deposited', data: { amount } });
    return {
      events,
      notice: { kind: 'deposited', amount, balance: Number(state.balance) + amount },
    };
  };
}

function withdraw(amount) {
  return (state) => {
    if (!state.opened || state.balance < BigInt(amount)) {
      throw new Refused(`balance ${state.balance} < ${amount}`);
    }
    return {
      events: [{ type: 'Withdrawn', data: { amount } }],
      notice: { kind: 'withdrawn', amount, balance: Number(state.balance) - amount },
    };
  };
}

async function commands() {
  const teller = await connect('accounts-teller');
  const other = await connect('accounts-other-teller');
  const accounts = ['account-1', 'account-2', 'account-3'];
  for (const a of accounts) await execute(teller, a, deposit(100));
  // Another teller deposits between our read and our append.
  for (const a of accounts) {
    await execute(teller, a, withdraw(30), async (attempt) => {
      if (attempt === 1) await execute(other, a, deposit(5));
    });
  }
  try {
    await execute(teller, 'account-1', withdraw(1000));
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    out('refused', 'account-1', err.message);
  }
  for (const a of accounts) {
    const { state, version } = await load(teller, a);
    out('balance', a, state.balance, version);
  }
  await teller.end();
  await other.end();
}

// ---------------------------------------------------------- outbox work

// Stands for a call to another system: a withdrawal notice fails on its
// first attempt, so that the example shows a nack and a redelivery.
function deliver(payload, attempts) {
  if (payload.kind === 'withdrawn' && attempts === 1) {
    throw new Error('mail server not answering');
  }
}

async function work() {
  const client = await connect('accounts-worker');
  for (;;) {
    // In a transaction of its own: the lease counts from its commit.
    const { rows } = await client.query(
      'SELECT id, payload, attempts, receipt FROM event_store.outbox_claim($1, 10)',
      [NOTICES_TOPIC]);
    if (rows.length === 0) break;
    const done = [];
    const failed = [];
    for (const m of rows) {
      try {
        deliver(m.payload, m.attempts);
        done.push(m);
      } catch (err) {
        failed.push([m, err.message]);
      }
    }
    if (done.length > 0) {
      // Receipts typed uuid[]: the driver sends the JS array as an array
      // literal.
      const { rows: [{ n }] } = await client.query(
        'SELECT event_store.outbox_ack($1::uuid[]) AS n', [done.map((m) => m.receipt)]);
      if (n !== done.length) out('ack-lost', done.length - n);
      for (const m of done) out('acked', m.id);
    }
    for (const [m, error] of failed) {
      // retry_in 0: again at once, for the example (NULL: the backoff).
      await client.query(
        "SELECT event_store.outbox_nack($1::uuid[], retry_in => '0', error => $2)",
        [[m.receipt], error]);
      out('nacked', m.id);
    }
  }
  await client.end();
}

// ------------------------------------------------------------ consumers

class Subscriber {
  constructor() {
    this.client = null;
    this.woken = false;
    this.lost = null;
    this.wake = () => {};
  }

  async connect() {
    const client = new pg.Client({ application_name: 'accounts-subscriber' });
    client.on('notification', () => {
      this.woken = true;
      this.wake();
    });
    // Without a listener, a connection lost while idle would crash the
    // process ('error' event).
    client.on('error', (err) => {
      this.lost = err;
      this.wake();
    });
    this.lost = null;
    this.client = client;
    await client.connect();
    // The channel is whatever the extension says it is for this member.
    const { rows } = await client.query(
      'SELECT channel FROM event_store.subscription_lag WHERE subscription = $1 AND member = 0',
      [SUBSCRIPTION]);
    await client.query(`LISTEN ${client.escapeIdentifier(rows[0].channel)}`);
  }

  // Apply every event there is, a batch per transaction, with the
  // checkpoint.  LISTEN came first, so nothing committed after this read
  // goes unannounced.
  async catchUp() {
    const c = this.client;
    for (;;) {
      await c.query('BEGIN');
      let events;
      try {
        ({ rows: events } = await c.query(
          'SELECT position, stream, version, type, data FROM event_store.subscription_fetch($1, $2)',
          [SUBSCRIPTION, PAGE]));
        for (const e of events) {
          const sign = { Deposited: 1n, Withdrawn: -1n }[e.type] || 0n;
          const amount = sign === 0n ? 0n : sign * BigInt(e.data.amount);
          await c.query(
            'INSERT INTO public.account_balances AS b VALUES ($1, $2, 1, $3)' +
            ' ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance,' +
            ' events = b.events + 1, last_position = excluded.last_position',
            [e.stream, amount, e.position]);
        }
        if (events.length > 0) {
          await c.query('SELECT event_store.subscription_ack($1, $2)',
            [SUBSCRIPTION, events[events.length - 1].position]);
        }
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => {});
        throw err;
      }
      for (const e of events) out('event', e.position, e.stream, e.version);
      if (events.length < PAGE) return;
    }
  }

  // Until a notification arrives (or WAIT_MS pass, or the connection is lost).
  async wait() {
    if (!this.woken && !this.lost) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, WAIT_MS);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = () => {};
    }
    if (this.lost) throw this.lost;
    if (this.woken) out('woken');
    this.woken = false;
  }

  async run() {
    let ready = false;
    for (;;) {
      try {
        if (this.client === null) {
          if (ready) out('reconnecting');
          await this.connect();
        }
        await this.catchUp();
        if (!ready) {
          out('ready');
          ready = true;
        }
        await this.wait();
      } catch (err) {
        // Lost the connection (server restart, network, terminated
        // backend): connect again, LISTEN again, catch up.
        if (err.code && !err.code.startsWith('57') && !err.code.startsWith('08')) throw err;
        out('connection-lost', (err.message || '').split('\n')[0]);
        const c = this.client;
        this.client = null;
        if (c) await c.end().catch(() => {});
        await sleep(1000);
      }
    }
  }
}

async function relayListener() {
  const client = await connect('accounts-relay-listener');
  client.on('notification', (n) => {
    const { headers } = JSON.parse(n.payload);
    out('relayed', headers.position, headers.stream, headers.version);
  });
  client.on('error', (err) => {
    console.error('relay listener:', err.message);
    process.exit(1);
  });
  await client.query(`LISTEN ${client.escapeIdentifier(RELAY_CHANNEL)}`);
}

async function consume() {
  await relayListener();
  await new Subscriber().run();
}

const modes = { commands, work, consume };
const mode = modes[process.argv[2]];
if (!mode) {
  console.error('usage: node accounts.js commands|work|consume');
  process.exit(2);
}
mode().catch((err) => {
  console.error(err);
  process.exit(1);
});
