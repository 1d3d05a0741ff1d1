/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "escape.h"
#include "map.h"
#include "options.h"
#include "macro.h"

void config_init(Config *c, const OptionTable *tables, size_t n_tables) {
        *c = (Config) { .tables = tables, .n_tables = n_tables };
}

void config_done(Config *c) {
        for (size_t i = 0; i < c->n_regions; i++) {
                free((char *) c->regions[i].name);
                free((char *) c->regions[i].pins);
                free((char *) c->regions[i].backend);
        }
        free(c->regions);
        map_free(c->region_names);
        for (size_t i = 0; i < c->n_rules; i++) {
                free((char *) c->rules[i].client);
                free((char *) c->rules[i].glob);
        }
        free(c->rules);
        for (size_t i = 0; i < c->n_files; i++)
                free(c->files[i]);
        free(c->files);
        config_init(c, c->tables, c->n_tables);
}

typedef struct Parser {
        Config *config;
        unsigned line; /* of the key being handled (ini_parse counts it for us) */
        const char *reason; /* why the handler refused the current line */
        char reason_buf[160];
} Parser;

static RegionDecl *config_region(Parser *p, const char *name) {
        Config *c = p->config;
        uintptr_t i = c->region_names ? (uintptr_t) map_get(c->region_names, name) : 0;
        RegionDecl *d;

        if (i > 0)
                return &c->regions[i - 1];
        if (c->n_regions >= CONFIG_REGIONS_MAX) {
                snprintf(p->reason_buf, sizeof(p->reason_buf),
                         "more [region] sections than max-regions can be (%u)", CONFIG_REGIONS_MAX);
                p->reason = p->reason_buf;
                return NULL;
        }
        p->reason = "out of memory";
        if (!c->region_names && map_new(&c->region_names, MAP_KEY_STRING) < 0)
                return NULL;
        if (c->n_regions == c->n_regions_allocated) {
                size_t n = c->n_regions_allocated ? c->n_regions_allocated * 2 : 16;

                d = reallocarray(c->regions, n, sizeof(*d));
                if (!d)
                        return NULL;
                c->regions = d;
                c->n_regions_allocated = n;
        }
        d = &c->regions[c->n_regions];
        *d = (RegionDecl) { .name = strdup(name) };
        if (!d->name || map_put(c->region_names, d->name, (void *) (uintptr_t) (c->n_regions + 1)) < 0) {
                free((char *) d->name);
                return NULL;
        }
        p->reason = NULL;
        c->n_regions++;
        return d;
}

static int set_size(Parser *p, const char *value, uint64_t min, uint64_t *ret) {
        uint64_t v;

        if (config_parse_size(value, &v) < 0 || v < min) {
                snprintf(p->reason_buf, sizeof(p->reason_buf),
                         "'%s' is not a size (bytes, or with K, M, G, T), at least %llu", value,
                         (unsigned long long) min);
                p->reason = p->reason_buf;
                return 0;
        }
        *ret = v;
        return 1;
}

static int set_uint(Parser *p, const char *value, unsigned min, unsigned max, unsigned *ret) {
        if (config_parse_uint(value, min, max, ret) < 0) {
                snprintf(p->reason_buf, sizeof(p->reason_buf), "'%s' is not a number from %u to %u",
                         value, min, max);
                p->reason = p->reason_buf;
                return 0;
        }
        return 1;
}

