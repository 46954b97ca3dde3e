/*
 * accounts.c: a small bank-account service on event_store, with libpq.
 *
 * The same service as examples/python/accounts.py (read its header for the
 * whole story): streams account-1, account-2, ... of events Opened,
 * Deposited and Withdrawn, and three modes:
 *
 *   commands  read a stream, decide, append with the expected version and
 *             send an outbox notice in the same transaction; on EV001 roll
 *             back, read again and retry.  Print the rebuilt balances.
 *   work      deliver the notices: outbox_claim, then outbox_ack, or
 *             outbox_nack when a delivery fails.
 *   consume   keep the read model account_balances from the subscription
 *             account_balances, woken by LISTEN, checkpointing in the read
 *             model's transaction, reconnecting and catching up when the
 *             connection is lost; print what the relay publishes on the
 *             NOTIFY channel account_events.  Runs until killed.
 *
 * Connection settings come from the environment (PGHOST, PGPORT,
 * PGDATABASE, PGUSER, ...).  examples/setup.sql creates what it needs.
 * Every line printed is one fact, for the test that runs it.
 *
 * Build: make -C examples/c      Usage: accounts commands|work|consume
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#define SUBSCRIPTION	"account_balances"
#define NOTICES_TOPIC	"account_notices"
#define RELAY_CHANNEL	"account_events"	/* the notify: sink of setup.sql */
static int	PAGE = 500;			/* events per read_stream / fetch (ACCOUNTS_PAGE) */
#define MAX_ATTEMPTS	10		/* of a command that keeps conflicting */
#define WAIT_SECONDS	60		/* a consumer reads anyway after this long */

static void
out(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void
die(PGconn *conn, const char *what)
{
	fprintf(stderr, "%s: %s", what, conn ? PQerrorMessage(conn) : "\n");
	exit(1);
}

static PGconn *
connect_as(const char *name)
{
	const char *keys[] = {"application_name", NULL};
	const char *values[] = {name, NULL};
	PGconn	   *conn = PQconnectdbParams(keys, values, 0);

	if (PQstatus(conn) != CONNECTION_OK)
		die(conn, "connect");
	return conn;
}

/*
 * Run a statement with text parameters.  Returns the result, or NULL after
 * an error (the message is in *sqlstate_out's result, freed here); exits on
 * an error the caller did not ask to see.
 */
static PGresult *
run(PGconn *conn, const char *sql, int nparams, const char *const *params,
	char *sqlstate_out)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	if (sqlstate_out)
	{
		const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		strncpy(sqlstate_out, s ? s : "", 6);
		sqlstate_out[5] = '\0';
		PQclear(res);
		return NULL;
	}
	fprintf(stderr, "%s\n", sql);
	die(conn, "statement failed");
	return NULL;
}

static void
run_simple(PGconn *conn, const char *sql)
{
	PQclear(run(conn, sql, 0, NULL, NULL));
}

/* ------------------------------------------------------------- commands */

typedef struct Account
{
	int			opened;
	long long	balance;
	long long	version;		/* -1: no stream yet */
} Account;

/* The account's state, from its stream, a page at a time. */
static Account
load(PGconn *conn, const char *stream)
{
	Account		a = {0, 0, -1};

	for (;;)
	{
		char		from[32],
					page[32];
		const char *params[3] = {stream, from, page};
		PGresult   *res;
		int			n;

		snprintf(from, sizeof(from), "%lld", a.version + 1);
		snprintf(page, sizeof(page), "%d", PAGE);
		/* The server parses the JSON: amount is NULL for an Opened event. */
		res = run(conn,
				  "SELECT version, type, (data->>'amount')::bigint"
				  " FROM event_store.read_stream($1, $2, $3)", 3, params, NULL);
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
		{
			const char *type = PQgetvalue(res, i, 1);
			long long	amount = PQgetisnull(res, i, 2) ? 0 : strtoll(PQgetvalue(res, i, 2), NULL, 10);

			a.version = strtoll(PQgetvalue(res, i, 0), NULL, 10);
			if (strcmp(type, "Opened") == 0)
				a.opened = 1;
			else if (strcmp(type, "Deposited") == 0)
				a.balance += amount;
			else if (strcmp(type, "Withdrawn") == 0)
				a.balance -= amount;
		}
		PQclear(res);
		if (n < PAGE)
			return a;
	}
}

