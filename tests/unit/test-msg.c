/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of proto/msg.c: one shmem.Message per datagram, with its fds. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "escape.h"
#include "msg.h"
#include "region-layout.h"
#include "test-util.h"

static int new_eventfd(void) {
        int fd = eventfd(0, EFD_CLOEXEC);

        ck_assert_int_ge(fd, 0);
        return fd;
}

static FdMsg *encode(const Message *m, int *fds, size_t n_fds) {
        FdMsg *out = NULL;

        ck_assert_int_eq(msg_encode(&out, m, fds, n_fds), 0);
        return out;
}

START_TEST(test_roundtrip_hello) {
        Shmem__Hello h = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        _cleanup_(fdmsg_freep) FdMsg *raw = NULL;
        _cleanup_(msg_freep) Message *back = NULL;

        h.version = SHMEM_PROTOCOL_VERSION;
        h.label = "tést \"label\"";
        m.serial = UINT64_MAX;
        m.body_case = SHMEM__MESSAGE__BODY_HELLO;
        m.hello = &h;
        raw = encode(&m, NULL, 0);
        ck_assert_uint_eq(raw->n_fds, 0);
        ck_assert_int_eq(msg_decode(&back, raw), 0);
        ck_assert_uint_eq(back->serial, UINT64_MAX);
        ck_assert_int_eq(back->body_case, SHMEM__MESSAGE__BODY_HELLO);
        ck_assert_uint_eq(back->hello->version, 1);
        ck_assert_str_eq(back->hello->label, "tést \"label\"");
        ck_assert_ptr_null(msg_free(NULL));
}
END_TEST

/* The largest message the protocol has: an attach reply, with fds that travel over a real socket. */
START_TEST(test_roundtrip_attach_reply_over_socket) {
        Shmem__PeerInfo infos[3], *ptrs[3];
        Shmem__AttachReply ar = SHMEM__ATTACH_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int fds[1 + 5 + 3], sv[2];
        FdMsg *out, *in = NULL;
        _cleanup_(msg_freep) Message *back = NULL;

        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = new_eventfd();
        for (unsigned i = 0; i < 3; i++) {
                shmem__peer_info__init(&infos[i]);
                infos[i].index = i == 0 ? 0 : i + 1;
                infos[i].kind = SHMEM__PEER_KIND__KIND_QEMU;
                infos[i].label = "vm";
                infos[i].pid = 1000 + i;
                infos[i].fd = (int32_t) (6 + i);
                infos[i].doorbell_id = 40000 + i;
                ptrs[i] = &infos[i];
        }
        ar.index = 1;
        ar.data_offset = 4096;
        ar.data_size = 1 << 20;
        ar.region_size = 2 << 20;
        ar.max_peers = 4;
        ar.vectors = 5;
        ar.created = true;
        ar.n_peers = 3;
        ar.peers = ptrs;
        reply.body_case = SHMEM__REPLY__BODY_ATTACH;
        reply.attach = &ar;
        m.serial = 2;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = &reply;

        out = encode(&m, fds, ELEMENTSOF(fds));
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                ck_assert_int_eq(fds[i], -1); /* consumed */
        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        ck_assert_int_eq(fdmsg_send(sv[0], out), 1);
        fdmsg_free(out);
        ck_assert_int_eq(fdmsg_recv(sv[1], SHMEM_MSG_MAX, SHMEM_MSG_FDS_MAX, &in), 0);
        ck_assert_uint_eq(in->n_fds, ELEMENTSOF(fds));
        ck_assert_int_eq(msg_decode(&back, in), 0);
        /* Decoding borrows: the fds are still in the datagram for the caller to steal. */
        ck_assert(fd_is_valid(in->fds[0]));

        ck_assert_uint_eq(back->serial, 2);
        ck_assert_int_eq(back->reply->status, SHMEM__STATUS__OK);
        ck_assert_int_eq(back->reply->body_case, SHMEM__REPLY__BODY_ATTACH);
        ck_assert_uint_eq(back->reply->attach->index, 1);
        ck_assert_uint_eq(back->reply->attach->region_size, 2 << 20);
        ck_assert(back->reply->attach->created);
        ck_assert_uint_eq(back->reply->attach->n_peers, 3);
        for (unsigned i = 0; i < 3; i++) {
                const Shmem__PeerInfo *pi = back->reply->attach->peers[i];

                ck_assert_uint_eq(pi->index, infos[i].index);
                ck_assert_int_eq(pi->kind, SHMEM__PEER_KIND__KIND_QEMU);
                ck_assert_str_eq(pi->label, "vm");
                ck_assert_int_eq(pi->fd, 6 + (int) i);
                ck_assert_uint_eq(pi->doorbell_id, 40000 + i);
        }
        fdmsg_free(in);
        close(sv[0]);
        close(sv[1]);
}
END_TEST

