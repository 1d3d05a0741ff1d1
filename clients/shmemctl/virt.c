/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shmemctl attach/detach/xml: a region's <shmem> device in libvirt domains.
 *
 * The device is QEMU's ivshmem-doorbell on the region's server socket, with
 * as many MSI vectors as the region has (QEMU drops surplus vector fds with a
 * warning, docs/libvirt.md section 12) and ioeventfd on (a doorbell write
 * then costs no exit to QEMU's main loop). libvirt does not relabel the
 * server socket, so before attaching we check that QEMU's user can reach it,
 * and say which permission is missing rather than letting QEMU fail later.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "domain-xml.h"
#include "escape.h"
#include "progress.h"
#include "virt.h"

enum { VIRT_OK = 0, VIRT_FAILED = 1, VIRT_UNREACHABLE = 3 };

#ifndef SHMEM_HAVE_LIBVIRT

bool virt_available(void) {
        return false;
}

static int virt_missing(void) {
        fputs("shmemctl: built without libvirt (cmake -DSHMEM_LIBVIRT=ON, needs libvirt-dev); "
              "'shmemctl xml' prints the device for virsh attach-device\n",
              stderr);
        return VIRT_FAILED;
}

int virt_attach(const VirtOptions *o, const char *domain, const VirtRegion *r) {
        (void) o, (void) domain, (void) r;
        return virt_missing();
}

int virt_detach(const VirtOptions *o, const char *domain, const char *region, const VirtGuard *guard) {
        (void) o, (void) domain, (void) region, (void) guard;
        return virt_missing();
}

int virt_definition(const VirtOptions *o, const char *domain, char **ret) {
        (void) o, (void) domain, (void) ret;
        return virt_missing();
}

#else

#include "virt-dl.h" /* libvirt's API, loaded by virt_dl_open() */

/* Appends @s to @buf with XML's five special characters escaped. */
static void xml_escape(char *buf, size_t size, const char *s) {
        size_t n = strlen(buf);

        for (; *s && n + 7 < size; s++) {
                const char *e = NULL;

                switch (*s) {
                case '&': e = "&amp;"; break;
                case '<': e = "&lt;"; break;
                case '>': e = "&gt;"; break;
                case '\'': e = "&apos;"; break;
                case '"': e = "&quot;"; break;
                }
                if (e) {
                        memcpy(buf + n, e, strlen(e));
                        n += strlen(e);
                } else
                        buf[n++] = *s;
        }
        buf[n] = 0;
}

bool virt_available(void) {
        return true;
}

/* "shmemctl: MESSAGE" on stderr, through the progress line (progress.h). */
__attribute__((format(printf, 1, 0))) static void vsay(const char *fmt, va_list ap) {
        char buf[4096];

        vsnprintf(buf, sizeof(buf), fmt, ap);
        progress_eprintf("shmemctl: %s\n", buf);
}

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsay(fmt, ap);
        va_end(ap);
}

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsay(fmt, ap);
        va_end(ap);
        return VIRT_FAILED;
}

static const char *virt_error(void) {
        const char *m = virGetLastErrorMessage();

        return m && *m ? m : "unknown libvirt error";
}

/* libvirt prints every error to stderr by default; we report them ourselves. */
static void virt_quiet(void *userdata, virErrorPtr error) {
        (void) userdata, (void) error;
}

static const char *uri_of(const VirtOptions *o) {
        return o->uri ? o->uri : VIRT_DEFAULT_URI;
}

