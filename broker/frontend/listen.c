/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"
#include "macro.h"

static int sockaddr_of(const char *path, struct sockaddr_un *sa) {
        *sa = (struct sockaddr_un) { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa->sun_path))
                return -ENAMETOOLONG;
        strcpy(sa->sun_path, path);
        return 0;
}

/* Whether a process listens at @path (a stale socket of a dead one refuses). */
static bool socket_is_live(const char *path, int type) {
        struct sockaddr_un sa;
        _cleanup_close_ int fd = -1;

        if (sockaddr_of(path, &sa) < 0)
                return false;
        fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        return fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
}

int socket_listen(const char *path, int type, mode_t mode, gid_t gid, bool refuse_live, int *ret_fd) {
        static atomic_uint counter;
        struct sockaddr_un sa, tmp;
        _cleanup_close_ int fd = -1;
        const char *slash = strrchr(path, '/');
        int r;

        r = sockaddr_of(path, &sa);
        if (r < 0)
                return r;
        if (refuse_live && socket_is_live(path, type))
                return -EADDRINUSE;
        /* A short name in the same directory (rename(2) does not cross file systems). */
        tmp = (struct sockaddr_un) { .sun_family = AF_UNIX };
        r = snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%.*s.#%d-%u", slash ? (int) (slash - path + 1) : 0, path,
                     (int) getpid(), atomic_fetch_add(&counter, 1));
        if (r < 0 || (size_t) r >= sizeof(tmp.sun_path))
                return -ENAMETOOLONG;
        fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) unlink(tmp.sun_path);
        if (bind(fd, (struct sockaddr *) &tmp, sizeof(tmp)) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0 || chmod(tmp.sun_path, mode) < 0 ||
            (gid != (gid_t) -1 && chown(tmp.sun_path, (uid_t) -1, gid) < 0) || rename(tmp.sun_path, path) < 0) {
                r = -errno;
                (void) unlink(tmp.sun_path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}
