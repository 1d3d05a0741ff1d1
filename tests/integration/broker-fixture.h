/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The fixture of the integration-broker-* programs (test-broker-*.c): the
 * real shmem-brokerd (BROKERD_PATH) on a temporary run directory, started
 * before each test and stopped after it, and the helpers of a libshmem peer.
 * Each test must leave as many fds open as it found (the fd-leak check of
 * test-util.h, in teardown()).
 */

#include <check.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmem.h"

/* The broker of the running test: its run directory, its socket, its broker.conf (setup_with_config()). */
extern char rundir[256], sockpath[300], conf_path[400];
extern pid_t broker_pid;

/*
 * Checked fixtures: each starts the broker on a new run directory with
 * --region declared:64K and returns once it answered a Hello. setup_with()
 * adds @extra (NULL: --no-config); setup() declares pair (2 peers) and compat
 * (ivshmem, 3 vectors) too.
 */
void setup_with(const char *const *extra);
void setup(void);
/* Starts the broker on conf_path with @text, and @dropin (or nothing) in conf.d/ beside it. */
void setup_with_config(const char *text, const char *dropin, const char *const *more);
/* Stops the broker (a clean exit proves it survived the test), checks the fds, removes the run directory. */
void teardown(void);

/* A TCase of @s whose tests each get a broker from @fixture. */
TCase *broker_tcase(Suite *s, const char *name, void (*fixture)(void), int timeout);

void write_file(const char *path, const char *text);

/* Attaches to @name on the broker, labelled "it": the result must be @expect (attach(): 0). */
shmem_t *attach_flags(const char *name, uint64_t size, unsigned flags, int expect);
shmem_t *attach(const char *name, uint64_t size);

/* Waits until @h has seen all of @want as senders; returns what it saw in all. */
uint64_t wait_senders(shmem_t *h, uint64_t want, int timeout_ms);

/* Waits for a membership event after which the active bitmap equals @active. */
void wait_active(shmem_t *h, uint64_t active);

/* The region of a well-behaved pair still works after each abuse. */
void assert_others_unharmed(shmem_t *a, shmem_t *b);