/* Opens the connection and looks @domain up by name, else by UUID. */
static int virt_open(const VirtOptions *o, const char *domain, virConnectPtr *ret_conn, virDomainPtr *ret_dom) {
        virConnectPtr conn;
        virDomainPtr dom;

        if (virt_dl_open() < 0)
                return VIRT_FAILED;
        virSetErrorFunc(NULL, virt_quiet);
        conn = virConnectOpenAuth(uri_of(o), virConnectAuthPtrDefault, 0);
        if (!conn) {
                say("cannot connect to libvirt at %s: %s", uri_of(o), virt_error());
                return VIRT_UNREACHABLE;
        }
        dom = virDomainLookupByName(conn, domain);
        if (!dom && strlen(domain) == VIR_UUID_STRING_BUFLEN - 1)
                dom = virDomainLookupByUUIDString(conn, domain);
        if (!dom) {
                virConnectClose(conn);
                return fail("no domain '%s' at %s (see: virsh -c %s list --all)", domain, uri_of(o), uri_of(o));
        }
        *ret_conn = conn;
        *ret_dom = dom;
        return VIRT_OK;
}

/* Undoes virt_open(); either may be NULL. */
static void virt_close(virConnectPtr conn, virDomainPtr dom) {
        if (dom)
                virDomainFree(dom);
        if (conn)
                virConnectClose(conn);
}

static unsigned affect_flags(const VirtOptions *o) {
        unsigned flags = 0;

        if (o->live)
                flags |= VIR_DOMAIN_AFFECT_LIVE;
        if (o->config)
                flags |= VIR_DOMAIN_AFFECT_CONFIG;
        return flags ? flags : VIR_DOMAIN_AFFECT_CURRENT;
}

/* --- can QEMU reach the socket? --- */

typedef struct QemuUser {
        char name[64];
        uid_t uid;
        gid_t groups[64];
        int n_groups;
        bool certain; /* from the running domain's DAC label, not a default */
} QemuUser;

static bool in_groups(const QemuUser *u, gid_t gid) {
        for (int i = 0; i < u->n_groups; i++)
                if (u->groups[i] == gid)
                        return true;
        return false;
}

/*
 * @uid and @gid as libvirt starts QEMU: @gid, plus every group of the user,
 * its passwd primary group included. Debian's libvirt-qemu has primary group
 * kvm and is listed as a member of no group, so getgrouplist() from @gid
 * alone misses kvm (and `shmemctl attach` refused a socket QEMU could open).
 */
static bool qemu_user_fill(QemuUser *u, uid_t uid, gid_t gid) {
        struct passwd *pw = getpwuid(uid);
        int max = (int) (sizeof(u->groups) / sizeof(u->groups[0]));

        u->uid = uid;
        u->groups[0] = gid;
        u->n_groups = 1;
        if (!pw) {
                snprintf(u->name, sizeof(u->name), "uid %u", (unsigned) uid);
                return true;
        }
        snprintf(u->name, sizeof(u->name), "%s", pw->pw_name);
        u->n_groups = max - 1;
        if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &u->n_groups) < 0)
                u->n_groups = 1, u->groups[0] = pw->pw_gid;
        if (!in_groups(u, gid))
                u->groups[u->n_groups++] = gid;
        return true;
}

/*
 * Whose QEMU: the DAC label of the running domain ("+64055:+64055"), else
 * libvirt's default for the URI: Debian's libvirt-qemu (Fedora's qemu) for a
 * system URI, the caller for a session URI. False if we cannot tell (a remote
 * URI: the socket is not ours to check).
 */
static bool qemu_user_of(const VirtOptions *o, virDomainPtr dom, QemuUser *u) {
        const char *uri = uri_of(o), *p;
        char *xml = NULL;
        unsigned uid, gid;
        struct passwd *pw;

        if (!strstr(uri, ":///"))
                return false;
        if (virDomainIsActive(dom) == 1)
                xml = virDomainGetXMLDesc(dom, 0);
        p = xml ? strstr(xml, "model='dac'") : NULL;
        p = p ? strstr(p, "<label>") : NULL;
        if (p && sscanf(p, "<label>+%u:+%u</label>", &uid, &gid) == 2) {
                free(xml);
                u->certain = qemu_user_fill(u, uid, gid);
                return true;
        }
        free(xml);
        if (strstr(uri, "/session"))
                return qemu_user_fill(u, getuid(), getgid());
        pw = getpwnam("libvirt-qemu");
        if (!pw)
                pw = getpwnam("qemu");
        return pw && qemu_user_fill(u, pw->pw_uid, pw->pw_gid);
}

