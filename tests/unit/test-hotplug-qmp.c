/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of plugin-qemu/hotplug/qmp.c, the QMP client of shmem-hotplug,
 * against a scripted fake QEMU on the other end of a socketpair: what it
 * sends, events between replies, replies cut anywhere, and the monitors
 * that are none (silent, closing, not JSON, not QMP, too long a message).
 */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "clock.h"
#include "qmp.h"
#include "test-util.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}}, " \
                 "\"capabilities\": [\"oob\"]}}\r\n"

/* One step of the fake QEMU: send @text, read a line that must contain @text, sleep @ms. */
typedef struct Step {
        enum { OP_END, OP_SEND, OP_EXPECT, OP_SLEEP } op;
        const char *text;
        int ms;
} Step;

#define SEND(t) { .op = OP_SEND, .text = (t) }
#define EXPECT(t) { .op = OP_EXPECT, .text = (t) }
#define SLEEP(n) { .op = OP_SLEEP, .ms = (n) }
#define END { .op = OP_END }

static void child_run(int fd, const Step *steps) {
        alarm(10);
        for (const Step *s = steps; s->op != OP_END; s++) {
                char line[4096];
                size_t n = 0;

                switch (s->op) {
                case OP_SEND:
                        /* A client that gave up on a long message closes: the script ends there. */
                        if (send(fd, s->text, strlen(s->text), MSG_NOSIGNAL) != (ssize_t) strlen(s->text))
                                _exit(0);
                        break;
                case OP_EXPECT:
                        while (n < sizeof(line) - 1 && read(fd, line + n, 1) == 1 && line[n] != '\n')
                                n++;
                        line[n] = 0;
                        if (!strstr(line, s->text))
                                _exit(3);
                        break;
                case OP_SLEEP:
                        sleep_ms(s->ms);
                        break;
                case OP_END:
                        break;
                }
        }
        /* Until the client lets go. */
        while (read(fd, &(char) { 0 }, 1) > 0)
                ;
        _exit(0);
}

/* A fake QEMU running @steps on the other end of *@ret_fd. */
static pid_t fake_qemu(int *ret_fd, const Step *steps) {
        int sv[2];
        pid_t pid;

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                close(sv[0]);
                child_run(sv[1], steps);
        }
        close(sv[1]);
        *ret_fd = sv[0];
        return pid;
}

/* Whether the fake QEMU saw what it expected. */
static void fake_qemu_check(pid_t pid) {
        int status;

        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fake QEMU: status %d", status);
}

static int64_t in_ms(int ms) {
        return now_ns() + (int64_t) ms * 1000000;
}

static int events_seen;
static char last_event[64];

static void on_event(const char *event, struct json_object *data, void *userdata) {
        events_seen++;
        snprintf(last_event, sizeof(last_event), "%s", event);
        ck_assert_ptr_eq(userdata, &events_seen);
}

START_TEST(test_commands_and_events) {
        static const Step steps[] = {
                SEND(GREETING),
                EXPECT("{\"execute\":\"qmp_capabilities\",\"id\":0}"),
                SEND("{\"return\": {}, \"id\": 0}\r\n"),
                EXPECT("{\"execute\":\"qom-get\",\"arguments\":{\"path\":\"/machine\",\"property\":\"type\"},\"id\":1}"),
                /* An event first, a blank line, then the reply cut in two. */
                SEND("{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"DEVICE_DELETED\", "
                        "\"data\": {\"device\": \"x\", \"path\": \"/machine/peripheral/x\"}}\r\n\r\n{\"return\": \"pc-q35"),
                SLEEP(50),
                SEND("-7.2-machine\", \"id\": 1}\r\n"),
                EXPECT("\"execute\":\"device_add\""),
                SEND("{\"id\": 2, \"error\": {\"class\": \"GenericError\", \"desc\": \"Bus 'pcie.0' does not "
                        "support hotplugging\"}}\r\n"),
                EXPECT("\"execute\":\"device_del\""),
                SEND("{\"return\": {}, \"id\": 3}\r\n{\"event\": \"DEVICE_DELETED\", \"data\": {}}\n"),
                END,
        };
        struct json_object *v = NULL, *args;
        Qmp *q = NULL;
        pid_t pid;
        int fd;

        pid = fake_qemu(&fd, steps);
        ck_assert_int_eq(qmp_new(&q, fd, in_ms(5000)), 0);
        qmp_on_event(q, on_event, &events_seen);
        ck_assert_int_eq(qmp_execute(q, "qmp_capabilities", NULL, NULL), 0);

        args = json_object_new_object();
        json_object_object_add(args, "path", json_object_new_string("/machine"));
        json_object_object_add(args, "property", json_object_new_string("type"));
        ck_assert_int_eq(qmp_execute(q, "qom-get", args, &v), 0);
        ck_assert_str_eq(json_object_get_string(v), "pc-q35-7.2-machine");
        json_object_put(v);
        ck_assert_int_eq(events_seen, 1);
        ck_assert_str_eq(last_event, "DEVICE_DELETED");

        ck_assert_int_eq(qmp_execute(q, "device_add", NULL, &v), QMP_ERROR);
        ck_assert_str_eq(qmp_error_class(v), "GenericError");
        ck_assert_str_eq(qmp_error_desc(v), "Bus 'pcie.0' does not support hotplugging");
        json_object_put(v);

        /* The event after the reply comes through qmp_read_event(). */
        ck_assert_int_eq(qmp_execute(q, "device_del", NULL, NULL), 0);
        ck_assert_int_eq(events_seen, 1);
        ck_assert_int_eq(qmp_read_event(q), 0);
        ck_assert_int_eq(events_seen, 2);
        qmp_free(q);
        fake_qemu_check(pid);
}
END_TEST

