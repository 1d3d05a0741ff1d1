/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-shmem: the figures of docs/BENCHMARKS.md, measured side by side in one
 * run because these machines are noisy.
 *
 *  1. Signal round trip host <-> host: libshmem notify/wait through
 *     broker-issued eventfds, against a raw eventfd pair driven by the same
 *     poll loop, in alternating blocks. The ratio is the figure of merit.
 *  2. Attach latency (connect -> last own vector fd received and mapped):
 *     16 peers (--peers, up to 64) attach one after another and stay
 *     attached; repeated.
 *
 * Usage: bench-shmem --broker PATH [--rounds N] [--round-trips N] [--peers N] [--json FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmem.h"

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static int cmp_double(const double *a, const double *b) {
        return *a < *b ? -1 : *a > *b;
}

static uint64_t percentile(uint64_t *v, size_t n, double p) {
        size_t i = (size_t) (p * (double) (n - 1) + 0.5);

        return v[i < n ? i : n - 1];
}

static void die(const char *what, int r) {
        fprintf(stderr, "bench-shmem: %s: %s\n", what, shmem_strstatus(r));
        exit(1);
}

/* --- raw eventfd pair --- */

static void raw_wait(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t v;

        while (poll(&p, 1, -1) != 1)
                ;
        if (read(fd, &v, sizeof(v)) != sizeof(v))
                exit(1);
}

static void raw_ring(int fd) {
        uint64_t one = 1;

        if (write(fd, &one, sizeof(one)) != sizeof(one))
                exit(1);
}

/* Median round trip in ns over @n round trips of a raw eventfd pair. */
static uint64_t bench_raw(unsigned n, uint64_t *samples) {
        int ping = eventfd(0, EFD_CLOEXEC), pong = eventfd(0, EFD_CLOEXEC);
        pid_t child = fork();

        if (child == 0) {
                for (unsigned i = 0; i < n; i++) {
                        raw_wait(ping);
                        raw_ring(pong);
                }
                _exit(0);
        }
        for (unsigned i = 0; i < n; i++) {
                uint64_t t = now_ns();

                raw_ring(ping);
                raw_wait(pong);
                samples[i] = now_ns() - t;
        }
        waitpid(child, NULL, 0);
        close(ping);
        close(pong);
        qsort(samples, n, sizeof(*samples), cmp_u64);
        return percentile(samples, n, 0.5);
}

/* --- libshmem through the broker --- */

static void shm_wait_from(shmem_t *h, uint64_t bit) {
        struct shmem_event ev;

        for (;;) {
                int r = shmem_wait(h, -1, &ev);

                if (r < 0)
                        die("wait", r);
                if (ev.senders & bit)
                        return;
        }
}

/* Median round trip in ns over @n notify/wait round trips between two host peers. */
static uint64_t bench_shmem(const struct shmem_attach_opts *o, unsigned n, uint64_t *samples) {
        int ready[2];
        shmem_t *a;
        pid_t child;
        char c;
        int r;

        r = shmem_attach(&a, "bench-rt", 4096, 0, o);
        if (r != 0)
                die("attach", r);
        if (pipe(ready) < 0)
                exit(1);
        child = fork();
        if (child == 0) {
                shmem_t *b;

                r = shmem_attach(&b, "bench-rt", 4096, SHMEM_FIND, o);
                if (r != 0)
                        die("attach", r);
                if (write(ready[1], "x", 1) != 1)
                        _exit(1);
                for (unsigned i = 0; i < n; i++) {
                        shm_wait_from(b, UINT64_C(1) << 0);
                        r = shmem_notify(b, UINT64_C(1) << 0);
                        if (r < 0)
                                die("notify", r);
                }
                shmem_detach(b);
                _exit(0);
        }
        if (read(ready[0], &c, 1) != 1)
                exit(1);
        close(ready[0]);
        close(ready[1]);
        /* Let the join event arrive, so the peer's fd is known. */
        while (!(shmem_active(a) & 0x2)) {
                struct shmem_event ev;

                (void) shmem_wait(a, 10, &ev);
        }
        for (unsigned i = 0; i < n; i++) {
                uint64_t t = now_ns();

                r = shmem_notify(a, UINT64_C(1) << 1);
                if (r < 0)
                        die("notify", r);
                shm_wait_from(a, UINT64_C(1) << 1);
                samples[i] = now_ns() - t;
        }
        waitpid(child, NULL, 0);
        shmem_detach(a);
        qsort(samples, n, sizeof(*samples), cmp_u64);
        return percentile(samples, n, 0.5);
}

/* Attach latencies of @peers peers kept attached, @rounds times; ns, sorted. */
static void bench_attach(const struct shmem_attach_opts *o, unsigned peers, unsigned rounds,
                         uint64_t *samples, uint64_t *last) {
        shmem_t *h[64];

        for (unsigned round = 0; round < rounds; round++) {
                for (unsigned i = 0; i < peers; i++) {
                        uint64_t t = now_ns();
                        int r = shmem_attach(&h[i], "bench-attach", 1 << 20, 0, o);

                        if (r != 0)
                                die("attach", r);
                        samples[round * peers + i] = now_ns() - t;
                        if (i == peers - 1)
                                last[round] = samples[round * peers + i];
                }
                for (unsigned i = 0; i < peers; i++)
                        shmem_detach(h[i]);
        }
        qsort(samples, (size_t) peers * rounds, sizeof(*samples), cmp_u64);
        qsort(last, rounds, sizeof(*last), cmp_u64);
}

/* A region of @peers peers, all of them this user's. */
static pid_t broker_start(const char *path, const char *rundir, unsigned peers, char *sock, size_t size) {
        char n[16];
        pid_t pid;

        snprintf(n, sizeof(n), "%u", peers < 16 ? 16 : peers);
        pid = fork();
        if (pid == 0) {
                execl(path, path, "--rundir", rundir, "--max-peers", n, "--max-peers-per-uid", n, (char *) NULL);
                _exit(127);
        }
        snprintf(sock, size, "%s/broker.sock", rundir);
        for (int i = 0; i < 500 && access(sock, F_OK) < 0; i++)
                usleep(10000);
        if (access(sock, F_OK) < 0) {
                fprintf(stderr, "bench-shmem: broker did not start (%s)\n", path);
                exit(1);
        }
        return pid;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "broker", required_argument, NULL, 'b' },
                { "rounds", required_argument, NULL, 'r' },
                { "round-trips", required_argument, NULL, 'n' },
                { "peers", required_argument, NULL, 'p' },
                { "json", required_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *broker = NULL, *json = NULL;
        unsigned rounds = 200, trips = 20000, blocks = 5, peers = 16;
        char rundir[] = "/tmp/shmem-bench-XXXXXX", sock[300];
        uint64_t raw_med[5], shm_med[5], *samples, *last;
        double ratio_min = 1e9, ratio_max = 0, ratios[5];
        struct shmem_attach_opts o = { .size = sizeof(o), .label = "bench" };
        pid_t pid;
        int c;

        while ((c = getopt_long(argc, argv, "b:r:n:p:j:h", options, NULL)) >= 0) {
                switch (c) {
                case 'b': broker = optarg; break;
                case 'r': rounds = (unsigned) atoi(optarg); break;
                case 'n': trips = (unsigned) atoi(optarg); break;
                case 'p': peers = (unsigned) atoi(optarg); break;
                case 'j': json = optarg; break;
                case 'h':
                        printf("Usage: bench-shmem --broker PATH [--rounds N] [--round-trips N] [--peers N] "
                               "[--json FILE]\n"
                               "Starts its own broker on a temporary directory; prints a table.\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (!broker || rounds == 0 || trips == 0 || peers < 1 || peers > 64) {
                fprintf(stderr, "bench-shmem: --broker PATH is required; counts must be > 0, --peers 1..64\n");
                return 2;
        }
        if (!mkdtemp(rundir))
                return 1;
        pid = broker_start(broker, rundir, peers, sock, sizeof(sock));
        o.socket = sock;

        samples = calloc((size_t) trips > (size_t) rounds * peers ? trips : (size_t) rounds * peers,
                         sizeof(uint64_t));
        last = calloc(rounds, sizeof(uint64_t));
        if (!samples || !last)
                return 1;

        /* Alternate the two so drift on the machine hits both alike. */
        for (unsigned i = 0; i < blocks; i++) {
                raw_med[i] = bench_raw(trips, samples);
                shm_med[i] = bench_shmem(&o, trips, samples);
                ratios[i] = (double) shm_med[i] / (double) raw_med[i];
                if (ratios[i] < ratio_min)
                        ratio_min = ratios[i];
                if (ratios[i] > ratio_max)
                        ratio_max = ratios[i];
        }
        qsort(raw_med, blocks, sizeof(uint64_t), cmp_u64);
        qsort(shm_med, blocks, sizeof(uint64_t), cmp_u64);
        qsort(ratios, blocks, sizeof(double), (int (*)(const void *, const void *)) cmp_double);

        bench_attach(&o, peers, rounds, samples, last);
        {
                size_t n = (size_t) rounds * peers;
                uint64_t p50 = percentile(samples, n, 0.50), p99 = percentile(samples, n, 0.99),
                         max = samples[n - 1], last50 = percentile(last, rounds, 0.5);

                printf("signal round trip, host<->host, median of %u round trips, %u alternating blocks\n",
                       trips, blocks);
                printf("  %-34s %10.2f us\n", "raw eventfd pair (median block)", raw_med[blocks / 2] / 1e3);
                printf("  %-34s %10.2f us\n", "libshmem via broker (median block)", shm_med[blocks / 2] / 1e3);
                printf("  %-34s %10.3f  (blocks: %.3f .. %.3f)\n", "ratio libshmem/raw (median)",
                       ratios[blocks / 2], ratio_min, ratio_max);
                printf("attach latency, %u peers kept attached, %u rounds\n", peers, rounds);
                printf("  %-34s %10.1f us\n", "p50", p50 / 1e3);
                printf("  %-34s %10.1f us\n", "p99", p99 / 1e3);
                printf("  %-34s %10.1f us\n", "max", max / 1e3);
                printf("  %-34s %10.1f us\n", peers == 16 ? "p50 of the 16th attach" : "p50 of the last attach",
                       last50 / 1e3);

                if (json) {
                        FILE *f = fopen(json, "we");

                        if (!f) {
                                fprintf(stderr, "bench-shmem: cannot write %s: %m\n", json);
                                return 1;
                        }
                        fprintf(f,
                                "{\"signal_round_trip\": {\"round_trips\": %u, \"blocks\": %u, "
                                "\"raw_median_ns\": %llu, \"shmem_median_ns\": %llu, \"ratio_median\": %.4f, "
                                "\"ratio_min\": %.4f, \"ratio_max\": %.4f},\n"
                                " \"attach\": {\"peers\": %u, \"rounds\": %u, \"p50_ns\": %llu, "
                                "\"p99_ns\": %llu, \"max_ns\": %llu, \"last_attach_p50_ns\": %llu}}\n",
                                trips, blocks, (unsigned long long) raw_med[blocks / 2],
                                (unsigned long long) shm_med[blocks / 2], ratios[blocks / 2], ratio_min,
                                ratio_max, peers, rounds, (unsigned long long) p50, (unsigned long long) p99,
                                (unsigned long long) max, (unsigned long long) last50);
                        fclose(f);
                }
        }
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        rmdir(rundir);
        return 0;
}
