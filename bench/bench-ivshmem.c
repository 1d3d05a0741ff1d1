/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-ivshmem: a QEMU-side client of the ivshmem-doorbell server protocol
 * (docs/protocol.md section 1), timed against any server that speaks it: the
 * broker's per-region QEMU socket and QEMU's own contrib/ivshmem-server
 * (bench/anchor-ivshmem-server.sh), the anchor of docs/BENCHMARKS.md.
 *
 * An attach is what QEMU's ivshmem-doorbell does before the device can ring
 * and be rung: connect; the version (0, no fd); its id (no fd); -1 with the
 * shm fd, mapped; then every other peer's id with its eventfds, until its own
 * id has come with as many eventfds as it has vectors. QEMU 7.2 reads up to
 * the shm fd at realize and the rest from its main loop; the time here is the
 * whole, connect to the last own vector.
 *
 *   bench-ivshmem check SOCKET VECTORS
 *       two clients: the second learns the first, the first learns the second
 *       joined, memory written by one is read by the other, an eventfd one got
 *       for the other rings one of the other's own vectors, a close is a leave.
 *   bench-ivshmem bench [--peers N] [--rounds R] [--blocks B] [--json FILE]
 *                       NAME=SOCKET:VECTORS...
 *       for each block, each server in turn: R rounds of N clients attaching
 *       one after another and staying attached, then all closed. Per server:
 *       p50, p99, max, and the p50 of the N-th attach; the first's over the
 *       second's.
 *
 * The stream is read 8 bytes at a time with recvmsg(), as QEMU's chardev
 * does; proto/fdmsg.c reads the broker's datagrams, not this.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "samples.h"

#define PEERS_MAX 64
#define TARGETS_MAX 4

typedef struct Client {
        int sock;
        int64_t id;
        void *map;
        size_t size;
        unsigned own;       /* own vectors received */
        unsigned other_fds; /* other peers' eventfds received during the attach */
        int own_fds[PEERS_MAX + 1];
        int first_other_fd; /* the first eventfd of another peer, for check */
        int64_t first_other_id;
} Client;

/*
 * One message: 8 bytes little-endian, and at most one fd (*ret_fd, else -1).
 * @wait_ms < 0 blocks. Returns 0, -EAGAIN (nothing within @wait_ms), -EPROTO
 * (more than one fd, a short stream), -ECONNRESET on end of file, or -errno.
 */
static int msg_read(int sock, int wait_ms, int64_t *ret_value, int *ret_fd) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        uint8_t bytes[8];
        size_t got = 0;
        int fd = -1;

        while (got < sizeof(bytes)) {
                struct iovec iov = { .iov_base = bytes + got, .iov_len = sizeof(bytes) - got };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                                     .msg_controllen = sizeof(control.buf) };
                struct pollfd p = { .fd = sock, .events = POLLIN };
                ssize_t n;
                int r = poll(&p, 1, got ? 1000 : wait_ms);

                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0) {
                        if (fd >= 0)
                                close(fd);
                        return got ? -EPROTO : -EAGAIN;
                }
                n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (fd >= 0)
                                close(fd);
                        return n < 0 ? -errno : -ECONNRESET;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int *p_fd = (int *) CMSG_DATA(c);

                        for (size_t i = 0; i < k; i++) {
                                if (fd < 0)
                                        fd = p_fd[i];
                                else {
                                        close(p_fd[i]);
                                        close(fd);
                                        return -EPROTO;
                                }
                        }
                }
                if (mh.msg_flags & MSG_CTRUNC) {
                        if (fd >= 0)
                                close(fd);
                        return -EPROTO;
                }
                got += (size_t) n;
        }
        *ret_value = 0;
        for (int i = 7; i >= 0; i--)
                *ret_value = (int64_t) ((uint64_t) *ret_value << 8 | bytes[i]);
        *ret_fd = fd;
        return 0;
}

static void client_close(Client *c) {
        if (c->map && c->map != MAP_FAILED)
                munmap(c->map, c->size);
        for (unsigned v = 0; v < c->own; v++)
                close(c->own_fds[v]);
        if (c->first_other_fd >= 0)
                close(c->first_other_fd);
        if (c->sock >= 0)
                close(c->sock);
        *c = (Client) { .sock = -1, .first_other_fd = -1 };
}

