/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The daemon's own settings and their option table (each plugin has its
 * own): main.c reads them from the files and the command line, the config
 * fuzzer (tests/fuzz/fuzz-config.c) feeds the same table.
 */

#include "options.h"

typedef struct DaemonSettings {
        char rundir[OPTION_PATH_MAX]; /* "": $RUNTIME_DIRECTORY, else SHMEM_DEFAULT_RUNDIR */
        Limits limits;
} DaemonSettings;

extern const Option daemon_options[];
extern const size_t daemon_n_options;
