/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The core's results (STYLE.md): 0 is success; a negative value is a -errno,
 * a failure of the host (out of fds, of memory for the broker's own objects)
 * that the caller logs; a positive value is one of these, a refusal of what
 * a peer or an administrator asked, with a reason text, that the caller
 * reports to whoever asked. Each front end maps them to its wire in one
 * place (native/dispatch.c, plugin-qemu/qemu.c).
 */

enum {
        CORE_E_CLIENT_MAX = 1, /* every peer index of the region is taken */
        CORE_E_ILLEGAL_NAME,   /* not a region name, or not one with the peer's subst prefix */
        CORE_E_NO_PERMISSION,  /* the rules or the region's owner/group/mode refuse the peer */
        CORE_E_NOT_FOUND,      /* find of a region that does not exist */
        CORE_E_EXISTS,         /* exclusive attach or declaration of a name in use */
        CORE_E_BAD_SIZE,       /* size 0 at creation, or beyond a limit */
        CORE_E_LIMIT,          /* a configured limit is reached */
        CORE_E_BUSY,           /* destroy of a region with peers, without force */
        CORE_E_INVALID,        /* a request the core cannot take as given (mode, geometry, backend) */
        CORE_E_NOMEM,          /* the region's memory could not be had from its backend */
        CORE_E_MAX,
};

/* A short name of a CORE_E_* for logs and tests ("client-max"), "?" otherwise. */
const char *core_error_name(int e);
