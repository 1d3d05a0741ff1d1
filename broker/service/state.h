/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The broker's state as a restarted broker needs it (proto/state.proto,
 * docs/persistence.md): the registry's part is dumped and adopted here, the
 * front ends add their connections (FrontConnOps.dump) and rebind them
 * (server_restore(), the plugins' restore). Stored in a memfd as a snapshot
 * and a log of changes (state-image.h).
 */

#include <stddef.h>
#include <stdint.h>

#include "keeper.h"
#include "registry.h"
#include "state-build.h"
#include "state-image.h"

/* Adds the registry's regions and peers, and its next connection id, to @s (strings borrowed). */
int state_dump_registry(Registry *reg, State *s);
/* Adds region @r with its peers to @s (strings borrowed): what a change to it stores. */
int state_dump_region(Region *r, State *s);

/*
 * state_adopt_registry() - rebuild the regions and peers of @s in @reg, their
 * memory and eventfds taken from @keeper. A region whose memory did not come
 * back is dropped, and so is a peer whose row did not; each is logged.
 * Front ends then rebind their connections; registry_adopt_finish() detaches
 * the peers none took. Returns 0 or a negative errno (out of memory).
 */
int state_adopt_registry(Registry *reg, const State *s, Keeper *keeper);
