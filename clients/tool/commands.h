/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * shmem-tool's commands on a region, through shmem.h (the Commands and the
 * Forgery commands of --help); write, read, expect and sleep serve raw mode
 * too. Ends with an entry whose name is NULL.
 */

#include "tool.h"

extern const Command commands[];