static int handle_region(Parser *p, const char *name, const char *key, const char *value) {
        RegionDecl *d = config_region(p, name);

        if (!d)
                return 0;
        if (!strcmp(key, "size"))
                return set_size(p, value, 1, &d->size);
        if (!strcmp(key, "max-peers"))
                return set_uint(p, value, 1, SHMEM_PEERS_MAX, &d->max_peers);
        if (!strcmp(key, "persistent")) {
                if (config_parse_bool(value, &d->persistent) < 0) {
                        p->reason = "persistent must be yes or no";
                        return 0;
                }
                return 1;
        }
        if (!strcmp(key, "signal-mode")) {
                if (!strcmp(value, "shmem"))
                        d->signal_mode = SHMEM_SIGNAL_MODE_SHMEM;
                else if (!strcmp(value, "ivshmem"))
                        d->signal_mode = SHMEM_SIGNAL_MODE_IVSHMEM;
                else {
                        p->reason = "signal-mode must be shmem or ivshmem";
                        return 0;
                }
                return 1;
        }
        if (!strcmp(key, "vectors"))
                return set_uint(p, value, 1, SHMEM_PEERS_MAX + 1, &d->vectors);
        if (!strcmp(key, "backend")) {
                if (strcmp(value, "memfd") && strcmp(value, "hugetlb-2M") && strcmp(value, "hugetlb-1G") &&
                    value[0] != '/') {
                        p->reason = "backend must be memfd, hugetlb-2M, hugetlb-1G or an absolute directory";
                        return 0;
                }
                free((char *) d->backend);
                d->backend = strdup(value);
                return d->backend != NULL;
        }
        if (!strcmp(key, "pin")) {
                /* "NAME:INDEX ...": checked here, applied by the registry. */
                _cleanup_free_ char *copy = strdup(value);
                char *save = NULL;

                if (!copy)
                        return 0;
                for (char *t = strtok_r(copy, " \t,", &save); t; t = strtok_r(NULL, " \t,", &save)) {
                        char *colon = strrchr(t, ':');
                        unsigned index;

                        if (!colon || colon == t || colon - t > REGION_PIN_NAME_MAX ||
                            config_parse_uint(colon + 1, 0, SHMEM_PEERS_MAX - 1, &index) < 0) {
                                snprintf(p->reason_buf, sizeof(p->reason_buf),
                                         "pin wants NAME:INDEX with INDEX 0-63, not '%s'", t);
                                p->reason = p->reason_buf;
                                return 0;
                        }
                }
                free((char *) d->pins);
                d->pins = strdup(value);
                return d->pins != NULL;
        }
        if (!strcmp(key, "owner")) {
                struct passwd *pw = getpwnam(value);

                if (!pw) {
                        snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown user '%s'", value);
                        p->reason = p->reason_buf;
                        return 0;
                }
                d->owner = pw->pw_uid;
                return 1;
        }
        if (!strcmp(key, "group")) {
                struct group *g = getgrnam(value);

                if (!g) {
                        snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown group '%s'", value);
                        p->reason = p->reason_buf;
                        return 0;
                }
                d->group = g->gr_gid;
                return 1;
        }
        if (!strcmp(key, "mode")) {
                unsigned mode;

                if (config_parse_mode(value, &mode) < 0) {
                        p->reason = "mode must be an octal mode such as 0660";
                        return 0;
                }
                /* 0 would mean "unset": a region nobody but root may attach is 0600 by root. */
                d->mode = mode ? mode : 0600;
                return 1;
        }
        return -1;
}

static int add_rule(Parser *p, const AccessRule *rule) {
        Config *c = p->config;
        AccessRule *a;

        if (c->n_rules >= CONFIG_RULES_MAX) {
                p->reason = "too many allow/deny/subst rules";
                return 0;
        }
        a = realloc(c->rules, (c->n_rules + 1) * sizeof(*a));
        if (!a)
                return 0;
        c->rules = a;
        a = &c->rules[c->n_rules];
        *a = *rule;
        a->client = strdup(rule->client);
        a->glob = strdup(rule->glob);
        a->line = p->line;
        if (!a->client || !a->glob) {
                free((char *) a->client);
                free((char *) a->glob);
                return 0;
        }
        c->n_rules++;
        return 1;
}

/*
 * [client NAME] and [domain NAME]: "allow = a b*" or "deny = ...", one rule
 * per glob, in order; "subst = PREFIX".
 */
static int handle_rules(Parser *p, const char *client, bool domain, const char *key, const char *value) {
        bool allow = !strcmp(key, "allow");
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;

        if (!strcmp(key, "subst")) {
                if (!shmem_name_valid(value) || strlen(value) >= SHMEM_NAME_MAX) {
                        p->reason = "subst wants a name prefix of [A-Za-z0-9._-], not starting with '.'";
                        return 0;
                }
                return add_rule(p, &(AccessRule) { .client = client, .glob = value, .subst = true,
                                                   .domain = domain });
        }
        if (!allow && strcmp(key, "deny") != 0)
                return -1;
        copy = strdup(value);
        if (!copy)
                return 0;
        for (char *glob = strtok_r(copy, " \t,", &save); glob; glob = strtok_r(NULL, " \t,", &save))
                if (!add_rule(p, &(AccessRule) { .client = client, .glob = glob, .allow = allow, .domain = domain }))
                        return 0;
        return 1;
}

/* A key of a table's section: 1 set, 0 refused (p->reason), -1 not a table's key. */
static int handle_table(Parser *p, const char *section, const char *key, const char *value) {
        bool known_section = false;

        for (size_t t = 0; t < p->config->n_tables; t++) {
                const OptionTable *table = &p->config->tables[t];

                for (size_t i = 0; i < table->n_options; i++) {
                        const Option *o = &table->options[i];

                        if (!o->section || strcmp(o->section, section) != 0)
                                continue;
                        known_section = true;
                        if (strcmp(o->key, key) != 0)
                                continue;
                        if (option_set(o, table->settings, value, p->reason_buf, sizeof(p->reason_buf)) < 0) {
                                p->reason = p->reason_buf;
                                return 0;
                        }
                        return 1;
                }
        }
        return known_section ? -1 : -2;
}

