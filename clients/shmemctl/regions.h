/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* regions: shmemctl's region commands (regions.c). Exit codes and Args: common.h. */

#include <stdint.h>

#include "common.h"

/* The columns of list and of inspect's peer table, for their help. */
extern const TableSpec list_table, peer_table;

int cmd_list(Client *c, const char *path, const Args *a);
int cmd_inspect(Client *c, const char *path, const Args *a, const char *name);
int cmd_create(Client *c, const char *path, const Args *a, const char *name, uint64_t size);
int cmd_destroy(Client *c, const char *path, const Args *a, const char *name);
