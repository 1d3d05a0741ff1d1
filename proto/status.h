/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The text of a shmem.Status value (shmem.proto): the one table for the
 * broker, shmemctl, libshmem and the guest library. Free of protobuf, so the
 * static guest library links it too.
 */

const char *status_text(int status);