static int config_handler(void *userdata, const char *section, const char *key, const char *value) {
        Parser *p = userdata;
        int r;

        p->reason = NULL;
        if (!key) /* a section header alone */
                return 1;
        r = handle_table(p, section, key, value);
        if (r != -2)
                ;
        else if (!strncmp(section, "region ", 7)) {
                const char *name = section + 7;

                while (*name == ' ')
                        name++;
                if (!shmem_name_valid(name)) {
                        char esc[STR_ESCAPE_SIZE(64)];

                        snprintf(p->reason_buf, sizeof(p->reason_buf),
                                 "[region %s]: names are 1-63 of [A-Za-z0-9._-], not starting with '.'",
                                 str_escape(esc, sizeof(esc), name));
                        p->reason = p->reason_buf;
                        return 0;
                }
                r = handle_region(p, name, key, value);
        } else if (!strncmp(section, "client ", 7) || !strncmp(section, "domain ", 7)) {
                const char *name = section + 7;

                while (*name == ' ')
                        name++;
                r = handle_rules(p, name, section[0] == 'd', key, value);
        } else {
                char esc[STR_ESCAPE_SIZE(64)];

                snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown section [%s]",
                         str_escape(esc, sizeof(esc), section));
                p->reason = p->reason_buf;
                return 0;
        }
        if (r < 0) {
                char k[STR_ESCAPE_SIZE(64)], sec[STR_ESCAPE_SIZE(64)];

                snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown key '%s' in [%s]",
                         str_escape(k, sizeof(k), key), str_escape(sec, sizeof(sec), section));
                p->reason = p->reason_buf;
                return 0;
        }
        if (r == 0 && !p->reason)
                p->reason = "out of memory";
        return r;
}

/* Feeds inih line by line, counting, so that rules know their line for the log. */
typedef struct LineReader {
        FILE *f;          /* a file, or */
        const char *text; /* the rest of a text */
        Parser *parser;
} LineReader;

static char *config_read_line(char *buf, int size, void *stream) {
        LineReader *lr = stream;
        char *s = NULL;

        if (lr->f)
                s = fgets(buf, size, lr->f);
        else if (*lr->text && size > 1) {
                size_t n = strcspn(lr->text, "\n");

                n = n + (lr->text[n] == '\n');
                if (n > (size_t) size - 1)
                        n = (size_t) size - 1;
                memcpy(buf, lr->text, n);
                buf[n] = 0;
                lr->text += n;
                s = buf;
        }
        if (s)
                lr->parser->line++;
        return s;
}

static int config_parse(Config *c, const char *name, FILE *f, const char *text) {
        Parser p = { .config = c };
        int line;

        line = ini_parse_stream(config_read_line, &(LineReader) { .f = f, .text = text, .parser = &p },
                                config_handler, &p);
        if (line != 0) {
                snprintf(c->error, sizeof(c->error), "%s:%d: %s", name, line,
                         p.reason ? p.reason : "not a 'key = value' line or a [section]");
                return -EINVAL;
        }
        return 0;
}

static int config_load_file(Config *c, const char *path, bool must_exist) {
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                r = -errno;
                if (r == -ENOENT && !must_exist)
                        return 0;
                snprintf(c->error, sizeof(c->error), "%.400s: %s", path, strerror(-r));
                return r;
        }
        r = config_parse(c, path, f, NULL);
        fclose(f);
        if (r == 0) { /* for shmemctl status */
                char **v = realloc(c->files, (c->n_files + 1) * sizeof(*v));

                if (!v || !(v[c->n_files] = strdup(path))) {
                        c->files = v ? v : c->files;
                        snprintf(c->error, sizeof(c->error), "%.400s: out of memory", path);
                        return -ENOMEM;
                }
                c->files = v;
                c->n_files++;
        }
        return r;
}

/* What only the whole configuration can tell. */
static int config_check(Config *c) {
        for (size_t i = 0; i < c->n_regions; i++) {
                if (c->regions[i].size == 0) {
                        snprintf(c->error, sizeof(c->error), "[region %s] has no size", c->regions[i].name);
                        return -EINVAL;
                }
                if (c->regions[i].vectors && c->regions[i].signal_mode != SHMEM_SIGNAL_MODE_IVSHMEM) {
                        snprintf(c->error, sizeof(c->error),
                                 "[region %s]: vectors is for signal-mode = ivshmem (shmem mode has max-peers + 1)",
                                 c->regions[i].name);
                        return -EINVAL;
                }
        }
        return 0;
}

int config_load_text(Config *c, const char *name, const char *text) {
        int r = config_parse(c, name, NULL, text);

        return r < 0 ? r : config_check(c);
}

static int dropin_filter(const struct dirent *e) {
        size_t n = strlen(e->d_name);

        return e->d_name[0] != '.' && n > 5 && strcmp(e->d_name + n - 5, ".conf") == 0;
}

int config_load(Config *c, const char *path, const char *dropin_dir, bool must_exist) {
        struct dirent **list = NULL;
        int n = 0, r;

        r = config_load_file(c, path, must_exist);
        if (r == 0 && dropin_dir) {
                n = scandir(dropin_dir, &list, dropin_filter, alphasort);
                if (n < 0 && errno != ENOENT) {
                        r = -errno;
                        snprintf(c->error, sizeof(c->error), "%s: %s", dropin_dir, strerror(errno));
                }
        }
        for (int i = 0; i < n; i++) {
                char file[PATH_MAX];

                if (r == 0) {
                        snprintf(file, sizeof(file), "%s/%s", dropin_dir, list[i]->d_name);
                        r = config_load_file(c, file, true);
                }
                free(list[i]);
        }
        free(list);
        return r < 0 ? r : config_check(c);
}