typedef enum Kind
{
	DEPOSIT, WITHDRAW
} Kind;

typedef void (*RaceHook) (int attempt, const char *stream);

/*
 * Read, decide, append with the expected version and send the notice in one
 * transaction; on EV001 roll back, read again, decide anew.  Returns 0 if
 * the decision refused the command.
 */
static int
execute(PGconn *conn, const char *stream, Kind kind, long long amount,
		RaceHook before_append)
{
	for (int attempt = 1; attempt <= MAX_ATTEMPTS; attempt++)
	{
		Account		a = load(conn, stream);
		char		events[256],
					notice[256],
					expected[32],
					state[6];
		const char *append_params[3] = {stream, events, expected};
		const char *send_params[3] = {NOTICES_TOPIC, notice, stream};
		PGresult   *res;
		char	   *message_id;

		if (kind == DEPOSIT)
		{
			snprintf(events, sizeof(events),
					 "[%s{\"type\": \"Deposited\", \"data\": {\"amount\": %lld}}]",
					 a.opened ? "" : "{\"type\": \"Opened\", \"data\": {\"owner\": \"someone\"}}, ",
					 amount);
			snprintf(notice, sizeof(notice),
					 "{\"kind\": \"deposited\", \"amount\": %lld, \"balance\": %lld}",
					 amount, a.balance + amount);
		}
		else
		{
			if (!a.opened || a.balance < amount)
			{
				out("refused %s balance %lld < %lld", stream, a.balance, amount);
				return 0;
			}
			snprintf(events, sizeof(events),
					 "[{\"type\": \"Withdrawn\", \"data\": {\"amount\": %lld}}]", amount);
			snprintf(notice, sizeof(notice),
					 "{\"kind\": \"withdrawn\", \"amount\": %lld, \"balance\": %lld}",
					 amount, a.balance - amount);
		}
		/* -1: the stream must not exist yet. */
		snprintf(expected, sizeof(expected), "%lld", a.version);

		if (before_append)
			before_append(attempt, stream);

		run_simple(conn, "BEGIN");
		res = run(conn, "SELECT event_store.append($1, $2::jsonb, $3)", 3,
				  append_params, state);
		if (res == NULL)
		{
			/* The transaction is aborted: roll it back, whatever happened. */
			run_simple(conn, "ROLLBACK");
			if (strcmp(state, "EV001") != 0)
				die(conn, "append");
			out("conflict %s %d", stream, attempt);
			continue;
		}
		PQclear(res);
		res = run(conn, "SELECT event_store.outbox_send($1, $2::jsonb, key => $3)", 3,
				  send_params, NULL);
		message_id = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		run_simple(conn, "COMMIT");
		out("sent %s %s", message_id, stream);
		free(message_id);
		return 1;
	}
	fprintf(stderr, "%s: still conflicting after %d attempts\n", stream, MAX_ATTEMPTS);
	exit(1);
}

static PGconn *other_teller;

/* Another teller deposits between our read and our append. */
static void
race(int attempt, const char *stream)
{
	if (attempt == 1)
		execute(other_teller, stream, DEPOSIT, 5, NULL);
}

static void
commands(void)
{
	PGconn	   *teller = connect_as("accounts-teller");
	const char *accounts[] = {"account-1", "account-2", "account-3"};

	other_teller = connect_as("accounts-other-teller");
	for (int i = 0; i < 3; i++)
		execute(teller, accounts[i], DEPOSIT, 100, NULL);
	for (int i = 0; i < 3; i++)
		execute(teller, accounts[i], WITHDRAW, 30, race);
	execute(teller, "account-1", WITHDRAW, 1000, NULL);
	for (int i = 0; i < 3; i++)
	{
		Account		a = load(teller, accounts[i]);

		out("balance %s %lld %lld", accounts[i], a.balance, a.version);
	}
	PQfinish(teller);
	PQfinish(other_teller);
}

/* ---------------------------------------------------------- outbox work */

