/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A hostile broker must not crash a client: libshmem's side of the native
 * protocol (clients/libshmem: client.c's replies and events, shmem.c's
 * attach reply and Joined/Left) against datagrams the fuzzer makes, with
 * fds, queued on the broker's end of a socketpair before the client reads.
 * The client says Hello and attaches as shmem_attach() does (no waiting:
 * what is not queued is a timeout), then shmem_from_reply() takes the
 * reply, and the attachment is used: its data touched at both ends, a
 * notify to everybody, a wait, a detach.
 *
 * Input: records of [u8 fds][u8 kind][u16 length][datagram]: the datagram
 * goes with @fds fds; the first is a memfd of 2^(kind & 31) bytes if that is
 * not 1 (else an eventfd, as are the rest); kind & 0x20: the eventfds have
 * been rung.
 *
 * Checked beyond the sanitizers: an attachment that is made has its data
 * mapped as large as it says, and no fd outlives the input.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "fuzz-util.h"
#include "shmem-internal.h"

#define DATAGRAMS_MAX 32
#define FDS_MAX 512     /* over all datagrams of one input */
#define MEMFD_SHIFT_MAX 24

/* Makes @n fds for one datagram into @fds; how many it made. */
static size_t make_fds(int *fds, size_t n, uint8_t kind) {
        unsigned shift = kind & 31;
        size_t i = 0;

        if (n > 0 && shift != 0) {
                fds[0] = memfd_create("fuzz-libshmem", MFD_CLOEXEC);
                if (fds[0] < 0 ||
                    ftruncate(fds[0], (off_t) 1 << (shift < MEMFD_SHIFT_MAX ? shift : MEMFD_SHIFT_MAX)) < 0) {
                        fd_close(fds[0]);
                        return 0;
                }
                i = 1;
        }
        for (; i < n; i++) {
                fds[i] = eventfd(kind & 0x20 ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0)
                        break;
        }
        return i;
}

/* Queues the input's datagrams on @fd, the broker's end; stops where the socket is full. */
static void broker_send(int fd, FuzzInput *in) {
        size_t total = 0;

        for (unsigned d = 0; d < DATAGRAMS_MAX && in->n > 0; d++) {
                int fds[FDMSG_FDS_MAX];
                size_t n_fds = fuzz_u8(in), n;
                uint8_t kind = fuzz_u8(in);
                const uint8_t *bytes = fuzz_record(in, &n);
                int r;

                if (n_fds > FDMSG_FDS_MAX)
                        n_fds = FDMSG_FDS_MAX;
                if (total + n_fds > FDS_MAX)
                        n_fds = FDS_MAX - total;
                n_fds = make_fds(fds, n_fds, kind);
                total += n_fds;
                r = fdmsg_send_now(fd, bytes, n, fds, n_fds);
                fds_close(fds, n_fds);
                if (r < 0)
                        return;
        }
}

/* Uses an attachment as a program would; the mapping must be as large as it says. */
static void use(shmem_t *s) {
        volatile uint8_t *data = shmem_data(s);
        struct shmem_event ev;
        uint64_t size = shmem_size(s);

        if (size > 0) {
                data[0] = data[0] + 1;
                data[size - 1] = data[size - 1] + 1;
        }
        (void) shmem_notify(s, UINT64_MAX);
        (void) shmem_unconsumed(s);
        (void) shmem_wait(s, 0, &ev);
        (void) shmem_active(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Attach at = SHMEM__ATTACH__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        FuzzInput in = { data, size };
        int fds = fuzz_count_fds(), sv[2], r;
        Client *c = NULL;
        shmem_t *s = NULL;

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        broker_send(sv[1], &in);
        if (client_new(&c, sv[0]) < 0)
                abort();

        at.name = "fuzz";
        at.size = 4096;
        m.body_case = SHMEM__MESSAGE__BODY_ATTACH;
        m.attach = &at;
        r = client_hello(c, "fuzz", 0);
        if (r == 0)
                r = client_call(c, &m, 0, &reply);
        /* The broker has said everything: what follows its datagrams is the end of the connection. */
        fd_close(sv[1]);
        if (r == 0 && client_reply_status(reply, NULL) == SHMEM_STATUS_OK) {
                r = shmem_from_reply(&s, TAKE_PTR(c), reply, "fuzz");
                if (r == 0) {
                        use(s);
                        shmem_detach(s);
                }
        }
        if (getenv("SHMEM_FUZZ_LOG"))
                fprintf(stderr, "fuzz-libshmem: %s (%d)\n", s ? "attached" : "not attached", r);
        client_free(c);
        client_msg_free(TAKE_PTR(reply));
        fuzz_check_fds(fds, "fuzz-libshmem");
        return 0;
}
