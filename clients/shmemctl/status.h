/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* status: shmemctl status, the broker's limits and their use (status.c). Exit codes and Args: common.h. */

#include "common.h"

/* The broker: version, pid, uptime, files, service manager; its limits and their use, in total and per user. */
int cmd_status(Client *c, const char *path, const Args *a);
