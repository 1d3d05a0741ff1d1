/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Escaping of strings a peer chooses (a client's label, a VM's name, a region
 * name that failed validation) wherever they are printed: the broker's log,
 * where a newline or a "<0>" could forge a journal record, and shmemctl's
 * output, where an escape sequence could rewrite the terminal.
 *
 * Kept as they are: printable ASCII and well-formed UTF-8 of printable code
 * points. Escaped: backslash as "\\", C0 controls, DEL and C1 controls
 * (U+0080-U+009F) and bytes that are not well-formed UTF-8, each byte as
 * "\xNN". The result cannot contain a control character or a newline.
 */

#include <stddef.h>

/* Room for escaping @n bytes: every byte may become "\xNN". */
#define STR_ESCAPE_SIZE(n) (4 * (n) + 1)

/*
 * str_escape() - write @s escaped into @buf of @size bytes (at least 4),
 * cut with "..." where it does not fit. Returns @buf.
 */
char *str_escape(char *buf, size_t size, const char *s);

/* str_escape() of @n bytes at @s, which may contain NUL bytes. */
char *str_escape_n(char *buf, size_t size, const char *s, size_t n);

/* Whether @s (@n bytes) is well-formed UTF-8 without NUL bytes. */
int str_is_utf8(const char *s, size_t n);

/*
 * str_utf8_cut() - how many of the @n bytes at @s to keep to fit @max: @n if
 * it fits, else at most @max, not ending inside a UTF-8 sequence (labels cut
 * to fit stay UTF-8 where they were).
 */
size_t str_utf8_cut(const char *s, size_t n, size_t max);