/* Whether @u has all @want bits (r=4, w=2, x=1) on @st, by owner, group, other. */
static bool may(const QemuUser *u, const struct stat *st, unsigned want) {
        unsigned m = st->st_mode;

        if (u->uid == 0)
                return true;
        if (st->st_uid == u->uid)
                return ((m >> 6) & want) == want;
        if (in_groups(u, st->st_gid))
                return ((m >> 3) & want) == want;
        return (m & want) == want;
}

static const char *owner_str(char buf[160], const struct stat *st) {
        struct passwd *pw = getpwuid(st->st_uid);
        struct group *gr = getgrgid(st->st_gid);
        char uid[16], gid[16];

        snprintf(uid, sizeof(uid), "%u", (unsigned) st->st_uid);
        snprintf(gid, sizeof(gid), "%u", (unsigned) st->st_gid);
        snprintf(buf, 160, "mode %04o, owner %s:%s", (unsigned) st->st_mode & 07777, pw ? pw->pw_name : uid,
                 gr ? gr->gr_name : gid);
        return buf;
}

/*
 * Checks that @u can search every directory down to @path and write to the
 * socket (connect(2) needs it). Returns false with the reason in @why; true
 * also when we cannot tell (we may not see the path ourselves).
 */
static bool socket_reachable(const QemuUser *u, const char *path, char *why, size_t size) {
        char dir[2048], own[160];
        struct stat st;

        if (strlen(path) >= sizeof(dir) || path[0] != '/')
                return true;
        for (const char *slash = path; (slash = strchr(slash + 1, '/'));) {
                memcpy(dir, path, (size_t) (slash - path));
                dir[slash - path] = 0;
                if (stat(dir, &st) < 0)
                        return true;
                if (!may(u, &st, 1)) {
                        snprintf(why, size, "directory %s (%s) gives %s no search (x) permission", dir,
                                 owner_str(own, &st), u->name);
                        return false;
                }
        }
        if (stat(path, &st) < 0) {
                if (errno == ENOENT) {
                        snprintf(why, size, "%s does not exist (is the broker's run directory visible to libvirt?)",
                                 path);
                        return false;
                }
                return true;
        }
        if (!may(u, &st, 2)) {
                snprintf(why, size, "socket %s (%s) gives %s no write (w) permission, which connecting needs "
                         "(the broker's qemu-socket-group, broker.conf(5))", path, owner_str(own, &st), u->name);
                return false;
        }
        return true;
}

/* Whether @dom runs a q35 machine (hotplug goes to PCIe root ports there). */
static bool machine_is_q35(virDomainPtr dom) {
        char *xml = virDomainGetXMLDesc(dom, 0), machine[128] = "";
        const char *t = xml ? strstr(xml, "machine='") : NULL;

        if (t)
                sscanf(t, "machine='%127[^']'", machine);
        free(xml);
        return strstr(machine, "q35") != NULL;
}

int virt_attach(const VirtOptions *o, const char *domain, const VirtRegion *r) {
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        QemuUser u = {};
        char why[2600];
        char *xml = NULL, d[STR_ESCAPE_SIZE(64)], n[STR_ESCAPE_SIZE(64)];
        int ret;

        if (virt_dl_open() < 0)
                return VIRT_FAILED;
        str_escape(d, sizeof(d), domain);
        str_escape(n, sizeof(n), r->name);
        if (o->config && !o->live)
                progress_begin("Defining domain '%s' with region '%s' (libvirt)", d, n);
        else
                progress_begin("Attaching region '%s' to domain '%s'%s (libvirt)", n, d,
                               o->config ? " and its definition" : "");
        ret = virt_open(o, domain, &conn, &dom);
        if (ret != VIRT_OK)
                goto out;
        if (qemu_user_of(o, dom, &u) && !socket_reachable(&u, r->socket, why, sizeof(why))) {
                say("%s QEMU of domain '%s' runs as %s and cannot connect to region '%s': %s",
                        u.certain ? "the" : "warning: the", domain, u.name, r->name, why);
                if (u.certain) {
                        ret = VIRT_FAILED;
                        goto out;
                }
        }
        if (o->live && machine_is_q35(dom))
                say("warning: hotplugged into the q35 domain '%s', the device may get no memory BAR (region data) "
                    "in the guest; attach with --config and restart, or use a pc machine for hotplug "
                    "(docs/libvirt.md)", domain);
        xml = domain_xml_shmem(r->name, r->socket, r->vectors, -1);
        if (!xml) {
                ret = fail("out of memory");
                goto out;
        }
        if (virDomainAttachDeviceFlags(dom, xml, affect_flags(o)) < 0)
                ret = fail("cannot attach region '%s' to domain '%s': %s", r->name, domain, virt_error());
out:
        free(xml);
        virt_close(conn, dom);
        progress_end();
        return ret;
}

