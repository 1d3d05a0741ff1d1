/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * shmem-tool's commands that attach and detach within a run (the Region
 * commands of --help): attach, find, create and detach, each printing one
 * line with its status. Ends with an entry whose name is NULL.
 */

#include "tool.h"

extern const Command attach_commands[];
