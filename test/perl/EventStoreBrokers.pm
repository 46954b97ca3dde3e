# Throwaway message brokers for the tests of the relay's sinks: a RabbitMQ
# node (Debian's rabbitmq-server) with its own ports, node name and data
# directory, listening on the loopback only; and librdkafka's mock Kafka
# cluster, hosted by tools/es_kafka_mock.
package EventStoreBrokers;

use strict;
use warnings;
use Exporter 'import';
use FindBin;
use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(rabbitmq_start rabbitmq_stop rabbitmq_ctl amqp_consumer_start
  amqp_consumer_lines kafka_mock_start kafka_mock_command kafka_consume);

my $tools = "$FindBin::RealBin/../../tools";

# A free TCP port on the loopback (and the two above it for Erlang's
# distribution and port mapper).
sub free_port_block
{
	foreach (1 .. 50)
	{
		my $port = 20000 + int(rand(20000));
		my $ok = 1;
		foreach my $p ($port, $port + 1, $port + 2)
		{
			my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
				Proto => 'tcp', ReuseAddr => 1, Listen => 1);
			if ($sock) { close($sock); } else { $ok = 0; }
		}
		return $port if $ok;
	}
	die "no free ports";
}

sub rabbitmq_env
{
	my ($rmq) = @_;
	my $d = $rmq->{dir};
	return (
		HOME => $d,
		RABBITMQ_NODENAME => $rmq->{node},
		RABBITMQ_NODE_IP_ADDRESS => '127.0.0.1',
		RABBITMQ_NODE_PORT => $rmq->{port},
		RABBITMQ_DIST_PORT => $rmq->{port} + 1,
		ERL_EPMD_PORT => $rmq->{port} + 2,
		ERL_EPMD_ADDRESS => '127.0.0.1',
		RABBITMQ_MNESIA_BASE => "$d/mnesia",
		RABBITMQ_LOG_BASE => "$d/log",
		RABBITMQ_LOGS => "$d/log/node.log",
		RABBITMQ_PID_FILE => "$d/pid",
		RABBITMQ_ENABLED_PLUGINS_FILE => "$d/enabled_plugins",
		RABBITMQ_CONFIG_FILE => "$d/rabbitmq",
		RABBITMQ_ADVANCED_CONFIG_FILE => "$d/advanced.config",
		RABBITMQ_CONF_ENV_FILE => "$d/rabbitmq-env.conf",
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS => '-kernel inet_dist_use_interface {127,0,0,1}',
		RABBITMQ_HOME => '/usr/lib/rabbitmq');
}

# Start a RabbitMQ node (or start it again after rabbitmq_stop), wait until
# it accepts AMQP connections.  Returns its handle: {port, url, ...}.
sub rabbitmq_start
{
	my ($rmq) = @_;
	if (!$rmq)
	{
		my $port = free_port_block();
		my $dir = PostgreSQL::Test::Utils::tempdir('rabbitmq');
		$rmq = { port => $port, dir => $dir, node => "es_test_$port\@localhost",
			url => "amqp://guest:guest\@127.0.0.1:$port/%2f" };
		append_to_file("$dir/enabled_plugins", "[].\n");
		append_to_file("$dir/rabbitmq.conf",
			"listeners.tcp.1 = 127.0.0.1:$port\nloopback_users = none\n"
			  . "log.console = false\nlog.file.level = warning\n");
		append_to_file("$dir/rabbitmq-env.conf", "");
	}
	local %ENV = (%ENV, rabbitmq_env($rmq));
	$rmq->{handle} = IPC::Run::start([ '/usr/lib/rabbitmq/bin/rabbitmq-server' ],
		'>', "$rmq->{dir}/server.out", '2>&1');
	my $deadline = time + 120;
	while (time < $deadline)
	{
		my $rc = system("$tools/es_amqp_consume -P $rmq->{port} -p >/dev/null 2>&1");
		return $rmq if $rc == 0;
		usleep(200_000);
	}
	die "RabbitMQ did not start: " . slurp_file("$rmq->{dir}/server.out");
}

sub rabbitmq_ctl
{
	my ($rmq, @args) = @_;
	local %ENV = (%ENV, rabbitmq_env($rmq));
	my ($out, $err);
	IPC::Run::run([ '/usr/lib/rabbitmq/bin/rabbitmqctl', '-n', $rmq->{node}, @args ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return $out;
}

# Stop the node (its data stays for a restart).
sub rabbitmq_stop
{
	my ($rmq, $final) = @_;
	rabbitmq_ctl($rmq, 'stop');
	eval { $rmq->{handle}->finish; };
	if ($final)
	{
		local %ENV = (%ENV, rabbitmq_env($rmq));
		system('epmd', '-port', $rmq->{port} + 2, '-kill');
	}
}

# A consumer of queue $queue (declared durable), printing to a file.
sub amqp_consumer_start
{
	my ($rmq, $queue) = @_;
	my $base = "$rmq->{dir}/consumer_$queue";
	unlink "$base.ready";
	my $h = IPC::Run::start(
		[ "$tools/es_amqp_consume", '-P', $rmq->{port}, '-q', $queue, '-r', "$base.ready" ],
		'>', "$base.out", '2>', "$base.err");
	foreach (1 .. 600)
	{
		last if -e "$base.ready";
		usleep(50_000);
	}
	die "consumer did not start" unless -e "$base.ready";
	return { handle => $h, out => "$base.out" };
}

# The consumed messages: [message_id, routing key, redelivered, headers, body].
sub amqp_consumer_lines
{
	my ($c) = @_;
	return () unless -e $c->{out};
	my $text = slurp_file($c->{out});
	$text =~ s/[^\n]*\z//;		# a line being written
	return map { [ split /\t/, $_, 5 ] } grep { length } split /\n/, $text;
}

# The mock Kafka cluster: {bootstrap, handle, in, out}.
sub kafka_mock_start
{
	my ($brokers) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('kafka');
	my $k = { in => '', out => '' };
	$k->{handle} = IPC::Run::start(
		[ "$tools/es_kafka_mock", '-b', $brokers, '-f', "$dir/bootstrap" ],
		'<', \$k->{in}, '>', \$k->{out}, '2>', "$dir/err");
	foreach (1 .. 600)
	{
		last if -e "$dir/bootstrap";
		usleep(50_000);
	}
	die "mock cluster did not start" unless -e "$dir/bootstrap";
	chomp($k->{bootstrap} = slurp_file("$dir/bootstrap"));
	return $k;
}

sub kafka_mock_command
{
	my ($k, $command) = @_;
	$k->{out} = '';
	$k->{in} .= "$command\n";
	$k->{handle}->pump until $k->{out} =~ /\n/;
	chomp(my $reply = $k->{out});
	return $reply;
}

# Every message of a topic so far, with kcat: [key, headers, value].
sub kafka_consume
{
	my ($k, $topic) = @_;
	my ($out, $err);
	IPC::Run::run(
		[ 'kcat', '-C', '-b', $k->{bootstrap}, '-t', $topic, '-o', 'beginning', '-e', '-q',
		  '-f', '%k\t%h\t%s\n' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return map { [ split /\t/, $_, 3 ] } grep { length } split /\n/, $out;
}

1;
