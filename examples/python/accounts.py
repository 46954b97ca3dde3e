#!/usr/bin/python3
"""A small bank-account service on event_store, with psycopg 3.

Streams account-1, account-2, ... hold each account's events (Opened,
Deposited, Withdrawn).  The service

  commands  runs commands: each reads its stream with read_stream, decides,
            and appends with the expected version in one transaction with an
            outbox message (topic account_notices); a conflict (EV001) means
            another writer got there first: roll back, read again, retry.
            Prints the balances rebuilt from read_stream.
  work      delivers the outbox messages: outbox_claim, then outbox_ack, or
            outbox_nack when a delivery fails.
  consume   keeps the read model account_balances up to date from the
            subscription account_balances, woken by LISTEN, checkpointing in
            the read model's transaction, and reconnecting and catching up
            when its connection is lost; and prints the account events the
            relay workers publish on the NOTIFY channel account_events.
            Runs until killed.

Connection settings come from the environment (PGHOST, PGPORT, PGDATABASE,
PGUSER, ...), as for psql.  examples/setup.sql creates what it needs.
Every line it prints is one fact, for the test that runs it.

Usage: python3 accounts.py commands|work|consume
"""

import json
import os
import select
import sys
import threading
from datetime import timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

SUBSCRIPTION = "account_balances"
NOTICES_TOPIC = "account_notices"
RELAY_CHANNEL = "account_events"   # the notify: sink of examples/setup.sql
PAGE = int(os.environ.get("ACCOUNTS_PAGE", "500"))  # events per read_stream / fetch
MAX_ATTEMPTS = 10                  # of a command that keeps conflicting
WAIT_SECONDS = 60                  # a consumer reads anyway after this long


_out_lock = threading.Lock()


def out(*words):
    with _out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def connect(name):
    # autocommit: every statement outside "with conn.transaction()" is its
    # own transaction, so that no connection sits idle in a transaction
    # (an appending transaction left open holds back every consumer).
    return psycopg.connect(autocommit=True, application_name=name)


# ---------------------------------------------------------------- commands

class Refused(Exception):
    pass


class Account:
    def __init__(self):
        self.opened = False
        self.balance = 0

    def apply(self, type_, data):
        if type_ == "Opened":
            self.opened = True
        elif type_ == "Deposited":
            self.balance += data["amount"]
        elif type_ == "Withdrawn":
            self.balance -= data["amount"]


def load(conn, stream):
    """The account's state and its stream's version (None: no stream)."""
    state, version = Account(), None
    while True:
        rows = conn.execute(
            "SELECT version, type, data FROM event_store.read_stream(%s, %s, %s)",
            (stream, 0 if version is None else version + 1, PAGE)).fetchall()
        for version, type_, data in rows:
            state.apply(type_, data)
        if len(rows) < PAGE:
            return state, version