START_TEST(test_roundtrip_events) {
        Shmem__Left l = SHMEM__LEFT__INIT;
        Shmem__Joined j = SHMEM__JOINED__INIT;
        Shmem__PeerInfo pi = SHMEM__PEER_INFO__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        int fd = new_eventfd();
        _cleanup_(fdmsg_freep) FdMsg *raw = NULL;
        _cleanup_(msg_freep) Message *back = NULL;

        pi.index = 3;
        pi.fd = -1;
        j.name = "r";
        j.epoch = 9;
        j.peer = &pi;
        m.body_case = SHMEM__MESSAGE__BODY_JOINED;
        m.joined = &j;
        raw = encode(&m, &fd, 1);
        ck_assert_int_eq(msg_decode(&back, raw), 0);
        ck_assert_uint_eq(back->serial, 0);
        ck_assert_int_eq(back->joined->peer->fd, -1);
        ck_assert_uint_eq(back->joined->epoch, 9);
        back = msg_free(back);
        raw = fdmsg_free(raw);

        l.name = "r";
        l.epoch = 10;
        l.index = 63;
        m.body_case = SHMEM__MESSAGE__BODY_LEFT;
        m.left = &l;
        raw = encode(&m, NULL, 0);
        ck_assert_int_eq(msg_decode(&back, raw), 0);
        ck_assert_int_eq(back->body_case, SHMEM__MESSAGE__BODY_LEFT);
        ck_assert_uint_eq(back->left->index, 63);
}
END_TEST

START_TEST(test_empty_message) {
        Message m = SHMEM__MESSAGE__INIT;
        _cleanup_(fdmsg_freep) FdMsg *raw = encode(&m, NULL, 0);
        _cleanup_(msg_freep) Message *back = NULL;

        /* Zero bytes are a valid Message with no body: the dispatcher must refuse it, not the decoder. */
        ck_assert_uint_eq(raw->n_bytes, 0);
        ck_assert_int_eq(msg_decode(&back, raw), 0);
        ck_assert_int_eq(back->body_case, SHMEM__MESSAGE__BODY__NOT_SET);
}
END_TEST

static int decode_bytes(const void *bytes, size_t n) {
        _cleanup_(fdmsg_freep) FdMsg *raw = NULL;
        Message *m = (Message *) 0x1;
        int r;

        ck_assert_int_eq(fdmsg_new(&raw, bytes, n, NULL, 0), 0);
        r = msg_decode(&m, raw);
        if (r == 0)
                msg_free(m);
        else
                ck_assert_ptr_eq(m, (Message *) 0x1); /* untouched on failure */
        return r;
}

