/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * shmem-guest --raw: a plain ivshmem application on a compat region (the Raw
 * commands of --help). The guest build alone.
 */

#include "tool.h"

/* Opens @bdf (NULL: the first ivshmem device) and enables every MSI-X vector; -1 after a FAIL. */
int raw_open(Tool *t, const char *bdf);

/* The commands of raw mode; write, read, expect and sleep are in commands[]. Ends with a NULL name. */
extern const Command raw_commands[];
