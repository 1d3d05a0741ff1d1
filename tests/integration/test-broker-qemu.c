/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration, QEMU's side, spoken by a fake QEMU (fake-peers.h) to the real
 * shmem-brokerd (broker-fixture.h): message order and notices, compat mode,
 * who may connect to a QEMU socket, and a refusal QEMU understands.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker-fixture.h"
#include "fake-peers.h"
#include "region-layout.h"
#include "test-util.h"

/* Nothing more arrives within 200 ms. */
static void qemu_expect_quiet(int sock) {
        struct pollfd p = { .fd = sock, .events = POLLIN };

        ck_assert_int_eq(poll(&p, 1, 200), 0);
}

START_TEST(test_qemu_protocol) {
        shmem_t *host = attach("declared", 0);
        int q1, q2, memfd, fd_to_host = -1;
        int64_t v;
        struct stat st;
        struct shmem_control_page *page;

        /* Handshake, in contrib/ivshmem-server's order. */
        q1 = qemu_connect("declared");
        qemu_expect(q1, 0, false);      /* version */
        qemu_expect(q1, 1, false);      /* doorbell id: the host peer has 0 */
        memfd = qemu_read(q1, &v);
        ck_assert_int_eq(v, -1);
        ck_assert_int_ge(memfd, 0);
        ck_assert_int_eq(fstat(memfd, &st), 0);
        ck_assert_int_eq(st.st_size & (st.st_size - 1), 0); /* a power of two, or QEMU aborts */
        fd_to_host = qemu_read(q1, &v); /* the host peer: one fd, its "vector 0" */
        ck_assert_int_eq(v, 0);
        ck_assert_int_ge(fd_to_host, 0);
        for (int i = 0; i < 17; i++)
                qemu_expect(q1, 1, true); /* own vectors: max_peers + 1 */
        qemu_expect_quiet(q1);

        page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
        ck_assert_ptr_ne(page, MAP_FAILED);
        ck_assert_uint_eq(page->magic, SHMEM_LAYOUT_MAGIC);
        ck_assert_uint_eq(page->slots[1].doorbell_id, 1);
        ck_assert_uint_eq(page->slots[1].kind, SHMEM_PEER_KIND_QEMU);

        /* What a guest does: its bit in the host's pending word, then the
         * doorbell, which QEMU turns into this eventfd write. */
        __atomic_fetch_or(&page->slots[0].pending, UINT64_C(1) << 1, __ATOMIC_SEQ_CST);
        ck_assert_int_eq(write(fd_to_host, &(uint64_t) { 1 }, 8), 8);
        ck_assert_uint_eq(wait_senders(host, 0x2, 3000), 0x2);

        /* A second QEMU: the first gets one join message with one fd. */
        q2 = qemu_connect("declared");
        qemu_expect(q1, 2, true);
        qemu_expect_quiet(q1);
        /* The host leaves: a leave notice is an id without fd. */
        shmem_detach(host);
        qemu_expect(q1, 0, false);
        close(q2);
        qemu_expect(q1, 2, false);
        /* Index 0 is free again, but its doorbell id is not reused (QEMU 7.2 heap bug). */
        host = attach("declared", 0);
        ck_assert_uint_eq(shmem_index(host), 0);
        qemu_expect(q1, 3, true);
        ck_assert_uint_eq(page->slots[0].doorbell_id, 3);

        munmap((void *) page, 4096);
        close(fd_to_host);
        close(memfd);
        close(q1);
        shmem_detach(host);
}
END_TEST