static void
work(void)
{
	PGconn	   *conn = connect_as("accounts-worker");

	for (;;)
	{
		const char *claim_params[1] = {NOTICES_TOPIC};
		PGresult   *res;
		int			n;
		char		done[64 * 40] = "{",
					failed[64 * 40] = "{";
		int			ndone = 0,
					nfailed = 0;

		/* In a transaction of its own: the lease counts from its commit. */
		res = run(conn,
				  "SELECT id, payload->>'kind', attempts, receipt"
				  " FROM event_store.outbox_claim($1, 10)", 1, claim_params, NULL);
		n = PQntuples(res);
		if (n == 0)
		{
			PQclear(res);
			break;
		}
		for (int i = 0; i < n; i++)
		{
			/* A withdrawal notice fails on its first attempt. */
			int			fails = strcmp(PQgetvalue(res, i, 1), "withdrawn") == 0 &&
				atoi(PQgetvalue(res, i, 2)) == 1;
			char	   *list = fails ? failed : done;

			if (fails ? nfailed++ : ndone++)
				strcat(list, ",");
			strcat(list, PQgetvalue(res, i, 3));
		}
		strcat(done, "}");
		strcat(failed, "}");
		if (ndone > 0)
		{
			/* Receipts as an array literal, typed uuid[]. */
			const char *params[1] = {done};
			PGresult   *ack = run(conn, "SELECT event_store.outbox_ack($1::uuid[])",
								  1, params, NULL);

			if (atoi(PQgetvalue(ack, 0, 0)) != ndone)
				out("ack-lost %d", ndone - atoi(PQgetvalue(ack, 0, 0)));
			PQclear(ack);
		}
		if (nfailed > 0)
		{
			/* retry_in 0: again at once, for the example (NULL: backoff). */
			const char *params[2] = {failed, "mail server not answering"};

			PQclear(run(conn, "SELECT event_store.outbox_nack($1::uuid[], retry_in => '0', error => $2)",
						2, params, NULL));
		}
		for (int i = 0; i < n; i++)
		{
			int			fails = strcmp(PQgetvalue(res, i, 1), "withdrawn") == 0 &&
				atoi(PQgetvalue(res, i, 2)) == 1;

			out("%s %s", fails ? "nacked" : "acked", PQgetvalue(res, i, 0));
		}
		PQclear(res);
	}
	PQfinish(conn);
}

/* ------------------------------------------------------------ consumers */

static PGconn *
listen_on(const char *name, const char *channel)
{
	PGconn	   *conn = connect_as(name);
	char	   *ident = PQescapeIdentifier(conn, channel, strlen(channel));
	char		sql[256];

	snprintf(sql, sizeof(sql), "LISTEN %s", ident);
	PQfreemem(ident);
	run_simple(conn, sql);
	return conn;
}

/* The subscriber's connection, listening on its subscription's channel. */
static PGconn *
subscriber_connect(void)
{
	PGconn	   *conn = connect_as("accounts-subscriber");
	const char *params[1] = {SUBSCRIPTION};
	PGresult   *res;
	char	   *channel;

	/* The channel is whatever the extension says it is for this member. */
	res = run(conn, "SELECT channel FROM event_store.subscription_lag"
			  " WHERE subscription = $1 AND member = 0", 1, params, NULL);
	channel = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
	conn = listen_on("accounts-subscriber", channel);
	free(channel);
	return conn;
}

/*
 * Apply every event there is, a batch per transaction, with the checkpoint.
 * Returns 0 if the connection was lost.
 */
