/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shmem-brokerd: options, logging, objects, loop. No logic lives here. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "broker.h"
#include "config.h"
#include "persist.h"
#include "macro.h"
#include "log.h"

#define REGION_DECLS_MAX 64
#define CONFIG_FILE SHMEM_SYSCONFDIR "/shmem-broker/broker.conf"
#define CONFIG_DROPIN_DIR SHMEM_SYSCONFDIR "/shmem-broker/conf.d"

static void help(void) {
        printf("Usage: shmem-brokerd [OPTIONS]\n"
               "\n"
               "Named shared-memory regions between QEMU guests and host processes.\n"
               "\n"
               "  -h --help                 Show this help and exit\n"
               "     --version              Show the version and exit\n"
               "  -c --config=FILE          Configuration file, then conf.d/*.conf beside it\n"
               "                            (default: %s, then %s/*.conf);\n"
               "                            options given here override it\n"
               "     --no-config            Read no configuration file\n"
               "  -r --rundir=DIR           Run directory (default: $RUNTIME_DIRECTORY, else %s);\n"
               "                            control socket DIR/broker.sock, QEMU sockets DIR/qemu/NAME.sock\n"
               "  -R --region=NAME:SIZE[:persistent][:peers=N][:ivshmem[:vectors=N]]\n"
               "                            Declare a region ahead of any attach (repeatable);\n"
               "                            ivshmem: compat mode, no control page, N vectors\n"
               "                            passed through as contrib/ivshmem-server does\n"
               "                            SIZE in bytes, or with K, M or G (powers of 1024)\n"
               "     --qemu-group=GROUP     Group owning the QEMU sockets (default: libvirt-qemu if it\n"
               "                            exists, else kvm, else the broker's own group)\n"
               "     --qemu-socket-mode=MODE  Mode of the QEMU sockets (default: 0660)\n"
               "     --max-regions=N        Regions at most (default: 256)\n"
               "     --max-region-size=SIZE One region's memory at most (default: 1G)\n"
               "     --max-total-size=SIZE  All regions' memory at most (default: 16G)\n"
               "     --max-peers=N          Default peers per region, 1-64 (default: 16)\n"
               "     --max-connections=N    Connections per front end (default: 1024)\n"
               "     --max-queued-bytes=SIZE  Output queued for one connection before it is\n"
               "                            dropped as not reading (default: 256K, at least 4K)\n"
               "  -v --verbose              Log debug messages\n"
               "\n"
               "SIGHUP re-reads the configuration; SIGUSR2 re-executes the binary in place,\n"
               "keeping every region, peer and connection (live upgrade).\n",
               CONFIG_FILE, CONFIG_DROPIN_DIR, SHMEM_DEFAULT_RUNDIR);
}

/* NAME:SIZE[:persistent][:peers=N][:ivshmem[:vectors=N]]; @s is modified. */
static int parse_region(char *s, RegionDecl *d) {
        char *save = NULL, *tok;

        *d = (RegionDecl) { .name = strtok_r(s, ":", &save) };
        tok = strtok_r(NULL, ":", &save);
        if (!d->name || !tok || config_parse_size(tok, &d->size) < 0)
                return -EINVAL;
        while ((tok = strtok_r(NULL, ":", &save))) {
                if (strcmp(tok, "persistent") == 0)
                        d->persistent = true;
                else if (strcmp(tok, "ivshmem") == 0)
                        d->signal_mode = SHMEM_SIGNAL_MODE_IVSHMEM;
                else if (strncmp(tok, "vectors=", 8) == 0 && d->signal_mode == SHMEM_SIGNAL_MODE_IVSHMEM) {
                        if (config_parse_uint(tok + 8, 1, SHMEM_PEERS_MAX + 1, &d->vectors) < 0)
                                return -EINVAL;
                }
                else if (strncmp(tok, "peers=", 6) == 0) {
                        if (config_parse_uint(tok + 6, 1, SHMEM_PEERS_MAX, &d->max_peers) < 0)
                                return -EINVAL;
                } else
                        return -EINVAL;
        }
        return 0;
}

/*
 * Every attached peer costs the broker max_peers + 1 eventfds plus its socket;
 * take the whole hard limit and say so if the configured limits can outgrow it
 * (attaches then fail with UNKNOWN_FAILURE and a log line, nothing worse).
 */
static void raise_fd_limit(const Limits *l) {
        uint64_t want = (uint64_t) l->max_connections * 2 * (l->default_max_peers + 2) + 64;
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
                log_notice("File descriptor limit %llu is below the %llu that --max-connections=%u "
                           "with %u peers per region can use",
                           (unsigned long long) rl.rlim_cur, (unsigned long long) want,
                           l->max_connections, l->default_max_peers);
}