START_TEST(test_garbage) {
        static const struct {
                const char *bytes;
                size_t n;
        } bad[] = {
                { "\xff\xff\xff\xff garbage", 13 },   /* a varint that never ends, then junk */
                { "\x5a\x40\x0a", 3 },                /* length prefix past the end */
                { "\x52\x02\x08", 3 },                /* sub-message cut short */
                { "\x08", 1 },                        /* key without value */
                { "\x0f", 1 },                        /* wire type 7 does not exist */
                { "\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12 }, /* 11-byte varint */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(decode_bytes(bad[i].bytes, bad[i].n) == -EBADMSG, "case %zu decoded", i);
}
END_TEST

START_TEST(test_oversized) {
        _cleanup_free_ char *big = calloc(1, SHMEM_MSG_MAX + 1);

        /* Whatever it holds, more than SHMEM_MSG_MAX bytes is refused before parsing. */
        ck_assert_int_eq(decode_bytes(big, SHMEM_MSG_MAX + 1), -EBADMSG);
}
END_TEST

START_TEST(test_encode_limits) {
        int fds[SHMEM_MSG_FDS_MAX + 1];
        Shmem__Hello h = SHMEM__HELLO__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        _cleanup_free_ char *label = malloc(SHMEM_MSG_MAX + 1);
        FdMsg *out = NULL;

        m.body_case = SHMEM__MESSAGE__BODY_HELLO;
        m.hello = &h;
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = new_eventfd();
        ck_assert_int_eq(msg_encode(&out, &m, fds, ELEMENTSOF(fds)), -EMSGSIZE);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                ck_assert_int_eq(fds[i], -1); /* closed on failure too */

        memset(label, 'a', SHMEM_MSG_MAX);
        label[SHMEM_MSG_MAX] = '\0';
        h.label = label;
        fds[0] = new_eventfd();
        ck_assert_int_eq(msg_encode(&out, &m, fds, 1), -EMSGSIZE);
        ck_assert_int_eq(fds[0], -1);
        ck_assert_ptr_null(out);
}
END_TEST

START_TEST(test_status_strings) {
        for (int s = SHMEM__STATUS__OK; s <= SHMEM__STATUS__BUSY; s++)
                ck_assert_str_ne(status_text(s), "unknown status");
        ck_assert_str_eq(status_text(SHMEM__STATUS__OK), "ok");
        ck_assert_str_eq(status_text(SHMEM__STATUS__BUSY + 1), "unknown status");
        ck_assert_str_eq(status_text(-1), "unknown status");
}
END_TEST

/* proto/escape.c: a byte that is no UTF-8 is "\\xNN" wherever it stands, after a backslash too. */
START_TEST(test_escape_bytes_that_are_no_utf8) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "a\\\xff", "a\\\\\\xff" },       /* a backslash, then 0xff */
                { "\xff", "\\xff" },                /* first */
                { "\\\xc3", "\\\\\\xc3" },        /* a sequence cut after a backslash */
                { "\\\x80\\", "\\\\\\x80\\\\" },
                { "\xc3\xa9\\", "\xc3\xa9\\\\" },   /* UTF-8 stays, the backslash after it doubles */
        };
        char buf[64];

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ck_assert_str_eq(str_escape(buf, sizeof(buf), cases[i].in), cases[i].out);
}
END_TEST

/* --- replies that need no pages: bounded whatever the strings ------------------- */

/* @n bytes of 'x' (what a name, label or path of that length costs on the wire). */
static char *str_of(size_t n) {
        char *s = malloc(n + 1);

        ck_assert_ptr_nonnull(s);
        memset(s, 'x', n);
        s[n] = '\0';
        return s;
}

/* The packed size of a Reply in a Message with every number at its widest. */
static size_t reply_size(Shmem__Reply *reply) {
        Message m = SHMEM__MESSAGE__INIT;

        m.serial = UINT64_MAX;
        m.body_case = SHMEM__MESSAGE__BODY_REPLY;
        m.reply = reply;
        reply->status = SHMEM__STATUS__BUSY;
        reply->error = "";
        return shmem__message__get_packed_size(&m);
}

