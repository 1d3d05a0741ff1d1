/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <unistd.h>

#include "macro.h"
#include "region.h"

bool peer_identity_in_group(const PeerIdentity *id, gid_t gid) {
        if (id->gid == gid)
                return true;
        for (unsigned i = 0; i < id->n_groups; i++)
                if (id->groups[i] == gid)
                        return true;
        return false;
}

const char *peer_identity_holder(const PeerIdentity *id, char buf[PEER_HOLDER_MAX]) {
        if (id->kind != SHMEM_PEER_KIND_QEMU)
                snprintf(buf, PEER_HOLDER_MAX, "uid:%u", (unsigned) id->uid);
        else if (id->vm_uuid[0])
                snprintf(buf, PEER_HOLDER_MAX, "vm:uuid:%s", id->vm_uuid);
        else
                snprintf(buf, PEER_HOLDER_MAX, "vm:pid:%d", (int) id->pid);
        return buf;
}

bool region_may_attach(const Region *r, const PeerIdentity *id) {
        unsigned bits;

        if (id->uid == 0)
                return true;
        if (id->uid == r->owner)
                bits = r->mode >> 6;
        else
                bits = peer_identity_in_group(id, r->group) ? r->mode >> 3 : r->mode;
        /* Peers map the region read-write: attaching needs both. */
        return (bits & 6) == 6;
}

bool region_size_for(unsigned signal_mode, uint64_t data_size, uint64_t limit, uint64_t *ret_data_size,
                     uint64_t *ret_region_size) {
        uint64_t data, page = signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM ? 0 : SHMEM_PAGE_SIZE,
                       total = SHMEM_PAGE_SIZE;

        if (data_size == 0 || data_size > (UINT64_C(1) << 62))
                return false;
        data = (data_size + SHMEM_PAGE_SIZE - 1) & ~(uint64_t) (SHMEM_PAGE_SIZE - 1);
        /* QEMU asserts is_power_of_2() on every BAR (docs/region-layout.md, Memory). */
        while (total < data + page)
                total <<= 1;
        if (total > limit)
                return false;
        /* Compat guests see the whole BAR as data, as with contrib's server. */
        *ret_data_size = page ? data : total;
        *ret_region_size = total;
        return true;
}

int region_new(Region **ret, const char *name, uint64_t data_size, unsigned max_peers, unsigned signal_mode,
               unsigned vectors) {
        bool compat = signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM;
        Region *r;

        if (max_peers == 0 || max_peers > SHMEM_PEERS_MAX || signal_mode > SHMEM_SIGNAL_MODE_IVSHMEM ||
            (compat && (vectors == 0 || vectors > SHMEM_PEERS_MAX + 1)))
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        snprintf(r->name, sizeof(r->name), "%s", name);
        r->signal_mode = signal_mode;
        r->data_offset = compat ? 0 : SHMEM_DATA_OFFSET;
        if (!region_size_for(signal_mode, data_size, UINT64_MAX, &r->data_size, &r->region_size)) {
                free(r);
                return -EINVAL;
        }
        r->max_peers = max_peers;
        r->vectors = compat ? vectors : max_peers + 1;
        r->memfd = -1;
        strcpy(r->backend, "memfd");
        r->page_len = SHMEM_PAGE_SIZE;
        r->mode = 0666; /* declared regions: open unless configured (broker.conf(5)) */

        *ret = r;
        return 0;
}

Region *region_free(Region *r) {
        if (!r)
                return NULL;
        region_release(r);
        free(r->pin_name);
        free(r);
        return NULL;
}

int region_set_pins(Region *r, const char *pins) {
        char copy[4096], *save = NULL;

        r->pin_name = mfree(r->pin_name);
        if (!pins || !pins[0])
                return 0;
        r->pin_name = calloc(SHMEM_PEERS_MAX, sizeof(*r->pin_name));
        if (!r->pin_name)
                return -ENOMEM;
        /* Validated by the option parser (options.c). */
        snprintf(copy, sizeof(copy), "%s", pins);
        for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
                char *colon = strrchr(t, ':');
                unsigned long index = colon ? strtoul(colon + 1, NULL, 10) : SHMEM_PEERS_MAX;

                if (colon && index < r->max_peers) {
                        *colon = 0;
                        snprintf(r->pin_name[index], sizeof(r->pin_name[index]), "%s", t);
                }
        }
        return 0;
}

/* The name index @i is pinned to, or NULL. */
static const char *region_pin(const Region *r, unsigned i) {
        return r->pin_name && r->pin_name[i][0] ? r->pin_name[i] : NULL;
}

