/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmem-brokerd: the option tables (daemon-options.c and the plugins'), the
 * plugin table, logging, the objects and the loop. No logic lives here.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "broker.h"
#include "daemon-options.h"
#include "fdmsg.h"
#include "fdstore.h"
#include "log.h"
#include "macro.h"
#include "options.h"
#include "qemu.h"

#define CONFIG_FILE SHMEM_SYSCONFDIR "/shmem-broker/broker.conf"
#define CONFIG_DROPIN_DIR SHMEM_SYSCONFDIR "/shmem-broker/conf.d"

/* The VMM plugins the broker runs: a new one is one line here (docs/architecture.md). */
static const PluginModule *const plugin_modules[] = {
        &qemu_plugin_module,
};
#define N_PLUGINS ELEMENTSOF(plugin_modules)

/* Everything the command line and the files say, rebuilt on every reload. */
typedef struct Args {
        int argc;
        char **argv;
        DaemonSettings daemon;
        unsigned char plugin_settings[N_PLUGINS][1024] __attribute__((aligned(8)));
        OptionTable tables[1 + N_PLUGINS];
        BrokerPlugin plugins[N_PLUGINS];
        Config file;
        BrokerConfig config;
        RegionDecl *regions;  /* the files' [region]s, then the --region options: config.regions */
        size_t n_regions_allocated;
        char **region_args;   /* copies: parse_region() cuts them up */
        size_t n_region_args, n_region_args_allocated;
        char dropins[PATH_MAX];
        struct option longopts[64];
        bool inherited;    /* started with the fds of a broker before (restart, upgrade) */
        bool check;        /* --check-config */
        const char *config_file; /* the file read, NULL with --no-config */
        char refused[512]; /* why the configuration was refused at such a start */
} Args;

enum {
        ARG_VERSION = 0x100,
        ARG_NO_CONFIG,
        ARG_CHECK_CONFIG,
        ARG_TABLE = 0x200, /* + table * 64 + option */
};

static void args_init_settings(Args *a) {
        a->daemon = (DaemonSettings) { .limits = LIMITS_DEFAULT };
        a->tables[0] = (OptionTable) { daemon_options, daemon_n_options, &a->daemon };
        for (size_t i = 0; i < N_PLUGINS; i++) {
                _Static_assert(sizeof(QemuSettings) <= sizeof(a->plugin_settings[0]), "plugin settings fit");
                plugin_modules[i]->settings_init(a->plugin_settings[i]);
                a->tables[1 + i] = (OptionTable) { plugin_modules[i]->options, plugin_modules[i]->n_options,
                                                   a->plugin_settings[i] };
                a->plugins[i] = (BrokerPlugin) { plugin_modules[i], a->plugin_settings[i] };
        }
}

/* getopt's table: the fixed options, then every table's --NAME. */
static void args_build_longopts(Args *a) {
        static const struct option fixed[] = {
                { "help", no_argument, NULL, 'h' },     { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, 'c' }, { "no-config", no_argument, NULL, ARG_NO_CONFIG },
                { "region", required_argument, NULL, 'R' }, { "verbose", no_argument, NULL, 'v' },
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
        };
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                a->longopts[n++] = fixed[i];
        for (size_t t = 0; t < ELEMENTSOF(a->tables); t++)
                for (size_t i = 0; i < a->tables[t].n_options; i++)
                        if (a->tables[t].options[i].long_name && n + 1 < ELEMENTSOF(a->longopts))
                                a->longopts[n++] = (struct option) { a->tables[t].options[i].long_name,
                                                                     required_argument, NULL,
                                                                     (int) (ARG_TABLE + t * 64 + i) };
        a->longopts[n] = (struct option) {};
}

/* "  --name=ARG   text", the text wrapped at 80 columns in a column of its own. */
static void help_item(const char *lhs, const char *text) {
        enum { COLUMN = 28, WIDTH = 80 };
        int col = printf("%s", lhs);
        const char *p = text;

        if (col >= COLUMN) {
                putchar('\n');
                col = 0;
        }
        while (*p) {
                size_t word = strcspn(p, " ");

                if (col > COLUMN && col + 1 + (int) word > WIDTH) {
                        putchar('\n');
                        col = 0;
                }
                if (col < COLUMN)
                        col += printf("%*s", COLUMN - col, "");
                else
                        col += printf(" ");
                col += printf("%.*s", (int) word, p);
                p += word;
                while (*p == ' ')
                        p++;
        }
        putchar('\n');
}

static void help(Args *a) {
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
               "     --check-config         Check the configuration (files and options) as a\n"
               "                            start would, print a summary and exit: 0 if it\n"
               "                            is valid, 1 if not; no root needed, nothing is\n"
               "                            started or changed\n"
               "  -R --region=NAME:SIZE[:persistent][:peers=N][:ivshmem[:vectors=N]]\n"
               "                            Declare a region ahead of any attach (repeatable);\n"
               "                            ivshmem: compat mode, no control page, N vectors\n"
               "                            passed through as contrib/ivshmem-server does;\n"
               "                            SIZE in bytes, or with K, M or G (powers of 1024)\n"
               "  -v --verbose              Log debug messages\n",
               CONFIG_FILE, CONFIG_DROPIN_DIR);
        /* Every setting of the files that has an option, with its default. */
        args_init_settings(a);
        for (size_t t = 0; t < ELEMENTSOF(a->tables); t++)
                for (size_t i = 0; i < a->tables[t].n_options; i++) {
                        const Option *o = &a->tables[t].options[i];
                        char lhs[64], text[320], def[64];

                        if (!o->long_name)
                                continue;
                        snprintf(lhs, sizeof(lhs), "%s%c --%s=%s", o->short_name ? "  -" : "   ",
                                 o->short_name ? o->short_name : ' ', o->long_name, o->arg);
                        if (o->type == OPTION_PATH)
                                snprintf(text, sizeof(text), "%s", o->help);
                        else
                                snprintf(text, sizeof(text), "%s (default: %s)", o->help,
                                         option_format(o, a->tables[t].settings, def, sizeof(def)));
                        help_item(lhs, text);
                }
        printf("\nEach is also a key of the configuration file (broker.conf(5)).\n"
               "SIGHUP re-reads the configuration; SIGUSR2 re-executes the binary in place,\n"
               "keeping every region, peer and connection (live upgrade).\n");
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
                } else if (strncmp(tok, "peers=", 6) == 0) {
                        if (config_parse_uint(tok + 6, 1, SHMEM_PEERS_MAX, &d->max_peers) < 0)
                                return -EINVAL;
                } else
                        return -EINVAL;
        }
        return 0;
}

