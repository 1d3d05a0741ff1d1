/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fdmsg.h"
#include "log.h"
#include "macro.h"
#include "notify.h"

struct Notify {
        int fd; /* connected to $NOTIFY_SOCKET; -1 without one */
        bool warned;
};

static int notify_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t n = strlen(path);
        socklen_t len;
        _cleanup_close_ int fd = -1;

        if (n == 0 || n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
                return -EINVAL;
        memcpy(sa.sun_path, path, n);
        if (path[0] == '@')
                sa.sun_path[0] = 0; /* abstract namespace */
        len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, len) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int notify_new(Notify **ret) {
        const char *path = getenv("NOTIFY_SOCKET");
        Notify *n = calloc(1, sizeof(*n));

        if (!n)
                return -ENOMEM;
        n->fd = -1;
        if (path) {
                n->fd = notify_connect(path);
                if (n->fd < 0) {
                        int r = log_error_errno(n->fd, "Cannot reach $NOTIFY_SOCKET '%s': %m", path);

                        free(n);
                        return r;
                }
        }
        *ret = n;
        return 0;
}

Notify *notify_free(Notify *n) {
        if (!n)
                return NULL;
        fd_close(n->fd);
        free(n);
        return NULL;
}

bool notify_enabled(const Notify *n) {
        return n && n->fd >= 0;
}

int notify_send(Notify *n, const char *text, int fd) {
        int r;

        if (!notify_enabled(n))
                return 0;
        r = fdmsg_send_now(n->fd, text, strlen(text), &fd, fd >= 0 ? 1 : 0);
        if (r < 0 && !n->warned) {
                n->warned = true;
                log_error_errno(r, "Cannot send to the service manager, state may not survive a restart: %m");
        }
        return r;
}

unsigned long long notify_watchdog_usec(void) {
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");

        if (!usec || (pid && strtoul(pid, NULL, 10) != (unsigned long) getpid()))
                return 0;
        return strtoull(usec, NULL, 10);
}
