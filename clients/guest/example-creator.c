/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * example-creator.c: the guest program of docs/factory.md ("From zero"). It
 * attaches region "demo", which its attach creates with 128 MiB if no peer
 * made it yet, waits for another peer, greets it and waits for its signal.
 * Build: cc -static -I clients/libshmem example-creator.c libshmem-guest.a
 */
#include <stdio.h>
#include <string.h>
#include <shmem.h>

int main(void) {
        struct shmem_event ev = { 0 };
        shmem_t *shm;
        int r;

        r = shmem_attach(&shm, "demo", 128u << 20, 0, NULL);
        if (r != 0) {
                fprintf(stderr, "attach demo: %s (%d)\n", shmem_strstatus(r), r);
                return 1;
        }
        printf("demo: %llu bytes, I am peer %u\n", (unsigned long long) shmem_size(shm), shmem_index(shm));

        /* Signals to peers not attached yet are dropped: wait for one first. */
        while (shmem_active(shm) == 1ull << shmem_index(shm))
                if (shmem_wait(shm, 60000, &ev) <= 0)
                        goto out;
        strcpy(shmem_data(shm), "hello from the guest");
        shmem_notify(shm, SHMEM_ALL_BUT_ME);
        do
                r = shmem_wait(shm, 60000, &ev);
        while (r == 1 && !ev.senders);
        if (r == 1)
                printf("signaled by 0x%llx\n", (unsigned long long) ev.senders);
out:
        shmem_detach(shm);
        return r == 1 ? 0 : 1;
}