static int
catch_up(PGconn *conn)
{
	for (;;)
	{
		char		page[32];
		const char *fetch_params[2] = {SUBSCRIPTION, page};
		PGresult   *res;
		int			n;
		char		state[6];

		snprintf(page, sizeof(page), "%d", PAGE);
		res = run(conn, "BEGIN", 0, NULL, state);
		if (res == NULL)
			return 0;
		PQclear(res);
		res = run(conn,
				  "SELECT position, stream, version,"
				  " CASE type WHEN 'Deposited' THEN 1 WHEN 'Withdrawn' THEN -1 ELSE 0 END"
				  " * coalesce((data->>'amount')::bigint, 0)"
				  " FROM event_store.subscription_fetch($1, $2)", 2, fetch_params, state);
		if (res == NULL)
			return 0;
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
		{
			const char *params[3] = {PQgetvalue(res, i, 1), PQgetvalue(res, i, 3),
			PQgetvalue(res, i, 0)};
			PGresult   *r = run(conn,
								"INSERT INTO public.account_balances AS b VALUES ($1, $2, 1, $3)"
								" ON CONFLICT (account) DO UPDATE SET balance = b.balance + excluded.balance,"
								" events = b.events + 1, last_position = excluded.last_position",
								3, params, state);

			if (r == NULL)
				return 0;
			PQclear(r);
		}
		if (n > 0)
		{
			const char *params[2] = {SUBSCRIPTION, PQgetvalue(res, n - 1, 0)};
			PGresult   *r = run(conn, "SELECT event_store.subscription_ack($1, $2)",
								2, params, state);

			if (r == NULL)
				return 0;
			PQclear(r);
		}
		{
			PGresult   *r = run(conn, "COMMIT", 0, NULL, state);

			if (r == NULL)
				return 0;
			PQclear(r);
		}
		for (int i = 0; i < n; i++)
			out("event %s %s %s", PQgetvalue(res, i, 0), PQgetvalue(res, i, 1),
				PQgetvalue(res, i, 2));
		PQclear(res);
		if (n < PAGE)
			return 1;
	}
}

/* A relayed message: the server parses its JSON for us. */
static void
print_relayed(PGconn *relay, const char *payload)
{
	const char *params[1] = {payload};
	PGresult   *res = run(relay,
						  "SELECT h->>'position', h->>'stream', h->>'version'"
						  " FROM (SELECT $1::jsonb->'headers' AS h) AS m", 1, params, NULL);

	out("relayed %s %s %s", PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
		PQgetvalue(res, 0, 2));
	PQclear(res);
}

static void
consume(void)
{
	PGconn	   *relay = listen_on("accounts-relay-listener", RELAY_CHANNEL);
	PGconn	   *sub = NULL;
	int			ready = 0;

	for (;;)
	{
		struct pollfd fds[2];
		int			woken = 0;
		PGnotify   *n;

		if (sub == NULL)
		{
			if (ready)
				out("reconnecting");
			sub = subscriber_connect();
		}
		/* LISTEN came first, so nothing committed after this read goes unannounced. */
		if (!catch_up(sub))
		{
			if (PQstatus(sub) != CONNECTION_BAD)
				die(sub, "subscriber");
			/* Lost the connection: connect again, LISTEN again, catch up. */
			out("connection-lost");
			PQfinish(sub);
			sub = NULL;
			sleep(1);
			continue;
		}
		if (!ready)
		{
			out("ready");
			ready = 1;
		}

		/*
		 * Wait for a notification on either connection.  libpq keeps those
		 * that arrived during a query in its queue: look there before
		 * waiting on the sockets.
		 */
		for (;;)
		{
			while ((n = PQnotifies(relay)) != NULL)
			{
				print_relayed(relay, n->extra);
				PQfreemem(n);
			}
			while ((n = PQnotifies(sub)) != NULL)
			{
				woken = 1;
				PQfreemem(n);
			}
			if (woken)
				break;
			fds[0].fd = PQsocket(sub);
			fds[0].events = POLLIN;
			fds[1].fd = PQsocket(relay);
			fds[1].events = POLLIN;
			if (poll(fds, 2, WAIT_SECONDS * 1000) < 0 && errno != EINTR)
				die(NULL, "poll");
			if (!PQconsumeInput(relay))
				die(relay, "relay listener");
			if (!PQconsumeInput(sub))
				break;			/* lost: the next catch_up notices */
			if (fds[0].revents == 0 && fds[1].revents == 0)
				break;			/* nothing for WAIT_SECONDS: read anyway */
		}
		if (woken)
			out("woken");
	}
}

int
main(int argc, char **argv)
{
	if (getenv("ACCOUNTS_PAGE"))
		PAGE = atoi(getenv("ACCOUNTS_PAGE"));
	if (argc == 2 && strcmp(argv[1], "commands") == 0)
		commands();
	else if (argc == 2 && strcmp(argv[1], "work") == 0)
		work();
	else if (argc == 2 && strcmp(argv[1], "consume") == 0)
		consume();
	else
	{
		fprintf(stderr, "usage: %s commands|work|consume\n", argv[0]);
		return 2;
	}
	return 0;
}