/*
 * fds the broker holds besides its regions, peers and connections: listening
 * and notify sockets, libevent's, states being stored, an upgrade's list, the
 * socket accept() takes before it is refused.
 */
#define FDS_OWN 64

/* Takes the whole hard fd limit. */
static void raise_fd_limit(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
}

/*
 * What the fd limit sets aside before regions and peers get theirs: every
 * connection (a socket, greeted or not, and the store's copy), every fd the
 * output queues may hold (--max-total-queued-fds: copies of memfds and
 * eventfds in replies and events not yet read), one message's fds being
 * built and one's being received (FDMSG_FDS_MAX each), and the broker's own.
 */
static uint64_t fds_aside(const Limits *l) {
        return FDS_OWN + 2 * (uint64_t) l->max_connections + l->max_total_queued_fds + 2 * FDMSG_FDS_MAX;
}

/*
 * The fd budget (Limits.max_fds): what the fd limit leaves the regions and
 * their peers once fds_aside() is, halved because the fd store keeps a copy
 * of every fd (docs/persistence.md; an upgrade hands the store over where it
 * is and needs one fd more, in FDS_OWN). 0: no limit; 1: nothing fits.
 */
static unsigned fd_budget(const Limits *l) {
        uint64_t aside = fds_aside(l);
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
                return 0;
        if (rl.rlim_cur <= aside + 2)
                return 1;
        return (rl.rlim_cur - aside) / 2 < UINT_MAX ? (unsigned) ((rl.rlim_cur - aside) / 2) : UINT_MAX;
}

/*
 * Says so if the configured limits can outgrow the budget (to the log at
 * start, to stderr for --check-config): a region costs an endpoint per plugin
 * and, with memory, its memfd; a peer its row of max_peers + 1 eventfds.
 * What does not fit is refused (LIMIT) as it is asked for, never half made.
 * Returns whether they fit.
 */
