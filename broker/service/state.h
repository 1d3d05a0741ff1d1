/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The broker's state as a restarted broker needs it (proto/state.proto,
 * docs/persistence.md): the registry's part is dumped and adopted here, the
 * front ends add and rebind their connections (server_dump(), the plugins'
 * dump). Serialized into a sealed memfd that goes to the fd store.
 */

#include <stddef.h>
#include <stdint.h>

#include "keeper.h"
#include "registry.h"
#include "state-build.h"

#define STATE_VERSION 1
#define STATE_SIZE_MAX (64 << 20)

/* Adds the registry's regions and peers to @s (strings borrowed). */
int state_dump_registry(Registry *reg, State *s);

/*
 * state_adopt_registry() - rebuild the regions and peers of @s in @reg, their
 * memory and eventfds taken from @keeper. A region whose memory did not come
 * back is dropped, and so is a peer whose row did not; each is logged.
 * Front ends then rebind their connections; registry_adopt_finish() detaches
 * the peers none took. Returns 0 or a negative errno (out of memory).
 */
int state_adopt_registry(Registry *reg, const State *s, Keeper *keeper);

/* Serializes @s into a new sealed memfd: the fd, or -errno. */
int state_write(State *s);

/* Parses a state of @n bytes; NULL if it is not one of STATE_VERSION. Free with state_free(). */
State *state_parse(const uint8_t *buf, size_t n);
/* state_parse() of a stored state's memfd (borrowed). */
State *state_read(int fd);
void state_free(State *s);
static inline void state_freep(State **s) {
        state_free(*s);
}