enum {
        ARG_VERSION = 0x100,
        ARG_QEMU_GROUP,
        ARG_QEMU_MODE,
        ARG_MAX_REGIONS,
        ARG_MAX_REGION_SIZE,
        ARG_MAX_TOTAL_SIZE,
        ARG_MAX_PEERS,
        ARG_MAX_CONNECTIONS,
        ARG_MAX_QUEUED,
        ARG_NO_CONFIG,
};
static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        { "config", required_argument, NULL, 'c' },
        { "no-config", no_argument, NULL, ARG_NO_CONFIG },
        { "rundir", required_argument, NULL, 'r' },
        { "region", required_argument, NULL, 'R' },
        { "qemu-group", required_argument, NULL, ARG_QEMU_GROUP },
        { "qemu-socket-mode", required_argument, NULL, ARG_QEMU_MODE },
        { "max-regions", required_argument, NULL, ARG_MAX_REGIONS },
        { "max-region-size", required_argument, NULL, ARG_MAX_REGION_SIZE },
        { "max-total-size", required_argument, NULL, ARG_MAX_TOTAL_SIZE },
        { "max-peers", required_argument, NULL, ARG_MAX_PEERS },
        { "max-connections", required_argument, NULL, ARG_MAX_CONNECTIONS },
        { "max-queued-bytes", required_argument, NULL, ARG_MAX_QUEUED },
        { "verbose", no_argument, NULL, 'v' },
        {}
};

/* Everything the command line and the files say, rebuilt on every reload. */
typedef struct Args {
        int argc;
        char **argv;
        Config file;
        BrokerConfig config;
        RegionDecl regions[REGION_DECLS_MAX + CONFIG_REGIONS_MAX];
        char *region_args[REGION_DECLS_MAX]; /* copies: parse_region() cuts them up */
        size_t n_region_args;
        char dropins[PATH_MAX];
        bool inherited;       /* started with the fds of a broker before (restart, upgrade) */
        char refused[512];    /* why the configuration was refused at such a start */
} Args;

static void args_done(Args *a) {
        config_done(&a->file);
        for (size_t i = 0; i < a->n_region_args; i++)
                free(a->region_args[i]);
        a->n_region_args = 0;
}

/* No new attach, from anyone: the rule set of a broker whose configuration is refused. */
static const AccessRule deny_all = { .client = "*", .glob = "*", .allow = false };

/*
 * Builds a->config from the configuration files and then the options, which
 * override them. Returns -1 to go on, else the exit status (help, version,
 * or an error, already printed).
 *
 * A broker started with the fds of one before it (a crash-restart, an
 * upgrade) must not lose them to a configuration edited since: it goes on
 * with the built-in defaults and fails closed, every new attach refused,
 * until a reload brings a configuration that parses.
 */
