/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-hello: a small libshmem client. It attaches to a region (the first
 * attach creates it), writes a line into its own slot of the data area,
 * signals the peers already there and waits. For each peer that signals it,
 * it prints that peer's line and signals it back if it had not yet: two of
 * them greet each other and exit 0.
 *
 * Build it against the installed library, and run two with a broker up
 * (the shmem-brokerd service, or shmem-brokerd by hand):
 *
 *     cc -o shmem-hello shmem-hello.c $(pkg-config --cflags --libs libshmem)
 *     ./shmem-hello hello & ./shmem-hello hello
 *
 * Usage: shmem-hello [REGION [SECONDS]]   (default: region "hello", 30 s)
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <shmem/shmem.h>

#define SLOT 256 /* bytes of the data area per peer index */
#define BIT(j) (UINT64_C(1) << (j))

/* A peer wrote this line: print it, escaping what is not printable. */
static void print_line(unsigned peer, const unsigned char *line) {
        printf("peer %u says: ", peer);
        for (size_t i = 0; i < SLOT && line[i]; i++)
                printf(isprint(line[i]) && line[i] != '\\' ? "%c" : "\\x%02x", line[i]);
        printf("\n");
}

int main(int argc, char **argv) {
        const char *name = argc > 1 ? argv[1] : "hello";
        int timeout_ms = (argc > 2 ? atoi(argv[2]) : 30) * 1000;
        unsigned char *data;
        uint64_t told, greeted = 0;
        shmem_t *shm;
        unsigned me;
        int r;

        r = shmem_attach(&shm, name, 64 * 1024, 0, NULL);
        if (r != 0) {
                fprintf(stderr, "shmem-hello: cannot attach to '%s': %s\n", name, shmem_strstatus(r));
                return 1;
        }
        me = shmem_index(shm);
        data = shmem_data(shm);
        if ((uint64_t) (me + 1) * SLOT > shmem_size(shm)) {
                fprintf(stderr, "shmem-hello: region '%s' has no room for peer %u's line\n", name, me);
                shmem_detach(shm);
                return 1;
        }
        /* The line first, then the signal: whoever the signal wakes finds it. */
        snprintf((char *) data + me * SLOT, SLOT, "hello from pid %d", (int) getpid());
        printf("attached to '%s' as peer %u of %u (libshmem %s)\n", name, me, shmem_max_peers(shm), shmem_version());
        fflush(stdout);
        told = shmem_active(shm) & ~BIT(me);
        if (told)
                shmem_notify(shm, told);

        while (!greeted) {
                struct shmem_event ev;

                r = shmem_wait(shm, timeout_ms, &ev);
                if (r <= 0) {
                        fprintf(stderr, "shmem-hello: %s\n", r == 0 ? "no peer signaled in time" : shmem_strstatus(r));
                        break;
                }
                for (unsigned j = 0; j < shmem_max_peers(shm); j++) {
                        if (j == me || !(ev.senders & BIT(j)))
                                continue;
                        if ((uint64_t) (j + 1) * SLOT <= shmem_size(shm))
                                print_line(j, data + j * SLOT);
                        greeted |= BIT(j);
                        if (!(told & BIT(j))) {
                                shmem_notify(shm, BIT(j));
                                told |= BIT(j);
                        }
                }
        }
        fflush(stdout);
        shmem_detach(shm);
        return greeted ? 0 : 1;
}
