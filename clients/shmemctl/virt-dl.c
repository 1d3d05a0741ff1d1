/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virt-dl: libvirt.so.0 opened and its symbols resolved when first needed (virt-dl.h). */
#define VIRT_DL_IMPL
#include <dlfcn.h>
#include <stdio.h>

#include "virt-dl.h"

#define VIRT_DL_DEFINE(s) __typeof__(s) *sym_##s;
VIRT_DL_SYMBOLS(VIRT_DL_DEFINE)
#undef VIRT_DL_DEFINE

static const struct {
        const char *name;
        void **ptr;
} symbols[] = {
#define VIRT_DL_ENTRY(s) { #s, (void **) &sym_##s },
        VIRT_DL_SYMBOLS(VIRT_DL_ENTRY)
#undef VIRT_DL_ENTRY
};

int virt_dl_open(void) {
        static int result = 1; /* 1: not tried yet */
        void *dl;

        if (result <= 0)
                return result;
        /* Kept open for the life of the process: libvirt has threads and atexit handlers. */
        dl = dlopen(VIRT_DL_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
                fprintf(stderr,
                        "shmemctl: %s: %s\n"
                        "shmemctl: attach, detach and xml --factory DOMAIN need libvirt's library: install the libvirt0 package\n",
                        VIRT_DL_SONAME, dlerror());
                return result = -1;
        }
        for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
                const char *e;

                dlerror();
                *symbols[i].ptr = dlsym(dl, symbols[i].name);
                e = dlerror();
                if (!*symbols[i].ptr) {
                        fprintf(stderr,
                                "shmemctl: %s has no %s (%s): libvirt too old? shmemctl needs the "
                                "libvirt0 of Debian 12 (9.0) or later\n",
                                VIRT_DL_SONAME, symbols[i].name, e ? e : "its value is NULL");
                        dlclose(dl);
                        for (size_t k = 0; k < sizeof(symbols) / sizeof(symbols[0]); k++)
                                *symbols[k].ptr = NULL;
                        return result = -1;
                }
        }
        return result = 0;
}