int virt_definition(const VirtOptions *o, const char *domain, char **ret) {
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        char d[STR_ESCAPE_SIZE(64)];
        int r;

        if (virt_dl_open() < 0)
                return VIRT_FAILED;
        progress_begin("Reading the definition of domain '%s' (libvirt)", str_escape(d, sizeof(d), domain));
        r = virt_open(o, domain, &conn, &dom);
        if (r == VIRT_OK) {
                *ret = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
                if (!*ret)
                        r = fail("cannot read the definition of domain '%s': %s", domain, virt_error());
        }
        virt_close(conn, dom);
        progress_end();
        return r;
}

/*
 * The <shmem> element of @region in @xml (libvirt's canonical formatting:
 * single quotes, the name attribute first), malloc'd; NULL if there is none.
 */
static char *find_shmem(const char *xml, const char *region) {
        char start[300] = "<shmem name='";
        const char *b, *e;

        xml_escape(start, sizeof(start), region);
        strcat(start, "'>");
        b = xml ? strstr(xml, start) : NULL;
        e = b ? strstr(b, "</shmem>") : NULL;
        if (!e)
                return NULL;
        e += strlen("</shmem>");
        return strndup(b, (size_t) (e - b));
}

typedef struct Removal {
        char alias[128];
        bool removed, failed;
} Removal;

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        Removal *rm = opaque;

        (void) conn, (void) dom;
        if (alias && strcmp(alias, rm->alias) == 0)
                rm->removed = true;
}

static void on_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        Removal *rm = opaque;

        (void) conn, (void) dom;
        if (alias && strcmp(alias, rm->alias) == 0)
                rm->failed = true;
}

static void on_tick(int timer, void *opaque) {
        (void) timer, (void) opaque;
}

/* Whether the live domain still has the device of @region. */
static bool still_attached(virDomainPtr dom, const char *region) {
        char *xml = virDomainGetXMLDesc(dom, 0), *el = find_shmem(xml, region);
        bool attached = el != NULL;

        free(el);
        free(xml);
        return attached;
}

/*
 * Detaching from a running guest is a request: libvirt may report success
 * while the guest has yet to release the device (a paused guest never does),
 * so we wait for libvirt's DEVICE_REMOVED event, and look at the live XML
 * once a second in case the event came before we listened.
 */
/* Whether unplugging @region from the running @dom would crash its QEMU; says why if so. */
static bool unplug_unsafe(virDomainPtr dom, const char *domain, const char *region, const VirtGuard *guard) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        int n;

        if (!guard || guard->force || virDomainGetUUIDString(dom, uuid) < 0)
                return false;
        n = guard->departures_told(guard->userdata, region, uuid);
        if (n < 0) {
                fail("cannot ask the broker whether unplugging region '%s' is safe: %s (--force detaches anyway)",
                     region, strerror(-n));
                return true;
        }
        if (n > 0) {
                fail("the QEMU of domain '%s' was told that %d peer%s left region '%s', and QEMU (7.2 at "
                     "least) aborts when such a device is unplugged (docs/libvirt.md); power the guest off to "
                     "release the region, or detach with --force",
                     domain, n, n == 1 ? "" : "s", region);
                return true;
        }
        return false;
}

