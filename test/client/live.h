/*
 * live.h — helpers for the client tests that need real services: a free
 * loopback port, a nats-server child process, polling with a deadline, and
 * a tiny HTTP GET for nats-server's monitoring endpoint.
 */
#ifndef PSYNC_TEST_LIVE_H
#define PSYNC_TEST_LIVE_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A port the kernel just had free on 127.0.0.1. */
static inline int
live_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t	len = sizeof(a);
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	int			port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
		getsockname(fd, (struct sockaddr *) &a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static inline bool
live_port_open(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
	.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	bool		ok = fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof(a)) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

static inline double
live_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/*
 * A wait never gives up before this many seconds (like the TAP tests'
 * deadline_secs): a loaded machine only makes a live test slower, never
 * fail it.
 */
#define LIVE_DEADLINE_SECS 180

/*
 * Poll cond every 5 ms until it holds or the deadline passed: seconds, or
 * LIVE_DEADLINE_SECS if that is longer.  True when it held.
 */
#define LIVE_WAIT_FOR(cond, seconds) \
	({ \
		double _deadline = live_now() + \
			((seconds) > LIVE_DEADLINE_SECS ? (seconds) : LIVE_DEADLINE_SECS); \
		bool _ok; \
		while (!(_ok = (cond)) && live_now() < _deadline) \
			usleep(5000); \
		_ok; \
	})

static inline const char *
live_nats_server_path(void)
{
	const char *p = getenv("NATS_SERVER");

	if (p != NULL && *p != '\0')
		return p;
	return access("/usr/sbin/nats-server", X_OK) == 0 ? "/usr/sbin/nats-server" : "nats-server";
}

/* Start nats-server on 127.0.0.1:port (monitoring on mport); pid or -1. */
static inline pid_t
live_start_nats(int port, int mport)
{
	char		p[16],
				m[16];
	pid_t		pid;

	snprintf(p, sizeof(p), "%d", port);
	snprintf(m, sizeof(m), "%d", mport);
	pid = fork();
	if (pid == 0)
	{
		int			devnull = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGKILL);	/* no orphan if the test crashes */
		dup2(devnull, 1);
		dup2(devnull, 2);
		execlp(live_nats_server_path(), "nats-server", "-a", "127.0.0.1", "-p", p,
			   "-m", m, NULL);
		_exit(127);
	}
	if (pid < 0 || !LIVE_WAIT_FOR(live_port_open(port) && live_port_open(mport), 10))
		return -1;
	return pid;
}

static inline void
live_stop(pid_t pid)
{
	if (pid > 0)
	{
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* GET path from 127.0.0.1:port into buf; returns body or NULL. */
static inline const char *
live_http_get(int port, const char *path, char *buf, size_t size)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port),
	.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int			fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t		got = 0;
	ssize_t		n;
	char		req[256];
	const char *body;

	if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0)
	{
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
	if (write(fd, req, strlen(req)) < 0)
	{
		close(fd);
		return NULL;
	}
	while (got + 1 < size && (n = read(fd, buf + got, size - got - 1)) > 0)
		got += (size_t) n;
	close(fd);
	buf[got] = '\0';
	body = strstr(buf, "\r\n\r\n");
	return body ? body + 4 : NULL;
}

/* nats-server's total number of client subscriptions (/subsz), or -1. */
static inline long
live_nats_subscriptions(int mport)
{
	char		buf[8192];
	const char *body = live_http_get(mport, "/subsz", buf, sizeof(buf));
	const char *n;

	if (body == NULL || (n = strstr(body, "\"num_subscriptions\":")) == NULL)
		return -1;
	return strtol(n + strlen("\"num_subscriptions\":"), NULL, 10);
}

#endif							/* PSYNC_TEST_LIVE_H */
