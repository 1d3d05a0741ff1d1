/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Building a stored state (state.proto) to serialize: arrays grown here,
 * strings borrowed from the live objects they describe. Every layer that adds
 * to a state being dumped (service/state.c, the front ends) uses these.
 */

#include "state.pb-c.h"

typedef Shmem__State__State State;

/* A new entry, zeroed and initialized; NULL on out of memory. */
Shmem__State__Region *state_add_region(State *s);
Shmem__State__Peer *state_add_peer(Shmem__State__Region *r);
/* Who made @r (r->created_by). */
Shmem__State__Creator *state_add_creator(Shmem__State__Region *r);
Shmem__State__Conn *state_add_conn(State *s);
/* A factory device's part of @c (c->factory), and the job in flight of that part (f->job). */
Shmem__State__FactoryVm *state_add_factory(Shmem__State__Conn *c);
Shmem__State__FactoryJob *state_add_factory_job(Shmem__State__FactoryVm *f);

/* A change (proto/state.proto): region @name (borrowed) / connection @id is gone. 0 or -ENOMEM. */
int state_add_removed_region(State *s, const char *name);
int state_add_removed_conn(State *s, uint64_t id);

/* Frees what the state_add_*() calls allocated (not the borrowed strings). */
void state_build_done(State *s);