void region_set_created_by(Region *r, const PeerIdentity *id) {
        r->created_by.kind = id->kind;
        snprintf(r->created_by.label, sizeof(r->created_by.label), "%s", id->label);
        snprintf(r->created_by.vm_uuid, sizeof(r->created_by.vm_uuid), "%s", id->vm_uuid);
        r->created_by.pid = id->pid;
        r->created_by.uid = id->uid;
}

int region_set_backend(Region *r, const char *backend) {
        uint64_t unit = SHMEM_PAGE_SIZE;

        if (r->memfd >= 0)
                return -EBUSY;
        if (!backend || !backend[0] || !strcmp(backend, "memfd"))
                backend = "memfd";
        else if (!strcmp(backend, "hugetlb-2M"))
                unit = UINT64_C(2) << 20;
        else if (!strcmp(backend, "hugetlb-1G"))
                unit = UINT64_C(1) << 30;
        else if (backend[0] == '/') {
                struct statfs sf;

                /* hugetlbfs reports its huge page size as the block size. */
                if (statfs(backend, &sf) < 0)
                        return -errno;
                if (sf.f_type == HUGETLBFS_MAGIC)
                        unit = (uint64_t) sf.f_bsize;
        } else
                return -EINVAL;
        if (strlen(backend) >= sizeof(r->backend))
                return -ENAMETOOLONG;
        strcpy(r->backend, backend);
        /* A power of two of at least one backend page: still what QEMU wants. */
        while (r->region_size < unit)
                r->region_size <<= 1;
        if (r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM)
                r->data_size = r->region_size;
        r->page_len = unit;
        return 0;
}

