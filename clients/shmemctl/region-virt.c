/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xml, attach and detach (region-virt.h): what the broker says of a region
 * for its libvirt device; virt.c does the libvirt side.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "domain-xml.h"
#include "json.h"
#include "region-virt.h"

/* attach's and detach's --json: {"domain", "region", "attached" or "detached", "live", "config"[, "forced"]}. */
static int print_virt_result(const Args *a, const char *verb, const char *domain, const char *name) {
        Json j;

        json_init_pretty(&j, stdout);
        json_object_begin(&j);
        json_key(&j, "domain");
        json_string(&j, domain);
        json_key(&j, "region");
        json_string(&j, name);
        json_key(&j, verb);
        json_bool(&j, true);
        json_key(&j, "live");
        json_bool(&j, a->virt.live);
        json_key(&j, "config");
        json_bool(&j, a->virt.config);
        if (verb[0] == 'd') {
                json_key(&j, "forced");
                json_bool(&j, a->force);
        }
        json_object_end(&j);
        return EXIT_OK;
}

/* detach's guard (virt.h): asks the broker, printing nothing. */
static int departures_told(void *userdata, const char *region, const char *uuid) {
        const Args *a = userdata;
        _cleanup_(client_freep) Client *c = NULL;
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        Shmem__Inspect in = SHMEM__INSPECT__INIT;
        Message m = SHMEM__MESSAGE__INIT;
        const Shmem__RegionInfo *ri;
        const char *detail;
        int r;

        r = client_connect(&c, client_socket_path(a->socket), "shmemctl", CLIENT_TIMEOUT_MS);
        if (r != 0)
                return r < 0 ? r : -ECONNREFUSED;
        in.name = (char *) region;
        m.body_case = SHMEM__MESSAGE__BODY_INSPECT;
        m.inspect = &in;
        r = client_call(c, &m, CLIENT_TIMEOUT_MS, &reply);
        if (r < 0)
                return r;
        r = client_reply_status(reply, &detail);
        if (r == SHMEM__STATUS__DOES_NOT_EXIST)
                return 0;
        if (r != SHMEM__STATUS__OK || reply->msg->reply->body_case != SHMEM__REPLY__BODY_INSPECT ||
            !reply->msg->reply->inspect || !reply->msg->reply->inspect->region)
                return -EPROTO;
        ri = reply->msg->reply->inspect->region;
        for (size_t i = 0; i < ri->n_peers; i++)
                if (ri->peers[i]->kind == SHMEM__PEER_KIND__KIND_QEMU && ri->peers[i]->vm_uuid &&
                    strcasecmp(ri->peers[i]->vm_uuid, uuid) == 0)
                        return (int) ri->peers[i]->departures_told;
        return 0;
}

/* xml, attach: the device of region @name as the broker describes it. */
int cmd_virt(Client *c, const char *path, const Args *a, const char *cmd, const char *domain,
                    const char *name) {
        _cleanup_(client_msg_freep) ClientMsg *reply = NULL;
        const Shmem__RegionInfo *ri;
        VirtRegion vr;
        char *xml;
        int r;

        r = inspect_region(c, path, name, &reply, &ri);
        if (r != EXIT_OK)
                return r;
        if (!ri->qemu_socket || !ri->qemu_socket[0]) {
                fprintf(stderr, "shmemctl: region '%s' has no QEMU socket\n", name);
                return EXIT_REFUSED;
        }
        vr = (VirtRegion) { .name = name, .socket = ri->qemu_socket, .vectors = ri->vectors };
        if (strcmp(cmd, "attach") == 0) {
                r = virt_attach(&a->virt, domain, &vr);
                return r == EXIT_OK && a->json ? print_virt_result(a, "attached", domain, name) : r;
        }
        xml = domain_xml_shmem(vr.name, vr.socket, vr.vectors, -1);
        if (!xml) {
                fputs("shmemctl: out of memory\n", stderr);
                return EXIT_REFUSED;
        }
        if (a->json) {
                Json j;

                json_result_begin(&j, name);
                json_key(&j, "xml");
                json_string(&j, xml);
                json_object_end(&j);
        } else
                fputs(xml, stdout);
        free(xml);
        return EXIT_OK;
}

int cmd_detach(const Args *a, const char *domain, const char *name) {
        VirtGuard guard = { .departures_told = departures_told, .userdata = (void *) a, .force = a->force };

        int r = virt_detach(&a->virt, domain, name, &guard);

        return r == EXIT_OK && a->json ? print_virt_result(a, "detached", domain, name) : r;
}
