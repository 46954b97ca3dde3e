-- What an administrator sets up once, in the service's database, for the
-- example services of examples/ (the Python, Node.js and C versions do the
-- same thing and share this setup).  Run it as a superuser or a member of
-- event_store_admin, after CREATE EXTENSION event_store:
--
--   psql -d bank -f examples/setup.sql
--
-- The services themselves log in as example_service, a plain writer.

CREATE ROLE example_service LOGIN;
GRANT event_store_writer TO example_service;

-- The read model the subscription consumer keeps: one row per account,
-- written in the same transaction as the subscription's checkpoint.
CREATE TABLE public.account_balances (
	account		  text PRIMARY KEY,
	balance		  bigint NOT NULL,
	events		  integer NOT NULL,
	last_position bigint NOT NULL
);
GRANT SELECT, INSERT, UPDATE ON public.account_balances TO example_service;

-- The subscription the consumer follows: every event of category
-- "account" (streams account-1, account-2, ...).
SELECT event_store.subscription_create('account_balances', 'account',
									   if_not_exists => true);

-- Every account event is also enqueued to topic account_events, which the
-- relay workers publish on the NOTIFY channel account_events.
SELECT event_store.route_events('account_events', 'account');
SELECT event_store.relay_route('account_events', 'notify:account_events');

-- Topic account_notices is sent by the services in their command
-- transactions and consumed with outbox_claim / outbox_ack (no relay).
SELECT event_store.outbox_configure('account_notices', max_attempts => 5,
									backoff_base => NULL, backoff_max => NULL,
									lease => '30 seconds');