/* Connect to @path and read until the own @vectors are there; 0, or -1 with @err set. */
static int client_attach(Client *c, const char *path, unsigned vectors, char *err, size_t n_err) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int64_t v;
        int fd, r;

        *c = (Client) { .sock = -1, .first_other_fd = -1, .first_other_id = -1 };
        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(err, n_err, "socket path too long: %s", path);
                return -1;
        }
        strcpy(sa.sun_path, path);
        c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->sock < 0 || connect(c->sock, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                snprintf(err, n_err, "connect %s: %s", path, strerror(errno));
                return -1;
        }
        r = msg_read(c->sock, 5000, &v, &fd);
        if (r == 0 && (v != 0 || fd >= 0)) {
                snprintf(err, n_err, "server sent version %lld%s, expecting 0", (long long) v,
                         fd >= 0 ? " with an fd" : "");
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (r == 0)
                r = msg_read(c->sock, 5000, &c->id, &fd);
        if (r == 0 && (fd >= 0 || c->id < 0 || c->id > 65535)) {
                snprintf(err, n_err, "server sent invalid ID message %lld", (long long) c->id);
                return -1;
        }
        if (r == 0)
                r = msg_read(c->sock, 5000, &v, &fd);
        if (r == 0 && (v != -1 || fd < 0)) {
                snprintf(err, n_err, "expected -1 with the shm fd, got %lld%s", (long long) v,
                         fd >= 0 ? " with an fd" : "");
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        if (r == 0) {
                struct stat st;

                if (fstat(fd, &st) < 0 || st.st_size <= 0) {
                        snprintf(err, n_err, "shm fd: cannot learn its size");
                        close(fd);
                        return -1;
                }
                c->size = (size_t) st.st_size;
                c->map = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                close(fd);
                if (c->map == MAP_FAILED) {
                        snprintf(err, n_err, "mmap of the shm fd: %s", strerror(errno));
                        return -1;
                }
        }
        while (r == 0 && c->own < vectors) {
                r = msg_read(c->sock, 5000, &v, &fd);
                if (r < 0)
                        break;
                if (fd < 0 || v < 0 || v > 65535) {
                        snprintf(err, n_err, "unexpected message %lld%s during the attach", (long long) v,
                                 fd >= 0 ? " with an fd" : "");
                        if (fd >= 0)
                                close(fd);
                        return -1;
                }
                if (v == c->id)
                        c->own_fds[c->own++] = fd;
                else {
                        c->other_fds++;
                        if (c->first_other_fd < 0) {
                                c->first_other_fd = fd;
                                c->first_other_id = v;
                        } else
                                close(fd);
                }
        }
        if (r < 0) {
                snprintf(err, n_err, "reading the handshake: %s (%u of %u own vectors)",
                         r == -EAGAIN ? "no message for 5 s" : strerror(-r), c->own, vectors);
                return -1;
        }
        return 0;
}

/* Reads what the server sent an attached client since (joins, leaves), closing the fds. */
static int client_drain(Client *c, int wait_ms, int64_t *ret_last, bool *ret_had_fd) {
        int64_t v;
        int fd, r, n = 0;

        while ((r = msg_read(c->sock, n ? 0 : wait_ms, &v, &fd)) == 0) {
                if (ret_last)
                        *ret_last = v;
                if (ret_had_fd)
                        *ret_had_fd = fd >= 0;
                if (fd >= 0)
                        close(fd);
                n++;
        }
        return r == -EAGAIN ? n : r;
}

static int check(const char *path, unsigned vectors) {
        Client a, b;
        char err[300];
        int64_t last = -2, second;
        bool had_fd = false;
        int n, rung = -1;
        uint64_t one = 1;

        if (vectors < 1 || vectors > PEERS_MAX + 1) {
                fprintf(stderr, "bench-ivshmem check: vectors 1..%d\n", PEERS_MAX + 1);
                return 2;
        }
        if (client_attach(&a, path, vectors, err, sizeof(err)) < 0 ||
            client_attach(&b, path, vectors, err, sizeof(err)) < 0) {
                fprintf(stderr, "bench-ivshmem check: %s\n", err);
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        printf("first: id %lld, shm %zu bytes, %u own vectors, %u eventfds of other peers\n",
               (long long) a.id, a.size, a.own, a.other_fds);
        printf("second: id %lld, %u own vectors, %u eventfds of other peers (first of peer %lld)\n",
               (long long) b.id, b.own, b.other_fds, (long long) b.first_other_id);
        if (b.first_other_id != a.id || b.other_fds < 1 || b.other_fds > vectors) {
                fprintf(stderr, "bench-ivshmem check: the second did not learn the first's eventfds\n");
                return 1;
        }
        n = client_drain(&a, 1000, &last, &had_fd);
        printf("first learnt: %d message(s), the last id %lld with an fd: %s\n", n, (long long) last,
               had_fd ? "yes" : "no");
        if (n < 1 || last != b.id || !had_fd) {
                fprintf(stderr, "bench-ivshmem check: the first was not told the second joined\n");
                return 1;
        }
        memcpy((char *) b.map + b.size - 16, "bench-ivshmem", 14);
        if (memcmp((char *) a.map + a.size - 16, "bench-ivshmem", 14) != 0) {
                fprintf(stderr, "bench-ivshmem check: the two shm fds are not the same memory\n");
                return 1;
        }
        if (write(b.first_other_fd, &one, sizeof(one)) != sizeof(one))
                return 1;
        for (int tries = 0; tries < 100 && rung < 0; tries++) {
                struct pollfd p[PEERS_MAX + 1];

                for (unsigned v = 0; v < a.own; v++)
                        p[v] = (struct pollfd) { .fd = a.own_fds[v], .events = POLLIN };
                if (poll(p, a.own, 10) > 0)
                        for (unsigned v = 0; v < a.own; v++)
                                if (p[v].revents & POLLIN)
                                        rung = (int) v;
        }
        printf("second rang the first: the first's own vector %d\n", rung);
        if (rung < 0) {
                fprintf(stderr, "bench-ivshmem check: no own vector of the first was rung\n");
                return 1;
        }
        second = b.id;
        client_close(&b);
        n = client_drain(&a, 1000, &last, &had_fd);
        printf("second closed: the first got %d message(s), the last id %lld with an fd: %s\n", n,
               (long long) last, had_fd ? "yes" : "no");
        if (n < 1 || last != second || had_fd) {
                fprintf(stderr, "bench-ivshmem check: the first was not told the second left\n");
                return 1;
        }
        client_close(&a);
        printf("ok\n");
        return 0;
}

typedef struct Target {
        const char *name, *path;
        unsigned vectors;
        uint64_t *samples, *last;
        size_t n, n_last;
        unsigned long other_fds; /* over all attaches */
} Target;

static int bench_round(Target *t, unsigned peers) {
        Client c[PEERS_MAX];
        char err[300];

        for (unsigned i = 0; i < peers; i++) {
                uint64_t t0 = now_ns();

                if (client_attach(&c[i], t->path, t->vectors, err, sizeof(err)) < 0) {
                        fprintf(stderr, "bench-ivshmem: %s, attach %u: %s\n", t->name, i + 1, err);
                        return -1;
                }
                t->samples[t->n++] = now_ns() - t0;
                t->other_fds += c[i].other_fds;
                if (i == peers - 1)
                        t->last[t->n_last++] = t->samples[t->n - 1];
                /* QEMU reads joins from its main loop; so do the ones attached before, untimed. */
                for (unsigned k = 0; k < i; k++)
                        if (client_drain(&c[k], 0, NULL, NULL) < 0) {
                                fprintf(stderr, "bench-ivshmem: %s dropped client %u\n", t->name, k + 1);
                                return -1;
                        }
        }
        for (unsigned i = 0; i < peers; i++)
                client_close(&c[i]);
        /* Let the server see the leaves before the next round. */
        usleep(20000);
        return 0;
}

static void json_target(FILE *f, const Target *t, unsigned peers) {
        fprintf(f,
                "\"%s\": {\"socket\": \"%s\", \"vectors\": %u, \"attaches\": %zu, \"p50_ns\": %llu, "
                "\"p99_ns\": %llu, \"max_ns\": %llu, \"last_attach_p50_ns\": %llu, "
                "\"other_fds_per_attach\": %.2f, \"peers\": %u}",
                t->name, t->path, t->vectors, t->n, (unsigned long long) samples_percentile(t->samples, t->n, 0.5),
                (unsigned long long) samples_percentile(t->samples, t->n, 0.99),
                (unsigned long long) t->samples[t->n - 1],
                (unsigned long long) samples_percentile(t->last, t->n_last, 0.5), (double) t->other_fds / (double) t->n,
                peers);
}

static int bench(int argc, char **argv) {
        static const struct option options[] = {
                { "peers", required_argument, NULL, 'p' }, { "rounds", required_argument, NULL, 'r' },
                { "blocks", required_argument, NULL, 'b' }, { "json", required_argument, NULL, 'j' },
                {}
        };
        unsigned peers = 16, rounds = 20, blocks = 5;
        const char *json = NULL;
        Target t[TARGETS_MAX];
        size_t n_t = 0;
        int c;

        while ((c = getopt_long(argc, argv, "p:r:b:j:", options, NULL)) >= 0) {
                switch (c) {
                case 'p': peers = (unsigned) atoi(optarg); break;
                case 'r': rounds = (unsigned) atoi(optarg); break;
                case 'b': blocks = (unsigned) atoi(optarg); break;
                case 'j': json = optarg; break;
                default: return 2;
                }
        }
        if (peers < 1 || peers > PEERS_MAX || rounds < 1 || blocks < 1 || optind >= argc ||
            argc - optind > TARGETS_MAX) {
                fprintf(stderr, "bench-ivshmem bench: --peers 1..%d, --rounds and --blocks > 0, "
                                "1 to %d NAME=SOCKET:VECTORS\n", PEERS_MAX, TARGETS_MAX);
                return 2;
        }
        for (int i = optind; i < argc; i++) {
                char *eq = strchr(argv[i], '='), *colon = strrchr(argv[i], ':');
                Target *x = &t[n_t++];

                if (!eq || !colon || colon < eq) {
                        fprintf(stderr, "bench-ivshmem bench: not NAME=SOCKET:VECTORS: %s\n", argv[i]);
                        return 2;
                }
                *eq = *colon = 0;
                *x = (Target) { .name = argv[i], .path = eq + 1, .vectors = (unsigned) atoi(colon + 1) };
                if (x->vectors < 1 || x->vectors > PEERS_MAX + 1) {
                        fprintf(stderr, "bench-ivshmem bench: %s: vectors 1..%d\n", x->name, PEERS_MAX + 1);
                        return 2;
                }
                x->samples = calloc((size_t) blocks * rounds * peers, sizeof(uint64_t));
                x->last = calloc((size_t) blocks * rounds, sizeof(uint64_t));
                if (!x->samples || !x->last)
                        return 1;
        }
        /* Alternate in blocks, so drift on the machine hits every server alike. */
        for (unsigned b = 0; b < blocks; b++)
                for (size_t i = 0; i < n_t; i++)
                        for (unsigned r = 0; r < rounds; r++)
                                if (bench_round(&t[i], peers) < 0)
                                        return 1;
        printf("QEMU-side attach (connect to the last own vector), %u clients kept attached, "
               "%u blocks x %u rounds alternating\n", peers, blocks, rounds);
        printf("  %-8s %8s %10s %10s %10s %12s %14s\n", "server", "vectors", "p50 us", "p99 us", "max us",
               "last p50 us", "peer fds/att.");
        for (size_t i = 0; i < n_t; i++) {
                qsort(t[i].samples, t[i].n, sizeof(uint64_t), samples_cmp);
                qsort(t[i].last, t[i].n_last, sizeof(uint64_t), samples_cmp);
                printf("  %-8s %8u %10.1f %10.1f %10.1f %12.1f %14.1f\n", t[i].name, t[i].vectors,
                       samples_percentile(t[i].samples, t[i].n, 0.5) / 1e3, samples_percentile(t[i].samples, t[i].n, 0.99) / 1e3,
                       t[i].samples[t[i].n - 1] / 1e3, samples_percentile(t[i].last, t[i].n_last, 0.5) / 1e3,
                       (double) t[i].other_fds / (double) t[i].n);
        }
        if (n_t >= 2)
                printf("  ratio %s/%s: p50 %.3f, p99 %.3f, max %.3f, last p50 %.3f\n", t[0].name, t[1].name,
                       (double) samples_percentile(t[0].samples, t[0].n, 0.5) / (double) samples_percentile(t[1].samples, t[1].n, 0.5),
                       (double) samples_percentile(t[0].samples, t[0].n, 0.99) /
                               (double) samples_percentile(t[1].samples, t[1].n, 0.99),
                       (double) t[0].samples[t[0].n - 1] / (double) t[1].samples[t[1].n - 1],
                       (double) samples_percentile(t[0].last, t[0].n_last, 0.5) /
                               (double) samples_percentile(t[1].last, t[1].n_last, 0.5));
        if (json) {
                FILE *f = fopen(json, "we");

                if (!f) {
                        fprintf(stderr, "bench-ivshmem: cannot write %s: %m\n", json);
                        return 1;
                }
                fprintf(f, "{\"blocks\": %u, \"rounds\": %u, \"peers\": %u", blocks, rounds, peers);
                for (size_t i = 0; i < n_t; i++) {
                        fputs(", ", f);
                        json_target(f, &t[i], peers);
                }
                fputs("}\n", f);
                fclose(f);
        }
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 4 && strcmp(argv[1], "check") == 0)
                return check(argv[2], (unsigned) atoi(argv[3]));
        if (argc >= 2 && strcmp(argv[1], "bench") == 0)
                return bench(argc - 1, argv + 1);
        fprintf(stderr, "Usage: bench-ivshmem check SOCKET VECTORS\n"
                        "       bench-ivshmem bench [--peers N] [--rounds R] [--blocks B] [--json FILE] "
                        "NAME=SOCKET:VECTORS...\n");
        return 2;
}