/*
 * @call on a client of a fake QEMU running @steps, made with @timeout_ms
 * for the whole connection; qmp_new()'s error if it fails, else @call's
 * result (NULL @call: 0).
 */
static int with_fake_qemu(const Step *steps, int timeout_ms, int (*call)(Qmp *q)) {
        Qmp *q = NULL;
        pid_t pid;
        int fd, r;

        pid = fake_qemu(&fd, steps);
        r = qmp_new(&q, fd, in_ms(timeout_ms));
        if (r == 0 && call)
                r = call(q);
        qmp_free(q);
        fake_qemu_check(pid);
        return r;
}

static int capabilities(Qmp *q) {
        return qmp_execute(q, "qmp_capabilities", NULL, NULL);
}

START_TEST(test_reply_to_another_command) {
        static const Step steps[] = {
                SEND(GREETING),
                EXPECT("qmp_capabilities"),
                SEND("{\"return\": {}, \"id\": 7}\r\n"),
                END,
        };

        ck_assert_int_eq(with_fake_qemu(steps, 5000, capabilities), -EPROTO);
}
END_TEST

START_TEST(test_read_event_gets_a_reply) {
        static const Step steps[] = { SEND(GREETING "{\"return\": {}}\r\n"), END };

        ck_assert_int_eq(with_fake_qemu(steps, 5000, qmp_read_event), -EPROTO);
}
END_TEST

/* qmp_new() against a fake QEMU that sends @text and then nothing. */
static int greeting(const char *text, int timeout_ms) {
        const Step steps[] = { SEND(text), END };

        return with_fake_qemu(steps, timeout_ms, NULL);
}

START_TEST(test_not_a_monitor) {
        ck_assert_int_eq(greeting("SSH-2.0-OpenSSH_9.2\r\n", 5000), -EPROTO);
        ck_assert_int_eq(greeting("{\"return\": {}}\r\n", 5000), -EPROTO);
        ck_assert_int_eq(greeting("[\"QMP\"]\n", 5000), -EPROTO);
        ck_assert_int_eq(greeting("{\"QMP\": 1}\n", 5000), -EPROTO);
        /* Two objects on one line, a cut object: not one message. */
        ck_assert_int_eq(greeting("{\"QMP\": {}} {\"QMP\": {}}\n", 5000), -EPROTO);
        ck_assert_int_eq(greeting("{\"QMP\": {\n", 5000), -EPROTO);
        ck_assert_int_eq(greeting("{\"QMP\": {}}\n", 5000), 0);
}
END_TEST

START_TEST(test_silent_monitor) {
        int64_t t = now_ns();

        /* Accepted, and nothing said: the deadline, not a hang. */
        ck_assert_int_eq(greeting("", 300), -ETIMEDOUT);
        t = now_ns() - t;
        ck_assert_int_ge(t, 300 * 1000000LL);
        ck_assert_int_lt(t, 2000 * 1000000LL);
        /* Half a greeting, then silence. */
        ck_assert_int_eq(greeting("{\"QMP\": {", 200), -ETIMEDOUT);
}
END_TEST

START_TEST(test_monitor_closes) {
        static const Step steps[] = { SEND(GREETING), END };
        Qmp *q = NULL;
        pid_t pid;
        int sv[2];

        /* QEMU gone before its greeting. */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        ck_assert_int_eq(qmp_new(&q, sv[0], in_ms(5000)), -ECONNRESET);

        /* ... and after it, before the reply to a command. */
        pid = fake_qemu(&sv[0], steps);
        ck_assert_int_eq(qmp_new(&q, sv[0], in_ms(5000)), 0);
        sleep_ms(10);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
        ck_assert_int_eq(qmp_execute(q, "qmp_capabilities", NULL, NULL), -ECONNRESET);
        qmp_free(q);
}
END_TEST

START_TEST(test_message_too_long) {
        /* A line that never ends: refused at QMP_MESSAGE_MAX, not buffered for ever. */
        size_t n = QMP_MESSAGE_MAX + 4096;
        char *text = malloc(n + 1);
        int r;

        ck_assert_ptr_nonnull(text);
        memset(text, ' ', n);
        text[0] = '{';
        text[n] = 0;
        r = greeting(text, 10000);
        free(text);
        ck_assert_int_eq(r, -EMSGSIZE);
}
END_TEST

START_TEST(test_connect) {
        char path[200];
        Qmp *q = NULL;

        ck_assert_int_eq(qmp_connect(&q, "/nonexistent/qmp.sock", in_ms(1000)), -ENOENT);
        memset(path, 'a', sizeof(path) - 1);
        path[sizeof(path) - 1] = 0;
        ck_assert_int_eq(qmp_connect(&q, path, in_ms(1000)), -ENAMETOOLONG);
        ck_assert_ptr_null(q);
        ck_assert_ptr_null(qmp_free(NULL));
}
END_TEST

int main(void) {
        Suite *s = suite_create("hotplug-qmp");
        TCase *tc;

        tc = tcase_new("protocol");
        tcase_add_test(tc, test_commands_and_events);
        tcase_add_test(tc, test_reply_to_another_command);
        tcase_add_test(tc, test_read_event_gets_a_reply);
        suite_add_tcase(s, tc);

        tc = tcase_new("not-a-monitor");
        tcase_add_test(tc, test_not_a_monitor);
        tcase_add_test(tc, test_silent_monitor);
        tcase_add_test(tc, test_monitor_closes);
        tcase_add_test(tc, test_message_too_long);
        tcase_add_test(tc, test_connect);
        suite_add_tcase(s, tc);
        return run_suite(s);
}