int virt_detach(const VirtOptions *o, const char *domain, const char *region, const VirtGuard *guard) {
        virConnectPtr conn = NULL;
        virDomainPtr dom = NULL;
        Removal rm = {};
        int cb_removed = -1, cb_failed = -1, timer = -1, ret;
        unsigned flags = affect_flags(o);
        bool live;
        char *xml = NULL, *el = NULL, d[STR_ESCAPE_SIZE(64)], n[STR_ESCAPE_SIZE(64)];
        const char *a;

        /* Events need libvirt's event loop, registered before the connection opens. */
        if (virt_dl_open() < 0)
                return VIRT_FAILED;
        if (virEventRegisterDefaultImpl() < 0)
                return fail("cannot set up libvirt's event loop: %s", virt_error());
        str_escape(d, sizeof(d), domain);
        progress_begin("Detaching region '%s' from domain '%s' (libvirt)", str_escape(n, sizeof(n), region), d);
        ret = virt_open(o, domain, &conn, &dom);
        if (ret != VIRT_OK)
                goto out;
        live = virDomainIsActive(dom) == 1 && (flags & (VIR_DOMAIN_AFFECT_LIVE | VIR_DOMAIN_AFFECT_CURRENT));
        if (o->live && !live) {
                ret = fail("domain '%s' is not running (drop --live to change its configuration)", domain);
                goto out;
        }
        xml = virDomainGetXMLDesc(dom, live ? 0 : VIR_DOMAIN_XML_INACTIVE);
        el = find_shmem(xml, region);
        if (!el) {
                ret = fail("domain '%s' has no <shmem name='%s'> device%s", domain, region,
                           live ? " (running)" : " in its configuration");
                goto out;
        }
        a = strstr(el, "<alias name='");
        if (a)
                sscanf(a, "<alias name='%127[^']'", rm.alias);
        if (live && unplug_unsafe(dom, domain, region, guard)) {
                ret = VIRT_FAILED;
                goto out;
        }
        if (live) {
                cb_removed = virConnectDomainEventRegisterAny(conn, dom, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                                              VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), &rm,
                                                              NULL);
                cb_failed = virConnectDomainEventRegisterAny(conn, dom,
                                                             VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                                             VIR_DOMAIN_EVENT_CALLBACK(on_removal_failed), &rm,
                                                             NULL);
                timer = virEventAddTimeout(1000, on_tick, NULL, NULL);
        }
        if (virDomainDetachDeviceFlags(dom, el, flags) < 0) {
                /* A guest that powers off meanwhile takes its devices with it. */
                if (!live || virDomainIsActive(dom) != 0 || (flags & VIR_DOMAIN_AFFECT_CONFIG))
                        ret = fail("cannot detach region '%s' from domain '%s': %s", region, domain, virt_error());
                goto out;
        }
        if (live) {
                int64_t deadline = now_ms() + (int64_t) o->timeout_s * 1000;

                while (!rm.removed && !rm.failed && virDomainIsActive(dom) == 1 && still_attached(dom, region)) {
                        if (now_ms() >= deadline) {
                                ret = fail("domain '%s' has not released region '%s' within %u s; the request "
                                           "stands and libvirt removes the device when the guest lets go "
                                           "(--timeout waits longer)",
                                           domain, region, o->timeout_s);
                                goto out;
                        }
                        if (virEventRunDefaultImpl() < 0)
                                break;
                }
                if (rm.failed)
                        ret = fail("the guest of domain '%s' refused to release region '%s'", domain, region);
        }
out:
        if (timer >= 0)
                virEventRemoveTimeout(timer);
        if (cb_removed >= 0)
                virConnectDomainEventDeregisterAny(conn, cb_removed);
        if (cb_failed >= 0)
                virConnectDomainEventDeregisterAny(conn, cb_failed);
        free(el);
        free(xml);
        virt_close(conn, dom);
        progress_end();
        return ret;
}

#endif
