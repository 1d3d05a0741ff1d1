/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "clock.h"
#include "macro.h"
#include "qmp.h"

/* Nesting of a reply: query-pci's bridges are three levels each. */
#define QMP_DEPTH_MAX 64
#define QMP_READ_CHUNK 4096

struct Qmp {
        int fd;
        int64_t deadline_ns;
        struct json_tokener *tok;
        char *buf; /* bytes read and not yet parsed: the start of the next message */
        size_t len, size;
        int64_t next_id;
        QmpEventFn event_fn;
        void *event_userdata;
};

/* Waits until @fd has @events, or the deadline passed (-ETIMEDOUT). */
static int wait_fd(Qmp *q, short events) {
        for (;;) {
                struct pollfd p = { .fd = q->fd, .events = events };
                int64_t left = q->deadline_ns - now_ns();
                int r;

                if (left <= 0)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int) ((left + 999999) / 1000000));
                if (r > 0)
                        return 0; /* readable, writable, or an error the next call reports */
                if (r < 0 && errno != EINTR)
                        return -errno;
        }
}

/* After a send() or recv() that failed with errno: 0 once it may be tried again, or the error. */
static int wait_again(Qmp *q, short events) {
        if (errno == EPIPE)
                return -ECONNRESET;
        if (errno != EAGAIN && errno != EINTR)
                return -errno;
        return wait_fd(q, events);
}

static int send_all(Qmp *q, const char *data, size_t n) {
        while (n > 0) {
                ssize_t k = send(q->fd, data, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                int r;

                if (k < 0) {
                        r = wait_again(q, POLLOUT);
                        if (r < 0)
                                return r;
                        continue;
                }
                data += k;
                n -= (size_t) k;
        }
        return 0;
}

/* The message that is the line @s of @n bytes (newline and CR taken off): a JSON object. */
static int parse_line(Qmp *q, const char *s, size_t n, struct json_object **ret) {
        struct json_object *o;

        json_tokener_reset(q->tok);
        o = json_tokener_parse_ex(q->tok, s, (int) n);
        if (!o || json_tokener_get_error(q->tok) != json_tokener_success ||
            json_tokener_get_parse_end(q->tok) != n || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EPROTO;
        }
        *ret = o;
        return 0;
}

/* The next message, reading as needed. */
static int read_message(Qmp *q, struct json_object **ret) {
        for (;;) {
                char *nl = q->len > 0 ? memchr(q->buf, '\n', q->len) : NULL; /* buf is NULL at first */
                ssize_t k;
                int r;

                if (nl) {
                        size_t line = (size_t) (nl - q->buf), n = line;

                        while (n > 0 && strchr(" \t\r", q->buf[n - 1]))
                                n--;
                        r = n == 0 ? 1 : parse_line(q, q->buf, n, ret);
                        memmove(q->buf, nl + 1, q->len - line - 1);
                        q->len -= line + 1;
                        if (r <= 0)
                                return r;
                        continue; /* an empty line */
                }
                if (q->len >= QMP_MESSAGE_MAX)
                        return -EMSGSIZE;
                if (q->size - q->len < QMP_READ_CHUNK) {
                        size_t size = q->size ? 2 * q->size : 2 * QMP_READ_CHUNK;
                        char *b;

                        if (size > QMP_MESSAGE_MAX + QMP_READ_CHUNK)
                                size = QMP_MESSAGE_MAX + QMP_READ_CHUNK;
                        b = realloc(q->buf, size);
                        if (!b)
                                return -ENOMEM;
                        q->buf = b;
                        q->size = size;
                }
                k = recv(q->fd, q->buf + q->len, q->size - q->len, MSG_DONTWAIT);
                if (k == 0)
                        return -ECONNRESET;
                if (k < 0) {
                        r = wait_again(q, POLLIN);
                        if (r < 0)
                                return r;
                        continue;
                }
                q->len += (size_t) k;
        }
}

static struct json_object *member(struct json_object *o, const char *key) {
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* Passes @msg on if it is an event; whether it was one. */
static bool dispatch_event(Qmp *q, struct json_object *msg) {
        struct json_object *event = member(msg, "event");

        if (!event)
                return false;
        if (q->event_fn && json_object_is_type(event, json_type_string))
                q->event_fn(json_object_get_string(event), member(msg, "data"), q->event_userdata);
        return true;
}

int qmp_new(Qmp **ret, int fd, int64_t deadline_ns) {
        struct json_object *greeting = NULL, *qmp;
        Qmp *q;
        int r;

        q = calloc(1, sizeof(*q));
        if (!q) {
                fd_close(fd);
                return -ENOMEM;
        }
        q->fd = fd;
        q->deadline_ns = deadline_ns;
        q->tok = json_tokener_new_ex(QMP_DEPTH_MAX);
        if (!q->tok) {
                qmp_free(q);
                return -ENOMEM;
        }
        json_tokener_set_flags(q->tok, JSON_TOKENER_STRICT);
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
                r = -errno;
                qmp_free(q);
                return r;
        }
        r = read_message(q, &greeting);
        if (r == 0) {
                qmp = member(greeting, "QMP");
                r = qmp && json_object_is_type(qmp, json_type_object) ? 0 : -EPROTO;
                json_object_put(greeting);
        }
        if (r < 0) {
                qmp_free(q);
                return r;
        }
        *ret = q;
        return 0;
}

int qmp_connect(Qmp **ret, const char *path, int64_t deadline_ns) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket whose backlog is full says EAGAIN and must be asked again. */
        while (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (now_ns() >= deadline_ns)
                        return -ETIMEDOUT;
                sleep_ms(10);
        }
        return qmp_new(ret, TAKE_FD(fd), deadline_ns);
}