/*
 * Inspect of one region (docs/protocol.md: "Inspect needs no pages"): its
 * RegionInfo with the longest strings the broker holds (name 63, backend and
 * socket path 255, creator label 31, UUID 36, holder key 47) and 64 peers of
 * 31-byte labels and UUIDs, every number its largest: under 9 KiB, far from
 * SHMEM_MSG_MAX. AttachReply's 64 PeerInfos alike.
 */
START_TEST(test_inspect_and_attach_replies_are_bounded) {
        _cleanup_free_ char *name = str_of(SHMEM_NAME_MAX), *path = str_of(255), *label = str_of(SHMEM_LABEL_MAX);
        _cleanup_free_ char *uuid = str_of(36), *key = str_of(47);
        Shmem__PeerState states[SHMEM_PEERS_MAX], *state_ptrs[SHMEM_PEERS_MAX];
        Shmem__PeerInfo infos[SHMEM_PEERS_MAX], *info_ptrs[SHMEM_PEERS_MAX];
        Shmem__RegionInfo info = SHMEM__REGION_INFO__INIT;
        Shmem__Creator creator = SHMEM__CREATOR__INIT;
        Shmem__InspectReply inspect = SHMEM__INSPECT_REPLY__INIT;
        Shmem__AttachReply attach = SHMEM__ATTACH_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        size_t n;

        creator.kind = SHMEM__PEER_KIND__KIND_QEMU;
        creator.label = label;
        creator.vm_uuid = uuid;
        creator.pid = creator.uid = UINT32_MAX;
        creator.key = key;
        info.name = name;
        info.backend = info.qemu_socket = path;
        info.data_size = info.region_size = info.epoch = info.active = info.declared_size = UINT64_MAX;
        info.max_peers = info.vectors = info.signal_mode = info.owner = info.group = info.mode = UINT32_MAX;
        info.declared_max_peers = UINT32_MAX;
        info.persistent = info.allocated = true;
        info.created_by = &creator;
        for (size_t i = 0; i < SHMEM_PEERS_MAX; i++) {
                shmem__peer_state__init(&states[i]);
                states[i].index = states[i].pid = states[i].uid = states[i].doorbell_id = UINT32_MAX;
                states[i].departures_told = UINT32_MAX;
                states[i].kind = SHMEM__PEER_KIND__KIND_QEMU;
                states[i].label = label;
                states[i].vm_uuid = uuid;
                states[i].pending = UINT64_MAX;
                states[i].libvirt = states[i].parked = true;
                state_ptrs[i] = &states[i];
                shmem__peer_info__init(&infos[i]);
                infos[i].index = infos[i].pid = infos[i].doorbell_id = UINT32_MAX;
                infos[i].kind = SHMEM__PEER_KIND__KIND_QEMU;
                infos[i].label = label;
                infos[i].fd = INT32_MIN;
                info_ptrs[i] = &infos[i];
        }
        info.n_peers = SHMEM_PEERS_MAX;
        info.peers = state_ptrs;
        inspect.region = &info;
        reply.body_case = SHMEM__REPLY__BODY_INSPECT;
        reply.inspect = &inspect;
        n = reply_size(&reply);
        ck_assert_msg(n < 9 * 1024, "Inspect's largest reply: %zu bytes", n);

        attach.index = attach.max_peers = attach.vectors = UINT32_MAX;
        attach.data_offset = attach.data_size = attach.region_size = UINT64_MAX;
        attach.created = true;
        attach.n_peers = SHMEM_PEERS_MAX;
        attach.peers = info_ptrs;
        reply.body_case = SHMEM__REPLY__BODY_ATTACH;
        reply.attach = &attach;
        n = reply_size(&reply);
        ck_assert_msg(n < 8 * 1024, "Attach's largest reply: %zu bytes", n);
}
END_TEST