static bool report_fd_budget(const Limits *l, FILE *to) {
        uint64_t want = (uint64_t) l->max_regions * (N_PLUGINS + 1) +
                        (uint64_t) l->max_connections * (l->default_max_peers + 1);
        char text[1024];
        struct rlimit rl;

        if (l->max_fds == 0 || want <= l->max_fds || getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return true;
        if (rl.rlim_cur <= fds_aside(l) + 2)
                snprintf(text, sizeof(text),
                         "File descriptor limit %llu is below the %llu fds set aside for %u connections, %u "
                         "queued fds (--max-total-queued-fds) and the broker's own: no region and no peer fits, "
                         "creating regions and attaching peers is refused (LIMIT); raise LimitNOFILE= or lower "
                         "those limits",
                         (unsigned long long) rl.rlim_cur, (unsigned long long) fds_aside(l), l->max_connections,
                         l->max_total_queued_fds);
        else
                snprintf(text, sizeof(text),
                         "File descriptor limit %llu leaves %u fds to regions and peers (each fd is kept twice; "
                         "%llu for %u connections, %u queued fds (--max-total-queued-fds) and the broker's own), "
                         "below the %llu that --max-regions=%u with memory and --max-connections=%u peers with %u "
                         "vectors can use: past it, creating regions and attaching peers is refused (LIMIT)",
                         (unsigned long long) rl.rlim_cur, l->max_fds, (unsigned long long) fds_aside(l),
                         l->max_connections, l->max_total_queued_fds, (unsigned long long) want, l->max_regions,
                         l->max_connections, l->default_max_peers + 1);
        if (to)
                fprintf(to, "shmem-brokerd: %s\n", text);
        else
                log_notice("%s", text);
        return false;
}

static void args_done(Args *a) {
        config_done(&a->file);
        for (size_t i = 0; i < a->n_region_args; i++)
                free(a->region_args[i]);
        a->n_region_args = 0;
        a->config.n_regions = 0;
}

/* Grows @*array of @*allocated elements of @size to hold @n; false: out of memory. */
static bool grow(void *array, size_t *allocated, size_t n, size_t size) {
        void *p;

        if (n <= *allocated)
                return true;
        p = reallocarray(*(void **) array, n < 2 * *allocated ? 2 * *allocated : n, size);
        if (!p)
                return false;
        *(void **) array = p;
        *allocated = n < 2 * *allocated ? 2 * *allocated : n;
        return true;
}

/* Applies option @c (getopt's value) with @arg from the tables; -1 if @c is not a table's. */
static int args_apply_table(Args *a, int c, const char *arg) {
        size_t t = (size_t) (c - ARG_TABLE) / 64, i = (size_t) (c - ARG_TABLE) % 64;
        char why[192];

        if (c < ARG_TABLE || t >= ELEMENTSOF(a->tables) || i >= a->tables[t].n_options)
                return -1;
        if (option_set(&a->tables[t].options[i], a->tables[t].settings, arg, why, sizeof(why)) < 0) {
                fprintf(stderr, "shmem-brokerd: --%s: %s\n", a->tables[t].options[i].long_name, why);
                return 2;
        }
        return 0;
}

/* The short options of the tables (-r), as getopt values. */
static int args_short(Args *a, int c) {
        for (size_t t = 0; t < ELEMENTSOF(a->tables); t++)
                for (size_t i = 0; i < a->tables[t].n_options; i++)
                        if (a->tables[t].options[i].short_name == c)
                                return (int) (ARG_TABLE + t * 64 + i);
        return c;
}

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
        const char *rundir;
        bool config_explicit = false;
        int c, r, idx = 0;

        args_done(a);
        args_init_settings(a);
        args_build_longopts(a);
        config_init(&a->file, a->tables, ELEMENTSOF(a->tables));
        a->config = (BrokerConfig) { .regions = a->regions, .plugins = a->plugins, .n_plugins = N_PLUGINS };

        /* First pass: which configuration file. */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(a->argc, a->argv, "hc:r:R:v", a->longopts, &idx)) >= 0) {
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
        a->config_file = config_file;
        if (config_file && config_load(&a->file, config_file, config_dropins, config_explicit) < 0) {
                log_error("%s", a->file.error);
                if (!a->inherited)
                        return 1;
                snprintf(a->refused, sizeof(a->refused), "%s", a->file.error);
                log_error("Keeping every region and peer handed over; refusing every new attach until a "
                          "configuration that parses is reloaded");
                config_done(&a->file);
                args_init_settings(a);
        }
        if (!grow(&a->regions, &a->n_regions_allocated, a->file.n_regions, sizeof(*a->regions))) {
                log_error("Out of memory");
                return 1;
        }
        for (size_t i = 0; i < a->file.n_regions; i++)
                a->regions[a->config.n_regions++] = a->file.regions[i];
        a->config.rules = a->file.rules;
        a->config.n_rules = a->file.n_rules;
        a->config.config_files = (const char *const *) a->file.files;
        a->config.n_config_files = a->file.n_files;
        a->config.refused = a->refused[0] ? a->refused : NULL;

        optind = 0;
        while ((c = getopt_long(a->argc, a->argv, "hc:r:R:v", a->longopts, &idx)) >= 0) {
                c = args_short(a, c);
                r = args_apply_table(a, c, optarg);
                if (r > 0)
                        return r;
                if (r == 0)
                        continue;
                switch (c) {
                case 'h':
                        help(a);
                        return 0;
                case ARG_VERSION:
                        printf("shmem-brokerd %s\n", SHMEM_VERSION);
                        return 0;
                case 'c':
                case ARG_NO_CONFIG:
                        break; /* first pass */
                case ARG_CHECK_CONFIG:
                        a->check = true;
                        break;
                case 'R': {
                        char *copy;

                        if (a->config.n_regions >= CONFIG_REGIONS_MAX) {
                                fprintf(stderr, "shmem-brokerd: more regions declared than max-regions can be (%u)\n",
                                        CONFIG_REGIONS_MAX);
                                return 2;
                        }
                        if (!grow(&a->region_args, &a->n_region_args_allocated, a->n_region_args + 1,
                                  sizeof(*a->region_args)) ||
                            !grow(&a->regions, &a->n_regions_allocated, a->config.n_regions + 1, sizeof(*a->regions))) {
                                log_error("Out of memory");
                                return 1;
                        }
                        copy = a->region_args[a->n_region_args++] = strdup(optarg);
                        if (!copy || parse_region(copy, &a->regions[a->config.n_regions]) < 0) {
                                fprintf(stderr, "shmem-brokerd: --region wants "
                                                "NAME:SIZE[:persistent][:peers=N][:ivshmem[:vectors=N]]\n");
                                return 2;
                        }
                        a->config.n_regions++;
                        break;
                }
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
        rundir = getenv("RUNTIME_DIRECTORY");
        a->config.rundir = a->daemon.rundir[0] ? a->daemon.rundir : rundir && rundir[0] == '/' ? rundir
                                                                                             : SHMEM_DEFAULT_RUNDIR;
        a->config.regions = a->regions;
        a->config.limits = a->daemon.limits;
        a->config.limits.max_fds = fd_budget(&a->config.limits);
        if (a->config.n_regions > a->config.limits.max_regions) {
                snprintf(a->file.error, sizeof(a->file.error),
                         "%zu regions are declared ([region] sections and --region options), more than "
                         "max-regions (%u)",
                         a->config.n_regions, a->config.limits.max_regions);
                log_error("%s", a->file.error);
                /* A restart keeps what was handed over: past the limit, declaring is refused region by region. */
                if (!a->inherited)
                        return 1;
        }
        return -1;
}

/* --check-config: the files and options loaded already; the regions and rules as a start takes them. */
static int check_config(const Args *a) {
        uint64_t persistent_bytes = 0;
        unsigned persistent = 0;
        int r;

        for (size_t i = 0; i < a->config.n_regions; i++)
                if (a->config.regions[i].persistent) {
                        persistent++;
                        persistent_bytes += a->config.regions[i].size;
                }
        r = broker_check_config(&a->config);
        if (r != 0) {
                if (r < 0)
                        log_error_errno(r, "Cannot check the configuration: %m");
                fprintf(stderr, "shmem-brokerd: the configuration is not valid%s%s\n",
                        a->config_file ? ": " : "", a->config_file ? a->config_file : "");
                return 1;
        }
        printf("%s%s: valid; %zu regions declared (%u persistent, %" PRIu64 " bytes), %zu access rules, "
               "run directory %s\n",
               a->config_file ? a->config_file : "--no-config",
               a->config_file && access(a->config_file, F_OK) < 0 ? " (absent: the defaults)" : "",
               a->config.n_regions, persistent, persistent_bytes, a->config.n_rules, a->config.rundir);
        (void) report_fd_budget(&a->config.limits, stderr);
        return 0;
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
        args.inherited = fdstore_inherited();
        raise_fd_limit();
        r = args_load(&args);
        if (r >= 0)
                return r;
        if (args.check) {
                r = check_config(&args);
                args_done(&args);
                return r;
        }

        (void) signal(SIGPIPE, SIG_IGN);
        report_fd_budget(&args.config.limits, NULL);
        r = broker_new(&broker, &args.config, args_reload, &args);
        if (r < 0 && args.inherited)
                /* Everything handed over stays with the manager for the next start: tearing
                 * down would tell QEMUs and clients that peers left who did not. */
                _exit(EXIT_FAILURE);
        args.inherited = false; /* a reload that fails keeps the configuration in force */
        if (r >= 0) {
                broker_set_argv(broker, argv);
                r = broker_run(broker);
        }
        broker_free(broker);
        args_done(&args);
        return r < 0 ? 1 : 0;
}
