/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The fake broker of libshmem's unit tests (test-libshmem*.c): a thread
 * answers Hello and Attach with a real memfd and real eventfds, then the test
 * plays the broker and the other peers by hand. Peer indices: the handle under
 * test is ME of max_peers MAXP; peers 0 and 2 are attached at start.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "region-layout.h"
#include "shmem.h"

#define MAXP 4
#define ME 1
#define REGION_SIZE 8192

typedef struct Fake {
        char dir[64], path[128];
        int listen_fd, conn;
        int status;        /* the answer to Attach */
        bool bad_fd_index; /* an attach reply naming an fd that is not there */
        struct shmem_control_page *page;
        uint8_t *map;
        int vec[MAXP + 1]; /* ev[me][v]: the fake rings these as the other peers would */
        int to[MAXP];      /* ev[k][me]: what the handle rings to signal k; the fake reads them */
        char name[64], label[64];
        int mode;
        pthread_t thread;
} Fake;

extern Fake fake;

/* The checked fixture of every TCase: a listening fake (and the fd-leak check). */
void fake_setup(void);
void fake_teardown(void);

/* The broker's side of shmem_attach(), for a thread: Hello, then Attach. */
void *fake_run(void *userdata);

/* shmem_attach() of @name against the fake; returns its result. */
int attach_with(shmem_t **ret, const char *name, unsigned flags, const struct shmem_attach_opts *o);

/* A handle on "region", labelled "unit": the attach must succeed. */
shmem_t *attach(void);

/* shmem_detach() with the broker's reply queued before it asks (serial 3: Hello, Attach, Detach). */
void detach(shmem_t *s);

/* The broker's membership change: page first, then the event, then the control vector (if @ring). */
void fake_joined(unsigned k, bool ring);
void fake_left(unsigned k);
