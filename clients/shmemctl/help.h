/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * help: shmemctl's commands by name, each with its synopsis, one line for
 * the global help and its own text (`shmemctl help CMD`, `shmemctl CMD
 * --help`). The global help's list of commands is made from the same
 * table, so that it names every command and no other.
 */

#include <stdio.h>

/* Whether @name is a command of shmemctl (help included). */
int help_is_command(const char *name);

/* The global help: usage, every command with one line, the common options. */
void help_global(FILE *f);

/* @name's own help; -ENOENT (nothing printed) if it is no command. */
int help_command(FILE *f, const char *name);
