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
 *  3. With --churn N: blocks of N attach+detach cycles of one more peer while
 *     --peers - 1 others stay attached in a child process that reads their
 *     events, without a service manager (bench-scale.py has the churn under
 *     one, and beside many regions): cycles a second, the broker's CPU a
 *     cycle, its fds and RSS before and after.
 *
 * Usage: bench-shmem --broker PATH [--rounds N] [--round-trips N] [--peers N] [--churn N] [--json FILE]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "samples.h"
#include "shmem.h"

static int cmp_double(const double *a, const double *b) {
        return *a < *b ? -1 : *a > *b;
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
        qsort(samples, n, sizeof(*samples), samples_cmp);
        return samples_percentile(samples, n, 0.5);
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
        qsort(samples, n, sizeof(*samples), samples_cmp);
        return samples_percentile(samples, n, 0.5);
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
        qsort(samples, (size_t) peers * rounds, sizeof(*samples), samples_cmp);
        qsort(last, rounds, sizeof(*last), samples_cmp);
}

/*
 * The @kept peers of the churn, in a child process that reads their events as
 * a live peer does (one that never read would have its queue fill instead).
 * Writes a byte to @ready once attached; detaches once @stop reaches EOF.
 */
static void churn_keeper(const struct shmem_attach_opts *o, unsigned kept, int ready, int stop) {
        struct pollfd p[65];
        shmem_t *h[64];

        for (unsigned i = 0; i < kept; i++) {
                int r = shmem_attach(&h[i], "bench-churn", 1 << 20, 0, o);

                if (r != 0)
                        die("attach", r);
                p[i] = (struct pollfd) { .fd = shmem_fd(h[i]), .events = POLLIN };
        }
        p[kept] = (struct pollfd) { .fd = stop, .events = POLLIN };
        if (write(ready, "x", 1) != 1)
                _exit(1);
        for (;;) {
                if (poll(p, kept + 1, -1) < 0)
                        continue;
                if (p[kept].revents)
                        break;
                for (unsigned i = 0; i < kept; i++) {
                        struct shmem_event ev;

                        if (p[i].revents)
                                (void) shmem_wait(h[i], 0, &ev);
                }
        }
        for (unsigned i = 0; i < kept; i++)
                shmem_detach(h[i]);
        _exit(0);
}

/* @cycles attach+detach of "bench-churn" beside @kept peers attached to it; cycles a second. */
static double bench_churn(const struct shmem_attach_opts *o, unsigned kept, unsigned cycles) {
        int ready[2], stop[2];
        uint64_t t;
        double rate;
        pid_t child;
        char c;

        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(stop, O_CLOEXEC) < 0)
                die("pipe", -errno);
        child = fork();
        if (child == 0) {
                close(stop[1]);
                churn_keeper(o, kept, ready[1], stop[0]);
        }
        close(ready[1]);
        close(stop[0]);
        if (read(ready[0], &c, 1) != 1)
                die("the kept peers", -EIO);
        t = now_ns();
        for (unsigned i = 0; i < cycles; i++) {
                shmem_t *h;
                int r = shmem_attach(&h, "bench-churn", 1 << 20, 0, o);

                if (r != 0)
                        die("churn attach", r);
                shmem_detach(h);
        }
        rate = (double) cycles / ((double) (now_ns() - t) / 1e9);
        close(stop[1]);
        close(ready[0]);
        waitpid(child, NULL, 0);
        return rate;
}

/* The CPU time @pid used so far (user + system), in clock ticks. */
static uint64_t proc_cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long ut = 0, st = 0;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        p = strrchr(buf, ')'); /* the name may hold spaces */
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
                return 0;
        return ut + st;
}