START_TEST(test_qemu_compat_mode) {
        int q1 = qemu_connect("compat"), q2, memfd, own1[3], to_q1[3];
        uint64_t head, count;
        struct stat st;
        int64_t v;

        /* contrib/ivshmem-server's handshake: no control page, 3 vectors each. */
        qemu_expect(q1, 0, false);
        qemu_expect(q1, 0, false); /* doorbell id 0 */
        memfd = qemu_read(q1, &v);
        ck_assert_int_eq(v, -1);
        ck_assert_int_eq(fstat(memfd, &st), 0);
        ck_assert_int_eq(st.st_size, 4 << 20); /* 3M rounded to a power of two: all data */
        ck_assert_int_eq(pread(memfd, &head, sizeof(head), 0), (ssize_t) sizeof(head));
        ck_assert_uint_eq(head, 0); /* no control page magic: the guests own every byte */
        for (int i = 0; i < 3; i++) {
                own1[i] = qemu_read(q1, &v);
                ck_assert_int_eq(v, 0);
                ck_assert_int_ge(own1[i], 0);
        }
        qemu_expect_quiet(q1);

        q2 = qemu_connect("compat");
        qemu_expect(q2, 0, false);
        qemu_expect(q2, 1, false);
        qemu_expect(q2, -1, true);
        for (int i = 0; i < 3; i++) { /* every vector of peer 0 */
                to_q1[i] = qemu_read(q2, &v);
                ck_assert_int_eq(v, 0);
        }
        for (int i = 0; i < 3; i++)
                qemu_expect(q2, 1, true);
        for (int i = 0; i < 3; i++) /* q1 learns all of q2's vectors */
                qemu_expect(q1, 1, true);

        /* Guest 1 rings guest 0's vector 2: exactly that vector fires. */
        ck_assert_int_eq(write(to_q1[2], &(uint64_t) { 1 }, 8), 8);
        ck_assert_int_eq(read(own1[2], &count, 8), 8);
        ck_assert_int_eq(fcntl(own1[0], F_SETFL, O_NONBLOCK), 0);
        ck_assert_int_eq(read(own1[0], &count, 8), -1);

        /* Host peers speak the control-page protocol: refused here. */
        ck_assert_ptr_null(attach_flags("compat", 0, 0, SHMEM_STATUS_BAD_REQUEST));
        close(q2);
        qemu_expect(q1, 1, false);
        for (int i = 0; i < 3; i++) {
                close(own1[i]);
                close(to_q1[i]);
        }
        close(memfd);
        close(q1);
}
END_TEST

/* Connects to a QEMU socket as uid 65534 with @gid as its only group; returns errno or 0. */
static int qemu_connect_as(gid_t gid) {
        int pipefd[2], err = -1;
        pid_t child;

        ck_assert_int_eq(pipe(pipefd), 0);
        child = fork();
        if (child == 0) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int fd, e = 0;

                if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(65534) < 0)
                        _exit(1);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/qemu/declared.sock", rundir);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        e = errno;
                (void) !write(pipefd[1], &e, sizeof(e));
                _exit(0);
        }
        close(pipefd[1]);
        ck_assert_int_eq(read(pipefd[0], &err, sizeof(err)), (ssize_t) sizeof(err));
        close(pipefd[0]);
        ck_assert_int_eq(waitpid(child, NULL, 0), child);
        return err;
}

START_TEST(test_qemu_socket_group) {
        const char *const groups[] = { "libvirt-qemu", "kvm" };
        struct group *g = NULL;
        char path[300];
        struct stat st;

        ck_assert_int_eq(chmod(rundir, 0755), 0); /* mkdtemp() made it 0700 */
        snprintf(path, sizeof(path), "%.200s/qemu/declared.sock", rundir);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0660);
        for (size_t i = 0; i < 2 && !g; i++)
                g = getgrnam(groups[i]);
        if (g) {
                /* The group QEMU runs in (libvirt-qemu, else kvm) may connect... */
                ck_assert_int_eq(st.st_gid, g->gr_gid);
                ck_assert_int_eq(qemu_connect_as(g->gr_gid), 0);
        } else
                ck_assert_int_eq(st.st_gid, getegid());
        /* ...anyone else may not. */
        ck_assert_int_eq(qemu_connect_as(65534), EACCES);
}
END_TEST

START_TEST(test_qemu_refused_by_version) {
        shmem_t *a = attach("pair", 0), *b = attach("pair", 0);
        int q = qemu_connect("pair");
        int64_t v;
        char c;

        /* Full: refused by a version QEMU reports ("server sent version 1003"),
         * never by a close mid-handshake, which hangs QEMU. */
        ck_assert_int_eq(qemu_read(q, &v), -1);
        ck_assert_int_eq(v, 1000 + SHMEM_STATUS_CLIENT_MAX);
        ck_assert_int_eq(recv(q, &c, 1, 0), 0);
        close(q);
        assert_others_unharmed(a, b);
        shmem_detach(b);
        shmem_detach(a);
}
END_TEST

static Suite *broker_qemu_suite(void) {
        Suite *s = suite_create("broker-qemu");
        TCase *tc;

        tc = broker_tcase(s, "qemu-protocol", setup, 30);
        tcase_add_test(tc, test_qemu_protocol);
        tcase_add_test(tc, test_qemu_refused_by_version);
        tcase_add_test(tc, test_qemu_compat_mode);
        tcase_add_test(tc, test_qemu_socket_group);
        return s;
}

int main(void) {
        return run_suite(broker_qemu_suite());
}
