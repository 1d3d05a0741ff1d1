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

#include "config.h"
#include "macro.h"

/* Whether this process may give a file group @gid (chown(2): root, or a member). */
static bool may_use_group(gid_t gid) {
        gid_t groups[256];
        int n;

        if (geteuid() == 0 || getegid() == gid)
                return true;
        n = getgroups((int) ELEMENTSOF(groups), groups);
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

/*
 * The group QEMU sockets get unless configured: the one QEMU runs in here,
 * among those this process may use. Debian's libvirt runs QEMU as user
 * libvirt-qemu, group libvirt-qemu, with kvm as a further group; QEMU run by
 * hand usually needs kvm too. The service runs with kvm as a supplementary
 * group (systemd/shmem-brokerd.service).
 */
static gid_t config_default_qemu_gid(void) {
        static const char *const groups[] = { "libvirt-qemu", "kvm" };

        for (size_t i = 0; i < ELEMENTSOF(groups); i++) {
                struct group *g = getgrnam(groups[i]);

                if (g && may_use_group(g->gr_gid))
                        return g->gr_gid;
        }
        return (gid_t) -1;
}

void config_init(Config *c) {
        *c = (Config) {
                .limits = LIMITS_DEFAULT,
                .qemu = { .socket_mode = 0660, .socket_gid = config_default_qemu_gid(),
                          .libvirt_run_dir = "/run/libvirt/qemu" },
        };
}

void config_done(Config *c) {
        for (size_t i = 0; i < c->n_regions; i++) {
                free((char *) c->regions[i].name);
                free((char *) c->regions[i].pins);
                free((char *) c->regions[i].backend);
        }
        free(c->regions);
        for (size_t i = 0; i < c->n_rules; i++) {
                free((char *) c->rules[i].client);
                free((char *) c->rules[i].glob);
        }
        free(c->rules);
        free(c->rundir);
        config_init(c);
}

int config_parse_size(const char *s, uint64_t *ret) {
        unsigned long long v;
        unsigned shift = 0;
        char *end;

        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno || end == s || s[0] == '-')
                return -EINVAL;
        switch (*end) {
        case 'K': case 'k': shift = 10; end++; break;
        case 'M': case 'm': shift = 20; end++; break;
        case 'G': case 'g': shift = 30; end++; break;
        case 'T': case 't': shift = 40; end++; break;
        default: break;
        }
        if (*end && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = (uint64_t) v << shift;
        return 0;
}

int config_parse_uint(const char *s, unsigned min, unsigned max, unsigned *ret) {
        unsigned long v;
        char *end;

        errno = 0;
        v = strtoul(s, &end, 0);
        if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "on"))
                *ret = true;
        else if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "off"))
                *ret = false;
        else
                return -EINVAL;
        return 0;
}

typedef struct Parser {
        Config *config;
        unsigned line; /* of the key being handled (ini_parse counts it for us) */
        const char *reason; /* why the handler refused the current line */
        char reason_buf[160];
} Parser;

