/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>

#include "client.h"
#include "clock.h"

/*
 * Events queued while a request waits for its reply. The broker sends events
 * only as membership changes, so a few are normal; this many means the
 * connection is flooded and is failed rather than grown without bound.
 */
#define CLIENT_QUEUE_MAX 4096

struct Client {
        int fd;
        uint64_t serial; /* of the last request sent */
        ClientMsg *head, *tail;
        size_t n_queued;
        int error; /* sticky: the connection is unusable */
        char *broker;      /* HelloReply.broker; NULL before the Hello */
        uint64_t instance; /* HelloReply.instance */
};

ClientMsg *client_msg_free(ClientMsg *m) {
        if (!m)
                return NULL;
        msg_free(m->msg);
        fdmsg_free(m->raw);
        free(m);
        return NULL;
}

const char *client_socket_path(const char *path) {
        const char *e;

        if (path)
                return path;
        e = getenv("SHMEM_BROKER_SOCKET");
        if (e && *e)
                return e;
        return SHMEM_DEFAULT_RUNDIR "/broker.sock";
}

/* -1 (infinite) if @timeout_ms < 0. */
static int64_t deadline_of(int timeout_ms) {
        return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Milliseconds left before @deadline for poll(): -1 infinite, 0 expired. */
static int remaining_ms(int64_t deadline) {
        int64_t left;

        if (deadline < 0)
                return -1;
        left = deadline - now_ms();
        if (left <= 0)
                return 0;
        return left > INT32_MAX ? INT32_MAX : (int) left;
}

/* Waits until @c->fd has @events or @deadline passes: 0 ready, -ETIMEDOUT, -errno. */
static int client_poll(Client *c, short events, int64_t deadline) {
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = events };
                int r = poll(&p, 1, remaining_ms(deadline));

                if (r > 0)
                        return 0;
                if (r == 0)
                        return -ETIMEDOUT;
                if (errno != EINTR)
                        return -errno;
        }
}

static int client_fail(Client *c, int error) {
        if (error == -EPIPE)
                error = -ECONNRESET; /* the same thing seen from the sending side */
        c->error = error;
        return error;
}

int client_new(Client **ret, int fd) {
        Client *c = calloc(1, sizeof(*c));

        if (!c) {
                fd_close(fd);
                return -ENOMEM;
        }
        c->fd = fd;
        *ret = c;
        return 0;
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        while (c->head) {
                ClientMsg *m = c->head;

                c->head = m->next;
                client_msg_free(m);
        }
        fd_close(c->fd);
        free(c->broker);
        free(c);
        return NULL;
}

int client_fd(Client *c) {
        return c->fd;
}

const char *client_broker(Client *c) {
        return c->broker ? c->broker : "";
}

uint64_t client_broker_instance(Client *c) {
        return c->instance;
}

/* Reads one message without blocking: 1 with *ret, 0 if none, or a (sticky) -errno. */
static int client_recv_one(Client *c, ClientMsg **ret) {
        _cleanup_(fdmsg_freep) FdMsg *raw = NULL;
        Message *msg = NULL;
        ClientMsg *m;
        int r;

        if (c->error)
                return c->error;
        r = fdmsg_recv(c->fd, SHMEM_MSG_MAX, SHMEM_MSG_FDS_MAX, &raw);
        if (r == -EAGAIN || r == -EWOULDBLOCK)
                return 0;
        if (r == FDMSG_E_EOF)
                return client_fail(c, -ECONNRESET);
        if (r > 0)
                return client_fail(c, -EPROTO);
        if (r < 0)
                return client_fail(c, r);
        r = msg_decode(&msg, raw);
        if (r < 0)
                return client_fail(c, r == -EBADMSG ? -EPROTO : r);
        m = calloc(1, sizeof(*m));
        if (!m) {
                msg_free(msg);
                return client_fail(c, -ENOMEM);
        }
        m->msg = msg;
        m->raw = TAKE_PTR(raw);
        *ret = m;
        return 1;
}

static int client_queue(Client *c, ClientMsg *m) {
        if (c->n_queued >= CLIENT_QUEUE_MAX) {
                client_msg_free(m);
                return client_fail(c, -ENOBUFS);
        }
        if (c->tail)
                c->tail->next = m;
        else
                c->head = m;
        c->tail = m;
        c->n_queued++;
        return 0;
}

/* Sends @req with the next serial; returns the serial or a negative errno. */
static int64_t client_send(Client *c, Message *req, int64_t deadline) {
        _cleanup_(fdmsg_freep) FdMsg *out = NULL;
        int r;

        if (c->error)
                return c->error;
        req->serial = ++c->serial;
        r = msg_encode(&out, req, NULL, 0);
        if (r < 0)
                return r;
        for (;;) {
                r = fdmsg_send(c->fd, out);
                if (r == 1)
                        return (int64_t) req->serial;
                if (r < 0)
                        return client_fail(c, r);
                r = client_poll(c, POLLOUT, deadline);
                if (r < 0)
                        /* Not sent: a timeout leaves the connection usable. */
                        return r == -ETIMEDOUT ? r : client_fail(c, r);
        }
}

