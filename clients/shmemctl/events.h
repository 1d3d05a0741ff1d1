/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * events: the lines of shmemctl watch, one per event of the broker (Joined,
 * Left, StatusChanged; docs/protocol.md). Stable, so that scripts can match
 * them, and free of timestamps unless asked (watch --timestamps: the time
 * first, then the line as below):
 *
 *   created NAME          (the region exists: declared, or made by an attach)
 *   allocated NAME        (its memory exists)
 *   freed NAME            (its memory is gone; the declared name stays)
 *   destroyed NAME        (the name is gone)
 *   joined NAME index=I kind=host|qemu pid=P epoch=E label=LABEL
 *   left NAME index=I epoch=E
 *   state NAME state=N    (a region state this shmemctl does not know)
 *
 * Fields are separated by one space; bytes of a label or name that are
 * control characters, space, DEL or '\' are written as \xNN. With JSON, one
 * object per line: {"event":"joined","region":NAME,"index":I,...}, with a
 * time its first member: {"time":TIME,"event":...}.
 */

#include <stdbool.h>
#include <stdio.h>

#include "msg.h"

/* "host", "qemu" or "none". */
const char *peer_kind_str(unsigned kind);

/* The region an event is about; NULL if @m is not an event watch shows. */
const char *event_region(const Message *m);

/*
 * Prints @m as one line, after @time if not NULL (units_format_time(): when
 * shmemctl read it); returns false (printing nothing) if it is not an event
 * watch shows.
 */
bool event_print(FILE *f, const Message *m, bool json, const char *time);
