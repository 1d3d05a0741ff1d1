/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * table: every table shmemctl prints, through util-linux's libsmartcols (as
 * lsblk, findmnt and lsipc do): columns chosen with -o/--output (+COL adds to
 * the default ones) or -O/--output-all, -n/--noheadings, -r/--raw, -b/--bytes
 * and -J/--json, widths by display width, and what a peer chose (a label, a
 * VM's name) printed by libsmartcols' safe encoding: a control character or
 * a newline comes out as "\xNN", never raw.
 *
 * A command describes its columns once, in a TableSpec (which `shmemctl help
 * CMD` lists too), makes a Table from the options, adds a row at a time and
 * sets the cells by column id (its index in the spec); a cell of a column
 * that was not chosen is ignored. A cell never set is missing: "-" in a
 * table, null in JSON.
 *
 *         Table *t;
 *         r = table_new(&t, &list_table, &a->table);   (a usage error printed if r != 0)
 *         table_row(t);
 *         table_set_str(t, COL_NAME, name);
 *         table_set_size(t, COL_SIZE, bytes);
 *         r = table_print(t);
 *         table_free(t);
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum TableType {
        TABLE_STRING, /* JSON string */
        TABLE_NUMBER, /* JSON number; right-aligned */
        TABLE_SIZE,   /* bytes: "2M" (units_format_size()), with --bytes or in JSON the number */
        TABLE_BOOL,   /* "yes"/"no"; JSON true/false */
} TableType;

typedef struct TableColumn {
        const char *name; /* the header: one word, upper case; lower-cased, the JSON key */
        TableType type;
        bool shown;       /* one of the default columns */
        const char *help; /* one line for `shmemctl help CMD` */
} TableColumn;

typedef struct TableSpec {
        const char *name; /* the JSON array's key: "regions", "peers" */
        const TableColumn *columns;
        unsigned n_columns;
} TableSpec;

/* What the command line asked for; every table command takes the same. */
typedef struct TableOptions {
        const char *output; /* -o COL,...: NULL for the default columns */
        bool all, noheadings, raw, bytes, json;
} TableOptions;

typedef struct Table Table;

/*
 * table_new() - a table of @spec's columns as @o chooses them: -o's, else
 * every one with -O, else the default ones (with --json and no -o: every
 * one, so that a script sees everything). Return: 0 with *ret; EXIT_USAGE
 * (common.h) after printing the usage error of an unknown column; -ENOMEM.
 */
int table_new(Table **ret, const TableSpec *spec, const TableOptions *o);
Table *table_free(Table *t);
static inline void table_freep(Table **t) {
        table_free(*t);
}

/* Whether -o/-O chose the column @id (for a command that computes a cell at some cost). */
bool table_has(const Table *t, unsigned id);

/* A new row: the cells set from now on are its. Return: 0 or -ENOMEM. */
int table_row(Table *t);

/* The cells of the current row. NULL or "" for @s is missing. */
void table_set_str(Table *t, unsigned id, const char *s);
void table_set_uint(Table *t, unsigned id, uint64_t v);
void table_set_size(Table *t, unsigned id, uint64_t bytes);
void table_set_bool(Table *t, unsigned id, bool v);

/* Prints the table on stdout. Return: 0 (EXIT_OK), or EXIT_REFUSED with the write error printed. */
int table_print(Table *t);

/* "Available columns:" and one line per column, for a command's help. */
void table_help(FILE *f, const TableSpec *spec);

/*
 * table_locale() - once, before any table is made: the user's LC_CTYPE for
 * display widths (no other category); if its character set is not UTF-8,
 * C.UTF-8's instead, so that UTF-8 labels keep their width and a C1 control
 * is still recognized (and encoded) as one.
 */
void table_locale(void);
