/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * progress: one status line on stderr for a slow libvirt call (attach
 * --config took 12-18 s against a real libvirtd, silently): "TEXT... 2.5 s",
 * drawn after 0.5 s and redrawn every 0.5 s by a thread while the caller
 * blocks in libvirt, erased when it ends. Only when stderr is a terminal;
 * otherwise nothing is ever written. While a line is up, whatever else goes
 * to stderr goes through progress_eprintf(), which erases it first.
 */

#include <stdarg.h>

/* Starts the line with @fmt (the strings in it already escaped); one at a time. */
void progress_begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Erases the line and stops; nothing if none was begun. */
void progress_end(void);

/* fprintf(stderr, ...) that erases the line first; it comes back at its next redraw. */
void progress_veprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
void progress_eprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