static RegionDecl *config_region(Parser *p, const char *name) {
        Config *c = p->config;
        RegionDecl *d;

        for (size_t i = 0; i < c->n_regions; i++)
                if (strcmp(c->regions[i].name, name) == 0)
                        return &c->regions[i];
        if (c->n_regions >= CONFIG_REGIONS_MAX) {
                p->reason = "too many [region] sections";
                return NULL;
        }
        d = realloc(c->regions, (c->n_regions + 1) * sizeof(*d));
        if (!d) {
                p->reason = "out of memory";
                return NULL;
        }
        c->regions = d;
        d = &c->regions[c->n_regions];
        *d = (RegionDecl) { .name = strdup(name) };
        if (!d->name) {
                p->reason = "out of memory";
                return NULL;
        }
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

static int handle_broker(Parser *p, const char *key, const char *value) {
        Config *c = p->config;

        if (!strcmp(key, "run-directory")) {
                if (value[0] != '/') {
                        p->reason = "run-directory must be an absolute path";
                        return 0;
                }
                free(c->rundir);
                c->rundir = strdup(value);
                return c->rundir != NULL;
        }
        if (!strcmp(key, "qemu-socket-group")) {
                struct group *g = getgrnam(value);

                if (!g) {
                        snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown group '%s'", value);
                        p->reason = p->reason_buf;
                        return 0;
                }
                c->qemu.socket_gid = g->gr_gid;
                return 1;
        }
        if (!strcmp(key, "libvirt-run-directory")) {
                if (value[0] && value[0] != '/') {
                        p->reason = "libvirt-run-directory must be an absolute path, or empty";
                        return 0;
                }
                if (strlen(value) >= sizeof(c->qemu.libvirt_run_dir)) {
                        p->reason = "libvirt-run-directory is too long";
                        return 0;
                }
                strcpy(c->qemu.libvirt_run_dir, value);
                return 1;
        }
        if (!strcmp(key, "qemu-socket-mode")) {
                unsigned mode;
                int n = 0;

                if (sscanf(value, "%o%n", &mode, &n) != 1 || value[n] || mode > 0777) {
                        p->reason = "qemu-socket-mode must be an octal mode such as 0660";
                        return 0;
                }
                c->qemu.socket_mode = mode;
                return 1;
        }
        return -1;
}

static int handle_limits(Parser *p, const char *key, const char *value) {
        Limits *l = &p->config->limits;
        uint64_t v;

        if (!strcmp(key, "regions"))
                return set_uint(p, value, 1, 65536, &l->max_regions);
        if (!strcmp(key, "total-bytes"))
                return set_size(p, value, 8192, &l->max_total_bytes);
        if (!strcmp(key, "region-bytes"))
                return set_size(p, value, 8192, &l->max_region_bytes);
        if (!strcmp(key, "peers"))
                return set_uint(p, value, 1, SHMEM_PEERS_MAX, &l->default_max_peers);
        if (!strcmp(key, "connections"))
                return set_uint(p, value, 1, 1u << 20, &l->max_connections);
        if (!strcmp(key, "regions-per-uid"))
                return set_uint(p, value, 0, 65536, &l->max_regions_per_uid);
        if (!strcmp(key, "queued-bytes")) {
                if (!set_size(p, value, 4096, &v))
                        return 0;
                l->max_queued_bytes = (size_t) v;
                return 1;
        }
        return -1;
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
                if (parse_bool(value, &d->persistent) < 0) {
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
                int n = 0;

                if (sscanf(value, "%o%n", &mode, &n) != 1 || value[n] || mode > 0777) {
                        p->reason = "mode must be an octal mode such as 0660";
                        return 0;
                }
                /* 0 would mean "unset": a region nobody but root may attach is 0600 by root. */
                d->mode = mode ? mode : 0600;
                return 1;
        }
        return -1;
}

#define CONFIG_RULES_MAX 4096

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
                if (!region_name_is_valid(value) || strlen(value) >= SHMEM_NAME_MAX) {
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

static int config_handler(void *userdata, const char *section, const char *key, const char *value) {
        Parser *p = userdata;
        int r;

        p->reason = NULL;
        if (!key) /* a section header alone */
                return 1;
        if (!strcmp(section, "broker"))
                r = handle_broker(p, key, value);
        else if (!strcmp(section, "limits"))
                r = handle_limits(p, key, value);
        else if (!strncmp(section, "region ", 7)) {
                const char *name = section + 7;

                while (*name == ' ')
                        name++;
                if (!region_name_is_valid(name)) {
                        snprintf(p->reason_buf, sizeof(p->reason_buf),
                                 "[region %s]: names are 1-63 of [A-Za-z0-9._-], not starting with '.'", name);
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
                snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown section [%s]", section);
                p->reason = p->reason_buf;
                return 0;
        }
        if (r < 0) {
                snprintf(p->reason_buf, sizeof(p->reason_buf), "unknown key '%s' in [%s]", key, section);
                p->reason = p->reason_buf;
                return 0;
        }
        if (r == 0 && !p->reason)
                p->reason = "out of memory";
        return r;
}

/* Feeds inih line by line, counting, so that rules know their line for the log. */
typedef struct LineReader {
        FILE *f;
        Parser *parser;
} LineReader;

static char *config_read_line(char *buf, int size, void *stream) {
        LineReader *lr = stream;
        char *s = fgets(buf, size, lr->f);

        if (s)
                lr->parser->line++;
        return s;
}

static int config_load_file(Config *c, const char *path, bool must_exist) {
        Parser p = { .config = c };
        FILE *f = fopen(path, "re");
        int line;

        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                snprintf(c->error, sizeof(c->error), "%s: %s", path, strerror(errno));
                return -errno;
        }
        line = ini_parse_stream(config_read_line, &(LineReader) { .f = f, .parser = &p }, config_handler, &p);
        fclose(f);
        if (line != 0) {
                snprintf(c->error, sizeof(c->error), "%s:%d: %s", path, line,
                         p.reason ? p.reason : "not a 'key = value' line or a [section]");
                return -EINVAL;
        }
        return 0;
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
        if (r < 0)
                return r;
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
