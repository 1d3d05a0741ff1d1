/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The broker's options: one table per component (the daemon's, each
 * plugin's) of typed settings, read alike from the configuration files and
 * the command line, so that each is named, parsed, checked and documented in
 * one place; and the configuration file itself.
 *
 * The files: /etc/shmem-broker/broker.conf, then conf.d/ *.conf beside it in
 * name order, INI, parsed by libinih. Later files override single settings
 * and add regions and rules. broker.conf(5) documents every key:
 *
 *   [broker]          run-directory, and the plugins' keys (qemu-socket-group, ...)
 *   [limits]          see limits.h
 *   [region NAME]     size, max-peers, persistent, signal-mode, vectors, backend,
 *                     owner, group, mode, pin
 *   [client NAME]     allow, deny, subst (NAME a glob of client labels)
 *   [domain NAME]     allow, deny, subst (NAME a glob of VM names, or a UUID)
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

typedef enum OptionType {
        OPTION_UINT,     /* unsigned in [min, max] */
        OPTION_SIZE,     /* uint64_t bytes in [min, max]: 4096, 64K, 1M, 2G */
        OPTION_SIZE_T,   /* size_t bytes in [min, max] */
        OPTION_MODE,     /* unsigned, an octal file mode such as 0660 */
        OPTION_GROUP,    /* gid_t from a group name */
        OPTION_PATH,     /* an absolute path, into char[OPTION_PATH_MAX] */
        OPTION_PATH_OR_EMPTY, /* the same, or "" */
        OPTION_URI,      /* a URI ("qemu:///system"): SCHEME: and printable ASCII, into char[OPTION_PATH_MAX] */
} OptionType;

#define OPTION_PATH_MAX 256

typedef struct Option {
        const char *section;   /* INI section; NULL: command line only */
        const char *key;       /* INI key */
        const char *long_name; /* --NAME on the command line; NULL: file only */
        int short_name;        /* -X as well, or 0 */
        OptionType type;
        size_t offset;         /* of the value in the settings struct the table describes */
        uint64_t min, max;
        const char *arg;       /* in --help: "N", "SIZE", "MODE", "GROUP", "DIR" */
        const char *help;      /* one line; the default is printed after it */
} Option;

/*
 * option_set() - parse @value into the field @o describes in @settings.
 * Returns 0, or -EINVAL with the reason in @why.
 */
int option_set(const Option *o, void *settings, const char *value, char *why, size_t why_size);

/* The value of @o in @settings as text ("16", "1G", "0660", "kvm"), for --help's defaults. */
const char *option_format(const Option *o, const void *settings, char *buf, size_t size);

/* Sizes and numbers, shared with --region: "1M", "64K", "4096". */
int config_parse_size(const char *s, uint64_t *ret);
int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret);
/* A file mode in octal (0 to 07777), a boolean as broker.conf(5) spells them: 0 or -EINVAL. */
int config_parse_mode(const char *s, unsigned *ret);
int config_parse_bool(const char *s, bool *ret);

/* A table and the settings struct it fills: the daemon's, or one plugin's. */
typedef struct OptionTable {
        const Option *options;
        size_t n_options;
        void *settings;
} OptionTable;

/* Regions at most, declared or not: max-regions' highest value, and what the files may declare. */
#define CONFIG_REGIONS_MAX 65536
#define CONFIG_RULES_MAX 4096

typedef struct Config {
        const OptionTable *tables; /* borrowed: whose settings the files set */
        size_t n_tables;
        RegionDecl *regions;       /* strings owned */
        size_t n_regions, n_regions_allocated;
        struct Map *region_names;  /* name -> index + 1 in regions: a section named again is found at once */
        AccessRule *rules;         /* strings owned */
        size_t n_rules;
        char **files;              /* the files read, in order (owned) */
        size_t n_files;
        char error[512];           /* "FILE:LINE: reason" after a failed load */
} Config;

/* Nothing loaded; the files will set @tables' settings. */
void config_init(Config *c, const OptionTable *tables, size_t n_tables);
void config_done(Config *c);

/*
 * config_load() - read @path, then every *.conf in @dropin_dir (may be NULL or
 * missing). A missing @path is fine if @must_exist is false.
 * Returns 0, or -EINVAL (and others) with c->error saying file, line and why;
 * on failure the settings and @c may be half-updated: load into scratch
 * copies and swap.
 */
int config_load(Config *c, const char *path, const char *dropin_dir, bool must_exist);

/* config_load() of @text (@name for the errors): the fuzzer's way in. */
int config_load_text(Config *c, const char *name, const char *text);
