/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>

#include "daemon-options.h"
#include "macro.h"

#define LIMIT(key_, long_, type_, field_, min_, max_, arg_, help_)                                            \
        { .section = "limits", .key = key_, .long_name = long_, .type = type_,                                 \
          .offset = offsetof(DaemonSettings, limits) + offsetof(Limits, field_), .min = min_, .max = max_,    \
          .arg = arg_, .help = help_ }

const Option daemon_options[] = {
        { .section = "broker", .key = "run-directory", .long_name = "rundir", .short_name = 'r', .type = OPTION_PATH,
          .offset = offsetof(DaemonSettings, rundir), .arg = "DIR",
          .help = "Run directory: DIR/broker.sock, the QEMU sockets in DIR/qemu/NAME.sock "
                  "(default: $RUNTIME_DIRECTORY, else " SHMEM_DEFAULT_RUNDIR ")" },
        LIMIT("regions", "max-regions", OPTION_UINT, max_regions, 1, CONFIG_REGIONS_MAX, "N", "Regions at most"),
        LIMIT("regions-per-uid", "max-regions-per-uid", OPTION_UINT, max_regions_per_uid, 0, 65536, "N",
              "Regions one user's attaches may create"),
        LIMIT("total-bytes", "max-total-size", OPTION_SIZE, max_total_bytes, 8192, UINT64_C(1) << 62, "SIZE",
              "All regions' memory at most"),
        LIMIT("bytes-per-uid", "max-bytes-per-uid", OPTION_SIZE, max_bytes_per_uid, 0, UINT64_C(1) << 62, "SIZE",
              "Memory of the regions one user created"),
        LIMIT("region-bytes", "max-region-size", OPTION_SIZE, max_region_bytes, 8192, UINT64_C(1) << 62, "SIZE",
              "One region's memory at most"),
        LIMIT("peers", "max-peers", OPTION_UINT, default_max_peers, 1, SHMEM_PEERS_MAX, "N",
              "Default peers per region, 1-64"),
        LIMIT("peers-per-uid", "max-peers-per-uid", OPTION_UINT, max_peers_per_uid, 1, SHMEM_PEERS_MAX, "N",
              "Indices of one region one user (or one VM) may hold"),
        LIMIT("connections", "max-connections", OPTION_UINT, max_connections, 1, 1u << 20, "N",
              "Connections of all front ends together"),
        LIMIT("connections-per-uid", "max-connections-per-uid", OPTION_UINT, max_connections_per_uid, 1, 1u << 20,
              "N", "Control connections of one user"),
        LIMIT("connections-per-vm", "max-connections-per-vm", OPTION_UINT, max_connections_per_vm, 1, 1u << 20,
              "N", "QEMU connections of one VM"),
        LIMIT("admin-reserve", "admin-reserve", OPTION_UINT, admin_reserve, 0, 1u << 20, "N",
              "Connections only root and the broker's user may use"),
        LIMIT("hello-timeout-ms", "hello-timeout-ms", OPTION_UINT, hello_timeout_ms, 10, 3600000, "MS",
              "A control connection says Hello within this, or is closed"),
        LIMIT("queued-bytes", "max-queued-bytes", OPTION_SIZE_T, max_queued_bytes, 4096, UINT64_C(1) << 30, "SIZE",
              "Output queued for one connection before it is dropped as not reading"),
        LIMIT("total-queued-bytes", "max-total-queued-bytes", OPTION_SIZE_T, max_total_queued_bytes, 4096,
              UINT64_C(1) << 40, "SIZE", "Output queued for all connections together"),
        LIMIT("total-queued-fds", "max-total-queued-fds", OPTION_UINT, max_total_queued_fds, 16, 1u << 20, "N",
              "File descriptors queued for all connections together"),
};

const size_t daemon_n_options = ELEMENTSOF(daemon_options);
