/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmemctl's calls to the broker and the messages of their failures (common.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

static const char *usage_command;

void usage_error_command(const char *cmd) {
        usage_command = cmd;
}

int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("shmemctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        if (usage_command)
                fprintf(stderr, "\nTry 'shmemctl help %s'.\n", usage_command);
        else
                fputs("\nTry 'shmemctl --help'.\n", stderr);
        return EXIT_USAGE;
}

int report_unreachable(const char *path, int error, bool connecting) {
        if (connecting)
                fprintf(stderr,
                        "shmemctl: cannot connect to the broker at %s: %s\n"
                        "shmemctl: is shmem-brokerd running? (choose the socket with --socket or "
                        "$SHMEM_BROKER_SOCKET)\n",
                        path, strerror(-error));
        else
                fprintf(stderr, "shmemctl: broker at %s: %s\n", path, strerror(-error));
        return EXIT_UNREACHABLE;
}

int report_refused(const char *what, int status, const char *detail) {
        if (status == SHMEM__STATUS__DOES_NOT_EXIST || status == SHMEM__STATUS__EXISTS)
                fprintf(stderr, "shmemctl: region '%s' %s", what,
                        status == SHMEM__STATUS__EXISTS ? "exists" : "does not exist");
        else
                fprintf(stderr, "shmemctl: %s: %s", what, status_text(status));
        if (detail && *detail)
                fprintf(stderr, ": %s", detail);
        fputc('\n', stderr);
        return EXIT_REFUSED;
}

int call(Client *c, const char *path, const char *what, Message *req, ClientMsg **ret) {
        ClientMsg *reply = NULL;
        const char *detail;
        int r;

        r = client_call(c, req, CLIENT_TIMEOUT_MS, &reply);
        if (r < 0)
                return report_unreachable(path, r, false);
        r = client_reply_status(reply, &detail);
        if (r != SHMEM__STATUS__OK) {
                /* The broker's "no region of that name" or "a region of that name exists" says the status again. */
                if (r == SHMEM__STATUS__DOES_NOT_EXIST || r == SHMEM__STATUS__EXISTS)
                        detail = NULL;
                r = report_refused(what, r, detail);
                client_msg_free(reply);
                return r;
        }
        *ret = reply;
        return EXIT_OK;
}

int pages_keep(Pages *p, ClientMsg *reply) {
        ClientMsg **replies = realloc(p->replies, (p->n_replies + 1) * sizeof(*replies));

        if (!replies) {
                client_msg_free(reply);
                return -ENOMEM;
        }
        p->replies = replies;
        p->replies[p->n_replies++] = reply;
        return 0;
}

void pages_done(Pages *p) {
        for (size_t i = 0; i < p->n_replies; i++)
                client_msg_free(p->replies[i]);
        free(p->replies);
        *p = (Pages) {};
}

int inspect_region(Client *c, const char *path, const char *name, ClientMsg **ret_reply,
                   const Shmem__RegionInfo **ret_info) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Inspect in = SHMEM__INSPECT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int r;

        in.name = (char *) name;
        m.body_case = SHMEM__MESSAGE__BODY_INSPECT;
        m.inspect = &in;
        r = call(c, path, name, &m, &reply);
        if (r != EXIT_OK)
                return r;
        if (reply->msg->reply->body_case != SHMEM__REPLY__BODY_INSPECT || !reply->msg->reply->inspect ||
            !reply->msg->reply->inspect->region)
                return report_unreachable(path, -EPROTO, false);
        *ret_info = reply->msg->reply->inspect->region;
        *ret_reply = TAKE_PTR(reply);
        return EXIT_OK;
}
