/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "fdstore.h"
#include "log.h"
#include "server.h"
#include "service.h"

#define BROKER_PLUGINS_MAX REGISTRY_PLUGINS_MAX

struct Broker {
        struct event_base *base;
        Registry *registry;
        Service *service;
        Frontends *frontends;
        Server *server;
        Plugin *plugins[BROKER_PLUGINS_MAX];
        const PluginModule *modules[BROKER_PLUGINS_MAX];
        size_t n_plugins;
        struct event *ev_sigterm, *ev_sigint, *ev_sighup, *ev_sigusr2, *ev_upgrade;
        BrokerReloadFn reload;
        void *reload_userdata;
        bool stopped; /* the loop ended on SIGTERM/SIGINT: a clean stop empties the fd store */
        bool refused; /* running on defaults, denying attaches: the files were refused at start */
        char exe[PATH_MAX]; /* the binary's path at start: an upgrade runs what is there now */
        char upgrade_failed[PATH_MAX + 128]; /* why the last upgrade accepted did not happen (BrokerStatus) */
        uint64_t upgrade_deadline_usec;      /* CLOCK_MONOTONIC: the queues it waits for, no longer */
        char *const *argv;
        char rundir[PATH_MAX];
        char socket_path[PATH_MAX];
        char **config_files; /* copies of the files in force: a reload that fails frees the BrokerConfig's */
        size_t n_config_files;
        uint64_t started_usec, started_mono_usec; /* this image's start */
};

#define UPGRADE_DRAIN_USEC (100 * 1000)

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static void broker_free_config_files(Broker *b) {
        for (size_t i = 0; i < b->n_config_files; i++)
                free(b->config_files[i]);
        b->config_files = mfree(b->config_files);
        b->n_config_files = 0;
}

/* Keeps copies of the names of @config's files (out of memory: none). */
static void broker_keep_config_files(Broker *b, const BrokerConfig *config) {
        broker_free_config_files(b);
        b->config_files = calloc(config->n_config_files + 1, sizeof(char *));
        for (size_t i = 0; b->config_files && i < config->n_config_files; i++) {
                b->config_files[i] = strdup(config->config_files[i]);
                if (!b->config_files[i])
                        break;
                b->n_config_files++;
        }
}

/* NativeHooks.facts: what the BrokerStatus reply says of the daemon. */
static void broker_facts(void *userdata, NativeFacts *ret) {
        Broker *b = userdata;
        const char *max = getenv("FDSTORE"); /* systemd 254 and later say FileDescriptorStoreMax= */

        *ret = (NativeFacts) { .version = SHMEM_VERSION,
                               .started_usec = b->started_usec,
                               .uptime_usec = now_usec(CLOCK_MONOTONIC) - b->started_mono_usec,
                               .config_files = (const char *const *) b->config_files,
                               .n_config_files = b->n_config_files,
                               .managed = service_managed(b->service),
                               .stored_fds = service_stored_fds(b->service),
                               .fd_store_max = max ? (unsigned) strtoul(max, NULL, 10) : 0,
                               .frontends = b->frontends,
                               .upgrade_failed = b->upgrade_failed };
}

