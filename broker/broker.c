/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "broker.h"
#include "log.h"
#include "msg.h"
#include "server.h"

struct Broker {
        struct event_base *base;
        Persist *persist;
        Registry *registry;
        Server *server;
        struct event *ev_sigterm, *ev_sigint, *ev_sighup;
        BrokerReloadFn reload;
        void *reload_userdata;
        bool stopped; /* the loop ended on SIGTERM/SIGINT: a clean stop empties the fd store */
        struct event *ev_sigusr2, *ev_upgrade, *ev_watchdog;
        char status[192]; /* the last STATUS= sent */
        bool refused;     /* running on defaults, denying attaches: the files were refused at start */
        char exe[PATH_MAX]; /* the binary's path at start: an upgrade runs what is there now */
        char *const *argv;
        char socket_path[PATH_MAX];
};

static void broker_on_signal(evutil_socket_t sig, short what, void *userdata) {
        Broker *b = userdata;

        log_info("Received %s, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        event_base_loopbreak(b->base);
}

static void broker_on_libevent_log(int severity, const char *msg) {
        log_internal(severity >= EVENT_LOG_ERR ? LOG_ERR : severity >= EVENT_LOG_WARN ? LOG_WARNING : LOG_DEBUG, 0,
                     "libevent: %s", msg);
}

/* From the loop, so that replies already queued (the Upgrade request's) went out. */
static void broker_on_upgrade(evutil_socket_t fd, short what, void *userdata) {
        Broker *b = userdata;
        int r;

        persist_flush(b->persist);
        /* systemd's watchdog runs on across the exec: ping now, and the new
         * image pings with its READY=1, so restoring has a whole interval. */
        if (b->ev_watchdog)
                (void) persist_notify(b->persist, "WATCHDOG=1");
        log_info("Upgrading: re-executing '%s' with every fd and the state", b->exe);
        r = persist_upgrade(b->persist, b->exe, b->argv);
        log_error_errno(r, "Cannot upgrade, going on: %m");
}

static int broker_request_upgrade(void *userdata) {
        Broker *b = userdata;

        if (!b->exe[0] || !b->argv)
                return -EOPNOTSUPP;
        if (access(b->exe, X_OK) < 0)
                return -errno;
        /* After the loop has written what is queued: one second at most. */
        event_add(b->ev_upgrade, &(struct timeval) { .tv_usec = 100 * 1000 });
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

int broker_reload(Broker *b, const char **ret_error) {
        BrokerConfig config;
        unsigned failed;
        int r;

        *ret_error = NULL;
        if (!b->reload)
                return 0;
        r = b->reload(b->reload_userdata, &config, ret_error);
        if (r < 0) {
                log_error("Configuration not reloaded, the old one stays in force");
                return r;
        }
        if (strcmp(config.rundir, b->registry->rundir) != 0)
                log_notice("The run directory changes only at a restart, keeping '%s'", b->registry->rundir);
        if (registry_set_rules(b->registry, config.rules, config.n_rules) < 0) {
                *ret_error = "out of memory";
                return -ENOMEM;
        }
        b->refused = false;
        failed = registry_reconfigure(b->registry, &config.limits, config.regions, config.n_regions);
        if (failed)
                *ret_error = "some region declarations could not be applied (see the broker's log)";
        log_info("Configuration reloaded: %u regions%s", b->registry->n_regions,
                 failed ? ", some declarations not applied (see above)" : "");
        return failed ? -EINVAL : 0;
}

static int broker_dump(void *userdata, State *s) {
        Broker *b = userdata;
        int r = registry_dump(b->registry, s);

        if (r >= 0 && b->server)
                r = server_dump(b->server, s);
        for (unsigned i = 0; r >= 0 && i < b->registry->n_plugins; i++)
                r = b->registry->plugins[i]->ops->dump(b->registry->plugins[i], s);
        return r;
}

int broker_new(Broker **ret, const BrokerConfig *config, BrokerReloadFn reload, void *userdata) {
        _cleanup_(persist_state_freep) State *state = NULL;
        Broker *b;
        Plugin *plugin;
        int fd, r;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->reload = reload;
        b->reload_userdata = userdata;
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
        r = persist_new(&b->persist, b->base);
        if (r < 0)
                goto fail;
        /* After a crash or restart: everything comes back from the fd store. */
        state = persist_take_state(b->persist);
        r = registry_new(&b->registry, b->base, &config->limits, config->rundir);
        if (r < 0)
                goto fail;
        b->registry->persist = b->persist;
        if (state) {
                r = registry_restore(b->registry, state);
                if (r < 0)
                        goto fail;
        }
        r = qemu_plugin_new(&plugin, &config->qemu);
        if (r >= 0)
                r = registry_add_plugin(b->registry, plugin);
        if (r < 0) {
                log_error_errno(r, "Cannot start the QEMU plugin: %m");
                goto fail;
        }
        if (state)
                plugin->ops->restore(plugin, state);
        r = registry_set_rules(b->registry, config->rules, config->n_rules);
        if (r < 0)
                goto fail;
        if (registry_reconfigure(b->registry, &config->limits, config->regions, config->n_regions) > 0) {
                r = -EINVAL;
                goto fail;
        }
        snprintf(b->socket_path, sizeof(b->socket_path), "%s/broker.sock", config->rundir);
        fd = persist_take(b->persist, "ctl");
        r = fd >= 0 ? 0 : server_listen(b->socket_path, &fd);
        if (r == -EADDRINUSE) {
                log_error("Another broker is serving '%s'", b->socket_path);
                goto fail;
        }
        if (r < 0) {
                log_error_errno(r, "Cannot listen on '%s': %m", b->socket_path);
                goto fail;
        }
        r = server_new(&b->server, b->registry, fd,
                       &(ServerHooks) { .reload = (int (*)(void *, const char **)) broker_reload,
                                        .upgrade = broker_request_upgrade,
                                        .userdata = b });
        if (r < 0)
                goto fail;
        if (state) {
                server_restore(b->server, state);
                log_info("Restored %u regions and %zu connections from the fds handed over",
                         b->registry->n_regions, state->n_conns);
        }
        registry_restore_finish(b->registry);
        /* The new state goes to the store before the old fds leave it. */
        persist_set_dump(b->persist, broker_dump, b);
        persist_dirty(b->persist);
        persist_flush(b->persist);
        persist_release_unclaimed(b->persist);
        b->ev_sigterm = evsignal_new(b->base, SIGTERM, broker_on_signal, b);
        b->ev_sigint = evsignal_new(b->base, SIGINT, broker_on_signal, b);
        b->ev_sighup = evsignal_new(b->base, SIGHUP, broker_on_sighup, b);
        b->ev_sigusr2 = evsignal_new(b->base, SIGUSR2, broker_on_sigusr2, b);
        b->ev_upgrade = evtimer_new(b->base, broker_on_upgrade, b);
        if (!b->ev_sigterm || !b->ev_sigint || !b->ev_sighup || !b->ev_sigusr2 || !b->ev_upgrade ||
            evsignal_add(b->ev_sigterm, NULL) < 0 || evsignal_add(b->ev_sigint, NULL) < 0 ||
            evsignal_add(b->ev_sighup, NULL) < 0 || evsignal_add(b->ev_sigusr2, NULL) < 0) {
                r = -ENOMEM;
                goto fail;
        }
        *ret = b;
        return 0;

fail:
        broker_free(b);
        return r;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        /*
         * Only a clean stop takes things out of the fd store. A start that
         * failed half-way (after a crash, say) must leave the store as it
         * found it, for the next attempt to restore.
         */
        if (b->registry && !b->stopped)
                b->registry->persist = NULL;
        if (b->stopped)
                (void) persist_notify(b->persist, "STOPPING=1");
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
        if (b->ev_watchdog)
                event_free(b->ev_watchdog);
        /* Clients first: they detach their peers from the registry. */
        server_free(b->server);
        if (b->server)
                (void) unlink(b->socket_path);
        registry_free(b->registry);
        if (b->stopped)
                persist_forget_state(b->persist);
        persist_free(b->persist);
        if (b->base)
                event_base_free(b->base);
        free(b);
        return NULL;
}

/* STATUS= for systemctl status, sent when it changed; with READY=1 (and a
 * watchdog ping, which after an upgrade is the first of the new image). */
static void broker_send_status(Broker *b, bool ready) {
        char status[sizeof(b->status)], text[sizeof(status) + 32];
        unsigned peers = 0;

        for (unsigned i = 0; i < b->registry->n_regions; i++)
                peers += b->registry->regions[i]->n_peers;
        snprintf(status, sizeof(status), "%s%u regions, %u peers, %u control connections",
                 b->refused ? "configuration refused, denying new attaches until a reload; " : "",
                 b->registry->n_regions, peers, b->server ? server_n_clients(b->server) : 0);
        if (!ready && strcmp(status, b->status) == 0)
                return;
        snprintf(b->status, sizeof(b->status), "%s", status);
        snprintf(text, sizeof(text), "%s%sSTATUS=%s", ready ? "READY=1\n" : "",
                 ready && b->ev_watchdog ? "WATCHDOG=1\n" : "", status);
        (void) persist_notify(b->persist, text);
}

/* WATCHDOG=1 at half the interval systemd asked for ($WATCHDOG_USEC); STATUS= on the way. */
static void broker_on_watchdog(evutil_socket_t fd, short what, void *userdata) {
        Broker *b = userdata;

        (void) persist_notify(b->persist, "WATCHDOG=1");
        broker_send_status(b, false);
}

static int broker_start_watchdog(Broker *b) {
        const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
        unsigned long long interval;
        struct timeval tv;

        if (!usec || (pid && strtoul(pid, NULL, 10) != (unsigned long) getpid()))
                return 0;
        interval = strtoull(usec, NULL, 10) / 2;
        if (interval == 0)
                return 0;
        tv.tv_sec = (time_t) (interval / 1000000);
        tv.tv_usec = (suseconds_t) (interval % 1000000);
        b->ev_watchdog = event_new(b->base, -1, EV_PERSIST, broker_on_watchdog, b);
        if (!b->ev_watchdog || event_add(b->ev_watchdog, &tv) < 0)
                return -ENOMEM;
        return 0;
}

int broker_run(Broker *b) {
        int r;

        log_info("Ready: %u regions, control socket '%s'", b->registry->n_regions, b->socket_path);
        r = broker_start_watchdog(b);
        if (r < 0)
                return r;
        broker_send_status(b, true);
        if (event_base_dispatch(b->base) < 0)
                return -EIO;
        b->stopped = true;
        return 0;
}