/* A new file of the region's backend, sized; sealed where the backend can be. */
static int region_open_memory(Region *r) {
        _cleanup_close_ int fd = -1;
        unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;

        if (r->backend[0] == '/') {
                char path[PATH_MAX];

                fd = open(r->backend, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (fd < 0) {
                        /* hugetlbfs and some DAX file systems have no O_TMPFILE. */
                        snprintf(path, sizeof(path), "%s/.shmem-%s-XXXXXX", r->backend, r->name);
                        fd = mkostemp(path, O_CLOEXEC);
                        if (fd < 0)
                                return -errno;
                        (void) unlink(path);
                }
                if (ftruncate(fd, (off_t) r->region_size) < 0)
                        return -errno;
                return TAKE_FD(fd);
        }
        if (!strcmp(r->backend, "hugetlb-2M"))
                flags |= MFD_HUGETLB | MFD_HUGE_2MB;
        else if (!strcmp(r->backend, "hugetlb-1G"))
                flags |= MFD_HUGETLB | MFD_HUGE_1GB;
        fd = memfd_create(r->name, flags);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t) r->region_size) < 0)
                return -errno;
        /* Never F_SEAL_WRITE: QEMU maps the region writable (docs/region-layout.md). Size
         * seals keep a peer from shrinking the file under the others (SIGBUS). */
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int region_allocate(Region *r) {
        _cleanup_close_ int fd = -1;
        struct shmem_control_page *page;

        if (r->memfd >= 0)
                return 0;
        fd = region_open_memory(r);
        if (fd < 0)
                return fd;
        if (r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM) {
                /* Compat: every byte is the guests' data; nothing of ours in it. */
                r->memfd = TAKE_FD(fd);
                return 0;
        }
        /* One backend page: huge pages map whole or not at all. */
        page = mmap(NULL, r->page_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (page == MAP_FAILED)
                return -errno;

        page->magic = SHMEM_LAYOUT_MAGIC;
        page->version = SHMEM_LAYOUT_VERSION;
        page->header_size = (uint32_t) offsetof(struct shmem_control_page, slots);
        snprintf(page->name, sizeof(page->name), "%s", r->name);
        page->data_offset = SHMEM_DATA_OFFSET;
        page->data_size = r->data_size;
        page->max_peers = r->max_peers;
        page->vectors = r->vectors;
        page->signal_mode = SHMEM_SIGNAL_MODE_SHMEM;
        page->slot_size = sizeof(struct shmem_slot);
        __atomic_store_n(&page->epoch, r->epoch, __ATOMIC_RELEASE);
        __atomic_store_n(&page->active, r->active, __ATOMIC_RELEASE);

        r->page = page;
        r->memfd = TAKE_FD(fd);
        return 0;
}

int region_adopt_memory(Region *r, int memfd) {
        _cleanup_close_ int fd = memfd;
        struct stat st;
        void *page;

        if (r->memfd >= 0 || fstat(fd, &st) < 0 || (uint64_t) st.st_size != r->region_size)
                return -EBADF;
        if (r->signal_mode != SHMEM_SIGNAL_MODE_IVSHMEM) {
                page = mmap(NULL, r->page_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (page == MAP_FAILED)
                        return -errno;
                r->page = page;
        }
        r->memfd = TAKE_FD(fd);
        return 0;
}

int region_restore_peer(Region *r, unsigned index, uint32_t doorbell_id, const PeerIdentity *id, bool parked,
                        int *ev, Peer **ret) {
        Peer *p;

        if (index >= r->max_peers || r->peers[index] || r->memfd < 0) {
                fds_close(ev, r->vectors);
                return -EINVAL;
        }
        p = calloc(1, sizeof(*p));
        if (p)
                p->ev = malloc(r->vectors * sizeof(int));
        if (!p || !p->ev) {
                if (p)
                        free(p);
                fds_close(ev, r->vectors);
                return -ENOMEM;
        }
        for (unsigned v = 0; v < r->vectors; v++)
                p->ev[v] = TAKE_FD(ev[v]);
        p->region = r;
        p->index = index;
        p->doorbell_id = doorbell_id;
        p->id = *id;
        p->parked = parked;
        r->peers[index] = p;
        r->n_peers++;
        if (!parked)
                r->active |= BIT(index);
        *ret = p;
        return 0;
}

void region_release(Region *r) {
        /* No peer is left that could remember an id: numbering may restart. */
        r->next_doorbell_id = 0;
        if (r->page)
                munmap(r->page, r->page_len);
        r->page = NULL;
        r->memfd = fd_close(r->memfd);
}

static void row_close(int *ev, unsigned n) {
        if (!ev)
                return;
        for (unsigned i = 0; i < n; i++)
                fd_close(ev[i]);
        free(ev);
}

static int row_new(int **ret, unsigned n) {
        int *ev = malloc(n * sizeof(int));

        if (!ev)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
                ev[i] = -1;
        for (unsigned i = 0; i < n; i++) {
                /* Non-blocking: QEMU sets that itself, and host peers read them
                 * from a poll loop. Counting (not semaphore): one read clears. */
                ev[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (ev[i] < 0) {
                        int r = -errno;

                        row_close(ev, n);
                        return r;
                }
        }
        *ret = ev;
        return 0;
}

/* Publishes membership on the control page. The broker only writes it. */
static void region_publish(Region *r) {
        r->epoch++;
        if (!r->page)
                return;
        __atomic_store_n(&r->page->active, r->active, __ATOMIC_RELEASE);
        __atomic_store_n(&r->page->epoch, r->epoch, __ATOMIC_RELEASE);
}

/* Rings the membership vector of every attached peer but @except. */
static void region_ring_control(Region *r, Peer *except) {
        uint64_t one = 1;

        /* Compat mode passes every vector through to the guests: none is ours. */
        if (r->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM)
                return;
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *p = r->peers[i];

                if (!p || p == except)
                        continue;
                /* Cannot fail short of a counter overflow, which only means
                 * the peer has a pending wakeup already. */
                (void) !write(p->ev[shmem_control_vector(r->max_peers)], &one, sizeof(one));
        }
}

/*
 * The next doorbell id not in use. Ids roll over 0..IVSHMEM_ID_MAX instead of
 * taking the lowest free one, because QEMU 7.2 writes into freed memory when
 * an id it saw leave joins again (close_peer_eventfds() frees the peer's
 * eventfd array but process_msg_connect() keeps using it).
 */
static uint32_t region_next_doorbell_id(Region *r) {
        for (;;) {
                uint32_t id = r->next_doorbell_id;
                bool used = false;

                r->next_doorbell_id = (id + 1) % (SHMEM_DOORBELL_ID_MAX + 1);
                for (unsigned i = 0; i < r->max_peers; i++)
                        if (r->peers[i] && r->peers[i]->doorbell_id == id)
                                used = true;
                if (!used)
                        return id;
        }
}

bool peer_identity_is(const PeerIdentity *id, const char *name) {
        return strcmp(id->label, name) == 0 ||
               (id->kind == SHMEM_PEER_KIND_QEMU && id->vm_uuid[0] && strcasecmp(id->vm_uuid, name) == 0);
}

/* The slot of index @i as a free one: what every reader of the page takes for "not attached". */
static void slot_clear(Region *r, unsigned i) {
        struct shmem_slot *slot = &r->page->slots[i];

        __atomic_store_n(&slot->state, SHMEM_SLOT_FREE, __ATOMIC_RELEASE);
        slot->kind = SHMEM_PEER_KIND_NONE;
        slot->doorbell_id = 0;
        memset(slot->label, 0, sizeof(slot->label));
        __atomic_store_n(&slot->pending, 0, __ATOMIC_RELEASE);
}

/* The slot of @p as an attached one; unconsumed signals to its index are not its. */
static void slot_fill(Region *r, Peer *p) {
        struct shmem_slot *slot = &r->page->slots[p->index];

        for (unsigned i = 0; i < r->max_peers; i++)
                __atomic_fetch_and(&r->page->slots[i].pending, ~BIT(p->index), __ATOMIC_ACQ_REL);
        __atomic_store_n(&slot->pending, 0, __ATOMIC_RELEASE);
        slot->kind = p->id.kind;
        slot->doorbell_id = p->doorbell_id;
        snprintf(slot->label, sizeof(slot->label), "%s", p->id.label);
        __atomic_store_n(&slot->state, SHMEM_SLOT_ACTIVE, __ATOMIC_RELEASE);
}

int region_pick_index(const Region *r, const PeerIdentity *id) {
        /* "Guest 0 is always vm-a": a pinned name gets its index, and the
         * others the lowest free index that is pinned to nobody. */
        for (unsigned i = 0; i < r->max_peers; i++)
                if (!r->peers[i] && region_pin(r, i) && peer_identity_is(id, region_pin(r, i)))
                        return (int) i;
        for (unsigned i = 0; i < r->max_peers; i++)
                if (!r->peers[i] && !region_pin(r, i))
                        return (int) i;
        return -1;
}

int region_attach_peer(Region *r, const PeerIdentity *id, const PeerOps *ops, void *userdata,
                       Peer **ret) {
        int index = region_pick_index(r, id), k;
        Peer *p;

        if (index < 0)
                return CORE_E_CLIENT_MAX;
        k = region_allocate(r);
        if (k < 0)
                return k;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        k = row_new(&p->ev, r->vectors);
        if (k < 0) {
                free(p);
                return k;
        }
        p->region = r;
        p->index = (unsigned) index;
        p->doorbell_id = region_next_doorbell_id(r);
        p->id = *id;
        p->ops = ops;
        p->userdata = userdata;

        /* Unconsumed signals of the index's previous holder must not be taken for the newcomer's. */
        if (r->page)
                slot_fill(r, p);

        r->peers[index] = p;
        r->n_peers++;
        r->active |= BIT(index);
        region_publish(r);

        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                if (o && o != p && o->ops)
                        o->ops->joined(o, p);
        }
        region_ring_control(r, p);
        *ret = p;
        return 0;
}

void region_resync(Region *r) {
        if (r->page)
                for (unsigned i = 0; i < r->max_peers; i++)
                        if (!(r->active & BIT(i))) {
                                struct shmem_slot *slot = &r->page->slots[i];

                                __atomic_store_n(&slot->state, SHMEM_SLOT_FREE, __ATOMIC_RELEASE);
                                slot->kind = SHMEM_PEER_KIND_NONE;
                                memset(slot->label, 0, sizeof(slot->label));
                        }
        region_publish(r);
        region_ring_control(r, NULL);
}

/* Parks or unparks @p: its bit and its slot leave or come back, the other
 * peers' front ends are told (PeerOps.parked/unparked), the control vectors ring. */
static void region_set_parked(Region *r, Peer *p, bool parked) {
        if (p->parked == parked)
                return;
        p->parked = parked;
        if (parked) {
                r->active &= ~BIT(p->index);
                if (r->page)
                        slot_clear(r, p->index);
        } else {
                if (r->page)
                        slot_fill(r, p);
                r->active |= BIT(p->index);
        }
        region_publish(r);
        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];
                void (*tell)(Peer *self, Peer *other);

                if (!o || o == p || !o->ops)
                        continue;
                tell = parked ? o->ops->parked : o->ops->unparked;
                if (tell)
                        tell(o, p);
        }
        region_ring_control(r, p);
}

void region_park_peer(Region *r, Peer *p) {
        region_set_parked(r, p, true);
}

void region_unpark_peer(Region *r, Peer *p) {
        region_set_parked(r, p, false);
}

void region_detach_peer(Region *r, Peer *p) {
        r->peers[p->index] = NULL;
        r->n_peers--;
        r->active &= ~BIT(p->index);

        if (r->page)
                slot_clear(r, p->index);
        /* Signals the leaver sent stay pending for their receivers: a peer
         * may signal and exit at once. region_attach_peer() clears them when
         * the index is given out again. */
        region_publish(r);

        for (unsigned i = 0; i < r->max_peers; i++) {
                Peer *o = r->peers[i];

                /* No ops: restored, not yet rebound (a restore tells nobody anything).
                 * Those told of the parking were told of the departure then. */
                if (o && o->ops && !(p->parked && o->ops->parked))
                        o->ops->left(o, p);
        }
        row_close(p->ev, r->vectors);
        free(p);
        region_ring_control(r, NULL);
}