static void broker_on_signal(evutil_socket_t sig, short what, void *userdata) {
        Broker *b = userdata;

        log_info("Received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        event_base_loopbreak(b->base);
}

static void broker_on_libevent_log(int severity, const char *msg) {
        log_internal(severity >= EVENT_LOG_ERR ? LOG_ERR : severity >= EVENT_LOG_WARN ? LOG_WARNING : LOG_DEBUG, 0,
                     "libevent: %s", msg);
}

/*
 * From the loop, once every queue is written (the Upgrade request's reply
 * among them), or UPGRADE_DRAIN_USEC after the request whatever a client left
 * unread: the new image has the connections, not what their queues held.
 */
static void broker_on_upgrade(evutil_socket_t fd, short what, void *userdata) {
        Broker *b = userdata;
        int r;

        if (frontends_queued_bytes(b->frontends) > 0 && now_usec(CLOCK_MONOTONIC) < b->upgrade_deadline_usec) {
                event_add(b->ev_upgrade, &(struct timeval) { .tv_usec = 1000 });
                return;
        }
        log_event(LOG_INFO, LOG_FIELDS(.message_id = LOG_MID_BROKER_UPGRADING),
                  "Upgrading: re-executing '%s' with every fd and the state", b->exe);
        r = service_exec(b->service, b->exe, b->argv);
        log_error_errno(r, "Cannot upgrade to '%s' with %zu stored fds, going on: %m", b->exe,
                        service_stored_fds(b->service));
        /* shmemctl upgrade asks BrokerStatus while the old image still answers. */
        snprintf(b->upgrade_failed, sizeof(b->upgrade_failed), "the upgrade to '%s' failed: %s", b->exe,
                 strerror(-r));
}

static int broker_request_upgrade(void *userdata) {
        Broker *b = userdata;

        if (!b->exe[0] || !b->argv)
                return -EOPNOTSUPP;
        if (access(b->exe, X_OK) < 0)
                return -errno;
        b->upgrade_failed[0] = 0;
        b->upgrade_deadline_usec = now_usec(CLOCK_MONOTONIC) + UPGRADE_DRAIN_USEC;
        event_active(b->ev_upgrade, 0, 0);
        return 0;
}

static void broker_on_sigusr2(evutil_socket_t sig, short what, void *userdata) {
        int r = broker_request_upgrade(userdata);

        if (r < 0)
                log_error_errno(r, "Cannot upgrade: %m");
}

void broker_set_argv(Broker *b, char *const *argv) {
        ssize_t n = readlink("/proc/self/exe", b->exe, sizeof(b->exe) - 1);

        b->exe[n > 0 ? n : 0] = 0;
        b->argv = argv;
}

static void broker_on_sighup(evutil_socket_t sig, short what, void *userdata) {
        const char *error;

        (void) broker_reload(userdata, &error);
}

/* What STATUS= says: what exists, and what the broker refuses. */
static const char *broker_status_text(Broker *b, char buf[192]) {
        unsigned peers = 0;

        for (size_t i = 0; i < b->registry->n_regions; i++)
                peers += b->registry->regions[i]->n_peers;
        snprintf(buf, 192, "%s%zu regions, %u peers, %u control connections",
                 b->refused ? "configuration refused, denying new attaches until a reload; " : "",
                 b->registry->n_regions, peers, b->server ? server_n_clients(b->server) : 0);
        return buf;
}

static void broker_status(void *userdata) {
        char status[192];

        service_status(((Broker *) userdata)->service, broker_status_text(userdata, status));
}

int broker_reload(Broker *b, const char **ret_error) {
        BrokerConfig config;
        int r;

        *ret_error = NULL;
        if (!b->reload)
                return 0;
        r = b->reload(b->reload_userdata, &config, ret_error);
        if (r < 0) {
                log_error("Configuration not reloaded, the old one stays in force");
                return r;
        }
        if (strcmp(config.rundir, b->rundir) != 0)
                log_notice("The run directory changes only at a restart, keeping '%s'", b->rundir);
        r = registry_reconfigure(b->registry, &config.limits, config.rules, config.n_rules, config.regions,
                                 config.n_regions);
        if (r < 0) {
                *ret_error = "out of memory";
                return r;
        }
        frontends_set_limits(b->frontends, &config.limits);
        broker_keep_config_files(b, &config);
        (void) registry_set_closed(b->registry, NULL);
        b->refused = false;
        if (r > 0)
                *ret_error = "some region declarations could not be applied (see the broker's log)";
        log_info("Configuration reloaded: %zu regions%s", b->registry->n_regions,
                 r > 0 ? ", some declarations not applied (see above)" : "");
        broker_status(b);
        return r > 0 ? -EINVAL : 0;
}

/*
 * Before anything leaves for a peer, the state that explains it is stored: a
 * peer told OK and a kill -9 before the loop's turn ends would be restored
 * without its attach. A flag test when nothing changed.
 */
static void broker_before_send(void *userdata) {
        service_flush(userdata);
}

static int broker_dump_conns(void *userdata, State *s) {
        return frontends_dump(userdata, s);
}

static int broker_dump_conn(void *userdata, uint64_t id, State *s) {
        return frontends_dump_conn(userdata, id, s);
}

static int broker_start_plugins(Broker *b, const BrokerConfig *config) {
        PluginContext ctx = { .base = b->base, .registry = b->registry, .table = b->frontends,
                              .rundir = config->rundir };

        if (config->n_plugins > BROKER_PLUGINS_MAX)
                return -E2BIG;
        for (size_t i = 0; i < config->n_plugins; i++) {
                const PluginModule *m = config->plugins[i].module;
                int r = m->new(&b->plugins[b->n_plugins], &ctx, config->plugins[i].settings);

                if (r < 0)
                        return log_error_errno(r, "Cannot start the %s plugin: %m", m->name);
                b->modules[b->n_plugins++] = m;
        }
        return 0;
}

static int broker_add_signals(Broker *b) {
        b->ev_sigterm = evsignal_new(b->base, SIGTERM, broker_on_signal, b);
        b->ev_sigint = evsignal_new(b->base, SIGINT, broker_on_signal, b);
        b->ev_sighup = evsignal_new(b->base, SIGHUP, broker_on_sighup, b);
        b->ev_sigusr2 = evsignal_new(b->base, SIGUSR2, broker_on_sigusr2, b);
        b->ev_upgrade = evtimer_new(b->base, broker_on_upgrade, b);
        if (!b->ev_sigterm || !b->ev_sigint || !b->ev_sighup || !b->ev_sigusr2 || !b->ev_upgrade ||
            evsignal_add(b->ev_sigterm, NULL) < 0 || evsignal_add(b->ev_sigint, NULL) < 0 ||
            evsignal_add(b->ev_sighup, NULL) < 0 || evsignal_add(b->ev_sigusr2, NULL) < 0)
                return -ENOMEM;
        return 0;
}

int broker_new(Broker **ret, const BrokerConfig *config, BrokerReloadFn reload, void *userdata) {
        _cleanup_(state_freep) State *state = NULL;
        Broker *b;
        int r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->reload = reload;
        b->reload_userdata = userdata;
        b->started_usec = now_usec(CLOCK_REALTIME);
        b->started_mono_usec = now_usec(CLOCK_MONOTONIC);
        broker_keep_config_files(b, config);
        b->refused = config->refused != NULL;
        event_set_log_callback(broker_on_libevent_log);
        b->base = event_base_new();
        if (!b->base) {
                r = -ENOMEM;
                goto fail;
        }
        /* Traversable by QEMU and clients whatever the umask (the service's is 0077). */
        if (mkdir(config->rundir, 0755) == 0)
                (void) chmod(config->rundir, 0755);
        else if (errno != EEXIST) {
                r = log_error_errno(-errno, "Cannot create run directory '%s': %m", config->rundir);
                goto fail;
        }
        r = registry_new(&b->registry, &config->limits);
        if (r < 0)
                goto fail;
        r = service_new(&b->service, b->base, b->registry);
        if (r < 0)
                goto fail;
        r = frontends_new(&b->frontends, b->base, &config->limits, service_keeper(b->service));
        if (r < 0)
                goto fail;
        frontends_set_gate(b->frontends, broker_before_send, b->service);
        /* After a crash or restart: everything comes back from the fd store. */
        state = service_take_state(b->service);
        if (state) {
                r = state_adopt_registry(b->registry, state, service_keeper(b->service));
                if (r < 0)
                        goto fail;
        }
        r = broker_start_plugins(b, config);
        if (r < 0)
                goto fail;
        snprintf(b->rundir, sizeof(b->rundir), "%s", config->rundir);
        snprintf(b->socket_path, sizeof(b->socket_path), "%s/broker.sock", config->rundir);
        r = server_new(&b->server, b->registry, b->frontends, b->socket_path,
                       &(NativeHooks) { .reload = (int (*)(void *, const char **)) broker_reload,
                                        .upgrade = broker_request_upgrade,
                                        .facts = broker_facts,
                                        .userdata = b });
        if (r == -EADDRINUSE) {
                log_error("Another broker is serving '%s'", b->socket_path);
                goto fail;
        }
        if (r < 0) {
                log_error_errno(r, "Cannot listen on '%s': %m", b->socket_path);
                goto fail;
        }
        if (state) {
                server_restore(b->server, state);
                for (size_t i = 0; i < b->n_plugins; i++)
                        b->modules[i]->restore(b->plugins[i], state);
                log_event(LOG_INFO, LOG_FIELDS(.message_id = LOG_MID_BROKER_RESTORED),
                          "Restored %zu regions and %zu connections from the fds handed over",
                          b->registry->n_regions, state->n_conns);
        }
        registry_adopt_finish(b->registry);
        r = registry_set_closed(b->registry, config->refused ? "the broker's configuration was refused at its "
                                                               "restart; every new attach is, until a reload" : NULL);
        if (r < 0)
                goto fail;
        r = registry_reconfigure(b->registry, &config->limits, config->rules, config->n_rules, config->regions,
                                 config->n_regions);
        if (r > 0)
                log_error("Cannot start: %d of the %zu declared regions cannot be made (the errors above)", r,
                          config->n_regions);
        if (r != 0) {
                r = r > 0 ? -EINVAL : r;
                goto fail;
        }
        service_set_conn_dumper(b->service, &(ServiceConnDumper) { .all = broker_dump_conns,
                                                                    .one = broker_dump_conn,
                                                                    .userdata = b->frontends });
        r = broker_add_signals(b);
        if (r < 0)
                goto fail;
        *ret = b;
        return 0;

fail:
        broker_free(b);
        return r;
}

int broker_check_config(const BrokerConfig *config) {
        Registry *reg = NULL;
        int r;

        r = registry_new(&reg, &config->limits);
        if (r < 0)
                return r;
        r = registry_reconfigure(reg, &config->limits, config->rules, config->n_rules, config->regions,
                                 config->n_regions);
        registry_free(reg);
        return r;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        if (b->ev_sigterm)
                event_free(b->ev_sigterm);
        if (b->ev_sigint)
                event_free(b->ev_sigint);
        if (b->ev_sighup)
                event_free(b->ev_sighup);
        if (b->ev_sigusr2)
                event_free(b->ev_sigusr2);
        if (b->ev_upgrade)
                event_free(b->ev_upgrade);
        /* Front ends first: their connections detach their peers from the registry. */
        server_free(b->server);
        while (b->n_plugins > 0) {
                b->n_plugins--;
                b->modules[b->n_plugins]->free(b->plugins[b->n_plugins]);
        }
        if (b->registry)
                registry_clear(b->registry);
        service_free(b->service, b->stopped);
        frontends_free(b->frontends);
        registry_free(b->registry);
        if (b->base)
                event_base_free(b->base);
        broker_free_config_files(b);
        free(b);
        return NULL;
}

int broker_run(Broker *b) {
        char status[192];
        int r;

        log_event(LOG_INFO, LOG_FIELDS(.message_id = LOG_MID_BROKER_STARTED),
                  "Ready: %zu regions, control socket '%s'", b->registry->n_regions, b->socket_path);
        r = service_started(b->service, broker_status_text(b, status));
        if (r < 0)
                return r;
        service_set_status_fn(b->service, broker_status, b);
        if (event_base_dispatch(b->base) < 0)
                return -EIO;
        service_flush(b->service);
        /* A clean stop: what the teardown sends (Left to peers still connected) is not stored. */
        frontends_set_gate(b->frontends, NULL, NULL);
        b->stopped = true;
        return 0;
}
