/*
 * es_kafka_mock: host librdkafka's mock Kafka cluster for the tests of the
 * Kafka sink.  Writes the bootstrap servers to a file, then reads commands
 * on stdin, one a line:
 *   topic NAME PARTITIONS    create a topic (replication factor 3)
 *   down BROKER / up BROKER  take a broker down or bring it back
 *   errors N                 fail the next N Produce requests (retriable)
 *   leader TOPIC PART BROKER make BROKER the partition's leader
 * Exits at the end of its input.
 *
 *   es_kafka_mock -b brokers -f bootstrap_file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

int
main(int argc, char **argv)
{
	int			brokers = 3;
	const char *file = NULL;
	char		errstr[512];
	char		line[1024];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	int			c;

	while ((c = getopt(argc, argv, "b:f:")) != -1)
	{
		if (c == 'b')
			brokers = atoi(optarg);
		else if (c == 'f')
			file = optarg;
		else
			return 2;
	}
	conf = rd_kafka_conf_new();
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "rd_kafka_new: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (mc == NULL)
	{
		fprintf(stderr, "could not create the mock cluster\n");
		return 1;
	}
	if (file)
	{
		char		tmp[1024];
		FILE	   *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", file);
		f = fopen(tmp, "w");
		fprintf(f, "%s\n", rd_kafka_mock_cluster_bootstraps(mc));
		fclose(f);
		rename(tmp, file);
	}
	else
		printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
	{
		char		name[256];
		int			a,
					b;
		rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

		if (sscanf(line, "topic %255s %d", name, &a) == 2)
			err = rd_kafka_mock_topic_create(mc, name, a, brokers < 3 ? brokers : 3);
		else if (sscanf(line, "down %d", &a) == 1)
			err = rd_kafka_mock_broker_set_down(mc, a);
		else if (sscanf(line, "up %d", &a) == 1)
			err = rd_kafka_mock_broker_set_up(mc, a);
		else if (sscanf(line, "errors %d", &a) == 1)
		{
			for (int i = 0; i < a; i++)
				rd_kafka_mock_push_request_errors(mc, 0 /* Produce */, 1,
												  RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
		}
		else if (sscanf(line, "leader %255s %d %d", name, &a, &b) == 3)
			err = rd_kafka_mock_partition_set_leader(mc, name, a, b);
		printf("%s\n", err ? rd_kafka_err2str(err) : "ok");
		fflush(stdout);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