/* Waits for the Reply to @serial; events meanwhile are queued, late replies dropped. */
static int client_wait_reply(Client *c, uint64_t serial, int64_t deadline, ClientMsg **ret) {
        for (;;) {
                ClientMsg *m = NULL;
                int r;

                r = client_recv_one(c, &m);
                if (r < 0)
                        return r;
                if (r == 0) {
                        r = client_poll(c, POLLIN, deadline);
                        if (r == -ETIMEDOUT)
                                /* A late reply is recognised by its serial and dropped. */
                                return r;
                        if (r < 0)
                                return client_fail(c, r);
                        continue;
                }
                if (m->msg->serial == 0) {
                        r = client_queue(c, m);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (m->msg->serial < serial) {
                        /* The reply to a request that timed out. */
                        client_msg_free(m);
                        continue;
                }
                /* The broker answers in order: nothing after @serial can come first. */
                if (m->msg->serial > serial || m->msg->body_case != SHMEM__MESSAGE__BODY_REPLY) {
                        client_msg_free(m);
                        return client_fail(c, -EPROTO);
                }
                *ret = m;
                return 0;
        }
}

int client_call(Client *c, Message *req, int timeout_ms, ClientMsg **ret) {
        int64_t deadline = deadline_of(timeout_ms), serial;

        serial = client_send(c, req, deadline);
        if (serial < 0)
                return (int) serial;
        return client_wait_reply(c, (uint64_t) serial, deadline, ret);
}

int client_next_event(Client *c, ClientMsg **ret) {
        for (;;) {
                ClientMsg *m = NULL;
                int r;

                if (c->head) {
                        m = c->head;
                        c->head = m->next;
                        if (!c->head)
                                c->tail = NULL;
                        c->n_queued--;
                        m->next = NULL;
                        *ret = m;
                        return 1;
                }
                r = client_recv_one(c, &m);
                if (r <= 0)
                        return r;
                if (m->msg->serial == 0) {
                        *ret = m;
                        return 1;
                }
                /* No request is waiting: a late reply. */
                client_msg_free(m);
        }
}

int client_reply_status(const ClientMsg *m, const char **ret_error) {
        const Shmem__Reply *reply = m->msg->reply;

        if (ret_error)
                *ret_error = reply->error ? reply->error : "";
        return (int) reply->status;
}

static void client_hello_message(Message *m, Shmem__Hello *hello, const char *label) {
        hello->version = SHMEM_PROTOCOL_VERSION;
        hello->label = (char *) (label ? label : "");
        m->body_case = SHMEM__MESSAGE__BODY_HELLO;
        m->hello = hello;
}

static int client_hello_check(Client *c, const ClientMsg *reply) {
        const Shmem__HelloReply *h = reply->msg->reply->hello;
        int r = client_reply_status(reply, NULL);

        if (r != SHMEM__STATUS__OK)
                return r > 0 ? r : SHMEM__STATUS__UNKNOWN_FAILURE;
        if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_HELLO || !h)
                return client_fail(c, -EPROTO);
        free(c->broker);
        c->broker = strdup(h->broker ? h->broker : "");
        if (!c->broker)
                return client_fail(c, -ENOMEM);
        c->instance = h->instance;
        return 0;
}

int client_hello(Client *c, const char *label, int timeout_ms) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Hello hello = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int r;

        client_hello_message(&m, &hello, label);
        r = client_call(c, &m, timeout_ms, &reply);
        if (r < 0)
                return r;
        return client_hello_check(c, reply);
}

int client_connect_with(Client **ret, const char *path, const char *label, int timeout_ms, Message *first,
                        ClientMsg **ret_first) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(client_freep) Client *c = NULL;
        int64_t deadline = deadline_of(timeout_ms);
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        r = client_new(&c, fd);
        if (r < 0)
                return r;
        if (timeout_ms >= 0) {
                /* A blocking connect() to a Unix socket waits while the listener's
                 * backlog is full; SO_SNDTIMEO bounds that wait. */
                struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

                if (tv.tv_sec == 0 && tv.tv_usec == 0)
                        tv.tv_usec = 1000;
                if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                        return -errno;
        }
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return errno == EAGAIN || errno == EINPROGRESS ? -ETIMEDOUT : -errno;
        /* From here on every wait is a poll() against the deadline. */
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
                return -errno;
        if (!first) {
                r = client_hello(c, label, remaining_ms(deadline));
                if (r != 0)
                        return r;
        } else {
                /* Hello and the first request in one go: one round trip less
                 * (attach latency, docs/BENCHMARKS.md). */
                _cleanup_(client_msg_freep) ClientMsg *hello_reply = NULL;
                Shmem__Hello hello = SHMEM__HELLO__INIT;
                Message hm = SHMEM__MESSAGE__INIT;
                int64_t hello_serial, first_serial;

                client_hello_message(&hm, &hello, label);
                hello_serial = client_send(c, &hm, deadline);
                if (hello_serial < 0)
                        return (int) hello_serial;
                first_serial = client_send(c, first, deadline);
                if (first_serial < 0)
                        return (int) first_serial;
                r = client_wait_reply(c, (uint64_t) hello_serial, deadline, &hello_reply);
                if (r < 0)
                        return r;
                r = client_hello_check(c, hello_reply);
                if (r != 0)
                        return r;
                r = client_wait_reply(c, (uint64_t) first_serial, deadline, ret_first);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

int client_connect(Client **ret, const char *path, const char *label, int timeout_ms) {
        return client_connect_with(ret, path, label, timeout_ms, NULL, NULL);
}