static int args_load(Args *a) {
        const char *config_file = CONFIG_FILE, *config_dropins = CONFIG_DROPIN_DIR;
        bool config_explicit = false;
        unsigned mode;
        int c, r, n, idx = 0;

        args_done(a);
        config_init(&a->file);
        a->config = (BrokerConfig) { .regions = a->regions };

        /* First pass: which configuration file. */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(a->argc, a->argv, "hc:r:R:v", options, &idx)) >= 0) {
                if (c == 'c') {
                        const char *slash = strrchr(optarg, '/');

                        config_file = optarg;
                        config_explicit = true;
                        /* FILE's own conf.d, as for the default file. */
                        snprintf(a->dropins, sizeof(a->dropins), "%.*sconf.d",
                                 slash ? (int) (slash - optarg + 1) : 0, optarg);
                        config_dropins = a->dropins;
                } else if (c == ARG_NO_CONFIG || c == 'h' || c == ARG_VERSION || c == '?')
                        config_file = NULL; /* help and errors are answered without reading files */
        }
        opterr = 1;
        a->refused[0] = 0;
        if (config_file && config_load(&a->file, config_file, config_dropins, config_explicit) < 0) {
                log_error("%s", a->file.error);
                if (!a->inherited)
                        return 1;
                snprintf(a->refused, sizeof(a->refused), "%s", a->file.error);
                log_error("Keeping every region and peer handed over; refusing every new attach until a "
                          "configuration that parses is reloaded");
                config_done(&a->file);
                config_init(&a->file);
        }
        a->config.limits = a->file.limits;
        a->config.qemu = a->file.qemu;
        a->config.rundir = a->file.rundir ?: getenv("RUNTIME_DIRECTORY") ?: SHMEM_DEFAULT_RUNDIR;
        for (size_t i = 0; i < a->file.n_regions; i++)
                a->regions[a->config.n_regions++] = a->file.regions[i];
        a->config.rules = a->refused[0] ? &deny_all : a->file.rules;
        a->config.n_rules = a->refused[0] ? 1 : a->file.n_rules;
        a->config.refused = a->refused[0] ? a->refused : NULL;

        optind = 0;
        while ((c = getopt_long(a->argc, a->argv, "hc:r:R:v", options, &idx)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("shmem-brokerd %s\n", SHMEM_VERSION);
                        return 0;
                case 'c':
                case ARG_NO_CONFIG:
                        break; /* first pass */
                case 'r':
                        a->config.rundir = optarg;
                        break;
                case 'R': {
                        char *copy;

                        if (a->n_region_args >= REGION_DECLS_MAX) {
                                fprintf(stderr, "shmem-brokerd: at most %d --region options\n", REGION_DECLS_MAX);
                                return 2;
                        }
                        copy = a->region_args[a->n_region_args++] = strdup(optarg);
                        if (!copy || parse_region(copy, &a->regions[a->config.n_regions]) < 0) {
                                fprintf(stderr, "shmem-brokerd: --region wants NAME:SIZE[:persistent][:peers=N][:ivshmem[:vectors=N]]\n");
                                return 2;
                        }
                        a->config.n_regions++;
                        break;
                }
                case ARG_QEMU_GROUP: {
                        struct group *g = getgrnam(optarg);

                        if (!g) {
                                fprintf(stderr, "shmem-brokerd: unknown group '%s'\n", optarg);
                                return 2;
                        }
                        a->config.qemu.socket_gid = g->gr_gid;
                        break;
                }
                case ARG_QEMU_MODE:
                        n = 0;
                        if (sscanf(optarg, "%o%n", &mode, &n) != 1 || optarg[n] || mode > 0777) {
                                fprintf(stderr, "shmem-brokerd: --qemu-socket-mode wants an octal mode\n");
                                return 2;
                        }
                        a->config.qemu.socket_mode = mode;
                        break;
                case ARG_MAX_REGIONS:
                        r = config_parse_uint(optarg, 1, 65536, &a->config.limits.max_regions);
                        goto check;
                case ARG_MAX_REGION_SIZE:
                        r = config_parse_size(optarg, &a->config.limits.max_region_bytes);
                        goto check;
                case ARG_MAX_TOTAL_SIZE:
                        r = config_parse_size(optarg, &a->config.limits.max_total_bytes);
                        goto check;
                case ARG_MAX_PEERS:
                        r = config_parse_uint(optarg, 1, SHMEM_PEERS_MAX, &a->config.limits.default_max_peers);
                        goto check;
                case ARG_MAX_CONNECTIONS:
                        r = config_parse_uint(optarg, 1, 1u << 20, &a->config.limits.max_connections);
                        goto check;
                case ARG_MAX_QUEUED: {
                        uint64_t v;

                        r = config_parse_size(optarg, &v);
                        if (r >= 0 && (v < 4096 || v > (UINT64_C(1) << 30)))
                                r = -ERANGE;
                        a->config.limits.max_queued_bytes = (size_t) v;
                }
                check:
                        if (r < 0) {
                                fprintf(stderr, "shmem-brokerd: invalid value '%s' for --%s\n", optarg,
                                        options[idx].name);
                                return 2;
                        }
                        break;
                case 'v':
                        log_set_max_level(LOG_DEBUG);
                        break;
                default:
                        fprintf(stderr, "Try 'shmem-brokerd --help'.\n");
                        return 2;
                }
        }
        if (optind < a->argc) {
                fprintf(stderr, "shmem-brokerd: unexpected argument '%s'\n", a->argv[optind]);
                return 2;
        }
        return -1;
}

static int args_reload(void *userdata, BrokerConfig *ret, const char **ret_error) {
        Args *a = userdata;

        if (args_load(a) >= 0) {
                *ret_error = a->file.error[0] ? a->file.error : "the command line no longer parses";
                return -EINVAL;
        }
        *ret = a->config;
        return 0;
}

int main(int argc, char **argv) {
        static Args args; /* large; lives as long as the broker */
        Broker *broker = NULL;
        int r;

        args.argc = argc;
        args.argv = argv;
        args.inherited = persist_inherited();
        r = args_load(&args);
        if (r >= 0)
                return r;
        args.inherited = false; /* a reload that fails keeps the configuration in force */

        (void) signal(SIGPIPE, SIG_IGN);
        raise_fd_limit(&args.config.limits);
        r = broker_new(&broker, &args.config, args_reload, &args);
        if (r >= 0) {
                broker_set_argv(broker, argv);
                r = broker_run(broker);
        }
        broker_free(broker);
        args_done(&args);
        return r < 0 ? 1 : 0;
}