Qmp *qmp_free(Qmp *q) {
        if (!q)
                return NULL;
        fd_close(q->fd);
        if (q->tok)
                json_tokener_free(q->tok);
        free(q->buf);
        return mfree(q);
}

void qmp_on_event(Qmp *q, QmpEventFn fn, void *userdata) {
        q->event_fn = fn;
        q->event_userdata = userdata;
}

static int send_command(Qmp *q, const char *command, struct json_object *arguments) {
        struct json_object *msg = json_object_new_object();
        const char *text;
        int r = -ENOMEM;

        if (!msg) {
                json_object_put(arguments);
                return -ENOMEM;
        }
        if (json_object_object_add(msg, "execute", json_object_new_string(command)) == 0 &&
            (!arguments || json_object_object_add(msg, "arguments", TAKE_PTR(arguments)) == 0) &&
            json_object_object_add(msg, "id", json_object_new_int64(q->next_id)) == 0 &&
            (text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE))) {
                r = send_all(q, text, strlen(text));
                if (r == 0)
                        r = send_all(q, "\n", 1);
        }
        json_object_put(arguments);
        json_object_put(msg);
        return r;
}

int qmp_execute(Qmp *q, const char *command, struct json_object *arguments, struct json_object **ret_value) {
        int64_t id = q->next_id;
        int r;

        r = send_command(q, command, arguments);
        if (r < 0)
                return r;
        q->next_id++;
        for (;;) {
                struct json_object *msg, *reply_id, *value;

                r = read_message(q, &msg);
                if (r < 0)
                        return r;
                if (dispatch_event(q, msg)) {
                        json_object_put(msg);
                        continue;
                }
                /* One command at a time: a reply is to this one, or QEMU is not speaking QMP. */
                reply_id = member(msg, "id");
                r = -EPROTO;
                if (reply_id && json_object_is_type(reply_id, json_type_int) &&
                    json_object_get_int64(reply_id) == id) {
                        if ((value = member(msg, "return")))
                                r = 0;
                        else if ((value = member(msg, "error")) && json_object_is_type(value, json_type_object))
                                r = QMP_ERROR;
                        if (r >= 0 && ret_value)
                                *ret_value = json_object_get(value);
                }
                json_object_put(msg);
                return r;
        }
}

int qmp_read_event(Qmp *q) {
        struct json_object *msg;
        bool event;
        int r;

        r = read_message(q, &msg);
        if (r < 0)
                return r;
        event = dispatch_event(q, msg);
        json_object_put(msg);
        return event ? 0 : -EPROTO;
}

static const char *error_member(struct json_object *error, const char *key) {
        struct json_object *v = error ? member(error, key) : NULL;

        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
}

const char *qmp_error_class(struct json_object *error) {
        return error_member(error, "class");
}

const char *qmp_error_desc(struct json_object *error) {
        return error_member(error, "desc");
}
