/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>

#include "hotplug-slot.h"

/* Bridges behind bridges: a switch is two levels; nobody nests 16. */
#define BRIDGE_DEPTH_MAX 16

bool hotplug_window_fits(uint64_t base, uint64_t limit, uint64_t size, uint64_t *ret_address) {
        uint64_t address;

        if (size == 0 || (size & (size - 1)) != 0 || base > limit)
                return false;
        /* The first multiple of size at or above base; none if that wraps. */
        if (base > UINT64_MAX - (size - 1))
                return false;
        address = (base + (size - 1)) & ~(size - 1);
        if (address > limit || limit - address < size - 1)
                return false;
        if (ret_address)
                *ret_address = address;
        return true;
}

/*
 * A QAPI 'int' member as the unsigned number it stands for: QEMU prints a
 * 64-bit address above INT64_MAX as a negative int64, json-c parses a
 * number above INT64_MAX as a uint64.
 */
static int member_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;
        int64_t i;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        i = json_object_get_int64(v);
        *ret = i == INT64_MAX ? json_object_get_uint64(v) : (uint64_t) i;
        return 0;
}

static struct json_object *member(struct json_object *o, const char *key, enum json_type type) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, type))
                return NULL;
        return v;
}

typedef struct Ports {
        HotplugPort *v;
        size_t n;
} Ports;

static int port_add(Ports *ports, const char *id, struct json_object *bridge) {
        struct json_object *bus = member(bridge, "bus", json_type_object), *pref, *devices;
        HotplugPort *p;
        int r;

        if (ports->n == HOTPLUG_PORTS_MAX)
                return -EBADMSG;
        pref = bus ? member(bus, "prefetchable_range", json_type_object) : NULL;
        if (!pref)
                return -EBADMSG;
        p = realloc(ports->v, (ports->n + 1) * sizeof(*p));
        if (!p)
                return -ENOMEM;
        ports->v = p;
        p = &ports->v[ports->n];
        *p = (HotplugPort) { .id = id };
        r = member_u64(pref, "base", &p->pref_base);
        if (r < 0)
                return r;
        r = member_u64(pref, "limit", &p->pref_limit);
        if (r < 0)
                return r;
        /* QEMU leaves "devices" out of a bridge with nothing behind it. */
        devices = member(bridge, "devices", json_type_array);
        p->occupied = devices && json_object_array_length(devices) > 0;
        ports->n++;
        return 0;
}

/* The bridges among @devices (a PciDeviceInfo array) and behind them. */
static int walk_devices(Ports *ports, struct json_object *devices, unsigned depth) {
        if (!devices || depth > BRIDGE_DEPTH_MAX)
                return -EBADMSG;
        for (size_t i = 0; i < json_object_array_length(devices); i++) {
                struct json_object *dev = json_object_array_get_idx(devices, i), *bridge, *qdev_id, *behind;
                int r;

                if (!json_object_is_type(dev, json_type_object))
                        return -EBADMSG;
                bridge = member(dev, "pci_bridge", json_type_object);
                if (!bridge)
                        continue;
                qdev_id = member(dev, "qdev_id", json_type_string);
                if (qdev_id && json_object_get_string_len(qdev_id) > 0) {
                        r = port_add(ports, json_object_get_string(qdev_id), bridge);
                        if (r < 0)
                                return r;
                }
                behind = member(bridge, "devices", json_type_array);
                if (behind) {
                        r = walk_devices(ports, behind, depth + 1);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int hotplug_ports_parse(struct json_object *buses, HotplugPort **ret_ports, size_t *ret_n) {
        Ports ports = {};
        int r = 0;

        if (!json_object_is_type(buses, json_type_array))
                return -EBADMSG;
        for (size_t i = 0; r == 0 && i < json_object_array_length(buses); i++) {
                struct json_object *bus = json_object_array_get_idx(buses, i);

                if (!json_object_is_type(bus, json_type_object))
                        r = -EBADMSG;
                else
                        r = walk_devices(&ports, member(bus, "devices", json_type_array), 0);
        }
        if (r < 0) {
                free(ports.v);
                return r;
        }
        *ret_ports = ports.v;
        *ret_n = ports.n;
        return 0;
}

const HotplugPort *hotplug_port_choose(const HotplugPort *ports, size_t n, uint64_t bar_size) {
        const HotplugPort *best = NULL;

        for (size_t i = 0; i < n; i++) {
                const HotplugPort *p = &ports[i];

                if (p->occupied || !hotplug_window_fits(p->pref_base, p->pref_limit, bar_size, NULL))
                        continue;
                /* limit - base: the window's size less one, which cannot overflow. */
                if (!best || p->pref_limit - p->pref_base < best->pref_limit - best->pref_base)
                        best = p;
        }
        return best;
}

int hotplug_bus_free_slots(struct json_object *buses, unsigned bus) {
        if (!json_object_is_type(buses, json_type_array))
                return -EBADMSG;
        for (size_t i = 0; i < json_object_array_length(buses); i++) {
                struct json_object *b = json_object_array_get_idx(buses, i), *devices;
                bool used[HOTPLUG_BUS_SLOTS] = {};
                uint64_t number;
                int n = HOTPLUG_BUS_SLOTS;

                if (!json_object_is_type(b, json_type_object) || member_u64(b, "bus", &number) < 0)
                        return -EBADMSG;
                if (number != bus)
                        continue;
                devices = member(b, "devices", json_type_array);
                if (!devices)
                        return -EBADMSG;
                for (size_t k = 0; k < json_object_array_length(devices); k++) {
                        struct json_object *dev = json_object_array_get_idx(devices, k);
                        uint64_t slot, function;

                        if (!json_object_is_type(dev, json_type_object) || member_u64(dev, "slot", &slot) < 0 ||
                            member_u64(dev, "function", &function) < 0 || slot >= HOTPLUG_BUS_SLOTS || function > 7)
                                return -EBADMSG;
                        if (function == 0 && !used[slot]) {
                                used[slot] = true;
                                n--;
                        }
                }
                return n;
        }
        return -EBADMSG;
}
