/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmemctl's tables through libsmartcols (table.h). */
#include <errno.h>
#include <inttypes.h>
#include <langinfo.h>
#include <libsmartcols.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common.h"
#include "table.h"
#include "units.h"

#define TABLE_COLUMNS_MAX 64

struct Table {
        const TableSpec *spec;
        TableOptions o;
        struct libscols_table *tb;
        struct libscols_line *line;
        int index[TABLE_COLUMNS_MAX]; /* spec id -> libsmartcols column number, -1: not chosen */
        size_t n_shown;
};

void table_locale(void) {
        const char *set;

        /* Character classes and widths only: the other categories cost a file each at every start. */
        setlocale(LC_CTYPE, "");
        set = nl_langinfo(CODESET);
        if (!set || (strcasecmp(set, "UTF-8") != 0 && strcasecmp(set, "utf8") != 0))
                setlocale(LC_CTYPE, "C.UTF-8");
}

static int find_column(const TableSpec *spec, const char *name, size_t n) {
        for (unsigned i = 0; i < spec->n_columns; i++)
                if (strlen(spec->columns[i].name) == n && strncasecmp(spec->columns[i].name, name, n) == 0)
                        return (int) i;
        return -1;
}

/* Adds spec column @id as the next column shown; a column already shown stays where it is. */
static int show(Table *t, unsigned id) {
        const TableColumn *c = &t->spec->columns[id];
        struct libscols_column *cl;
        bool right = c->type == TABLE_NUMBER || c->type == TABLE_SIZE;
        int json;

        if (t->index[id] >= 0)
                return 0;
        cl = scols_table_new_column(t->tb, c->name, 0, right ? SCOLS_FL_RIGHT : 0);
        if (!cl)
                return -ENOMEM;
        switch (c->type) {
        case TABLE_NUMBER:
                json = SCOLS_JSON_NUMBER;
                break;
        case TABLE_SIZE:
                json = SCOLS_JSON_NUMBER; /* in JSON always bytes: table_set_size() */
                break;
        case TABLE_BOOL:
                json = SCOLS_JSON_BOOLEAN_OPTIONAL;
                break;
        default:
                json = SCOLS_JSON_STRING;
        }
        scols_column_set_json_type(cl, json);
        t->index[id] = (int) t->n_shown++;
        return 0;
}

/* -o's list: "COL,COL", or "+COL,..." for the default ones and these. */
static int choose(Table *t, const char *list) {
        const char *p = list;
        int r;

        if (*p == '+') {
                for (unsigned i = 0; i < t->spec->n_columns; i++)
                        if (t->spec->columns[i].shown && (r = show(t, i)) < 0)
                                return r;
                p++;
        }
        for (;;) {
                size_t n = strcspn(p, ",");
                int id = find_column(t->spec, p, n);

                if (id < 0)
                        return usage_error("-o: unknown column '%.*s'", (int) n, p);
                if ((r = show(t, (unsigned) id)) < 0)
                        return r;
                if (!p[n])
                        return 0;
                p += n + 1;
        }
}

int table_new(Table **ret, const TableSpec *spec, const TableOptions *o) {
        Table *t;
        int r = 0;

        if (spec->n_columns > TABLE_COLUMNS_MAX)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->spec = spec;
        t->o = *o;
        for (unsigned i = 0; i < TABLE_COLUMNS_MAX; i++)
                t->index[i] = -1;
        t->tb = scols_new_table();
        if (!t->tb) {
                table_free(t);
                return -ENOMEM;
        }
        scols_table_set_name(t->tb, spec->name);
        scols_table_enable_json(t->tb, o->json);
        scols_table_enable_raw(t->tb, o->raw);
        scols_table_enable_noheadings(t->tb, o->noheadings);
        if (o->output && *o->output)
                r = choose(t, o->output);
        else
                for (unsigned i = 0; i < spec->n_columns && r == 0; i++)
                        if (spec->columns[i].shown || o->all || o->json)
                                r = show(t, i);
        if (r != 0) {
                table_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        scols_unref_table(t->tb);
        free(t);
        return NULL;
}

bool table_has(const Table *t, unsigned id) {
        return id < t->spec->n_columns && t->index[id] >= 0;
}

int table_row(Table *t) {
        t->line = scols_table_new_line(t->tb, NULL);
        if (!t->line)
                return -ENOMEM;
        /* A missing value: "-" in a table (a blank would shift --raw's fields), null in JSON. */
        if (!t->o.json)
                for (size_t i = 0; i < t->n_shown; i++)
                        scols_line_set_data(t->line, i, "-");
        return 0;
}

void table_set_str(Table *t, unsigned id, const char *s) {
        if (!t->line || !table_has(t, id) || !s || !*s)
                return;
        scols_line_set_data(t->line, (size_t) t->index[id], s);
}

void table_set_uint(Table *t, unsigned id, uint64_t v) {
        char buf[24];

        snprintf(buf, sizeof(buf), "%" PRIu64, v);
        table_set_str(t, id, buf);
}

void table_set_size(Table *t, unsigned id, uint64_t bytes) {
        char buf[UNITS_SIZE_STR_MAX];

        if (t->o.bytes || t->o.json)
                table_set_uint(t, id, bytes);
        else
                table_set_str(t, id, units_format_size(buf, bytes));
}

void table_set_bool(Table *t, unsigned id, bool v) {
        /* libsmartcols' JSON reads "0" as false, anything else as true. */
        table_set_str(t, id, t->o.json ? (v ? "1" : "0") : (v ? "yes" : "no"));
}

int table_print(Table *t) {
        int r;

        /* libsmartcols 2.38 writes an empty array with a blank line in it. */
        if (t->o.json && scols_table_get_nlines(t->tb) == 0) {
                printf("{\n   \"%s\": []\n}\n", t->spec->name);
                r = 0;
        } else
                r = scols_print_table(t->tb);

        if (r == 0 && fflush(stdout) == 0 && !ferror(stdout))
                return EXIT_OK;
        fprintf(stderr, "shmemctl: cannot write the output: %s\n", strerror(r < 0 ? -r : errno));
        return EXIT_REFUSED;
}

void table_help(FILE *f, const TableSpec *spec) {
        fputs("\nAvailable columns (-o COL,...; default: *):\n", f);
        for (unsigned i = 0; i < spec->n_columns; i++)
                fprintf(f, " %c%-14s %s\n", spec->columns[i].shown ? '*' : ' ', spec->columns[i].name,
                        spec->columns[i].help);
}