/*
 * One VM of the Factory listing is never split between pages
 * (docs/protocol.md, "Listing in pages"): with the longest strings (label 31,
 * UUID 36, monitor 107, a 63-character region in flight and on each device)
 * and the default connections-per-vm (64) devices it is some 5 KiB; the
 * devices one message holds are the "some 800" the documentation says.
 */
START_TEST(test_factory_vm_bounds) {
        _cleanup_free_ char *name = str_of(SHMEM_NAME_MAX), *label = str_of(SHMEM_LABEL_MAX), *uuid = str_of(36);
        _cleanup_free_ char *monitor = str_of(107);
        _cleanup_free_ Shmem__FactoryDevice *devices = calloc(2000, sizeof(*devices));
        _cleanup_free_ Shmem__FactoryDevice **ptrs = calloc(2000, sizeof(*ptrs));
        Shmem__FactoryRequest q = SHMEM__FACTORY_REQUEST__INIT;
        Shmem__FactoryVm vm = SHMEM__FACTORY_VM__INIT, *vms[] = { &vm };
        Shmem__FactoryReply f = SHMEM__FACTORY_REPLY__INIT;
        Shmem__Reply reply = SHMEM__REPLY__INIT;
        size_t n, fit = 0;

        ck_assert_ptr_nonnull(devices);
        ck_assert_ptr_nonnull(ptrs);
        vm.label = label;
        vm.vm_uuid = uuid;
        vm.monitor = monitor;
        vm.pid = vm.served = vm.refused = UINT32_MAX;
        vm.conn = UINT64_MAX;
        vm.libvirt = true;
        q.op = UINT32_MAX;
        q.region = name;
        q.seq = q.since_ms = UINT64_MAX;
        q.restarted = true;
        vm.in_flight = &q;
        for (size_t i = 0; i < 2000; i++) {
                shmem__factory_device__init(&devices[i]);
                devices[i].region = name;
                devices[i].index = devices[i].doorbell_id = UINT32_MAX;
                devices[i].parked = true;
                ptrs[i] = &devices[i];
        }
        vm.devices = ptrs;
        f.n_vms = 1;
        f.vms = vms;
        f.next = UINT64_MAX;
        f.all_vms = true;
        reply.body_case = SHMEM__REPLY__BODY_FACTORY;
        reply.factory = &f;
        vm.n_devices = 64;
        n = reply_size(&reply);
        ck_assert_msg(n < 6 * 1024, "a VM with 64 devices: %zu bytes", n);
        for (vm.n_devices = 64; vm.n_devices < 2000; vm.n_devices++)
                if (reply_size(&reply) <= SHMEM_MSG_MAX)
                        fit = vm.n_devices;
        ck_assert_msg(fit >= 700 && fit < 900, "one message holds a VM with %zu devices", fit);
}
END_TEST

static Suite *msg_suite(void) {
        Suite *s = suite_create("msg");
        TCase *tc;

        tc = tcase_new("roundtrip");
        tcase_add_test(tc, test_roundtrip_hello);
        tcase_add_test(tc, test_roundtrip_attach_reply_over_socket);
        tcase_add_test(tc, test_roundtrip_events);
        tcase_add_test(tc, test_empty_message);
        suite_add_tcase(s, tc);

        tc = tcase_new("malformed");
        tcase_add_test(tc, test_garbage);
        tcase_add_test(tc, test_oversized);
        suite_add_tcase(s, tc);

        tc = tcase_new("limits");
        tcase_add_test(tc, test_encode_limits);
        tcase_add_test(tc, test_status_strings);
        suite_add_tcase(s, tc);

        tc = tcase_new("bounds");
        tcase_add_test(tc, test_inspect_and_attach_replies_are_bounded);
        tcase_add_test(tc, test_factory_vm_bounds);
        suite_add_tcase(s, tc);

        tc = tcase_new("escape");
        tcase_add_test(tc, test_escape_bytes_that_are_no_utf8);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return run_suite(msg_suite());
}