/* The broker's open fds and VmRSS (KiB). */
static void broker_usage(pid_t pid, unsigned *ret_fds, unsigned *ret_rss_kib) {
        char path[64], line[256];
        struct dirent *de;
        unsigned n = 0;
        DIR *d;
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        while (d && (de = readdir(d)))
                n += de->d_name[0] != '.';
        if (d)
                closedir(d);
        *ret_fds = n;
        *ret_rss_kib = 0;
        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        while (f && fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %u", ret_rss_kib) == 1)
                        break;
        if (f)
                fclose(f);
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
                { "churn", required_argument, NULL, 'c' },
                { "json", required_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *broker = NULL, *json = NULL;
        unsigned rounds = 200, trips = 20000, blocks = 5, peers = 16, churn = 0;
        unsigned fds0 = 0, rss0 = 0, fds1 = 0, rss1 = 0;
        double churn_rate[5];
        uint64_t churn_cpu = 0;
        char rundir[] = "/tmp/shmem-bench-XXXXXX", sock[300];
        uint64_t raw_med[5], shm_med[5], *samples, *last;
        double ratio_min = 1e9, ratio_max = 0, ratios[5];
        struct shmem_attach_opts o = { .size = sizeof(o), .label = "bench" };
        pid_t pid;
        int c;

        while ((c = getopt_long(argc, argv, "b:r:n:p:c:j:h", options, NULL)) >= 0) {
                switch (c) {
                case 'b': broker = optarg; break;
                case 'r': rounds = (unsigned) atoi(optarg); break;
                case 'n': trips = (unsigned) atoi(optarg); break;
                case 'p': peers = (unsigned) atoi(optarg); break;
                case 'c': churn = (unsigned) atoi(optarg); break;
                case 'j': json = optarg; break;
                case 'h':
                        printf("Usage: bench-shmem --broker PATH [--rounds N] [--round-trips N] [--peers N] "
                               "[--churn N] [--json FILE]\n"
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
        qsort(raw_med, blocks, sizeof(uint64_t), samples_cmp);
        qsort(shm_med, blocks, sizeof(uint64_t), samples_cmp);
        qsort(ratios, blocks, sizeof(double), (int (*)(const void *, const void *)) cmp_double);

        bench_attach(&o, peers, rounds, samples, last);
        if (churn) {
                (void) bench_churn(&o, peers - 1, 10); /* what is allocated once is not growth */
                broker_usage(pid, &fds0, &rss0);
                for (unsigned i = 0; i < blocks; i++) {
                        uint64_t t0 = proc_cpu_ticks(pid);

                        churn_rate[i] = bench_churn(&o, peers - 1, churn);
                        churn_cpu += proc_cpu_ticks(pid) - t0;
                }
                broker_usage(pid, &fds1, &rss1);
                qsort(churn_rate, blocks, sizeof(double), (int (*)(const void *, const void *)) cmp_double);
        }
        {
                size_t n = (size_t) rounds * peers;
                uint64_t p50 = samples_percentile(samples, n, 0.50), p99 = samples_percentile(samples, n, 0.99),
                         max = samples[n - 1], last50 = samples_percentile(last, rounds, 0.5);

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
                if (churn) {
                        printf("attach+detach churn, %u peers kept attached, %u blocks of %u cycles\n", peers - 1,
                               blocks, churn);
                        printf("  %-34s %10.0f /s  (blocks: %.0f .. %.0f)\n", "cycles (median block)",
                               churn_rate[blocks / 2], churn_rate[0], churn_rate[blocks - 1]);
                        printf("  %-34s %10.1f us\n", "broker CPU a cycle",
                               1e6 * (double) churn_cpu / (double) sysconf(_SC_CLK_TCK) / (double) (blocks * churn));
                        printf("  %-34s %u -> %u fds, %u -> %u KiB\n", "broker, before -> after", fds0, fds1, rss0,
                               rss1);
                }

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
                                "\"p99_ns\": %llu, \"max_ns\": %llu, \"last_attach_p50_ns\": %llu}",
                                trips, blocks, (unsigned long long) raw_med[blocks / 2],
                                (unsigned long long) shm_med[blocks / 2], ratios[blocks / 2], ratio_min,
                                ratio_max, peers, rounds, (unsigned long long) p50, (unsigned long long) p99,
                                (unsigned long long) max, (unsigned long long) last50);
                        if (churn)
                                fprintf(f,
                                        ",\n \"churn\": {\"kept\": %u, \"cycles\": %u, \"blocks\": %u, "
                                        "\"median_per_s\": %.0f, \"broker_cpu_us\": %.1f, \"fds_before\": %u, "
                                        "\"fds_after\": %u, \"rss_kib_before\": %u, \"rss_kib_after\": %u}",
                                        peers - 1, churn, blocks, churn_rate[blocks / 2],
                                        1e6 * (double) churn_cpu / (double) sysconf(_SC_CLK_TCK) /
                                                (double) (blocks * churn),
                                        fds0, fds1, rss0, rss1);
                        fprintf(f, "}\n");
                        fclose(f);
                }
        }
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        rmdir(rundir);
        return 0;
}
