/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "policy.h"

static void rules_free(AccessRule *rules, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free((char *) rules[i].client);
                free((char *) rules[i].glob);
        }
        free(rules);
}

void policy_done(Policy *p) {
        rules_free(p->rules, p->n_rules);
        p->rules = NULL;
        p->n_rules = 0;
}

int policy_set_rules(Policy *p, const AccessRule *rules, size_t n) {
        AccessRule *copy = calloc(n ? n : 1, sizeof(*copy));

        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                copy[i] = rules[i];
                copy[i].client = strdup(rules[i].client);
                copy[i].glob = strdup(rules[i].glob);
                if (!copy[i].client || !copy[i].glob) {
                        rules_free(copy, i + 1);
                        return -ENOMEM;
                }
        }
        rules_free(p->rules, p->n_rules);
        p->rules = copy;
        p->n_rules = n;
        return 0;
}

/* Whether @rule's section names the peer @id. */
static bool rule_names(const AccessRule *rule, const PeerIdentity *id) {
        if (!rule->domain)
                return fnmatch(rule->client, id->label, 0) == 0;
        /* A host client chooses its label: only a VM can be a domain. */
        return id->kind == SHMEM_PEER_KIND_QEMU &&
               (fnmatch(rule->client, id->label, 0) == 0 || (id->vm_uuid[0] && !strcasecmp(rule->client, id->vm_uuid)));
}

static const char *rule_section(const AccessRule *rule) {
        return rule->domain ? "domain" : "client";
}

bool policy_rules_allow(Policy *p, const PeerIdentity *id, const char *name, const char **ret_error) {
        const AccessRule *last = NULL;

        for (size_t i = 0; i < p->n_rules; i++) {
                const AccessRule *rule = &p->rules[i];

                if (rule->subst || !rule_names(rule, id))
                        continue;
                last = rule;
                if (fnmatch(rule->glob, name, 0) != 0)
                        continue;
                if (rule->allow)
                        return true;
                snprintf(p->error_buf, sizeof(p->error_buf), "denied by 'deny = %s' of [%s %s] (line %u)",
                         rule->glob, rule_section(rule), rule->client, rule->line);
                *ret_error = p->error_buf;
                return false;
        }
        if (!last || !last->allow)
                return true;
        snprintf(p->error_buf, sizeof(p->error_buf),
                 "not allowed by [%s %s]: 'allow = %s' (line %u) implies a final 'deny *'", rule_section(last),
                 last->client, last->glob, last->line);
        *ret_error = p->error_buf;
        return false;
}

static const char *policy_prefix(Policy *p, const PeerIdentity *id) {
        for (size_t i = 0; i < p->n_rules; i++)
                if (p->rules[i].subst && rule_names(&p->rules[i], id))
                        return p->rules[i].glob;
        return NULL;
}

bool policy_has_subst(Policy *p, const PeerIdentity *id) {
        return policy_prefix(p, id) != NULL;
}

bool policy_subst_name(Policy *p, const PeerIdentity *id, const char *name, char ret[SHMEM_NAME_MAX + 1]) {
        const char *prefix = policy_prefix(p, id);

        return snprintf(ret, SHMEM_NAME_MAX + 1, "%s%s", prefix ? prefix : "", name) <= SHMEM_NAME_MAX;
}

bool policy_is_admin(const PeerIdentity *id) {
        return id->uid == 0 || id->uid == geteuid();
}
