/*
 * es_amqp_consume: consume a RabbitMQ queue and print one line per message:
 *   message_id <TAB> routing key <TAB> redelivered <TAB> headers <TAB> body
 * Used by the tests of the AMQP sink.  Reconnects while the broker is
 * down; acks each message after printing it.
 *
 *   es_amqp_consume -H host -P port -q queue [-r ready_file]
 *   es_amqp_consume -H host -P port -p     exit 0 once the broker answers
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/time.h>
#include <amqp.h>
#include <amqp_tcp_socket.h>

static void
print_headers(amqp_table_t *t)
{
	for (int i = 0; i < t->num_entries; i++)
	{
		amqp_table_entry_t *e = &t->entries[i];

		printf("%s%.*s=", i ? "," : "", (int) e->key.len, (char *) e->key.bytes);
		if (e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES)
			printf("%.*s", (int) e->value.value.bytes.len, (char *) e->value.value.bytes.bytes);
	}
}

static int
consume(const char *host, int port, const char *queue, const char *ready)
{
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	amqp_rpc_reply_t r;

	if (amqp_socket_open(sock, host, port) != AMQP_STATUS_OK)
		goto fail;
	r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	amqp_channel_open(conn, 1);
	if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	amqp_queue_declare(conn, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
	if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	amqp_basic_qos(conn, 1, 0, 1000, 0);
	amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0,
					   amqp_empty_table);
	if (amqp_get_rpc_reply(conn).reply_type != AMQP_RESPONSE_NORMAL)
		goto fail;
	if (ready)
	{
		FILE	   *f = fopen(ready, "w");

		if (f)
			fclose(f);
	}
	for (;;)
	{
		amqp_envelope_t env;

		amqp_maybe_release_buffers(conn);
		r = amqp_consume_message(conn, &env, NULL, 0);
		if (r.reply_type != AMQP_RESPONSE_NORMAL)
			goto fail;
		printf("%.*s\t%.*s\t%d\t",
			   (int) env.message.properties.message_id.len,
			   (char *) env.message.properties.message_id.bytes,
			   (int) env.routing_key.len, (char *) env.routing_key.bytes,
			   env.redelivered);
		if (env.message.properties._flags & AMQP_BASIC_HEADERS_FLAG)
			print_headers(&env.message.properties.headers);
		printf("\t%.*s\n", (int) env.message.body.len, (char *) env.message.body.bytes);
		fflush(stdout);
		amqp_basic_ack(conn, 1, env.delivery_tag, 0);
		amqp_destroy_envelope(&env);
	}
fail:
	amqp_destroy_connection(conn);
	return 1;
}

int
main(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	const char *queue = NULL;
	const char *ready = NULL;
	int			port = 5672;
	int			c;
	int			probe = 0;

	while ((c = getopt(argc, argv, "H:P:q:r:p")) != -1)
	{
		switch (c)
		{
			case 'H':
				host = optarg;
				break;
			case 'P':
				port = atoi(optarg);
				break;
			case 'q':
				queue = optarg;
				break;
			case 'r':
				ready = optarg;
				break;
			case 'p':
				probe = 1;
				break;
			default:
				return 2;
		}
	}
	if (probe)
	{
		amqp_connection_state_t conn = amqp_new_connection();
		amqp_socket_t *sock = amqp_tcp_socket_new(conn);
		amqp_rpc_reply_t r;

		if (amqp_socket_open(sock, host, port) != AMQP_STATUS_OK)
			return 1;
		r = amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest");
		return r.reply_type == AMQP_RESPONSE_NORMAL ? 0 : 1;
	}
	if (queue == NULL)
		return 2;
	/* Until killed: a broker that went away is waited for. */
	for (;;)
	{
		consume(host, port, queue, ready);
		usleep(200000);
	}
}