def execute(conn, stream, decide, before_append=None):
    """Read the stream, decide, append with the expected version and send
    the notice in the same transaction; on EV001 read again and decide anew.
    Returns the stream's new version."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        state, version = load(conn, stream)
        events, notice = decide(state)          # may raise Refused
        if before_append:
            before_append(attempt)
        try:
            with conn.transaction():
                new_version = conn.execute(
                    "SELECT event_store.append(%s, %s, %s)",
                    # Jsonb() sends the list as one JSON document; -1: the
                    # stream must not exist yet.
                    (stream, Jsonb(events), -1 if version is None else version)
                ).fetchone()[0]
                message_id = conn.execute(
                    "SELECT event_store.outbox_send(%s, %s, key => %s)",
                    (NOTICES_TOPIC, Jsonb(notice), stream)).fetchone()[0]
        except psycopg.Error as e:
            # The transaction is rolled back (the notice with it): nothing
            # was written.  Anything but a conflict is not ours to retry.
            if e.sqlstate != "EV001":
                raise
            out("conflict", stream, attempt)
            continue
        out("sent", message_id, stream)
        return new_version
    raise RuntimeError(f"{stream}: still conflicting after {MAX_ATTEMPTS} attempts")


def deposit(amount, owner="someone"):
    def decide(state):
        events = [] if state.opened else [{"type": "Opened", "data": {"owner": owner}}]
        events.append({"type": "Deposited", "data": {"amount": amount}})
        return events, {"kind": "deposited", "amount": amount,
                        "balance": state.balance + amount}
    return decide


def withdraw(amount):
    def decide(state):
        if not state.opened or state.balance < amount:
            raise Refused(f"balance {state.balance} < {amount}")
        return ([{"type": "Withdrawn", "data": {"amount": amount}}],
                {"kind": "withdrawn", "amount": amount,
                 "balance": state.balance - amount})
    return decide


def commands():
    teller = connect("accounts-teller")
    other = connect("accounts-other-teller")
    accounts = ["account-1", "account-2", "account-3"]
    for a in accounts:
        execute(teller, a, deposit(100))
    # Another teller deposits between our read and our append, on the first
    # attempt of each withdrawal: the append conflicts and is retried on
    # the new state.
    for a in accounts:
        def race(attempt, a=a):
            if attempt == 1:
                execute(other, a, deposit(5))
        execute(teller, a, withdraw(30), before_append=race)
    try:
        execute(teller, "account-1", withdraw(1000))
    except Refused as e:
        out("refused", "account-1", e)
    for a in accounts:
        state, version = load(teller, a)
        out("balance", a, state.balance, version)


# -------------------------------------------------------------- outbox work

def deliver(payload, attempts):
    """Stands for a call to another system.  A withdrawal notice fails on
    its first attempt, so that the example shows a nack and a redelivery."""
    if payload["kind"] == "withdrawn" and attempts == 1:
        raise IOError("mail server not answering")


def work():
    conn = connect("accounts-worker")
    while True:
        # In a transaction of its own (autocommit): the lease counts from
        # the claim's commit.
        messages = conn.execute(
            "SELECT id, payload, attempts, receipt FROM event_store.outbox_claim(%s, 10)",
            (NOTICES_TOPIC,)).fetchall()
        if not messages:
            return
        done, failed = [], []
        for id_, payload, attempts, receipt in messages:
            try:
                deliver(payload, attempts)
                done.append((id_, receipt))
            except IOError as e:
                failed.append((id_, receipt, str(e)))
        if done:
            # Receipts go as uuid[] (psycopg sends a list of UUIDs as one).
            acked = conn.execute("SELECT event_store.outbox_ack(%s)",
                                 ([r for _, r in done],)).fetchone()[0]
            if acked != len(done):
                # A lease expired and the message went to another consumer.
                out("ack-lost", len(done) - acked)
            for id_, _ in done:
                out("acked", id_)
        for id_, receipt, error in failed:
            # retry_in 0: again at once, for the example; leave it NULL to
            # get the topic's backoff.
            conn.execute("SELECT event_store.outbox_nack(%s, retry_in => %s, error => %s)",
                         ([receipt], timedelta(0), error))
            out("nacked", id_)


# ---------------------------------------------------------------- consumers

class Subscriber:
    """The read model's consumer: a dedicated connection that LISTENs on
    the subscription's channel and fetches and acknowledges in one
    transaction with its writes."""

    def __init__(self):
        self.conn = None
        self.woken = False

    def connect(self):
        self.conn = connect("accounts-subscriber")
        # psycopg 3.1 hands notifications that arrive during a query to the
        # notify handlers, not to conn.notifies(): note them here.
        self.conn.add_notify_handler(lambda n: setattr(self, "woken", True))
        # The channel is whatever the extension says it is for this member.
        channel = self.conn.execute(
            "SELECT channel FROM event_store.subscription_lag"
            " WHERE subscription = %s AND member = 0", (SUBSCRIPTION,)).fetchone()[0]
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def catch_up(self):
        """Apply every event there is, a batch per transaction.  LISTEN
        comes first (connect), so nothing committed after this read can go
        unannounced."""
        while True:
            applied = []
            with self.conn.transaction():
                events = self.conn.execute(
                    "SELECT position, stream, version, type, data"
                    " FROM event_store.subscription_fetch(%s, %s)",
                    (SUBSCRIPTION, PAGE)).fetchall()
                for position, stream, version, type_, data in events:
                    delta = {"Deposited": 1, "Withdrawn": -1}.get(type_, 0)
                    amount = delta * data["amount"] if delta else 0
                    self.conn.execute(
                        "INSERT INTO public.account_balances AS b VALUES (%s, %s, 1, %s)"
                        " ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance,"
                        " events = b.events + 1, last_position = excluded.last_position",
                        (stream, amount, position))
                    applied.append((position, stream, version))
                if events:
                    self.conn.execute("SELECT event_store.subscription_ack(%s, %s)",
                                      (SUBSCRIPTION, events[-1][0]))
            for position, stream, version in applied:
                out("event", position, stream, version)
            if len(events) < PAGE:
                return

    def wait(self):
        """Block until a notification arrives (or WAIT_SECONDS pass)."""
        if not self.woken:
            ready, _, _ = select.select([self.conn.fileno()], [], [], WAIT_SECONDS)
            if ready:
                self.conn.execute("SELECT 1")   # reads them (or finds the connection lost)
        if self.woken:
            out("woken")
        self.woken = False

    def run(self):
        ready = False
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    if ready:
                        out("reconnecting")
                    self.connect()
                self.catch_up()
                if not ready:
                    out("ready")
                    ready = True
                self.wait()
            except psycopg.OperationalError as e:
                # Lost the connection (server restart, network, terminated
                # backend): connect again, LISTEN again, catch up.
                out("connection-lost", str(e).splitlines()[0] if str(e) else "")
                if self.conn is not None:
                    self.conn.close()
                threading.Event().wait(1)


def relay_listener(ready):
    conn = connect("accounts-relay-listener")
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(RELAY_CHANNEL)))
    ready.set()
    for n in conn.notifies():
        message = json.loads(n.payload)
        h = message["headers"]
        out("relayed", h["position"], h["stream"], h["version"])


def consume():
    relay_ready = threading.Event()
    threading.Thread(target=relay_listener, args=(relay_ready,), daemon=True).start()
    relay_ready.wait()
    Subscriber().run()


if __name__ == "__main__":
    {"commands": commands, "work": work, "consume": consume}[sys.argv[1]]()
