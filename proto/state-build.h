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
Shmem__State__Conn *state_add_conn(State *s);

/* Frees what the state_add_*() calls allocated (not the borrowed strings). */
void state_build_done(State *s);
