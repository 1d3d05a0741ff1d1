/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>

#include "state-build.h"

static void *array_grow(void ***array, size_t *n, size_t size, void (*init)(void *)) {
        void **a = realloc(*array, (*n + 1) * sizeof(void *));
        void *e;

        if (!a)
                return NULL;
        *array = a;
        e = calloc(1, size);
        if (!e)
                return NULL;
        init(e);
        a[(*n)++] = e;
        return e;
}

Shmem__State__Region *state_add_region(State *s) {
        return array_grow((void ***) &s->regions, &s->n_regions, sizeof(Shmem__State__Region),
                          (void (*)(void *)) shmem__state__region__init);
}

Shmem__State__Peer *state_add_peer(Shmem__State__Region *r) {
        return array_grow((void ***) &r->peers, &r->n_peers, sizeof(Shmem__State__Peer),
                          (void (*)(void *)) shmem__state__peer__init);
}

Shmem__State__Creator *state_add_creator(Shmem__State__Region *r) {
        Shmem__State__Creator *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        shmem__state__creator__init(c);
        free(r->created_by);
        r->created_by = c;
        return c;
}

Shmem__State__Conn *state_add_conn(State *s) {
        return array_grow((void ***) &s->conns, &s->n_conns, sizeof(Shmem__State__Conn),
                          (void (*)(void *)) shmem__state__conn__init);
}

/* A factory's part and its job, allocated together: freed with the Conn. */
typedef struct FactoryBlock {
        Shmem__State__FactoryVm vm; /* first: the block's address */
        Shmem__State__FactoryJob job;
} FactoryBlock;

Shmem__State__FactoryVm *state_add_factory(Shmem__State__Conn *c) {
        FactoryBlock *b = calloc(1, sizeof(*b));

        if (!b)
                return NULL;
        shmem__state__factory_vm__init(&b->vm);
        shmem__state__factory_job__init(&b->job);
        free(c->factory);
        c->factory = &b->vm;
        return &b->vm;
}

Shmem__State__FactoryJob *state_add_factory_job(Shmem__State__FactoryVm *f) {
        FactoryBlock *b = (FactoryBlock *) f;

        f->job = &b->job;
        return &b->job;
}

int state_add_removed_region(State *s, const char *name) {
        char **a = realloc(s->removed_regions, (s->n_removed_regions + 1) * sizeof(char *));

        if (!a)
                return -ENOMEM;
        a[s->n_removed_regions++] = (char *) name;
        s->removed_regions = a;
        return 0;
}

int state_add_removed_conn(State *s, uint64_t id) {
        uint64_t *a = realloc(s->removed_conns, (s->n_removed_conns + 1) * sizeof(uint64_t));

        if (!a)
                return -ENOMEM;
        a[s->n_removed_conns++] = id;
        s->removed_conns = a;
        return 0;
}

void state_build_done(State *s) {
        for (size_t i = 0; i < s->n_regions; i++) {
                for (size_t k = 0; k < s->regions[i]->n_peers; k++)
                        free(s->regions[i]->peers[k]);
                free(s->regions[i]->peers);
                free(s->regions[i]->created_by);
                free(s->regions[i]);
        }
        free(s->regions);
        for (size_t i = 0; i < s->n_conns; i++) {
                free(s->conns[i]->factory);
                free(s->conns[i]);
        }
        free(s->conns);
        free(s->removed_regions);
        free(s->removed_conns);
        s->regions = NULL;
        s->conns = NULL;
        s->removed_regions = NULL;
        s->removed_conns = NULL;
        s->n_regions = s->n_conns = s->n_removed_regions = s->n_removed_conns = 0;
}
