/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* factory: shmemctl's view of the guest factory (factory.c). Exit codes and Args: common.h. */

#include "common.h"

/* The columns of each VM's device table, for its help. */
extern const TableSpec device_table;

/* Every VM connected to the broker's guest factory, its requests and its devices. */
int cmd_factory(Client *c, const char *path, const Args *a);
