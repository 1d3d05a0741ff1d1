/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Peers that speak the wire by hand, to the broker of broker-fixture.h: a
 * native client on a raw SOCK_SEQPACKET socket (docs/protocol.md), which may
 * misbehave, and a fake QEMU on a region's socket (QEMU's ivshmem server
 * protocol: int64 messages, maybe one fd each).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* A raw connection to the broker's socket, nothing sent yet. */
int raw_connect(void);
void send_message(int fd, const Message *m, const int *fds, size_t n_fds);
/* Hello, serial 1, label "raw". */
void send_hello(int fd);

/* Sends @m on a raw connection after Hello; returns the reply's status (and its error text). */
int raw_request(int fd, Message *m, char *error, size_t size);

/* A Create ("admin"), Destroy ("declared") or Reload (@body) on a new connection; returns its status. */
int admin_request(int body, char *error, size_t size);

/* A fake QEMU connected to @region's socket. */
int qemu_connect(const char *region);

/* Reads one ivshmem message (int64 LE, maybe one fd) within 3 s; returns the fd or -1. */
int qemu_read(int sock, int64_t *ret);

/* Reads one message: it must be @value, with an fd or without (closed again). */
void qemu_expect(int sock, int64_t value, bool with_fd);
