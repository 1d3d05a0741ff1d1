/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The configuration files (broker/options.h, broker.conf(5)): a text through
 * config_load_text() over the real option tables, the daemon's
 * (daemon-options.c) and the QEMU plugin's, as main.c builds them. A text
 * that loads is then declared to a bare registry as a reload would, and a
 * host and a QEMU peer try every region it declares (rules, pins, modes).
 *
 * Checked beyond the sanitizers: a refusal says where and why; a text that
 * loads leaves every setting within its option's range, and every region
 * it declares has a valid name and a size.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon-options.h"
#include "fuzz-util.h"
#include "log.h"
#include "qemu.h"

/* Whether the field @o sets in @settings holds a value @o allows. */
static bool option_in_range(const Option *o, const void *settings) {
        const void *field = (const char *) settings + o->offset;

        switch (o->type) {
        case OPTION_UINT:
                return *(const unsigned *) field >= o->min && *(const unsigned *) field <= o->max;
        case OPTION_SIZE:
                return *(const uint64_t *) field >= o->min && *(const uint64_t *) field <= o->max;
        case OPTION_SIZE_T:
                return *(const size_t *) field >= o->min && *(const size_t *) field <= o->max;
        case OPTION_MODE:
                return *(const unsigned *) field <= 0777;
        case OPTION_GROUP:
                return true;
        case OPTION_PATH:
        case OPTION_PATH_OR_EMPTY:
                return strnlen(field, OPTION_PATH_MAX) < OPTION_PATH_MAX &&
                       (((const char *) field)[0] == '/' || ((const char *) field)[0] == 0);
        case OPTION_URI:
                return strnlen(field, OPTION_PATH_MAX) < OPTION_PATH_MAX && strchr(field, ':');
        }
        return false;
}

static void peer_joined(Peer *self, Peer *other) {
}
static void peer_left(Peer *self, Peer *other) {
}
static void peer_evicted(Peer *self) {
        *(Peer **) self->userdata = NULL;
}
static const PeerOps peer_ops = { .joined = peer_joined, .left = peer_left, .evicted = peer_evicted };

/* What a reload does with the text: declarations and rules in force, then two peers try each region. */
static void config_apply(const Config *c) {
        static const PeerIdentity ids[] = {
                { .kind = SHMEM_PEER_KIND_HOST, .label = "vm-infotainment", .pid = 101, .uid = 1000, .gid = 1000 },
                { .kind = SHMEM_PEER_KIND_QEMU, .label = "guest1", .pid = 102, .uid = 64055, .gid = 64055,
                  .vm_uuid = "7f3c0a52-6c1e-4c55-9a55-0d1f2e3a4b5c", .libvirt = true },
        };
        Limits limits = LIMITS_DEFAULT;
        Registry *reg;

        /* The registry's limits are the fuzzer's, whatever the text says: memory stays small. */
        limits.max_regions = 8;
        limits.max_region_bytes = 1 << 20;
        limits.max_total_bytes = 4 << 20;
        limits.max_bytes_per_uid = 2 << 20;
        /* A directory backend makes files where the text says: not from a fuzzer running as root. */
        for (size_t i = 0; i < c->n_regions; i++)
                if (c->regions[i].backend && c->regions[i].backend[0] == '/')
                        return;
        if (registry_new(&reg, &limits) < 0)
                return;
        if (registry_reconfigure(reg, &limits, c->rules, c->n_rules, c->regions, c->n_regions) >= 0)
                for (size_t i = 0; i < reg->n_regions && i < 8; i++) {
                        Peer *peers[ELEMENTSOF(ids)] = {};
                        char name[SHMEM_NAME_MAX + 1];

                        snprintf(name, sizeof(name), "%s", reg->regions[i]->name);
                        for (size_t k = 0; k < ELEMENTSOF(ids); k++) {
                                const char *error;
                                bool created;

                                (void) registry_attach(reg,
                                                       &(AttachRequest) { .name = name, .mode = ATTACH_FIND,
                                                                          .id = &ids[k], .ops = &peer_ops,
                                                                          .userdata = &peers[k],
                                                                          .conn_id = registry_new_conn_id(reg) },
                                                       &peers[k], &created, &error);
                        }
                        for (size_t k = ELEMENTSOF(ids); k-- > 0;)
                                if (peers[k])
                                        registry_detach(reg, peers[k]);
                }
        registry_free(reg);
}

static void check_loaded(const Config *c) {
        for (size_t t = 0; t < c->n_tables; t++)
                for (size_t i = 0; i < c->tables[t].n_options; i++)
                        if (!option_in_range(&c->tables[t].options[i], c->tables[t].settings))
                                abort();
        for (size_t i = 0; i < c->n_regions; i++)
                if (!shmem_name_valid(c->regions[i].name) || c->regions[i].size == 0)
                        abort();
        for (size_t i = 0; i < c->n_rules; i++)
                if (!c->rules[i].client || !c->rules[i].glob)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static unsigned char qemu_defaults[sizeof(QemuSettings)];
        static bool initialized;
        QemuSettings qemu;
        DaemonSettings daemon = { .limits = LIMITS_DEFAULT };
        OptionTable tables[2];
        int fds = fuzz_count_fds();
        char *text;
        Config c;
        int r;

        FUZZ_QUIET_LOGS();
        if (!initialized) {
                /* Looks up groups (NSS): once. */
                qemu_plugin_module.settings_init(qemu_defaults);
                initialized = true;
        }
        memcpy(&qemu, qemu_defaults, sizeof(qemu));
        tables[0] = (OptionTable) { daemon_options, daemon_n_options, &daemon };
        tables[1] = (OptionTable) { qemu_plugin_module.options, qemu_plugin_module.n_options, &qemu };

        /* The files are C strings to the parser: what follows a NUL is not read. */
        text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        config_init(&c, tables, ELEMENTSOF(tables));
        r = config_load_text(&c, "fuzz.conf", text);
        if (r == 0) {
                check_loaded(&c);
                config_apply(&c);
        } else if (r != -EINVAL || !c.error[0])
                abort();
        if (getenv("SHMEM_FUZZ_LOG"))
                fprintf(stderr, "fuzz-config: %s\n", r == 0 ? "loaded" : c.error);
        config_done(&c);
        free(text);
        fuzz_check_fds(fds, "fuzz-config");
        return 0;
}
