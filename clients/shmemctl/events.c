/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "events.h"
#include "json.h"
#include "region-layout.h"

const char *peer_kind_str(unsigned kind) {
        switch (kind) {
        case SHMEM_PEER_KIND_QEMU:
                return "qemu";
        case SHMEM_PEER_KIND_HOST:
                return "host";
        default:
                return "none";
        }
}

static const char *state_event(Shmem__RegionState state) {
        switch (state) {
        case SHMEM__REGION_STATE__DECLARED:
                return "created";
        case SHMEM__REGION_STATE__ALLOCATED:
                return "allocated";
        case SHMEM__REGION_STATE__FREED:
                return "freed";
        case SHMEM__REGION_STATE__DESTROYED:
                return "destroyed";
        default:
                return NULL;
        }
}

const char *event_region(const Message *m) {
        switch (m->body_case) {
        case SHMEM__MESSAGE__BODY_JOINED:
                return m->joined->peer ? m->joined->name : NULL;
        case SHMEM__MESSAGE__BODY_LEFT:
                return m->left->name;
        case SHMEM__MESSAGE__BODY_STATUS:
                return m->status->name;
        default:
                return NULL;
        }
}

/* One field of a line: no spaces, nothing that moves the cursor or needs a terminal. */
static void write_token(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p; p++)
                if (*p <= 0x20 || *p == 0x7f || *p == '\\')
                        fprintf(f, "\\x%02x", *p);
                else
                        fputc(*p, f);
}

static void print_json(FILE *f, const Message *m, const char *time) {
        Json j;

        json_init(&j, f);
        json_object_begin(&j);
        if (time) {
                json_key(&j, "time");
                json_string(&j, time);
        }
        json_key(&j, "event");
        switch (m->body_case) {
        case SHMEM__MESSAGE__BODY_JOINED: {
                const Shmem__PeerInfo *p = m->joined->peer;

                json_string(&j, "joined");
                json_key(&j, "region");
                json_string(&j, m->joined->name);
                json_key(&j, "index");
                json_uint(&j, p->index);
                json_key(&j, "kind");
                json_string(&j, peer_kind_str(p->kind));
                json_key(&j, "label");
                json_string(&j, p->label);
                json_key(&j, "pid");
                json_uint(&j, p->pid);
                json_key(&j, "doorbell_id");
                json_uint(&j, p->doorbell_id);
                json_key(&j, "epoch");
                json_uint(&j, m->joined->epoch);
                break;
        }
        case SHMEM__MESSAGE__BODY_LEFT:
                json_string(&j, "left");
                json_key(&j, "region");
                json_string(&j, m->left->name);
                json_key(&j, "index");
                json_uint(&j, m->left->index);
                json_key(&j, "epoch");
                json_uint(&j, m->left->epoch);
                break;
        default: {
                const char *what = state_event(m->status->state);

                json_string(&j, what ? what : "state");
                json_key(&j, "region");
                json_string(&j, m->status->name);
                if (!what) {
                        json_key(&j, "state");
                        json_uint(&j, (uint64_t) m->status->state);
                }
                break;
        }
        }
        json_object_end(&j);
}

static void print_text(FILE *f, const Message *m, const char *time) {
        if (time) {
                write_token(f, time);
                fputc(' ', f);
        }
        switch (m->body_case) {
        case SHMEM__MESSAGE__BODY_JOINED: {
                const Shmem__PeerInfo *p = m->joined->peer;

                fputs("joined ", f);
                write_token(f, m->joined->name);
                fprintf(f, " index=%" PRIu32 " kind=%s pid=%" PRIu32 " epoch=%" PRIu64 " label=", p->index,
                        peer_kind_str(p->kind), p->pid, m->joined->epoch);
                write_token(f, p->label);
                break;
        }
        case SHMEM__MESSAGE__BODY_LEFT:
                fputs("left ", f);
                write_token(f, m->left->name);
                fprintf(f, " index=%" PRIu32 " epoch=%" PRIu64, m->left->index, m->left->epoch);
                break;
        default: {
                const char *what = state_event(m->status->state);

                fputs(what ? what : "state", f);
                fputc(' ', f);
                write_token(f, m->status->name);
                if (!what)
                        fprintf(f, " state=%d", (int) m->status->state);
                break;
        }
        }
        fputc('\n', f);
}

bool event_print(FILE *f, const Message *m, bool json, const char *time) {
        if (!event_region(m))
                return false;
        if (json)
                print_json(f, m, time);
        else
                print_text(f, m, time);
        return true;
}
